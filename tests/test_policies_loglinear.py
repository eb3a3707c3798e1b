"""Log-linear class: objective vs numpy reference, argmin vs scipy, realizability, views, engine runs."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import logsumexp

from xposim.testing import PolicyClassContract
from xposim import exact
from xposim.envs import linear_bandit, linear_token_mdp, random_token_mdp
from xposim.losses.kinds import (
    BONUS_NONE,
    BONUS_XPO,
    PAIR_DPO,
    PAIR_IPO,
)
from xposim.policies import loglinear as ll
from xposim.policies.arrays import env_arrays
from xposim.policies.solving import SolverSettings
from xposim.policies.store import new_store, store_add_pair
from xposim.policies.view import view_context_stats
from xposim.policies.leaf_data import (
    LossParameters,
    expand_uniforms,
    gather_leaf_data,
    make_leaf_data,
)
from xposim.reference.loglinear_scipy import (
    ball_projected_gradient_numpy,
    loglinear_objective_numpy,
    solve_loglinear_scipy,
)
from xposim.seeding import make_rng

from _loss_cases import LOSS_CASES

KINDS = LOSS_CASES


def random_data(env, rng, n_pairs, n_bonus, perturb_reference=True):
    """Random pairs and bonus samples on every context; the loss reference is pi_ref (+ noise)."""
    logref = np.ascontiguousarray(env.trajectory_ref_logprobs)
    nc, n_leaves = logref.shape
    reference = logref + (0.2 * rng.standard_normal(logref.shape) if perturb_reference else 0.0)
    chosen = rng.integers(0, n_leaves, n_pairs)
    rejected = (chosen + rng.integers(1, n_leaves, n_pairs)) % n_leaves
    return make_leaf_data(
        reference, np.arange(nc), rng.integers(0, nc, n_pairs), chosen, rejected,
        rng.integers(1, 4, n_pairs).astype(float), rng.integers(0, nc, n_bonus), rng.integers(0, n_leaves, n_bonus),
        rng.integers(1, 3, n_bonus).astype(float), 0.5 + rng.random(n_bonus),
    )


def arrays_of(env):
    return np.ascontiguousarray(env.features), np.ascontiguousarray(env.trajectory_ref_logprobs)


def terms(data, loss):
    return float(data.pair_weight.sum() + (data.bonus_count.sum() if loss.bonus_kind != BONUS_NONE else 0.0))


# ----------------------------------------------------------------------------- kernels vs numpy
@pytest.mark.fast
@pytest.mark.parametrize("pair_kind,param,bonus_kind,alpha", KINDS)
def test_objective_and_gradient_match_numpy_reference(pair_kind, param, bonus_kind, alpha):
    env = linear_token_mdp(2, 2, 2, 3, seed=4)
    features, logref = arrays_of(env)
    rng = make_rng(pair_kind * 10 + bonus_kind)
    data = random_data(env, rng, 9, 5)
    loss = LossParameters(pair_kind, param, bonus_kind, alpha, 0.4)
    work = ll.new_loglinear_work(env.n_leaves, env.feature_dim)
    theta = 0.8 * rng.standard_normal(env.feature_dim)
    value = ll.loglinear_objective(theta, features, logref, data, loss, 1, work)
    ref_value, ref_grad = loglinear_objective_numpy(theta, features, logref, data, loss)
    assert value == pytest.approx(ref_value, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(work.grad, ref_grad, rtol=1e-10, atol=1e-12)
    # order 0 gives the same value and order 2 the same gradient
    assert ll.loglinear_objective(theta, features, logref, data, loss, 0, work) == pytest.approx(value, rel=1e-14)
    ll.loglinear_objective(theta, features, logref, data, loss, 2, work)
    np.testing.assert_allclose(work.grad, ref_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.fast
@pytest.mark.parametrize("pair_kind,param,bonus_kind,alpha", KINDS)
def test_hessian_matches_finite_differences_of_reference_gradient(pair_kind, param, bonus_kind, alpha):
    env = linear_bandit(3, 6, seed=2, n_contexts=2)
    features, logref = arrays_of(env)
    rng = make_rng(100 + pair_kind * 10 + bonus_kind)
    data = random_data(env, rng, 8, 4)
    loss = LossParameters(pair_kind, param, bonus_kind, alpha, 0.5)
    work = ll.new_loglinear_work(env.n_leaves, env.feature_dim)
    theta = rng.standard_normal(env.feature_dim)
    ll.loglinear_objective(theta, features, logref, data, loss, 2, work)
    eps = 1e-5
    numeric = np.empty((env.feature_dim, env.feature_dim))
    for i in range(env.feature_dim):
        step = np.zeros(env.feature_dim)
        step[i] = eps
        plus = loglinear_objective_numpy(theta + step, features, logref, data, loss)[1]
        minus = loglinear_objective_numpy(theta - step, features, logref, data, loss)[1]
        numeric[:, i] = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(work.hess, numeric, rtol=1e-6, atol=1e-7 * max(1.0, np.abs(numeric).max()))
    np.testing.assert_array_equal(work.hess, work.hess.T)


@pytest.mark.fast
def test_xpo_bonus_curvature_is_negative_semidefinite():
    """THEORY 3: the XPO bonus alone (no pairs) is concave in theta (minus a log-sum-exp)."""
    env = linear_bandit(4, 7, seed=5)
    features, logref = arrays_of(env)
    data = make_leaf_data(logref, [0], [], [], [], [], [0, 0], [1, 4], [2.0, 1.0])
    loss = LossParameters(PAIR_DPO, 0.0, BONUS_XPO, 0.5, 0.3)
    work = ll.new_loglinear_work(env.n_leaves, env.feature_dim)
    for seed in range(3):
        theta = make_rng(seed).standard_normal(4)
        ll.loglinear_objective(theta, features, logref, data, loss, 2, work)
        assert np.linalg.eigvalsh(work.hess).max() <= 1e-12
        assert np.linalg.eigvalsh(work.hess).min() < -1e-6


@pytest.mark.fast
def test_context_logits_and_ball_helpers_match_numpy():
    env = linear_token_mdp(2, 3, 2, 4, seed=1)
    features, logref = arrays_of(env)
    theta = make_rng(0).standard_normal(4)
    scaled, logw = np.empty(env.n_leaves), np.empty(env.n_leaves)
    for x in range(2):
        log_z = ll.loglinear_context_logits(theta, features, logref, 0.3, x, scaled, logw)
        np.testing.assert_allclose(scaled, features[x] @ theta / 0.3, rtol=1e-13)
        assert log_z == pytest.approx(logsumexp(logref[x] + features[x] @ theta / 0.3), rel=1e-13)
    v = np.array([3.0, 4.0, 0.0, 0.0])
    ll.project_onto_ball(v, 2.0)
    np.testing.assert_allclose(v, [1.2, 1.6, 0.0, 0.0])
    grad = make_rng(1).standard_normal(4) * 10
    for point in (np.zeros(4), v):
        assert ll.ball_projected_gradient(point, grad, 7.0, 2.0) == pytest.approx(
            ball_projected_gradient_numpy(point, grad, 7.0, 2.0), rel=1e-13, abs=1e-15)
    points = ll.uniform_ball_points(make_rng(2).random((200, 5)), 3.0)
    assert points.shape == (200, 4)
    assert np.linalg.norm(points, axis=1).max() <= 3.0
    # radius^d is uniform: about half the points lie beyond 3 * 0.5^(1/4)
    assert 0.35 < np.mean(np.linalg.norm(points, axis=1) > 3.0 * 0.5 ** 0.25) < 0.65


@pytest.mark.fast
@pytest.mark.parametrize("exact_curvature", [False, True])
def test_ball_model_minimizer_solves_the_quadratic_over_the_ball(exact_curvature):
    rng = make_rng(7)
    dim, radius = 3, 1.5
    for trial in range(6):
        a = rng.standard_normal((dim, dim))
        hess = a @ a.T + (0.1 if trial % 2 else -1.0) * np.eye(dim)  # some indefinite
        grad = 3.0 * rng.standard_normal(dim)
        theta = rng.standard_normal(dim)
        theta *= min(1.0, radius / np.linalg.norm(theta))
        lam, q = np.linalg.eigh(hess)
        out = np.empty(dim)
        ok, mu = ll.ball_model_minimizer(theta, grad, lam, q, radius, exact_curvature, out)
        if not ok:
            assert exact_curvature and lam[0] < 0
            continue
        assert np.linalg.norm(out) <= radius * (1 + 1e-12)
        shift = 0.0 if exact_curvature else max(0.0, 1e-10 * np.abs(lam).max() - lam[0])
        model_h = hess + shift * np.eye(dim)

        def model(y):
            return grad @ (y - theta) + 0.5 * (y - theta) @ model_h @ (y - theta)

        best = min(
            (minimize(model, start, jac=lambda y: grad + model_h @ (y - theta), method="SLSQP",
                      constraints=[{"type": "ineq", "fun": lambda y: radius**2 - y @ y}],
                      options={"ftol": 1e-14, "maxiter": 500}) for start in
             [np.zeros(dim)] + [radius * 0.9 * s / np.linalg.norm(s) for s in rng.standard_normal((5, dim))]),
            key=lambda r: r.fun,
        )
        assert model(out) <= best.fun + 1e-9
        assert mu >= 0.0
        if exact_curvature:
            assert np.linalg.eigvalsh(hess + mu * np.eye(dim)).min() > 0


@pytest.mark.fast
def test_gradient_step_descends_and_projects_onto_the_ball():
    env = linear_bandit(3, 6, seed=4)
    features, logref = arrays_of(env)
    data = random_data(env, make_rng(9), 6, 3)
    loss = LossParameters(PAIR_DPO, 0.0, BONUS_XPO, 0.1, 0.5)
    work = ll.new_loglinear_work(env.n_leaves, 3)
    theta = np.array([0.0, 0.1, -0.1])
    before = ll.loglinear_objective(theta, features, logref, data, loss, 1, work)
    gradient = work.grad.copy()
    assert ll.loglinear_gradient_step(theta, features, logref, data, loss, 1.0, 1e-3, work) == before
    np.testing.assert_allclose(theta, np.array([0.0, 0.1, -0.1]) - 1e-3 * gradient, rtol=1e-14)
    assert ll.loglinear_objective(theta, features, logref, data, loss, 0, work) < before
    ll.loglinear_gradient_step(theta, features, logref, data, loss, 0.5, 1e6, work)
    assert np.linalg.norm(theta) == pytest.approx(0.5, rel=1e-12)


@pytest.mark.fast
def test_batch_adapter_reads_the_engine_batch():
    from xposim.policies.leaf_data import batch_leaf_data

    env = linear_bandit(3, 5, seed=1, n_contexts=2)
    arrays = env_arrays(env)
    view = ll.all_leaves_view(arrays, arrays.leaf_logref)

    class Problem:
        bonus_kind, loss_ref_logp = BONUS_XPO, arrays.leaf_logref + 0.5

    batch = (np.array([1, 0, 1, 0]), np.array([2, 3, 4, 1]), np.array([0, 3, 1, 2]), np.array([4, -1, 0, 2]),
             np.ones(4), 3, 0.25)  # the 4th entry is beyond batch_size
    data, lr = batch_leaf_data(Problem, view, batch, None)
    assert lr == 0.25 and data.contexts.tolist() == [0, 1]
    # context 0: the self-pair (3, 3) is dropped; context 1: pairs (2, 0), (4, 1)
    assert data.pair_ptr.tolist() == [0, 0, 2]
    assert sorted(zip(data.pair_chosen.tolist(), data.pair_rejected.tolist())) == [(2, 0), (4, 1)]
    np.testing.assert_allclose(data.pair_weight, 1.0 / 3.0)
    assert data.bonus_ptr.tolist() == [0, 0, 2] and sorted(data.bonus_leaf.tolist()) == [0, 4]
    np.testing.assert_allclose(data.pair_chosen_ref, arrays.leaf_logref[1, data.pair_chosen] + 0.5)


# ----------------------------------------------------------------------------- argmin vs scipy
@pytest.mark.parametrize("pair_kind,param", [(PAIR_DPO, 0.0), (PAIR_IPO, 2.0)])
def test_argmin_matches_scipy_on_convex_objectives(pair_kind, param):
    """DPO / IPO without bonus: logistic / least-squares regression on feature differences (convex)."""
    for seed in range(3):
        env = linear_bandit(4, 12, seed=seed, n_contexts=2)
        features, logref = arrays_of(env)
        data = random_data(env, make_rng(seed + 20), 40, 0, perturb_reference=False)
        loss = LossParameters(pair_kind, param, BONUS_NONE, 0.0, 0.3)
        radius = float(np.linalg.norm(env.reward_parameter))
        work = ll.new_loglinear_work(env.n_leaves, 4)
        theta = np.zeros(4)
        value, status, _ = ll.loglinear_projected_newton(theta, features, logref, data, loss, radius,
                                                         terms(data, loss), 1e-10, 200, work)
        assert status == ll.STATUS_CONVERGED
        ref_theta, ref_value, _ = solve_loglinear_scipy(np.zeros(4), features, logref, data, loss, radius)
        assert value <= ref_value + 1e-9 * max(1.0, abs(ref_value))
        assert value == pytest.approx(ref_value, rel=1e-9, abs=1e-9)
        # same policy (theta itself is not identified along the constant feature): compare log pi
        mine = logref + features @ theta / 0.3
        theirs = logref + features @ ref_theta / 0.3
        mine -= logsumexp(mine, axis=1, keepdims=True)
        theirs -= logsumexp(theirs, axis=1, keepdims=True)
        np.testing.assert_allclose(mine, theirs, atol=1e-4)
        assert np.linalg.norm(theta) <= radius * (1 + 1e-12)


@pytest.mark.filterwarnings("ignore:delta_grad == 0.0")
@pytest.mark.parametrize("alpha", [0.05, 0.5])
def test_argmin_not_worse_than_scipy_on_nonconvex_xpo(alpha):
    """XPO: our multi-start projected Newton ends at or below both scipy solvers (from the same warm start)."""
    settings = SolverSettings(restarts=4)
    for seed in range(3):
        env = linear_bandit(5, 20, seed=seed, n_contexts=2)
        features, logref = arrays_of(env)
        data = random_data(env, make_rng(seed + 50), 40, 20, perturb_reference=False)
        loss = LossParameters(PAIR_DPO, 0.0, BONUS_XPO, alpha, 0.1)
        radius = float(np.linalg.norm(env.reward_parameter))
        work = ll.new_loglinear_work(env.n_leaves, 5)
        starts = ll.uniform_ball_points(make_rng(seed).random((settings.restarts, 6)), radius)
        theta = np.zeros(5)
        value, status, _, _, _ = ll.loglinear_multistart(theta, features, logref, data, loss, radius, terms(data, loss),
                                                      1e-10, 200, starts, 1e-9, work)
        assert status == ll.STATUS_CONVERGED
        for method in ("SLSQP", "trust-constr"):
            _, ref_value, _ = solve_loglinear_scipy(np.zeros(5), features, logref, data, loss, radius, method=method)
            assert value <= ref_value + 1e-9
        # a KKT point: the per-sample projected gradient is tiny
        _, grad = loglinear_objective_numpy(theta, features, logref, data, loss)
        assert ball_projected_gradient_numpy(theta, grad, terms(data, loss), radius) <= 1e-9


def test_multistart_counts_disagreement_and_keeps_the_lowest():
    """Bonus only: the objective is concave, every start ends at a different boundary point."""
    env = linear_bandit(3, 8, seed=1)
    features, logref = arrays_of(env)
    data = make_leaf_data(logref, [0], [0], [1], [2], [1.0], [0, 0, 0], [3, 5, 6], [2.0, 1.0, 1.0])
    loss = LossParameters(PAIR_DPO, 0.0, BONUS_XPO, 1.0, 0.2)
    work = ll.new_loglinear_work(env.n_leaves, 3)
    starts = ll.uniform_ball_points(make_rng(3).random((6, 4)), 1.0)
    values = []
    for start in [np.zeros(3)] + list(starts):
        theta = start.copy()
        values.append(ll.loglinear_projected_newton(theta, features, logref, data, loss, 1.0, 5.0, 1e-9, 200, work)[0])
    theta = np.zeros(3)
    value, _, _, disagreement, improved = ll.loglinear_multistart(theta, features, logref, data, loss, 1.0, 5.0, 1e-9, 200,
                                                        starts, 1e-9, work)
    assert disagreement == (max(values) - min(values) > 1e-9 * max(1.0, abs(min(values))))
    assert value == pytest.approx(min(values), rel=1e-12)
    assert improved == (min(values) < values[0] - 1e-9 * max(1.0, abs(values[0])))
    assert ll.loglinear_objective(theta, features, logref, data, loss, 0, work) == pytest.approx(value, rel=1e-12)


# ----------------------------------------------------------------------------- class, views, realizability
@pytest.mark.fast
@pytest.mark.parametrize("make_env", [lambda: linear_bandit(3, 5, seed=3, n_contexts=2),
                                      lambda: linear_token_mdp(2, 2, 2, 3, seed=2)])
def test_realizable_at_the_reward_parameter(make_env):
    env = make_env()
    beta = 0.25
    cls = ll.LogLinearClass()
    assert cls.radius(env) == pytest.approx(np.linalg.norm(env.reward_parameter))
    state = cls.create_state(env, env_arrays(env), beta, SolverSettings())
    state.theta[:] = env.reward_parameter
    np.testing.assert_allclose(cls.token_policy(env, state), exact.solve(env, beta).policy, atol=1e-12)


@pytest.mark.fast
def test_view_matches_exact_evaluation_of_token_policy():
    env = linear_token_mdp(2, 3, 2, 4, seed=6)
    beta = 0.3
    arrays = env_arrays(env)
    cls = ll.LogLinearClass(bound=2.0)
    state = cls.create_state(env, arrays, beta, SolverSettings())
    view = cls.initial_view(arrays, state)
    assert np.all(view.n_slots == env.n_leaves)
    state.theta[:] = make_rng(1).standard_normal(4)
    ll.project_onto_ball(state.theta, 2.0)
    changed = np.zeros(2, dtype=np.bool_)
    ll.loglinear_write_view(state.theta, state.features, state.leaf_logref, beta, view, changed, state.work)
    assert changed.all()
    policy = cls.token_policy(env, state)
    evaluation = exact.evaluate(env, policy, beta)
    logp = exact.trajectory_logprobs(env, policy)
    for x in range(2):
        value, reward, kl = view_context_stats(view, arrays, beta, x)
        assert value == pytest.approx(evaluation.value_per_context[x], abs=1e-12)
        assert kl == pytest.approx(evaluation.kl_per_context[x], abs=1e-12)
        np.testing.assert_allclose(view.slot_logw[x] - view.log_partition[x], logp[x], atol=1e-12)


@pytest.mark.fast
def test_gather_from_pair_store_matches_flat_lists():
    env = linear_bandit(3, 6, seed=0, n_contexts=2)
    arrays = env_arrays(env)
    cls = ll.LogLinearClass()
    view = cls.initial_view(arrays, cls.create_state(env, arrays, 0.5, SolverSettings()))
    store = new_store(2, 6, 16)
    pairs = [(0, 1, 2), (1, 3, 0), (0, 1, 2), (0, 4, 5)]
    for x, c, r in pairs:
        store_add_pair(store, x, c, r, 1.0)
    bonus = np.zeros((2, 6))
    bonus[0, 2], bonus[1, 5] = 2.0, 1.0
    data = gather_leaf_data(store, view, bonus, np.ones((2, 6)), arrays.leaf_logref, True, np.array([0, 1]))
    assert sorted(zip(data.pair_chosen[:data.pair_ptr[1]], data.pair_rejected[:data.pair_ptr[1]],
                      data.pair_weight[:data.pair_ptr[1]])) == [(1, 2, 2.0), (4, 5, 1.0)]
    assert list(data.bonus_leaf) == [2, 5] and list(data.bonus_count) == [2.0, 1.0]
    np.testing.assert_array_equal(data.bonus_ref, arrays.leaf_logref[[0, 1], [2, 5]])
    no_bonus = gather_leaf_data(store, view, bonus, np.ones((2, 6)), arrays.leaf_logref, False, np.array([1]))
    assert no_bonus.bonus_leaf.size == 0 and no_bonus.pair_ptr.tolist() == [0, 1]


@pytest.mark.fast
def test_validation_errors():
    with pytest.raises(ValueError, match="bound"):
        ll.LogLinearClass(bound=-1.0)
    with pytest.raises(ValueError, match="features"):
        ll.LogLinearClass(bound=1.0).validate(random_token_mdp(1, 2, 2, seed=0))
    with pytest.raises(ValueError, match="bound must be given"):
        ll.LogLinearClass().validate(random_token_mdp(1, 2, 2, seed=0, feature_dim=3))
    env = linear_bandit(3, 4, seed=0)
    with pytest.raises(ValueError, match="rng must be a numpy.random.Generator when settings.restarts = 2"):
        ll.LogLinearClass().create_state(env, env_arrays(env), 0.5, SolverSettings(restarts=2))
    with pytest.raises(ValueError, match="rng must be"):
        ll.LogLinearClass().create_state(env, env_arrays(env), 0.5, SolverSettings(restarts=2), rng=7)
    with pytest.raises(ValueError, match="champion_starts=True applies to the tabular class only"):
        ll.LogLinearClass().create_state(env, env_arrays(env), 0.5, SolverSettings(champion_starts=True))
    with pytest.raises(ValueError, match="beta"):
        ll.LogLinearClass().create_state(env, env_arrays(env), 0.0, SolverSettings())
    # narrow pools are expanded deterministically; wide pools are used as they are
    narrow = make_rng(0).random((2, 3))
    np.testing.assert_array_equal(expand_uniforms(narrow, 7), expand_uniforms(narrow.copy(), 7))
    assert expand_uniforms(narrow, 7).shape == (2, 7) and expand_uniforms(narrow, 2).tolist() == narrow[:, :2].tolist()


# ----------------------------------------------------------------------------- under the learner engine
def _run(env, name, seed, rounds=40, **overrides):
    from xposim.learners.registry import make_learner
    from xposim.learners.runner import run_learner

    learner = make_learner(name, **overrides)
    return run_learner(env, learner, beta=0.2, rounds=rounds, seed=seed, policy_class=ll.LogLinearClass())


@pytest.mark.parametrize("name,overrides", [("xpo", {"alpha": 0.01}), ("online_dpo", {}),
                                            ("xpo", {"alpha": 0.01, "solver": SolverSettings(restarts=2)}),
                                            ("xpo_trl", {"alpha": 0.01})])
def test_runs_under_the_engine_deterministically(name, overrides):
    env = linear_bandit(4, 10, seed=3, n_contexts=2)
    first = _run(env, name, 5, **overrides)
    second = _run(env, name, 5, **overrides)
    np.testing.assert_array_equal(first.metrics, second.metrics)
    assert first.counters[1] == 0  # no solver failures
    assert first.counters[0] >= 40
    # the engine's exact J of the final iterate equals exact.evaluate of its token-level policy
    assert first.final_value == pytest.approx(exact.evaluate(env, first.token_policy(), 0.2).value, abs=1e-10)
    other = _run(env, name, 6, **overrides)
    assert not np.array_equal(first.metrics, other.metrics)


def test_engine_iterate_is_log_linear_inside_the_ball():
    """The engine's final view is ``log pi_ref + <theta, phi>/beta - log Z`` with ``||theta|| <= B``."""
    env = linear_bandit(4, 10, seed=8)
    result = _run(env, "xpo", 2, rounds=30, alpha=0.02)
    logp = result.leaf_logprobs()
    features, logref = arrays_of(env)
    # recover theta up to the constant coordinate: log pi - log pi_ref = <theta, phi>/beta - log Z
    diff = (logp - logref)[0]
    design = np.column_stack([features[0, :, 1:], np.ones(env.n_leaves)])
    coef, *_ = np.linalg.lstsq(design, diff, rcond=None)
    np.testing.assert_allclose(design @ coef, diff, atol=1e-8)  # the iterate is log-linear in phi
    assert np.linalg.norm(coef[:-1] * 0.2) <= np.linalg.norm(env.reward_parameter) * (1 + 1e-9)


class TestLogLinearClassContract(PolicyClassContract):
    """The interface contract (xposim.testing) on the log-linear class (generic loop)."""

    def make_env(self):
        return linear_bandit(3, 6, seed=1, n_contexts=2)

    def make_policy_class(self):
        return ll.LogLinearClass()
