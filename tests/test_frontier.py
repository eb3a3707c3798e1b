"""The kept search of the certified solver (:mod:`xposim.policies.tabular.frontier`, issue #11).

Checked: the bound of a round's change on a leaf's box against an independent numpy version and
against the change itself at points of the box; the leaves a search keeps bound ``F`` on the face
points of their boxes; solving round after round from the kept search gives the fresh search's
certified minimum (XPO, VPO, SELM; DPO and IPO pairs; new edges, bonus samples, a changed alpha,
new variables); the setting and the memory estimate.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import logsumexp

from xposim.losses.kinds import BONUS_SELM, BONUS_VPO, BONUS_XPO, PAIR_DPO, PAIR_IPO
from xposim.policies.tabular import certified as C
from xposim.policies.tabular import frontier as FR
from xposim.policies.tabular import projected_newton
from xposim.reference import certified_numpy as R

GAP = 1e-9
MAX_NODES = 4000


# =============================================================================== a stream of rounds
class RoundStream:
    """XPO-style data on a ``K``-armed bandit, one context: each round one pair (first response from the
    current policy, second from ``pi_ref``, Bradley–Terry label) and a bonus sample on the second.

    Variables are the arms observed so far plus the unobserved aggregate; edges are listed most recent
    first, as the pair store gives them (:func:`xposim.policies.store.store_gather`)."""

    def __init__(self, rng, n_arms, beta, alpha, r_max, pair_kind, bonus_kind):
        self.rng = rng
        self.pi_ref = rng.dirichlet(np.ones(n_arms))
        self.rewards = rng.uniform(0.0, r_max, n_arms)
        self.beta, self.alpha, self.r_max = beta, alpha, r_max
        self.pair_kind, self.bonus_kind = pair_kind, bonus_kind
        self.pair_param = float(rng.uniform(0.2, 1.0)) if pair_kind == PAIR_IPO else r_max
        self.slot_of = -np.ones(n_arms, dtype=np.int64)
        self.arms: list[int] = []
        self.values: list[float] = []
        self.g = r_max / 2.0
        self.order: list[tuple[int, int]] = []
        self.weights: dict[tuple[int, int], float] = {}
        self.counts: dict[int, float] = {}

    def arm_values(self):
        return np.array([self.values[self.slot_of[a]] if self.slot_of[a] >= 0 else self.g
                         for a in range(len(self.pi_ref))])

    def step(self) -> dict:
        logits = np.log(self.pi_ref) + self.arm_values() / self.beta
        policy = np.exp(logits - logsumexp(logits))
        first = int(self.rng.choice(len(policy), p=policy / policy.sum()))
        second = int(self.rng.choice(len(policy), p=self.pi_ref))
        for arm in (first, second):
            if self.slot_of[arm] < 0:
                self.slot_of[arm] = len(self.arms)
                self.arms.append(arm)
                self.values.append(self.g)
        wins = self.rng.random() < 1.0 / (1.0 + math.exp(-(self.rewards[first] - self.rewards[second])))
        chosen, rejected = (first, second) if wins else (second, first)
        if chosen != rejected:
            key = (int(self.slot_of[chosen]), int(self.slot_of[rejected]))
            if key not in self.weights:
                self.order.append(key)
                self.weights[key] = 0.0
            self.weights[key] += 1.0
        s = int(self.slot_of[second])
        self.counts[s] = self.counts.get(s, 0.0) + 1.0
        return self.problem()

    def problem(self) -> dict:
        k = len(self.arms)
        unobserved = [a for a in range(len(self.pi_ref)) if self.slot_of[a] < 0]
        n = k + (1 if unobserved else 0)
        lw = np.array([math.log(self.pi_ref[a]) for a in self.arms]
                      + ([math.log(self.pi_ref[unobserved].sum())] if unobserved else []))
        lref = lw.copy()
        if unobserved:
            lref[k] = 0.0
        keys = list(reversed(self.order))  # most recent first
        return dict(n=n, k=k, lw=lw, lref=lref,
                    mcount=np.array([self.counts.get(s, 0.0) for s in range(k)] + [0.0] * (n - k)),
                    bweight=np.ones(n), edge_a=np.array([a for a, _ in keys], dtype=np.int64),
                    edge_b=np.array([b for _, b in keys], dtype=np.int64),
                    edge_w=np.array([self.weights[key] for key in keys], dtype=np.float64),
                    pair_kind=self.pair_kind, pair_param=self.pair_param, bonus_kind=self.bonus_kind,
                    alpha=self.alpha, beta=self.beta, lo=0.0, hi=self.r_max)

    def warm(self, problem):
        return np.array(self.values + ([self.g] if problem["n"] > problem["k"] else []), dtype=np.float64)

    def accept(self, problem, v):
        self.values = list(v[: problem["k"]])
        if problem["n"] > problem["k"]:
            self.g = float(v[problem["k"]])


def scale_of(problem):
    return max(1.0, float(np.sum(problem["edge_w"]) + np.sum(problem["mcount"])))


def solve(problem, warm, bb, frontier=None, slot=-1, max_nodes=MAX_NODES):
    """The simulator's sequence: projected Newton from the warm start, then the certified search
    (from ``frontier``'s ``slot`` when given). Returns ``(value, lower, status, nodes, point)``."""
    n, e = problem["n"], len(problem["edge_a"])
    ws = R.workspace_of(problem)
    v = np.zeros(n + 1)
    v[:n] = warm
    args = (problem["pair_kind"], problem["pair_param"], problem["bonus_kind"], problem["alpha"], problem["beta"],
            problem["lo"], problem["hi"])
    projected_newton(n, problem["k"], v, ws, e, *args, scale_of(problem), 1e-8, 200, 16)
    if frontier is None:
        out = C.certified_minimize(n, problem["k"], v, ws, bb, e, *args, scale_of(problem), 1e-8, 200, 16, GAP,
                                   max_nodes)
    else:
        out = C.certified_minimize_reusing(n, problem["k"], v, ws, bb, e, *args, scale_of(problem), 1e-8, 200, 16,
                                           GAP, max_nodes, frontier, slot, 0)
    return (*out, v[:n].copy())


def kinds_of(problem):
    """The search's variable kinds: 2 no data, 1 bonus samples but no pair, 0 in a pair."""
    kappa, _, _, degree = R.decomposition(problem)
    return np.where(degree > 0, 0, np.where(kappa == 0.0, 2, 1)).astype(np.int64)


# =============================================================================== the change bound
@pytest.mark.parametrize("seed", range(6))
def test_change_bound_matches_numpy_and_bounds_the_change_on_every_box(seed):
    """For a round's change (new and heavier pairs, bonus samples, and a changed alpha), the kernel's bound
    on each kept leaf's box equals the independent numpy one and is at most ``F_new - F_old`` at every
    sampled point and corner of the box."""
    rng = np.random.default_rng(900 + seed)
    pair_kind = PAIR_IPO if seed % 3 == 2 else PAIR_DPO
    bonus_kind = (BONUS_XPO, BONUS_VPO, BONUS_SELM)[seed % 3]
    stream = RoundStream(rng, 4, float(rng.choice([0.05, 0.2])), float(rng.choice([0.01, 0.3])), 1.0, pair_kind,
                         bonus_kind)
    old = None
    while old is None or old["n"] != 4 or np.any(kinds_of(old) != 0):
        old = stream.step()  # until every arm has a pair (the shape stays fixed from here)
    bb = C.new_certificate_workspace(8, MAX_NODES)
    frontier = FR.new_frontier(1, 4 * MAX_NODES, 8, 64)
    _, _, _, _, point = solve(old, stream.warm(old), bb, frontier, 0)
    stream.accept(old, point)
    new = old
    for _ in range(3):
        new = stream.step()
    new = dict(new, alpha=new["alpha"] * 1.5)
    assert new["n"] == old["n"]
    kappa, _, k0, _ = R.decomposition(new)
    usable, n_e, n_v, dk0 = FR.frontier_changes(
        frontier, 0, 0, new["n"], new["lw"], new["lref"], kinds_of(new), kappa, k0, new["edge_a"], new["edge_b"],
        new["edge_w"], len(new["edge_a"]), pair_kind, new["pair_param"], bonus_kind, new["beta"], 0.0, 1.0)
    assert usable and n_e >= 1 and n_v >= 1
    n = new["n"]
    size = frontier.meta[0, FR.SIZE]
    assert size >= 1
    for leaf in range(size):
        lower, upper = frontier.lo[0, leaf, :n], frontier.hi[0, leaf, :n]
        bound, _ = FR.leaf_change_bound(frontier, 0, leaf, n, new["lw"], new["lref"], new["edge_a"], new["edge_b"],
                                        n_e, n_v, dk0, pair_kind, new["pair_param"], new["beta"])
        reference = R.change_lower_bound(old, new, lower, upper)
        assert bound == pytest.approx(reference, rel=1e-12, abs=1e-12)
        corners = np.array(np.meshgrid(*[[lower[j], upper[j]] for j in range(n)])).reshape(n, -1).T
        points = np.vstack([corners, rng.uniform(lower, upper, size=(40, n))])
        change = np.array([R.objective(new, p) - R.objective(old, p) for p in points])
        assert np.all(change >= bound - 1e-9 * (1.0 + np.abs(change)))


def test_a_kept_relaxation_moves_to_the_new_objectives_relaxation():
    """A leaf that keeps its relaxation: after a round (new pairs, bonus samples, alpha changed) its stored
    value and gradient equal the new objective's secant relaxation on the leaf's box at the leaf's point,
    recomputed from scratch (``box_relaxation``); its bound is at most ``F_new`` at points of the box."""
    rng = np.random.default_rng(21)
    stream = RoundStream(rng, 4, 0.1, 0.05, 1.0, PAIR_DPO, BONUS_XPO)
    bb = C.new_certificate_workspace(8, MAX_NODES)
    frontier = FR.new_frontier(1, 4 * MAX_NODES, 8, 64)
    problem = None
    for _ in range(60):
        problem = stream.step()
        _, _, _, _, point = solve(problem, stream.warm(problem), bb, frontier, 0)
        stream.accept(problem, point)
    assert problem["n"] == 4 and np.all(kinds_of(problem) == 0)
    new = problem
    for _ in range(2):
        new = stream.step()
    new = dict(new, alpha=new["alpha"] * 0.7)
    n, e = new["n"], len(new["edge_a"])
    kappa, c, k0, _ = R.decomposition(new)
    usable, n_e, n_v, dk0 = FR.frontier_changes(
        frontier, 0, 0, n, new["lw"], new["lref"], kinds_of(new), kappa, k0, new["edge_a"], new["edge_b"],
        new["edge_w"], e, PAIR_DPO, new["pair_param"], BONUS_XPO, new["beta"], 0.0, 1.0)
    assert usable
    ws = R.workspace_of(new)
    c_kernel, k0_kernel = C.bonus_decomposition(n, new["k"], ws, bb, e, BONUS_XPO, new["alpha"], new["beta"])
    linear = 0
    for leaf in range(frontier.meta[0, FR.SIZE]):
        if np.isnan(frontier.value[0, leaf]):
            continue
        linear += 1
        bound, _ = FR.linear_change_bound(frontier, 0, leaf, n, new["lw"], new["lref"], new["edge_a"],
                                          new["edge_b"], n_e, n_v, dk0, PAIR_DPO, new["pair_param"], new["beta"])
        lower, upper = frontier.lo[0, leaf, :n].copy(), frontier.hi[0, leaf, :n].copy()
        value, _, _ = C.box_relaxation(n, ws, bb, e, PAIR_DPO, new["pair_param"], new["beta"], c_kernel, k0_kernel,
                                       scale_of(new), lower, upper, frontier.point[0, leaf, :n].copy(), 0)
        assert frontier.value[0, leaf] == pytest.approx(value, rel=1e-12, abs=1e-10)
        np.testing.assert_allclose(frontier.grad[0, leaf, :n], bb.grad[:n], rtol=1e-10, atol=1e-9)
        points = rng.uniform(lower, upper, size=(30, n))
        values = np.array([R.objective(new, p) for p in points])
        assert np.all(values >= bound - 1e-9 * (1.0 + np.abs(values)))
    assert linear >= 1


def test_change_bound_is_exact_for_one_new_pair():
    """One new DPO pair and nothing else: the least change over a box is the pair loss at the corner
    with the chosen response high and the rejected one low (the margin's largest value)."""
    rng = np.random.default_rng(5)
    stream = RoundStream(rng, 3, 0.1, 0.05, 1.0, PAIR_DPO, BONUS_XPO)
    old = None
    while old is None or old["n"] != 3 or np.any(kinds_of(old) != 0):
        old = stream.step()
    new = dict(old, edge_a=np.concatenate([[0], old["edge_a"]]), edge_b=np.concatenate([[2], old["edge_b"]]),
               edge_w=np.concatenate([[1.0], old["edge_w"]]))
    lower, upper = np.array([0.1, 0.0, 0.3]), np.array([0.6, 1.0, 0.9])
    best = upper.copy()
    best[2] = lower[2]
    exact = R.objective(new, best) - R.objective(old, best)
    assert R.change_lower_bound(old, new, lower, upper) == pytest.approx(exact, rel=1e-12)


# =============================================================================== kept leaves are valid
def test_every_kept_leaf_bounds_f_on_the_face_points_of_its_box():
    """After a certified search, each leaf's bound is at most ``F`` at sampled face points of its box and at
    the local minima of ``F`` over the box's face parts (scipy L-BFGS-B on the numpy objective)."""
    rng = np.random.default_rng(31)
    stream = RoundStream(rng, 5, 0.05, 0.02, 1.0, PAIR_DPO, BONUS_XPO)
    bb = C.new_certificate_workspace(8, MAX_NODES)
    frontier = FR.new_frontier(1, 4 * MAX_NODES, 8, 64)
    for _ in range(120):
        problem = stream.step()
        _, _, status, _, point = solve(problem, stream.warm(problem), bb, frontier, 0)
        assert status == C.CERTIFIED
        stream.accept(problem, point)
    n, hi = problem["n"], problem["hi"]
    size = frontier.meta[0, FR.SIZE]
    assert size >= 2
    checked = 0
    for leaf in rng.permutation(size)[:12]:
        lower, upper = frontier.lo[0, leaf, :n].copy(), frontier.hi[0, leaf, :n].copy()
        bound = frontier.bound[0, leaf]
        for top in np.flatnonzero(upper >= hi):
            low, up = lower.copy(), upper.copy()
            low[top] = hi
            samples = rng.uniform(low, up, size=(30, n))
            values = np.array([R.objective(problem, p) for p in samples])
            assert np.all(values >= bound - 1e-9 * (1.0 + np.abs(values)))
            start = samples[np.argmin(values)]
            result = minimize(lambda v: R.objective(problem, v), start, method="L-BFGS-B",
                              bounds=list(zip(low, up)))
            assert result.fun >= bound - 1e-9 * (1.0 + abs(result.fun))
            checked += 1
    assert checked >= 5


# =============================================================================== round after round
@pytest.mark.parametrize("case", range(6))
def test_reusing_the_search_gives_the_fresh_certified_minimum_every_round(case):
    """Rounds of XPO / VPO / SELM data (DPO or IPO pairs) on 3-6 arms, alpha changed once: the solve that
    starts from the kept search returns the fresh search's certified value, its lower bound never
    exceeds the fresh value, and it solves fewer relaxations in all."""
    rng = np.random.default_rng(1100 + case)
    n_arms = (3, 4, 6)[case % 3]
    bonus_kind = (BONUS_XPO, BONUS_VPO, BONUS_SELM)[case % 3]
    pair_kind = PAIR_IPO if case == 4 else PAIR_DPO
    stream = RoundStream(rng, n_arms, float(rng.choice([0.03, 0.1, 0.3])), float(rng.choice([0.003, 0.05, 0.5])),
                         float(rng.choice([1.0, 3.0])), pair_kind, bonus_kind)
    bb_fresh = C.new_certificate_workspace(8, MAX_NODES)
    bb_kept = C.new_certificate_workspace(8, MAX_NODES)
    frontier = FR.new_frontier(1, 4 * MAX_NODES, 8, 64)
    nodes_fresh = nodes_kept = 0
    for t in range(60):
        if t == 30:
            stream.alpha *= 0.5
        problem = stream.step()
        warm = stream.warm(problem)
        fresh, _, fresh_status, fresh_nodes, _ = solve(problem, warm, bb_fresh)
        value, lower, status, nodes, point = solve(problem, warm, bb_kept, frontier, 0)
        assert fresh_status == C.CERTIFIED and status == C.CERTIFIED
        assert abs(value - fresh) <= 2 * GAP * max(1.0, abs(fresh))
        assert lower <= fresh + 1e-12 * max(1.0, abs(fresh))
        assert value - lower <= GAP * max(1.0, abs(value))
        nodes_fresh += fresh_nodes
        nodes_kept += nodes
        stream.accept(problem, point)
    assert nodes_kept < nodes_fresh


@pytest.mark.fast
def test_a_few_rounds_from_the_kept_search():
    """Also run with NUMBA_DISABLE_JIT=1 (the kernels as Python): 15 rounds on 3 arms from the kept search
    give the fresh search's certified values, and the kept leaves' change bounds agree with numpy."""
    rng = np.random.default_rng(4)
    stream = RoundStream(rng, 3, 0.1, 0.05, 1.0, PAIR_DPO, BONUS_XPO)
    bb_fresh = C.new_certificate_workspace(4, 400)
    bb_kept = C.new_certificate_workspace(4, 400)
    frontier = FR.new_frontier(1, 1600, 4, 16)
    reused = 0
    previous = None
    for _ in range(15):
        problem = stream.step()
        warm = stream.warm(problem)
        if previous is not None and previous["n"] == problem["n"]:
            kappa, _, k0, _ = R.decomposition(problem)
            usable, n_e, n_v, dk0 = FR.frontier_changes(
                frontier, 0, 0, problem["n"], problem["lw"], problem["lref"], frontier.kind[0, : problem["n"]],
                kappa, k0, problem["edge_a"], problem["edge_b"], problem["edge_w"], len(problem["edge_a"]),
                PAIR_DPO, problem["pair_param"], BONUS_XPO, problem["beta"], 0.0, 1.0)
            if usable and np.array_equal(kinds_of(problem), frontier.kind[0, : problem["n"]]):
                reused += 1
                n = problem["n"]
                for leaf in range(frontier.meta[0, FR.SIZE]):
                    bound, _ = FR.leaf_change_bound(frontier, 0, leaf, n, problem["lw"], problem["lref"],
                                                    problem["edge_a"], problem["edge_b"], n_e, n_v, dk0, PAIR_DPO,
                                                    problem["pair_param"], problem["beta"])
                    reference = R.change_lower_bound(previous, problem, frontier.lo[0, leaf, :n],
                                                     frontier.hi[0, leaf, :n])
                    assert bound == pytest.approx(reference, rel=1e-12, abs=1e-12)
        fresh, _, _, _, _ = solve(problem, warm, bb_fresh, max_nodes=400)
        value, lower, status, _, point = solve(problem, warm, bb_kept, frontier, 0, max_nodes=400)
        assert status == C.CERTIFIED
        assert abs(value - fresh) <= 2 * GAP * max(1.0, abs(fresh))
        assert lower <= fresh + 1e-12 * max(1.0, abs(fresh))
        stream.accept(problem, point)
        previous = problem
    assert reused >= 5


def test_a_search_of_another_shape_is_not_used():
    """The kept search is for one owner and one objective shape: another context, a new variable, another
    beta or a changed reference is refused (the solve searches from the root)."""
    rng = np.random.default_rng(77)
    stream = RoundStream(rng, 4, 0.1, 0.05, 1.0, PAIR_DPO, BONUS_XPO)
    problem = None
    while problem is None or problem["n"] != 4 or np.any(kinds_of(problem) != 0):
        problem = stream.step()
    bb = C.new_certificate_workspace(8, MAX_NODES)
    frontier = FR.new_frontier(2, 4 * MAX_NODES, 8, 64)
    solve(problem, stream.warm(problem), bb, frontier, 1)
    kappa, _, k0, _ = R.decomposition(problem)

    def usable(p=problem, owner=0, slot=1, beta=0.1, kinds=None):
        return FR.frontier_changes(frontier, slot, owner, p["n"], p["lw"], p["lref"],
                                   kinds_of(p) if kinds is None else kinds, kappa, k0, p["edge_a"], p["edge_b"],
                                   p["edge_w"], len(p["edge_a"]), PAIR_DPO, p["pair_param"], BONUS_XPO, beta, 0.0,
                                   1.0)[0]

    assert usable()
    assert not usable(slot=0)
    assert not usable(owner=3)
    assert not usable(beta=0.2)
    assert not usable(p=dict(problem, lref=problem["lref"] + 0.1))
    kinds = kinds_of(problem)
    kinds[0] = 1
    assert not usable(kinds=kinds)
    reordered = dict(problem, edge_a=problem["edge_a"][::-1].copy(), edge_b=problem["edge_b"][::-1].copy(),
                     edge_w=problem["edge_w"][::-1].copy())
    if len(problem["edge_a"]) > 1 and np.any(reordered["edge_a"] != problem["edge_a"]):
        assert not usable(p=reordered)
    FR.forget(frontier)
    assert not usable()


# =============================================================================== settings and memory
def test_reuse_search_setting_is_checked_and_counted_in_the_memory_estimate():
    from xposim.envs import random_token_mdp
    from xposim.learners import make_learner
    from xposim.learners.config import SolverSettings
    from xposim.learners.runner import estimate_run_bytes

    with pytest.raises(ValueError, match="reuse_search"):
        SolverSettings(reuse_search="yes")
    env = random_token_mdp(1, 16, 1, seed=0)
    kept = estimate_run_bytes(env, make_learner("xpo", solver=SolverSettings()), 1000, 2)
    root = estimate_run_bytes(env, make_learner("xpo", solver=SolverSettings(reuse_search=False)), 1000, 2)
    local = estimate_run_bytes(env, make_learner("xpo", solver=SolverSettings(argmin="local")), 1000, 2)
    assert kept > root > local
