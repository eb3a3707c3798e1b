"""Certified global minimizer of the tabular per-context objective (:mod:`xposim.policies.tabular.certified`).

The mathematical facts the branch-and-bound relies on, each checked numerically; the solver against
a dense-grid brute force (n = 2, 3, 4), against issue #11's audit-style rounds (where one
warm-started projected Newton misses the global minimum) and against the numpy reference
(:mod:`xposim.reference.certified_numpy`); the statuses (UNSUPPORTED, CERTIFIED for convex kinds,
NODE_LIMIT with a still valid bound); determinism.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from xposim.losses.bonus import bonus_loss
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
from xposim.policies.tabular import certified as C
from xposim.policies.tabular import context_objective, projected_newton
from xposim.reference import certified_numpy as R
from xposim.reference import losses_numpy as L
from xposim.reference.learners_numpy import BONUS_NAMES, PAIR_NAMES

MAX_NODES = 20_000
GAP = 1e-9
BB = C.new_certificate_workspace(16, MAX_NODES)


# =============================================================================== helpers
def load(problem: dict, dense_limit: int = 16):
    """A Workspace holding ``problem`` (:func:`xposim.reference.certified_numpy.workspace_of`)."""
    return R.workspace_of(problem, dense_limit)


def scale_of(problem: dict) -> float:
    return max(1.0, float(np.sum(problem["edge_w"]) + np.sum(problem["mcount"])))


def padded(problem: dict, v) -> np.ndarray:
    out = np.zeros(problem["n"] + 1)
    out[: problem["n"]] = v
    return out


def kernel_value(problem: dict, v) -> float:
    ws = load(problem)
    return context_objective(problem["n"], problem["k"], padded(problem, v), ws, len(problem["edge_a"]),
                             problem["pair_kind"], problem["pair_param"], problem["bonus_kind"], problem["alpha"],
                             problem["beta"])[0]


def local_solve(problem: dict, start, tolerance: float = 1e-8) -> tuple[np.ndarray, float]:
    """``projected_newton`` from ``start`` (the simulator's local argmin)."""
    ws = load(problem)
    v = padded(problem, start)
    value, _, _ = projected_newton(problem["n"], problem["k"], v, ws, len(problem["edge_a"]), problem["pair_kind"],
                                   problem["pair_param"], problem["bonus_kind"], problem["alpha"], problem["beta"],
                                   problem["lo"], problem["hi"], scale_of(problem), tolerance, 500, 16)
    return v[: problem["n"]].copy(), value


def certify(problem: dict, warm, max_nodes: int = MAX_NODES, bb=None):
    """``certified_minimize``; returns ``(value, lower_bound, status, nodes, point)``."""
    ws = load(problem)
    v = padded(problem, warm)
    value, bound, status, nodes = C.certified_minimize(
        problem["n"], problem["k"], v, ws, BB if bb is None else bb, len(problem["edge_a"]), problem["pair_kind"],
        problem["pair_param"], problem["bonus_kind"], problem["alpha"], problem["beta"], problem["lo"],
        problem["hi"], scale_of(problem), 1e-8, 200, 16, GAP, max_nodes)
    return value, bound, status, nodes, v[: problem["n"]].copy()


def random_problem(rng, n: int, with_g: bool, pair_kind: int | None = None, bonus_kind: int | None = None,
                   alpha: float | None = None) -> dict:
    """Random pairs with multiplicities, bonus counts, ``pi_ref``, beta in {0.03, 0.1, 0.3},
    R_max in {1, 3}, alpha in {1e-3, 0.1, 1}; ``g`` (no data, reference mass ``P_U``) if ``with_g``."""
    k = n - int(with_g)
    mass = rng.dirichlet(np.ones(n))
    lw = np.log(mass)
    lref = lw.copy()  # pi_ref normalized over all variables (its masses sum to 1)
    mcount = np.zeros(n)
    mcount[:k] = rng.integers(0, 4, size=k)
    if with_g:
        lref[k] = 0.0
    pairs = {}
    for _ in range(int(rng.integers(1, 2 * k + 1))):
        a, b = (int(x) for x in rng.choice(k, 2, replace=False))
        pairs[(a, b)] = pairs.get((a, b), 0.0) + float(rng.integers(1, 4))
    keys = sorted(pairs)
    pair_kind = int(rng.choice([PAIR_DPO, PAIR_IPO])) if pair_kind is None else pair_kind
    hi = float(rng.choice([1.0, 3.0]))
    return dict(
        n=n, k=k, lw=lw, lref=lref, mcount=mcount, bweight=np.where(np.arange(n) < k, 0.5 + rng.random(n), 0.0),
        edge_a=np.array([a for a, _ in keys], dtype=np.int64), edge_b=np.array([b for _, b in keys], dtype=np.int64),
        edge_w=np.array([pairs[key] for key in keys]), pair_kind=pair_kind,
        pair_param=float(rng.uniform(0.2, 1.0)) if pair_kind == PAIR_IPO else hi,
        bonus_kind=int(rng.choice([BONUS_XPO, BONUS_VPO, BONUS_SELM])) if bonus_kind is None else bonus_kind,
        alpha=float(rng.choice([1e-3, 0.1, 1.0])) if alpha is None else alpha,
        beta=float(rng.choice([0.03, 0.1, 0.3])), lo=0.0, hi=hi,
    )


def grid_values(problem: dict, points: np.ndarray) -> np.ndarray:
    """``F`` at every row of ``points``, vectorized numpy (independent of the kernels)."""
    n, k, beta = problem["n"], problem["k"], problem["beta"]
    z = problem["lw"][:n] + points / beta
    logp = z - logsumexp(z, axis=1, keepdims=True)
    ell = logp - problem["lref"][:n]
    value = np.zeros(len(points))
    a, b = problem["edge_a"], problem["edge_b"]
    if len(a):
        loss, _, _ = L.pair_loss(PAIR_NAMES[problem["pair_kind"]], ell[:, a], ell[:, b], beta, problem["pair_param"])
        value += loss @ problem["edge_w"]
    used = np.flatnonzero(problem["mcount"][:k] > 0)
    if problem["bonus_kind"] != BONUS_NONE and len(used):
        loss, _ = L.bonus_loss(BONUS_NAMES[problem["bonus_kind"]], logp[:, used], problem["lref"][used],
                               problem["alpha"], beta, problem["bweight"][used])
        value += loss @ problem["mcount"][used]
    return value


def face_grid(n: int, lo: float, hi: float, m: int) -> np.ndarray:
    """Points of the faces ``v_i = hi`` (``m`` values per other coordinate)."""
    axis = np.linspace(lo, hi, m)
    rest = np.array(list(itertools.product(axis, repeat=n - 1)))
    faces = []
    for i in range(n):
        faces.append(np.insert(rest, i, hi, axis=1))
    return np.concatenate(faces)


def brute_force(problem: dict) -> tuple[float, float]:
    """``(min over a dense grid of the faces max v = hi and a coarse grid of the box, that minimum
    improved by projected Newton from the best grid point of each face and the 5 best overall)``."""
    n, lo, hi = problem["n"], problem["lo"], problem["hi"]
    m = {2: 4001, 3: 161, 4: 41}[n]
    points = face_grid(n, lo, hi, m)
    values = grid_values(problem, points)
    cube = np.array(list(itertools.product(np.linspace(lo, hi, {2: 201, 3: 41, 4: 17}[n]), repeat=n)))
    grid_min = min(float(values.min()), float(grid_values(problem, cube).min()))
    per_face = len(points) // n
    starts = [points[i * per_face + int(np.argmin(values[i * per_face:(i + 1) * per_face]))] for i in range(n)]
    starts += list(points[np.argsort(values)[:5]])
    best = grid_min
    for start in starts:
        best = min(best, local_solve(problem, start, 1e-12)[1])
    return grid_min, best


def tolerance(value: float) -> float:
    return GAP * max(1.0, abs(value))


# =============================================================================== facts
@pytest.mark.parametrize("seed", range(4))
def test_objective_is_invariant_to_a_common_shift(seed):
    rng = np.random.default_rng(seed)
    problem = random_problem(rng, 4, with_g=True)
    v = rng.uniform(0.0, problem["hi"], size=4)
    for shift in (-0.7, 0.3, 2.0):
        assert kernel_value(problem, v + shift) == pytest.approx(kernel_value(problem, v), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("bonus_kind", [BONUS_XPO, BONUS_VPO, BONUS_SELM, BONUS_COPO])
def test_bonus_is_affine_in_log_pi_and_the_decomposition_is_the_objective(bonus_kind):
    rng = np.random.default_rng(10 + bonus_kind)
    for logp in rng.uniform(-30.0, 0.0, size=5):
        loss0, d = bonus_loss(bonus_kind, 0.0, -1.3, 0.4, 0.2, 0.8)
        loss, d_logp = bonus_loss(bonus_kind, logp, -1.3, 0.4, 0.2, 0.8)
        assert loss == pytest.approx(loss0 + d * logp, rel=1e-13, abs=1e-13)
        assert d_logp == d
    problem = random_problem(rng, 4, with_g=True, bonus_kind=bonus_kind, alpha=0.3)
    ws = load(problem)
    n, e = problem["n"], len(problem["edge_a"])
    c, k0 = C.bonus_decomposition(n, problem["k"], ws, BB, e, bonus_kind, problem["alpha"], problem["beta"])
    assert (c > 0) == (bonus_kind != BONUS_COPO)  # optimistic bonuses: -c log Z concave
    v = padded(problem, rng.uniform(0.0, problem["hi"], size=n))
    own, _ = C.decomposed_value(n, v, ws, BB, e, problem["pair_kind"], problem["pair_param"], problem["beta"], c, k0,
                                problem["hi"])
    grad = BB.grad[:n].copy()
    value, _ = context_objective(n, problem["k"], v, ws, e, problem["pair_kind"], problem["pair_param"], bonus_kind,
                                 problem["alpha"], problem["beta"])
    assert own == pytest.approx(value, rel=1e-12, abs=1e-10)
    np.testing.assert_allclose(grad, ws.grad[:n], rtol=1e-9, atol=1e-9)


def test_popo_bonus_is_not_affine_in_log_pi():
    loss0, d = bonus_loss(BONUS_POPO, 0.0, -1.0, 0.5, 0.3, 1.0)
    loss, _ = bonus_loss(BONUS_POPO, -8.0, -1.0, 0.5, 0.3, 1.0)
    assert abs(loss - (loss0 + d * -8.0)) > 1e-3


def test_log_secant_over_estimates_the_exponential_and_is_exact_at_the_ends():
    rng = np.random.default_rng(3)
    for width_over_beta in (1e-6, 0.5, 3.0, 40.0, 1000.0):
        beta = 0.05
        width = width_over_beta * beta
        lower = rng.uniform(-1.0, 1.0)
        base = rng.uniform(-5.0, 5.0)
        top = base + (lower + width) / beta
        for y in np.linspace(lower, lower + width, 23):
            s = C.log_secant(top, width, width / beta, lower, y)
            assert math.isfinite(s)
            assert s >= base + y / beta - 1e-12 * (1 + abs(base + y / beta))
        assert C.log_secant(top, width, width / beta, lower, lower + width) == pytest.approx(top, rel=1e-14)
        assert C.log_secant(top, width, width / beta, lower, lower) == pytest.approx(base + lower / beta, rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_relaxation_is_a_convex_under_estimator_exact_at_vertices(seed):
    rng = np.random.default_rng(100 + seed)
    problem = random_problem(rng, 4, with_g=bool(seed % 2), alpha=1.0)
    n, e, beta, hi = problem["n"], len(problem["edge_a"]), problem["beta"], problem["hi"]
    ws = load(problem)
    c, k0 = C.bonus_decomposition(n, problem["k"], ws, BB, e, problem["bonus_kind"], problem["alpha"], beta)
    assert c > 0
    a, b = np.sort(rng.uniform(0.0, hi, size=(2, n)), axis=0)
    b[0] = a[0]  # a fixed variable too

    def relax(u, steps=0):
        return C.box_relaxation(n, ws, BB, e, problem["pair_kind"], problem["pair_param"], beta, c, k0,
                                scale_of(problem), a, b, padded(problem, u), steps)[:2]

    for _ in range(20):
        u, w = rng.uniform(a, b), rng.uniform(a, b)
        r_u, r_w, r_mid = relax(u)[0], relax(w)[0], relax((u + w) / 2)[0]
        f_u = kernel_value(problem, u)
        assert r_u <= f_u + 1e-12 * (1 + abs(f_u))
        assert r_mid <= (r_u + r_w) / 2 + 1e-11 * (1 + abs(r_u) + abs(r_w))
    # exact at the vertices of the box
    for corner in itertools.product((0, 1), repeat=n):
        u = np.where(np.array(corner) == 1, b, a)
        assert relax(u)[0] == pytest.approx(kernel_value(problem, u), rel=1e-11, abs=1e-11)
    # gradient against central differences
    u = rng.uniform(a, b)
    relax(u)
    grad = BB.grad[:n].copy()
    for j in range(1, n):
        h = 1e-6 * (b[j] - a[j])
        up, down = u.copy(), u.copy()
        up[j] += h
        down[j] -= h
        assert grad[j] == pytest.approx((relax(up)[0] - relax(down)[0]) / (2 * h), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_node_bound_is_below_the_minimum_of_the_objective_on_the_box(seed):
    rng = np.random.default_rng(200 + seed)
    problem = random_problem(rng, 3, with_g=False, alpha=1.0)
    n, e, beta, hi = problem["n"], len(problem["edge_a"]), problem["beta"], problem["hi"]
    ws = load(problem)
    c, k0 = C.bonus_decomposition(n, problem["k"], ws, BB, e, problem["bonus_kind"], problem["alpha"], beta)
    for _ in range(3):
        a, b = np.sort(rng.uniform(0.0, hi, size=(2, n)), axis=0)
        axes = [np.linspace(a[j], b[j], 61) for j in range(n)]
        grid = np.array(list(itertools.product(*axes)))
        box_min = float(grid_values(problem, grid).min())
        r_final, bound, _ = C.box_relaxation(n, ws, BB, e, problem["pair_kind"], problem["pair_param"], beta, c,
                                             k0, scale_of(problem), a, b, padded(problem, (a + b) / 2), 50)
        assert bound <= box_min
        assert bound <= r_final
        assert r_final - bound <= 1e-9 * max(1.0, abs(r_final))  # the relaxation was solved to optimality


def numerical_hessian(problem: dict, v: np.ndarray, h: float) -> np.ndarray:
    """Central second differences of ``F`` (numpy, independent of the kernels)."""
    n = problem["n"]
    points = [v]
    for i in range(n):
        for j in range(n):
            for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                points.append(v + h * (si * np.eye(n)[i] + sj * np.eye(n)[j]))
    values = grid_values(problem, np.array(points))[1:].reshape(n, n, 4)
    return (values[..., 0] - values[..., 1] - values[..., 2] + values[..., 3]) / (4 * h * h)


@pytest.mark.parametrize("seed", range(6))
def test_convexity_test_is_sound_and_not_vacuous(seed):
    """Where the branch-and-bound's test says F is convex on a box, F's Hessian is PSD at every sampled point
    of it (the node bound is then F's own Frank–Wolfe bound); with many pairs and a small box it says so."""
    rng = np.random.default_rng(900 + seed)
    proven = 0
    for trial in range(30):
        problem = random_problem(rng, 3 + seed % 2, with_g=False, alpha=float(rng.choice([1e-3, 0.1, 1.0])))
        problem["edge_w"] = problem["edge_w"] * float(rng.choice([1.0, 30.0, 1000.0]))  # data against the bonus
        n, e, beta, hi = problem["n"], len(problem["edge_a"]), problem["beta"], problem["hi"]
        ws = load(problem)
        c, _ = C.bonus_decomposition(n, problem["k"], ws, BB, e, problem["bonus_kind"], problem["alpha"], beta)
        centre = rng.uniform(0.0, hi, size=n)
        width = hi * float(rng.choice([1.0, 0.1, 0.01]))
        a, b = np.clip(centre - width / 2, 0.0, hi), np.clip(centre + width / 2, 0.0, hi)
        if not C.box_is_convex(n, ws, BB, e, problem["pair_kind"], problem["pair_param"], beta, c, a, b):
            continue
        proven += 1
        # F is invariant to a common shift: its Hessian is PSD iff it is on 1^⊥ (basis from a QR)
        basis = np.linalg.qr(np.column_stack([np.ones(n), np.eye(n)[:, : n - 1]]))[0][:, 1:]
        h = 1e-3 * beta
        for _ in range(5):
            v = rng.uniform(a, b)
            hess = numerical_hessian(problem, v, h)
            scale = np.abs(hess).max() + 1.0
            assert np.linalg.eigvalsh(basis.T @ ((hess + hess.T) / 2) @ basis).min() >= -1e-4 * scale
    assert proven >= 3


@pytest.mark.parametrize("seed", range(4))
def test_monotone_fix_keeps_a_minimizer_of_every_box(seed):
    """A variable the reduction fixes has a one-signed derivative on the box: moving any point of the box to
    the fixed end never raises F (so the box's minimum is unchanged); and the reduction does fix some."""
    rng = np.random.default_rng(700 + seed)
    fixed_any = 0
    for _ in range(20):
        problem = random_problem(rng, 4, with_g=bool(seed % 2))
        problem["edge_w"] = problem["edge_w"] * float(rng.choice([1.0, 50.0]))
        n, e, beta, hi = problem["n"], len(problem["edge_a"]), problem["beta"], problem["hi"]
        ws = load(problem)
        c, _ = C.bonus_decomposition(n, problem["k"], ws, BB, e, problem["bonus_kind"], problem["alpha"], beta)
        a, b = np.sort(rng.uniform(0.0, hi, size=(2, n)), axis=0)
        lower, upper = padded(problem, a), padded(problem, b)
        if not C.box_monotone_fix(n, ws, BB, e, problem["pair_kind"], problem["pair_param"], beta, c, lower, upper, hi):
            continue
        fixed_any += 1
        fixed = np.nonzero((lower[:n] == upper[:n]) & (a < b))[0]
        points = rng.uniform(a, b, size=(50, n))
        moved = points.copy()
        moved[:, fixed] = lower[fixed]
        before, after = grid_values(problem, points), grid_values(problem, moved)
        assert np.all(after <= before + 1e-9 * (1 + np.abs(before)))
    assert fixed_any >= 2


def test_convexity_closes_the_nodes_of_a_data_rich_round():
    """XPO's round-problem on a 4-armed bandit after 3,000 rounds: the data's curvature dominates the bonus's,
    and the convex-node rule certifies it in a few nodes (the secant relaxation alone needs hundreds)."""
    rng = np.random.default_rng(11)
    problem, warm, _ = R.audit_problem(rng, 4, 3000, 0.25, 1.0, 0.25 / math.sqrt(3000),
                                       lambda p, w: local_solve(p, w)[0], rare_mass=0.2)
    value, bound, status, nodes, _ = certify(problem, warm)
    assert status == C.CERTIFIED and value - bound <= tolerance(value)
    assert nodes <= 40
    ref_value, _, ref_status, _, _ = R.certified_minimize(problem, warm)
    assert ref_status == C.CERTIFIED and value == pytest.approx(ref_value, rel=GAP, abs=GAP)


def test_variable_without_data_decreases_the_objective_and_pair_free_variable_is_concave():
    rng = np.random.default_rng(7)
    problem = random_problem(rng, 4, with_g=True, bonus_kind=BONUS_XPO, alpha=0.1)
    problem["mcount"][0] = 2.0
    keep = (problem["edge_a"] != 0) & (problem["edge_b"] != 0)  # slot 0: bonus samples, no pair
    for key in ("edge_a", "edge_b", "edge_w"):
        problem[key] = problem[key][keep]
    n, g = problem["n"], problem["k"]
    for _ in range(10):
        v = rng.uniform(0.0, problem["hi"], size=n)
        ws = load(problem)
        context_objective(n, problem["k"], padded(problem, v), ws, len(problem["edge_a"]), problem["pair_kind"],
                          problem["pair_param"], problem["bonus_kind"], problem["alpha"], problem["beta"])
        assert ws.grad[g] < 0.0  # -c p_g / beta
        h = 0.05
        values = [kernel_value(problem, v + np.eye(n)[0] * t) for t in (-h, 0.0, h)]
        assert values[0] + values[2] - 2 * values[1] <= 1e-10 * (1 + abs(values[1]))


# =============================================================================== (a) brute force
@pytest.mark.parametrize("n,with_g,seed", [(n, g, s) for n in (2, 3, 4) for g in (False, True) for s in range(4)
                                           if n - g >= 2])
def test_certified_matches_brute_force(n, with_g, seed):
    rng = np.random.default_rng(1000 * n + 100 * with_g + seed)
    problem = random_problem(rng, n, with_g)
    warm = rng.uniform(0.0, problem["hi"], size=n)
    value, bound, status, _, point = certify(problem, warm)
    grid_min, best = brute_force(problem)
    assert status == C.CERTIFIED
    assert value - bound <= tolerance(value)
    assert abs(value - best) <= tolerance(best)
    assert bound <= grid_min and bound <= best
    assert np.all(point >= problem["lo"]) and np.all(point <= problem["hi"])
    assert kernel_value(problem, point) == value


# =============================================================================== (b) issue #11's rounds
PLATEAU = dict(  # arm 3: no bonus sample, one win and one loss; the local solver leaves it at 0
    n=4, k=4, lw=np.array([-0.39771837776727215, -1.2494032294547215, -3.912023005428146, -3.840960566282773]),
    mcount=np.array([15.0, 4.0, 1.0, 0.0]), bweight=np.ones(4),
    edge_a=np.array([0, 0, 0, 1, 2, 2, 3]), edge_b=np.array([1, 2, 3, 0, 0, 1, 1]),
    edge_w=np.array([1.0, 3.0, 1.0, 2.0, 7.0, 1.0, 1.0]),
    pair_kind=PAIR_DPO, pair_param=3.0, bonus_kind=BONUS_XPO, alpha=0.019137989582716886, beta=0.1, lo=0.0, hi=3.0,
    warm=np.array([0.0, 0.0, 3.0, 0.0]),
)
TWO_AT_TOP = dict(  # the global minimizer has two arms at R_max, the local solution one
    n=4, k=4, lw=np.array([-2.5420851770779236, -0.40384503596943205, -1.4543578538687802, -3.912023005428146]),
    mcount=np.array([1.0, 4.0, 4.0, 1.0]), bweight=np.ones(4),
    edge_a=np.array([1, 2, 3]), edge_b=np.array([2, 1, 1]), edge_w=np.array([2.0, 2.0, 1.0]),
    pair_kind=PAIR_DPO, pair_param=1.0, bonus_kind=BONUS_XPO, alpha=0.002012193728308375, beta=0.1, lo=0.0, hi=1.0,
    warm=np.array([0.0, 0.0, 0.0, 1.0]),
)
for _case in (PLATEAU, TWO_AT_TOP):
    _case["lref"] = _case["lw"].copy()


def test_plateau_regression():
    problem = PLATEAU
    local, local_value = local_solve(problem, problem["warm"])
    ws = load(problem)
    context_objective(4, 4, padded(problem, local), ws, 7, PAIR_DPO, 3.0, BONUS_XPO, problem["alpha"], 0.1)
    assert local[3] == 0.0 and abs(ws.grad[3]) / scale_of(problem) < 1e-8  # accepted as stationary
    value, bound, status, _, point = certify(problem, problem["warm"])
    assert status == C.CERTIFIED
    assert point[3] == pytest.approx(3.0) and point.max() == pytest.approx(3.0)
    assert value < local_value - 1.0
    grid_min, best = brute_force(problem)
    assert abs(value - best) <= tolerance(best) and bound <= grid_min


def test_two_arms_at_r_max_regression():
    problem = TWO_AT_TOP
    local, local_value = local_solve(problem, problem["warm"])
    assert np.sum(local >= 1.0 - 1e-9) == 1
    value, bound, status, _, point = certify(problem, problem["warm"])
    assert status == C.CERTIFIED
    assert np.sum(point >= 1.0 - 1e-9) == 2
    assert value < local_value - 1e-3
    grid_min, best = brute_force(problem)
    assert abs(value - best) <= tolerance(best) and bound <= grid_min


def test_audit_rounds_certified_and_below_the_warm_started_local_solver():
    """Issue #11's audit: XPO's own sampling on K = 3..6 arms (one rare arm), Bradley–Terry labels;
    the round's objective solved by projected Newton from the previous round's point, and certified."""
    rng = np.random.default_rng(20240611)
    misses = 0
    for _ in range(24):
        n_arms = int(rng.integers(3, 7))
        beta = float(rng.choice([0.03, 0.1, 0.3]))
        r_max = float(rng.choice([1.0, 3.0]))
        alpha = float(10 ** rng.uniform(-3, 0))
        rounds = int(rng.choice([5, 20, 100]))
        problem, warm, local = R.audit_problem(rng, n_arms, rounds, beta, r_max, alpha,
                                               lambda p, w: local_solve(p, w)[0])
        local_value = kernel_value(problem, local)
        value, bound, status, _, point = certify(problem, warm)
        assert status == C.CERTIFIED
        assert value <= local_value + tolerance(local_value)
        assert bound <= value and bound <= local_value
        assert kernel_value(problem, point) == value
        misses += value < local_value - 1e-6 * max(1.0, abs(value))
    assert misses >= 8  # the local solver misses the global minimum in many rounds (observed 14 of 24)


# =============================================================================== (c) against the reference
@pytest.mark.parametrize("seed", range(3))
def test_kernel_agrees_with_numpy_reference(seed):
    rng = np.random.default_rng(300 + seed)
    problems = [(random_problem(rng, 3 + seed % 2, with_g=bool(seed % 2)), None)]
    problem, warm, _ = R.audit_problem(rng, 4 + seed, 20, float(rng.choice([0.1, 0.3])), 1.0, 0.05,
                                       lambda p, w: local_solve(p, w)[0])
    problems.append((problem, warm))
    for problem, warm in problems:
        if warm is None:
            warm = rng.uniform(0.0, problem["hi"], size=problem["n"])
        value, bound, status, _, _ = certify(problem, warm)
        ref_value, ref_bound, ref_status, _, ref_point = R.certified_minimize(problem, warm)
        assert status == ref_status == C.CERTIFIED
        assert value == pytest.approx(ref_value, rel=GAP, abs=GAP)
        assert R.objective(problem, ref_point) == pytest.approx(ref_value, rel=1e-12)
        assert bound <= ref_value + tolerance(ref_value) and ref_bound <= value + tolerance(value)


@pytest.mark.fast
def test_tiny_problem_against_the_reference():
    """Also run with NUMBA_DISABLE_JIT=1 (the pure-Python execution of the kernels)."""
    problem = dict(TWO_AT_TOP)
    value, bound, status, nodes, point = certify(problem, problem["warm"], bb=C.new_certificate_workspace(4, 200),
                                                 max_nodes=200)
    ref_value, _, ref_status, _, _ = R.certified_minimize(problem, problem["warm"])
    assert status == ref_status == C.CERTIFIED and nodes > 0
    assert value == pytest.approx(ref_value, rel=GAP, abs=GAP)


# =============================================================================== (d) statuses
@pytest.mark.parametrize("pair_kind,bonus_kind", [(PAIR_DPO, BONUS_POPO), (PAIR_CHIPO, BONUS_XPO),
                                                  (PAIR_CHIPO, BONUS_NONE)])
def test_unsupported_kinds_are_reported(pair_kind, bonus_kind):
    rng = np.random.default_rng(40 + pair_kind + bonus_kind)
    problem = random_problem(rng, 4, with_g=True, pair_kind=pair_kind, bonus_kind=bonus_kind, alpha=0.5)
    warm = rng.uniform(0.0, problem["hi"], size=4)
    value, bound, status, nodes, point = certify(problem, warm)
    assert status == C.UNSUPPORTED and bound == -math.inf and nodes == 0
    assert value <= kernel_value(problem, warm) and kernel_value(problem, point) == value


@pytest.mark.parametrize("pair_kind,bonus_kind,alpha", [(PAIR_DPO, BONUS_NONE, 0.0), (PAIR_IPO, BONUS_NONE, 0.0),
                                                        (PAIR_DPO, BONUS_XPO, 0.0), (PAIR_DPO, BONUS_COPO, 0.3),
                                                        (PAIR_IPO, BONUS_COPO, 1.0)])
def test_convex_kinds_are_certified_without_branching(pair_kind, bonus_kind, alpha):
    rng = np.random.default_rng(50 + 3 * pair_kind + bonus_kind)
    problem = random_problem(rng, 3, with_g=True, pair_kind=pair_kind, bonus_kind=bonus_kind, alpha=alpha)
    warm = rng.uniform(0.0, problem["hi"], size=3)
    value, bound, status, nodes, _ = certify(problem, warm)
    assert status == C.CERTIFIED and nodes == 0
    grid_min, best = brute_force(problem)
    assert abs(value - best) <= tolerance(best) and bound <= grid_min
    ref_value, _, ref_status, _, _ = R.certified_minimize(problem, warm)
    assert ref_status == C.CERTIFIED and value == pytest.approx(ref_value, rel=GAP, abs=GAP)


# =============================================================================== (e) node limit
@pytest.mark.parametrize("seed", [5, 34, 229])
def test_node_limit_keeps_a_valid_bound(seed):
    """Problems where the branch-and-bound itself improves on the warm start and champion incumbents
    (so cuts and prunes happen against a suboptimal incumbent): the bound is valid at every budget."""
    rng = np.random.default_rng(seed)
    problem = random_problem(rng, 4, with_g=False)
    warm = rng.uniform(0.0, problem["hi"], size=4)
    full_value, _, full_status, full_nodes, _ = certify(problem, warm)
    assert full_status == C.CERTIFIED and full_nodes > 10
    assert certify(problem, warm, max_nodes=1)[0] > full_value + 1e-6 * max(1.0, abs(full_value))
    grid_min, best = brute_force(problem)
    assert abs(full_value - best) <= tolerance(best)
    for budget in range(1, full_nodes):
        value, bound, status, nodes, _ = certify(problem, warm, max_nodes=budget)
        assert nodes <= budget
        assert bound <= grid_min and bound <= best
        assert value >= full_value - tolerance(full_value)
        assert status == (C.CERTIFIED if value - bound <= tolerance(value) else C.NODE_LIMIT)
    assert certify(problem, warm, max_nodes=2)[2] == C.NODE_LIMIT


def test_tightening_keeps_every_point_below_the_threshold():
    """tighten_box only removes points where F >= threshold (checked on a grid of each box)."""
    informative = 0
    for seed in range(4):
        rng = np.random.default_rng(700 + seed)
        problem = random_problem(rng, 3, with_g=False, alpha=1.0)
        n, e, beta, hi = problem["n"], len(problem["edge_a"]), problem["beta"], problem["hi"]
        ws = load(problem)
        c, k0 = C.bonus_decomposition(n, problem["k"], ws, BB, e, problem["bonus_kind"], problem["alpha"], beta)
        for _ in range(4):
            a, b = np.sort(rng.uniform(0.0, hi, size=(2, n)), axis=0)
            axes = [np.linspace(a[j], b[j], 41) for j in range(n)]
            grid = np.array(list(itertools.product(*axes)))
            values = grid_values(problem, grid)
            _, bound, gerr = C.box_relaxation(n, ws, BB, e, problem["pair_kind"], problem["pair_param"], beta, c,
                                              k0, scale_of(problem), a, b, padded(problem, (a + b) / 2), 50)
            for quantile in (0.001, 0.02, 0.2):
                threshold = float(np.quantile(values, quantile))
                BB.box_lo[:n], BB.box_hi[:n] = a, b
                change = C.tighten_box(n, BB, bound, threshold, gerr)
                lower, upper = BB.box_lo[:n].copy(), BB.box_hi[:n].copy()
                assert np.all(lower >= a) and np.all(upper <= b)
                keep = values < threshold
                assert np.all(grid[keep] >= lower) and np.all(grid[keep] <= upper)
                assert (change > 0) == bool(np.any(lower > a) or np.any(upper < b))
                removed = ~np.all((grid >= lower) & (grid <= upper), axis=1)
                informative += bool(removed.any() and keep.any())
    assert informative >= 3  # cuts that removed grid points while others stayed below the threshold


def test_workspace_too_small_is_refused():
    problem = TWO_AT_TOP
    with pytest.raises(ValueError):
        certify(problem, problem["warm"], bb=C.new_certificate_workspace(3, 100))
    with pytest.raises(ValueError):
        certify(problem, problem["warm"], bb=C.new_certificate_workspace(4, 100), max_nodes=101)


# =============================================================================== determinism
def test_same_inputs_same_bits():
    rng = np.random.default_rng(9)
    problem, warm, _ = R.audit_problem(rng, 6, 100, 0.1, 3.0, 0.01, lambda p, w: local_solve(p, w)[0])
    first = certify(problem, warm)
    second = certify(problem, warm, bb=C.new_certificate_workspace(16, MAX_NODES))
    assert first[:4] == second[:4] and first[3] > 1
    assert np.array_equal(first[4], second[4])


# =============================================================================== (c) property test
def scipy_multistart(problem: dict, starts: int, seed: int) -> float:
    """An independent local minimum: scipy's L-BFGS-B on the numpy objective :func:`grid_values` from
    ``starts`` uniform points and every vertex of the box (no xposim solver involved)."""
    from scipy.optimize import minimize

    n, lo, hi = problem["n"], problem["lo"], problem["hi"]
    rng = np.random.default_rng(seed)
    points = list(rng.uniform(lo, hi, size=(starts, n))) + [np.array(v, float) for v in
                                                               itertools.product((lo, hi), repeat=n)]
    best = math.inf
    for start in points:
        result = minimize(lambda v: float(grid_values(problem, v[None, :])[0]), start, method="L-BFGS-B",
                          bounds=[(lo, hi)] * n, options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 2000})
        best = min(best, float(result.fun))
    return best


@st.composite
def round_problems(draw):
    """Random rounds: 2-4 variables (the last possibly the unobserved aggregate), random pairs with
    multiplicities, bonus counts and weights, ``pi_ref``, beta, R_max and alpha, any bonus the
    certificate covers and either convex pair loss."""
    n = draw(st.integers(2, 4))
    with_g = draw(st.booleans()) and n >= 3
    k = n - int(with_g)
    mass = np.array(draw(st.lists(st.floats(0.01, 1.0), min_size=n, max_size=n)))
    lw = np.log(mass / mass.sum())
    lref = lw.copy()
    if with_g:
        lref[k] = 0.0
    pairs = draw(st.dictionaries(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)).filter(lambda p: p[0] != p[1]),
                                 st.integers(1, 5), min_size=1, max_size=2 * k))
    keys = sorted(pairs)
    mcount = np.zeros(n)
    mcount[:k] = draw(st.lists(st.integers(0, 6), min_size=k, max_size=k))
    hi = draw(st.sampled_from([0.5, 1.0, 3.0]))
    pair_kind = draw(st.sampled_from([PAIR_DPO, PAIR_IPO]))
    return dict(
        n=n, k=k, lw=lw, lref=lref, mcount=mcount,
        bweight=np.where(np.arange(n) < k, draw(st.floats(0.5, 1.5)), 0.0),
        edge_a=np.array([a for a, _ in keys], dtype=np.int64), edge_b=np.array([b for _, b in keys], dtype=np.int64),
        edge_w=np.array([float(pairs[key]) for key in keys]), pair_kind=pair_kind,
        pair_param=draw(st.floats(0.2, 1.0)) if pair_kind == PAIR_IPO else hi,
        bonus_kind=draw(st.sampled_from([BONUS_XPO, BONUS_VPO, BONUS_SELM])),
        alpha=draw(st.floats(1e-4, 2.0)), beta=draw(st.floats(0.03, 1.0)), lo=0.0, hi=hi,
        warm=np.array(draw(st.lists(st.floats(0.0, hi), min_size=n, max_size=n))),
    )


@settings(max_examples=15, deadline=None, derandomize=True)
@given(problem=round_problems())
def test_property_certified_is_never_above_brute_force_or_scipy(problem):
    """Issue #11 item 6: on random rounds the certified value is never above a dense-grid brute force
    nor an independent scipy multistart (beyond the 1e-9 gap), and its lower bound is never above the
    brute-force minimum."""
    value, bound, status, _, point = certify(problem, problem["warm"])
    grid_min, best = brute_force(problem)
    independent = scipy_multistart(problem, 8, seed=problem["n"])
    assert status == C.CERTIFIED
    assert value <= grid_min + tolerance(grid_min) and value <= independent + tolerance(independent)
    assert bound <= grid_min and bound <= best + tolerance(best)
    assert np.all(point >= problem["lo"]) and np.all(point <= problem["hi"])
