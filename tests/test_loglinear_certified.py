"""The certified argmin of the log-linear class (numpy reference, issue #11 item 4):
xposim/reference/loglinear_certified_numpy.py against a dense grid of the disk, scipy multistart
and the class's own local solver."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from xposim.envs import linear_bandit
from xposim.losses.kinds import BONUS_COPO, BONUS_NONE, BONUS_POPO, BONUS_XPO, PAIR_CHIPO, PAIR_DPO, PAIR_IPO
from xposim.policies import loglinear as ll
from xposim.policies.leaf_data import LossParameters, make_leaf_data
from xposim.reference.loglinear_certified_numpy import (
    CERTIFIED,
    NODE_LIMIT,
    UNSUPPORTED,
    _Parts,
    ball_box_dual,
    certified_minimize_loglinear,
)
from xposim.reference.loglinear_scipy import loglinear_objective_numpy, solve_loglinear_scipy
from xposim.seeding import make_rng


def xpo_round(seed, n_contexts=1, n_arms=6, dim=2, n_pairs=16, n_bonus=8, alpha=0.1, beta=0.1,
              pair_kind=PAIR_DPO, bonus_kind=BONUS_XPO, gaussian=False):
    """A random round: linear-bandit features (their first coordinate is constant: a flat direction of
    F) or standard normal ones (``gaussian``), random pairs, bonus samples drawn from pi_ref."""
    env = linear_bandit(dim, n_arms, seed=seed, n_contexts=n_contexts)
    features = np.ascontiguousarray(env.features)
    if gaussian:
        features = make_rng(seed + 200).standard_normal(features.shape)
    logref = np.ascontiguousarray(env.trajectory_ref_logprobs)
    rng = make_rng(seed + 100)
    chosen = rng.integers(0, n_arms, n_pairs)
    rejected = (chosen + rng.integers(1, n_arms, n_pairs)) % n_arms
    bonus_context = rng.integers(0, n_contexts, n_bonus)
    bonus_leaf = np.array([rng.choice(n_arms, p=np.exp(logref[x])) for x in bonus_context])
    data = make_leaf_data(logref, np.arange(n_contexts), rng.integers(0, n_contexts, n_pairs), chosen, rejected,
                          rng.integers(1, 4, n_pairs).astype(float), bonus_context, bonus_leaf,
                          rng.integers(1, 3, n_bonus).astype(float))
    loss = LossParameters(pair_kind, 0.5 if pair_kind == PAIR_IPO else 0.0, bonus_kind, alpha, beta)
    return features, logref, data, loss


def disk_grid(radius, n_radii=60, n_angles=180):
    r = radius * np.sqrt(np.linspace(0.0, 1.0, n_radii))[:, None]
    angle = np.linspace(0.0, 2.0 * math.pi, n_angles, endpoint=False)[None, :]
    return np.stack([(r * np.cos(angle)).ravel(), (r * np.sin(angle)).ravel()], axis=1)


def grid_minimum(features, logref, data, loss, radius):
    return min(loglinear_objective_numpy(p, features, logref, data, loss)[0] for p in disk_grid(radius))


@pytest.mark.parametrize("seed", range(3))
def test_relaxation_is_a_convex_under_estimator_exact_on_a_point_box(seed):
    features, logref, data, loss = xpo_round(seed, n_contexts=2, dim=3, alpha=0.3)
    parts = _Parts(features, logref, data, loss)
    rng = make_rng(seed)
    for _ in range(20):
        lo = rng.uniform(-1.0, 0.5, 3)
        hi = lo + rng.uniform(0.0, 0.8, 3)
        a, b = rng.uniform(lo, hi), rng.uniform(lo, hi)
        for point in (a, b, 0.5 * (a + b)):
            relaxed, _, _ = parts.relaxation(point, lo, hi)
            exact, _ = parts.objective(point)
            assert relaxed <= exact + 1e-12 * max(1.0, abs(exact))
        # convex: the midpoint lies below the chord
        r_mid = parts.relaxation(0.5 * (a + b), lo, hi)[0]
        assert r_mid <= 0.5 * (parts.relaxation(a, lo, hi)[0] + parts.relaxation(b, lo, hi)[0]) + 1e-12 * abs(r_mid)
        # the gradient is the relaxation's (finite differences)
        _, grad, _ = parts.relaxation(0.5 * (a + b), lo, hi)
        for i in range(3):
            step = np.zeros(3)
            step[i] = 1e-6 * (hi[i] - lo[i])
            if step[i] == 0:
                continue
            fd = (parts.relaxation(0.5 * (a + b) + step, lo, hi)[0]
                  - parts.relaxation(0.5 * (a + b) - step, lo, hi)[0]) / (2 * step[i])
            assert fd == pytest.approx(grad[i], rel=1e-5, abs=1e-7)
        # a box that is one point: the secant is exact there
        assert parts.relaxation(a, a, a)[0] == pytest.approx(parts.objective(a)[0], rel=1e-12, abs=1e-12)


def test_ball_box_dual_is_the_linear_minimum_over_box_and_ball():
    rng = make_rng(5)
    for _ in range(30):
        dim = int(rng.integers(1, 5))
        grad = rng.normal(size=dim)
        lo = rng.uniform(-1.5, 0.3, dim)
        hi = lo + rng.uniform(0.1, 1.5, dim)
        radius = float(rng.uniform(0.5, 1.5))
        nearest = np.clip(0.0, lo, hi)
        if nearest @ nearest >= radius * radius:
            continue
        constraint = {"type": "ineq", "fun": lambda s: radius * radius - s @ s}
        best = min(minimize(lambda s: grad @ s, np.clip(start, lo, hi), method="SLSQP", bounds=list(zip(lo, hi)),
                            constraints=[constraint], options={"ftol": 1e-14}).fun
                   for start in [nearest] + list(rng.uniform(lo, hi, (4, dim))))
        dual = ball_box_dual(grad, lo, hi, radius)
        # a lower bound: below grad.s at every feasible point (sampled; SLSQP's own points may sit a
        # hair outside the ball), and tight: equal to SLSQP's minimum up to its tolerance
        samples = rng.uniform(lo, hi, (4000, dim))
        feasible = samples[np.sum(samples * samples, axis=1) <= radius * radius]
        if feasible.size:
            assert dual <= float(np.min(feasible @ grad))
        assert dual == pytest.approx(best, abs=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("seed,alpha,pair_kind,gaussian", [(0, 0.05, PAIR_DPO, True), (1, 0.5, PAIR_DPO, True),
                                                           (2, 0.2, PAIR_IPO, True), (3, 0.1, PAIR_DPO, False)])
def test_certified_minimum_against_the_grid_scipy_and_the_local_solver(seed, alpha, pair_kind, gaussian):
    features, logref, data, loss = xpo_round(seed, alpha=alpha, pair_kind=pair_kind, gaussian=gaussian)
    radius = 1.0
    cert = certified_minimize_loglinear(features, logref, data, loss, radius, relative_gap=1e-9)
    assert cert.status == CERTIFIED
    assert np.linalg.norm(cert.theta) <= radius * (1 + 1e-12)
    assert cert.value == pytest.approx(loglinear_objective_numpy(cert.theta, features, logref, data, loss)[0], rel=1e-14)
    assert cert.value - cert.lower <= 1e-9 * max(1.0, abs(cert.value)) + 1e-15
    # never above an independent multistart; the bound never above the grid's minimum (an upper bound
    # of the true minimum)
    rng = make_rng(seed)
    multistart = min(solve_loglinear_scipy(s, features, logref, data, loss, radius)[1]
                     for s in rng.uniform(-0.7, 0.7, (12, 2)))
    assert cert.value <= multistart + 1e-9 * max(1.0, abs(multistart))
    assert cert.lower <= grid_minimum(features, logref, data, loss, radius)
    # the class's local solver from the origin ends at or above the proven bound
    work = ll.new_loglinear_work(features.shape[1], 2)
    theta = np.zeros(2)
    n_terms = float(data.pair_weight.sum() + data.bonus_count.sum())
    value = ll.loglinear_projected_newton(theta, features, logref, data, loss, radius, n_terms, 1e-10, 200, work)[0]
    assert value >= cert.lower


def test_a_concave_round_certifies_the_best_boundary_point():
    """Bonus only (no pairs): F = -c log Z + linear is concave, so every minimizer is on the sphere and
    local solvers stop at different boundary points; the certificate picks the best on a fine circle."""
    env = linear_bandit(2, 8, seed=1)
    features, logref = np.ascontiguousarray(env.features), np.ascontiguousarray(env.trajectory_ref_logprobs)
    data = make_leaf_data(logref, [0], [], [], [], [], [0, 0, 0], [3, 5, 6], [2.0, 1.0, 1.0])
    loss = LossParameters(PAIR_DPO, 0.0, BONUS_XPO, 1.0, 0.2)
    cert = certified_minimize_loglinear(features, logref, data, loss, 1.0, relative_gap=1e-10)
    assert cert.status == CERTIFIED
    angle = np.linspace(0.0, 2.0 * math.pi, 20001)
    circle = min(loglinear_objective_numpy(np.array([math.cos(a), math.sin(a)]), features, logref, data, loss)[0]
                 for a in angle)
    assert cert.lower <= circle
    assert cert.value <= circle + 1e-9
    assert np.linalg.norm(cert.theta) == pytest.approx(1.0, rel=1e-9)


def test_node_limit_is_reported_with_a_valid_bound_and_unsupported_losses_have_none():
    features, logref, data, loss = xpo_round(3, alpha=0.5, gaussian=True)
    cert = certified_minimize_loglinear(features, logref, data, loss, 1.0, max_nodes=3)
    assert cert.status == NODE_LIMIT and cert.nodes <= 3
    assert cert.lower <= cert.value and cert.lower <= grid_minimum(features, logref, data, loss, 1.0)
    assert math.isfinite(cert.gap) and cert.gap > 1e-9 * abs(cert.value)
    for pair_kind, bonus_kind in ((PAIR_CHIPO, BONUS_XPO), (PAIR_DPO, BONUS_POPO)):
        features, logref, data, loss = xpo_round(4, pair_kind=pair_kind, bonus_kind=bonus_kind)
        cert = certified_minimize_loglinear(features, logref, data, loss, 1.0)
        assert cert.status == UNSUPPORTED and cert.lower == -math.inf and cert.gap == math.inf
    # convex rounds (no bonus, or COPO's bonus, whose c_x <= 0) certify with few boxes
    for bonus_kind in (BONUS_NONE, BONUS_COPO):
        features, logref, data, loss = xpo_round(5, bonus_kind=bonus_kind)
        cert = certified_minimize_loglinear(features, logref, data, loss, 1.0, max_nodes=400)
        assert cert.status == CERTIFIED


def test_extreme_beta_and_radius_give_finite_numbers():
    """Logit ranges of thousands of e-folds: secants in logs, finite values, no NaN (a gradient beyond
    float64 is inf, and such a box gets no bound until it is split)."""
    features, logref, data, loss = xpo_round(6, alpha=0.5, beta=1e-3, gaussian=True)
    parts = _Parts(features, logref, data, loss)
    lo, hi = np.array([-5.0, -5.0]), np.array([5.0, 5.0])
    for point in (np.zeros(2), np.array([3.0, -4.0]), hi):
        relaxed, grad, _ = parts.relaxation(point, lo, hi)
        assert np.isfinite(relaxed) and not np.any(np.isnan(grad))
        assert relaxed <= parts.objective(point)[0] + 1e-9 * abs(parts.objective(point)[0])
    cert = certified_minimize_loglinear(features, logref, data, loss, 5.0, max_nodes=40)
    assert np.isfinite(cert.value) and np.isfinite(cert.lower) and cert.lower <= cert.value


@pytest.mark.fast
@pytest.mark.parametrize("kwargs,message", [({"radius": 0.0}, "radius"), ({"radius": math.inf}, "radius"),
                                            ({"relative_gap": 0.0}, "relative_gap"), ({"max_nodes": 0}, "max_nodes")])
def test_bad_arguments_are_refused_by_name(kwargs, message):
    features, logref, data, loss = xpo_round(0)
    arguments = {"radius": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        certified_minimize_loglinear(features, logref, data, loss, **arguments)
