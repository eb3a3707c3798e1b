"""Tabular class: objective kernels vs numpy, argmin vs brute force / scipy, closed forms, views."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

from xposim.testing import PolicyClassContract
from xposim.envs import random_token_mdp
from xposim.exact import trajectory_logprobs
from xposim.losses.kinds import (
    BONUS_COPO,
    BONUS_NONE,
    BONUS_POPO,
    BONUS_SELM,
    BONUS_VPO,
    BONUS_XPO,
    PAIR_CHIPO,
    PAIR_DPO,
    PAIR_IPO,
)
from xposim.policies import arrays as policy_arrays, segment_tree, solving, tabular, view as policy_view
from xposim.policies.tabular import newton as tabular_newton, objective as tabular_objective_kernels
from xposim.reference.learners_numpy import BONUS_NAMES, PAIR_NAMES, scipy_argmin, tabular_objective

KINDS = [
    (PAIR_DPO, 1.0, BONUS_NONE, 0.0),
    (PAIR_IPO, 0.7, BONUS_NONE, 0.0),
    (PAIR_CHIPO, 1.0, BONUS_NONE, 0.0),
    (PAIR_DPO, 1.0, BONUS_XPO, 0.4),
    (PAIR_DPO, 1.0, BONUS_VPO, 0.4),
    (PAIR_DPO, 1.0, BONUS_SELM, 0.4),
    (PAIR_DPO, 1.0, BONUS_POPO, 0.6),
    (PAIR_DPO, 1.0, BONUS_COPO, 0.3),
    (PAIR_CHIPO, 1.0, BONUS_POPO, 0.6),
]


def make_problem(rng, n_slots, n_edges, has_rest=True, pair_kind=PAIR_DPO, bonus_kind=BONUS_XPO):
    """A random single-context problem loaded into a Workspace (variables: slots, then g)."""
    ws = tabular.new_workspace(n_slots, max(n_edges, 1), 16)
    n = n_slots + (1 if has_rest else 0)
    ws.lw[:n] = rng.normal(size=n) - 1.0
    for e in range(n_edges):
        a, b = rng.choice(n_slots, 2, replace=False)
        ws.edge_a[e], ws.edge_b[e], ws.edge_w[e] = a, b, float(rng.integers(1, 4))
    ws.lref[:n_slots] = ws.lw[:n_slots] + 0.3 * rng.normal(size=n_slots)
    ws.mcount[:n_slots] = rng.integers(0, 3, size=n_slots)
    ws.bweight[:n_slots] = rng.random(n_slots) + 0.5
    if has_rest:
        ws.lref[n_slots] = 0.0
        ws.mcount[n_slots] = 0.0
        ws.bweight[n_slots] = 0.0
    return ws, n, n_slots


def numpy_objective(ws, n, k, n_edges, v, pair_kind, param, bonus_kind, alpha, beta):
    return tabular_objective(
        v[:n], ws.lw[:n], ws.edge_a[:n_edges], ws.edge_b[:n_edges], ws.edge_w[:n_edges], ws.mcount[:n],
        ws.bweight[:n], ws.lref[:n], PAIR_NAMES[pair_kind], param, BONUS_NAMES[bonus_kind], alpha, beta,
    )


@pytest.mark.fast
@pytest.mark.parametrize("pair_kind,param,bonus_kind,alpha", KINDS)
def test_kernel_objective_matches_numpy_reference(pair_kind, param, bonus_kind, alpha):
    rng = np.random.default_rng(pair_kind * 10 + bonus_kind)
    beta = 0.3
    ws, n, k = make_problem(rng, 4, 5)
    v = np.zeros(ws.v.shape[0])
    v[:n] = rng.random(n)
    value, s_total = tabular.context_objective(n, k, v, ws, 5, pair_kind, param, bonus_kind, alpha, beta)
    ref_value, ref_grad = numpy_objective(ws, n, k, 5, v, pair_kind, param, bonus_kind, alpha, beta)
    assert value == pytest.approx(ref_value, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(ws.grad[:n], ref_grad, rtol=1e-10, atol=1e-12)
    assert tabular.objective_value(n, k, v, ws, 5, pair_kind, param, bonus_kind, alpha, beta) == pytest.approx(value, rel=1e-14)
    # the gradient sums to 0: f -> f + c leaves pi_f unchanged
    assert abs(ws.grad[:n].sum()) < 1e-12


@pytest.mark.parametrize("pair_kind,param,bonus_kind,alpha", KINDS)
def test_hessian_matches_finite_differences(pair_kind, param, bonus_kind, alpha):
    rng = np.random.default_rng(100 + pair_kind * 10 + bonus_kind)
    beta = 0.3
    ws, n, k = make_problem(rng, 5, 7)
    v = np.zeros(ws.v.shape[0])
    v[:n] = rng.random(n)
    _, s_total = tabular.context_objective(n, k, v, ws, 7, pair_kind, param, bonus_kind, alpha, beta)
    s_curv = tabular_objective_kernels._curvature(n, k, ws, 7, pair_kind, param, bonus_kind, alpha, beta)
    hess = np.zeros((n, n))
    out = np.zeros(ws.v.shape[0])
    for j in range(n):
        z = np.zeros(ws.v.shape[0])
        z[j] = 1.0
        tabular_objective_kernels._hessian_vector(n, ws, 7, s_total, s_curv, beta, z, out)
        hess[:, j] = out[:n]
    numeric = np.zeros((n, n))
    h = 1e-6
    for j in range(n):
        vp, vm = v.copy(), v.copy()
        vp[j] += h
        vm[j] -= h
        gp = numpy_objective(ws, n, k, 7, vp, pair_kind, param, bonus_kind, alpha, beta)[1]
        gm = numpy_objective(ws, n, k, 7, vm, pair_kind, param, bonus_kind, alpha, beta)[1]
        numeric[:, j] = (gp - gm) / (2 * h)
    np.testing.assert_allclose(hess, numeric, atol=2e-7 * max(1.0, np.abs(numeric).max()))
    np.testing.assert_allclose(hess, hess.T, atol=1e-12)
    assert np.abs(hess.sum(axis=1)).max() < 1e-10  # global shift is a null direction
    # the dense assembly on the free set gives the Newton direction of the same matrix
    tabular.context_objective(n, k, v, ws, 7, pair_kind, param, bonus_kind, alpha, beta)
    tabular_objective_kernels._curvature(n, k, ws, 7, pair_kind, param, bonus_kind, alpha, beta)
    free = [0, 2, 3]
    ws.position[:n] = -1
    for i, j in enumerate(free):
        ws.position[j] = i
        ws.free_index[i] = j
    status = tabular_newton._dense_newton_direction(len(free), ws, 7, s_total, s_curv, beta)
    sub = hess[np.ix_(free, free)]
    if status == 1 and np.linalg.eigvalsh(sub).min() > 1e-6:
        np.testing.assert_allclose(sub @ ws.direction[free], -ws.grad[free], atol=1e-7)


def solve_workspace(ws, n, k, n_edges, v0, pair_kind, param, bonus_kind, alpha, beta, lo=0.0, hi=1.0,
                    tolerance=1e-10, dense_limit=16):
    v = np.zeros(ws.v.shape[0])
    v[:n] = v0
    scale = max(1.0, ws.edge_w[:n_edges].sum() + ws.mcount[:n].sum())
    value, converged, _ = tabular.projected_newton(n, k, v, ws, n_edges, pair_kind, param, bonus_kind, alpha,
                                                   beta, lo, hi, scale, tolerance, 500, dense_limit)
    return v[:n].copy(), value, converged, scale


def grid_objective(ws, n, k, n_edges, points, bonus_kind, alpha, beta):
    """The DPO + bonus objective at many points at once (vectorized over the rows of ``points``)."""
    from xposim.reference import losses_numpy as L

    z = ws.lw[:n] + points / beta
    logp = z - logsumexp(z, axis=1, keepdims=True)
    l = logp - ws.lref[:n]
    a, b, w = ws.edge_a[:n_edges], ws.edge_b[:n_edges], ws.edge_w[:n_edges]
    value = (w * L.pair_loss("dpo", l[:, a], l[:, b], beta, 1.0)[0]).sum(axis=1)
    if bonus_kind != BONUS_NONE:
        used = np.flatnonzero(ws.mcount[:k] > 0)
        terms = L.bonus_loss(BONUS_NAMES[bonus_kind], logp[:, used], ws.lref[used], alpha, beta, ws.bweight[used])[0]
        value = value + (ws.mcount[used] * terms).sum(axis=1)
    return value


@pytest.mark.parametrize("bonus_kind,alpha,dense_limit", [(BONUS_XPO, 0.2, 16), (BONUS_XPO, 0.2, 1),
                                                          (BONUS_COPO, 0.5, 16), (BONUS_NONE, 0.0, 16)])
def test_argmin_against_brute_force_grid(bonus_kind, alpha, dense_limit):
    """Two observed leaves + the unobserved aggregate: compare with a 61^3 grid (all starts for XPO)."""
    rng = np.random.default_rng(7)
    beta = 0.25
    ws, n, k = make_problem(rng, 2, 2, bonus_kind=bonus_kind)
    ws.edge_a[:2] = [0, 1]
    ws.edge_b[:2] = [1, 0]
    ws.edge_w[:2] = [3.0, 1.0]
    ws.mcount[:2] = [2.0, 1.0]
    ws.lref[:2] = ws.lw[:2]
    grid = np.linspace(0.0, 1.0, 61)
    points = np.array(list(itertools.product(grid, repeat=n)))
    best = grid_objective(ws, n, k, 2, points, bonus_kind, alpha, beta).min()
    starts = [np.full(n, 0.5)] + [rng.random(n) for _ in range(6)]
    results = [solve_workspace(ws, n, k, 2, s, PAIR_DPO, 1.0, bonus_kind, alpha, beta, dense_limit=dense_limit)
               for s in starts]
    assert all(r[2] for r in results)
    found = min(r[1] for r in results)
    assert found <= best + 1e-12
    assert grid_objective(ws, n, k, 2, np.array([starts[0]]), bonus_kind, alpha, beta)[0] == pytest.approx(
        numpy_objective(ws, n, k, 2, starts[0], PAIR_DPO, 1.0, bonus_kind, alpha, beta)[0], rel=1e-12)
    # a grid of step 1/60 cannot be far from the optimum (Lipschitz bound)
    assert found >= best - 0.05


@pytest.mark.parametrize("pair_kind,param,bonus_kind,alpha", [
    (PAIR_DPO, 1.0, BONUS_COPO, 0.4), (PAIR_IPO, 0.5, BONUS_COPO, 0.4), (PAIR_DPO, 1.0, BONUS_NONE, 0.0),
])
def test_argmin_against_scipy_lbfgsb_convex(pair_kind, param, bonus_kind, alpha):
    """Convex objectives (no optimistic bonus): same optimal value and (when unique) the same policy."""
    rng = np.random.default_rng(11)
    beta = 0.2
    ws, n, k = make_problem(rng, 8, 20, bonus_kind=bonus_kind)
    v_newton, value, converged, scale = solve_workspace(ws, n, k, 20, np.full(n, 0.5), pair_kind, param, bonus_kind,
                                                        alpha, beta)
    assert converged
    args = dict(log_ref_weight=ws.lw[:n], chosen=ws.edge_a[:20], rejected=ws.edge_b[:20], pair_weight=ws.edge_w[:20],
                bonus_count=ws.mcount[:n], bonus_weight=ws.bweight[:n], loss_ref_logp=ws.lref[:n],
                pair=PAIR_NAMES[pair_kind], pair_param=param, bonus=BONUS_NAMES[bonus_kind], alpha=alpha, beta=beta)
    v_scipy, value_scipy = scipy_argmin(np.full(n, 0.5), 0.0, 1.0, scale, 1e-10, **args)
    assert value <= value_scipy + 1e-9 * scale
    assert value == pytest.approx(value_scipy, rel=1e-7)
    if bonus_kind == BONUS_COPO:  # strictly convex in the policy: the policies agree
        lp_n = ws.lw[:n] + v_newton / beta
        lp_s = ws.lw[:n] + v_scipy / beta
        np.testing.assert_allclose(lp_n - logsumexp(lp_n), lp_s - logsumexp(lp_s), atol=1e-4)


def test_argmin_is_stationary_for_nonconvex_xpo():
    """XPO objective: the returned point satisfies the projected-gradient test (a KKT point)."""
    rng = np.random.default_rng(3)
    beta = 0.1
    for trial in range(5):
        ws, n, k = make_problem(rng, 10, 25, bonus_kind=BONUS_XPO)
        v, value, converged, scale = solve_workspace(ws, n, k, 25, np.full(n, 0.5), PAIR_DPO, 1.0, BONUS_XPO, 0.3, beta,
                                                     tolerance=1e-9)
        assert converged
        _, grad = numpy_objective(ws, n, k, 25, v, PAIR_DPO, 1.0, BONUS_XPO, 0.3, beta)
        projected = v - np.clip(v - grad / scale, 0.0, 1.0)
        assert np.abs(projected).max() <= 1e-9
        start = numpy_objective(ws, n, k, 25, np.full(n, 0.5), PAIR_DPO, 1.0, BONUS_XPO, 0.3, beta)[0]
        assert value <= start


@pytest.mark.parametrize("bonus_kind,expected", [(BONUS_XPO, 1.0), (BONUS_VPO, 1.0), (BONUS_SELM, 1.0),
                                                 (BONUS_POPO, 1.0), (BONUS_COPO, 0.0)])
def test_unobserved_leaves_closed_form(bonus_kind, expected):
    """g = R_max for optimistic bonuses, 0 for COPO (THEORY 3 / module docstring)."""
    rng = np.random.default_rng(5)
    ws, n, k = make_problem(rng, 3, 3, bonus_kind=bonus_kind)
    ws.mcount[:3] = [1.0, 2.0, 1.0]
    v, _, converged, _ = solve_workspace(ws, n, k, 3, np.full(n, 0.5), PAIR_DPO, 1.0, bonus_kind, 0.5, 0.2)
    assert converged
    assert v[k] == pytest.approx(expected, abs=1e-12)


def test_alpha_zero_keeps_unobserved_value_and_recenters_components():
    """alpha = 0: g and untouched leaves keep their values; each component keeps its warm-start mean."""
    rng = np.random.default_rng(9)
    ws, n, k = make_problem(rng, 5, 4, bonus_kind=BONUS_NONE)
    # two components {0, 1} and {2, 3}; slot 4 compared with nobody; both components unsaturated (IPO)
    ws.edge_a[:4] = [0, 1, 2, 3]
    ws.edge_b[:4] = [1, 0, 3, 2]
    ws.edge_w[:4] = [3.0, 1.0, 1.0, 2.0]
    warm = np.array([0.4, 0.6, 0.3, 0.3, 0.7, 0.45])
    v, _, converged, _ = solve_workspace(ws, n, k, 4, warm, PAIR_IPO, 5.0, BONUS_NONE, 0.0, 0.2)
    assert converged
    vfull = np.zeros(ws.v.shape[0])
    vfull[:n] = v
    tabular.recenter_components(n, vfull, np.concatenate([warm, np.zeros(ws.v.shape[0] - n)]), ws, 4, 0.0, 1.0)
    v = vfull[:n]
    assert v[4] == warm[4] and v[5] == warm[5]
    assert v[0] + v[1] == pytest.approx(warm[0] + warm[1], abs=1e-12)
    assert v[2] + v[3] == pytest.approx(warm[2] + warm[3], abs=1e-12)
    assert v[0] - v[1] > 0 and v[3] - v[2] > 0  # the more often preferred leaf is higher
    # recentering never changes the objective
    before = numpy_objective(ws, n, k, 4, v, PAIR_IPO, 5.0, BONUS_NONE, 0.0, 0.2)[0]
    shifted = v.copy()
    shifted[[0, 1]] += 0.05
    assert numpy_objective(ws, n, k, 4, shifted, PAIR_IPO, 5.0, BONUS_NONE, 0.0, 0.2)[0] == pytest.approx(before, rel=1e-12)


# --------------------------------------------------------------------------------- views and trees
@pytest.mark.fast
def test_segment_tree_matches_numpy():
    rng = np.random.default_rng(0)
    values = np.log(rng.random(13))
    values[4] = -np.inf
    tree = np.empty(2 * segment_tree.tree_size(13))
    segment_tree.tree_build(tree, values)
    assert tree[1] == pytest.approx(logsumexp(values), rel=1e-13)
    for lo, hi in [(0, 13), (2, 9), (5, 6), (4, 5), (7, 7)]:
        expected = logsumexp(values[lo:hi]) if hi > lo and np.any(values[lo:hi] > -np.inf) else -np.inf
        assert segment_tree.tree_range(tree, lo, hi) == pytest.approx(expected, rel=1e-13)
    segment_tree.tree_remove(tree, 3)
    values[3] = -np.inf
    assert tree[1] == pytest.approx(logsumexp(values), rel=1e-13)
    probs = np.exp(values - logsumexp(values))
    counts = np.zeros(13)
    grid = (np.arange(2000) + 0.5) / 2000
    for u in grid:
        counts[segment_tree.tree_sample(tree, u)] += 1
    np.testing.assert_allclose(counts / 2000, probs, atol=1.5 / 2000)
    assert counts[3] == 0 and counts[4] == 0


def small_view(seed=1):
    env = random_token_mdp(2, 3, 2, seed=seed)
    arrays = policy_arrays.env_arrays(env)
    view = policy_view.new_view(arrays)
    rng = np.random.default_rng(seed)
    for x in range(2):
        for leaf in rng.choice(9, 4, replace=False):
            slot, created = policy_view.view_create_slot(view, arrays.leaf_logref, x, int(leaf))
            assert created
            view.slot_logw[x, slot] += rng.normal()
        view.rest_logscale[x] = 0.7
        policy_view.view_normalize(view, x)
    return env, arrays, view


@pytest.mark.fast
def test_view_probabilities_stats_and_sampling():
    env, arrays, view = small_view()
    beta = 0.3
    table = np.empty((2, 9))
    policy_view.view_leaf_logprobs_into(view, arrays, table)
    np.testing.assert_allclose(np.exp(table).sum(axis=1), 1.0, atol=1e-13)
    for x in range(2):
        p = np.exp(table[x])
        reward = float(np.sum(p * arrays.leaf_reward[x]))
        kl = float(np.sum(p * (table[x] - arrays.leaf_logref[x])))
        value, r, k = policy_view.view_context_stats(view, arrays, beta, x)
        assert r == pytest.approx(reward, abs=1e-13)
        assert k == pytest.approx(kl, abs=1e-13)
        assert value == pytest.approx(reward - beta * kl, abs=1e-13)
        for leaf in range(9):
            assert policy_view.view_leaf_logprob(view, arrays.leaf_logref, x, leaf) == pytest.approx(table[x, leaf], abs=1e-13)
        counts = np.zeros(9)
        counts_t = np.zeros(9)
        scratch = np.zeros(3)
        grid = (np.arange(3000) + 0.5) / 3000
        for u in grid:
            counts[policy_view.view_sample(view, x, u)] += 1
            counts_t[policy_view.view_sample_tempered(view, x, u, 1.0, 3, 2, scratch)] += 1
        np.testing.assert_allclose(counts / 3000, p, atol=2.5 / 3000)
        np.testing.assert_allclose(counts_t / 3000, p, atol=2 * 2.5 / 3000)


@pytest.mark.fast
def test_greedy_path_and_token_policy_roundtrip():
    env, arrays, view = small_view(seed=4)
    table = np.empty((2, 9))
    policy_view.view_leaf_logprobs_into(view, arrays, table)
    log_policy = np.empty(env.ref_probs.shape)
    policy_view.token_log_policy_from_leaf_logprobs(table, 3, env.n_states, log_policy)
    np.testing.assert_allclose(trajectory_logprobs(env, np.exp(log_policy)), table, atol=1e-12)
    scratch = np.zeros(3)
    for x in range(2):
        # greedy: argmax token at the root, then argmax token at the chosen child (ties to the lowest)
        first = int(np.argmax(log_policy[x, 0]))
        second = int(np.argmax(log_policy[x, 1 + first]))
        assert policy_view.view_sample_tempered(view, x, 0.3, 0.0, 3, 2, scratch) == 3 * first + second


def _load_local_minima_diagnostic():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "diagnose_local_minima.py"
    spec = importlib.util.spec_from_file_location("_xposim_diagnose_local_minima", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("rounds", [1, 7, 60])
def test_local_minima_diagnostic_rebuilds_the_solvers_objective(rounds):
    """benchmarks/diagnose_local_minima.py re-solves a round's objective with scipy from the data it
    reads out of a run: that data must give the solver's own objective value at the solver's point."""
    from xposim.envs import hidden_arm_bandit
    from xposim.learners import make_learner, run_learner

    diagnostic = _load_local_minima_diagnostic()
    env = hidden_arm_bandit(6, 1 / 6)
    result = run_learner(env, make_learner("xpo", alpha=0.01), 0.05, rounds, checkpoints=[rounds], seed=3)
    data = diagnostic.round_data(result)
    assert data["bonus_count"].sum() == rounds
    assert data["pair_weight"].sum() <= rounds
    value = tabular_objective(diagnostic.leaf_values(result), **data)[0]
    assert value == pytest.approx(float(result.class_state.cache_value[0]), rel=1e-9, abs=1e-9)


def _reference_minimum_gap(result, diagnostic, seed):
    """(solver's objective - lowest objective found by the scipy multistart, objective scale)."""
    data = diagnostic.round_data(result)
    mine = diagnostic.leaf_values(result)
    own = tabular_objective(mine, **data)[0]
    r_max = float(result.env.r_max)
    starts = diagnostic.reference_starts(mine, r_max, np.random.default_rng(seed), 8)
    best, _, _ = diagnostic.reference_minimum(data, r_max, starts)
    return own - best, max(1.0, abs(best))


@pytest.mark.fast
def test_champion_starts_reach_the_lowest_objective_the_warm_start_misses():
    """On the hidden-arm bandit the warm-start local solver (``argmin="local"``) ends above the lowest XPO
    objective found by an independent multistart (scipy) in some seeds; with champion starts it never does."""
    from xposim.envs import hidden_arm_bandit
    from xposim.learners import make_learner, run_learner

    diagnostic = _load_local_minima_diagnostic()
    env = hidden_arm_bandit(6, 1 / 6)
    above = {False: 0, True: 0}
    for champion in (False, True):
        learner = make_learner("xpo", alpha=0.01,
                               solver=solving.SolverSettings(argmin="local", champion_starts=champion))
        for seed in range(4):
            result = run_learner(env, learner, 0.05, 60, checkpoints=[60], seed=seed)
            gap, scale = _reference_minimum_gap(result, diagnostic, seed)
            above[champion] += int(gap > 1e-6 * scale)
    assert above[True] == 0
    assert above[False] >= 1  # the instance does exercise the local minima


def test_champion_starts_are_a_tabular_setting():
    from xposim.envs import linear_bandit
    from xposim.learners import make_learner, run_learner

    env = linear_bandit(2, 4, seed=0)
    learner = make_learner("xpo", alpha=0.01, solver=solving.SolverSettings(champion_starts=True))
    for policy_class in ("loglinear", "token_logit"):
        with pytest.raises(ValueError, match="champion_starts=True applies to the tabular class only"):
            run_learner(env, learner, 0.1, 5, policy_class=policy_class)
    with pytest.raises(ValueError, match="champion_starts must be True or False"):
        solving.SolverSettings(champion_starts="yes")


class TestTabularClassContract(PolicyClassContract):
    """The interface contract (xposim.testing) on the tabular class: fused loop and the generic loop agree."""

    def make_env(self):
        return random_token_mdp(2, 3, 2, seed=3)

    def make_policy_class(self):
        return tabular.TabularClass()


def test_the_contract_catches_a_broken_class():
    """The mixin's checks can fail: a class that starts away from pi_ref, and one that never counts a solve."""

    class StartsElsewhere(tabular.TabularClass):
        def initial_view(self, arrays, state):
            view = super().initial_view(arrays, state)
            view.rest_logscale[0] += 0.0  # unchanged weights, but a wrong partition function:
            view.log_partition[0] += 0.5
            return view

    class NeverCounts(tabular.TabularClass):
        def solve(self, problem, state, view, contexts, workspace=None):
            before = problem.counters.copy()
            super().solve(problem, state, view, contexts, workspace)
            problem.counters[:] = before

    class Check(PolicyClassContract):
        make_env = TestTabularClassContract.make_env

    starts_elsewhere = Check()
    starts_elsewhere.make_policy_class = StartsElsewhere
    with pytest.raises(AssertionError):
        starts_elsewhere.test_first_iterate_is_the_reference_policy()
    never_counts = Check()
    never_counts.make_policy_class = NeverCounts
    with pytest.raises(AssertionError, match="never counted a solve"):
        never_counts.test_iterates_are_distributions_and_metrics_finite()
