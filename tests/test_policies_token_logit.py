"""Token-logit class: objective vs numpy reference, argmin vs scipy L-BFGS-B, realizability, views, engine runs."""
from __future__ import annotations

import numpy as np
import pytest

from xposim.testing import PolicyClassContract
from xposim import exact
from xposim.envs import TokenMDP, random_token_mdp
from xposim.losses.kinds import (
    BONUS_NONE,
    BONUS_XPO,
    PAIR_DPO,
    PAIR_IPO,
)
from xposim.policies import token_logit as tl
from xposim.policies.arrays import env_arrays
from xposim.policies.solving import SolverSettings
from xposim.policies.view import view_context_stats
from xposim.policies.leaf_data import LossParameters, make_leaf_data
from xposim.reference.token_logit_numpy import (
    box_projected_gradient_numpy,
    solve_token_logit_scipy,
    token_logit_objective_numpy,
)
from xposim.seeding import make_rng

from _loss_cases import LOSS_CASES

KINDS = LOSS_CASES


def env_with_zero_reference() -> TokenMDP:
    """Two contexts, A = 3, H = 2, with some tokens that pi_ref never emits."""
    rng = make_rng(11)
    ref = rng.dirichlet(np.ones(3), size=(2, 4))
    ref[0, 0] = [0.5, 0.0, 0.5]
    ref[1, 2] = [0.0, 0.0, 1.0]
    rewards = rng.uniform(0.0, 0.5, size=(2, 4, 3))
    return TokenMDP.from_arrays([0.4, 0.6], ref, rewards, r_max=1.0, name="zeros")


def random_data(env, rng, n_pairs, n_bonus, perturb_reference=True):
    """Random pairs / bonus samples on leaves pi_ref can produce; loss reference = pi_ref (+ noise)."""
    logref = np.ascontiguousarray(env.trajectory_ref_logprobs)
    nc = logref.shape[0]
    reference = logref + (0.2 * rng.standard_normal(logref.shape) if perturb_reference else 0.0)
    ctx, chosen, rejected = [], [], []
    for _ in range(n_pairs):
        x = int(rng.integers(nc))
        possible = np.flatnonzero(logref[x] > -np.inf)
        c, r = rng.choice(possible, 2, replace=False)
        ctx.append(x), chosen.append(c), rejected.append(r)
    bctx = rng.integers(0, nc, n_bonus)
    bleaf = [int(rng.choice(np.flatnonzero(logref[x] > -np.inf))) for x in bctx]
    return make_leaf_data(reference, np.arange(nc), ctx, chosen, rejected, rng.integers(1, 4, n_pairs).astype(float),
                          bctx, bleaf, rng.integers(1, 3, n_bonus).astype(float), 0.5 + rng.random(n_bonus))


def context_terms(data, k, loss):
    pairs = data.pair_weight[data.pair_ptr[k]:data.pair_ptr[k + 1]].sum()
    bonus = data.bonus_count[data.bonus_ptr[k]:data.bonus_ptr[k + 1]].sum() if loss.bonus_kind != BONUS_NONE else 0.0
    return float(pairs + bonus)


def local_objective(env, z, data, k, loss, work):
    """Objective, full-size gradient and a Hessian-vector closure of context ``k`` at logits ``z (n_states, A)``."""
    x = data.contexts[k]
    allowed = np.ascontiguousarray(env.ref_probs[x] > 0)
    n_u, n_k = tl.token_logit_setup(z, allowed, data, k, env.horizon, work)
    h_pair = np.empty((data.pair_ptr[k + 1] - data.pair_ptr[k], 3))
    h_bonus = np.empty(data.bonus_ptr[k + 1] - data.bonus_ptr[k])
    value = tl.token_logit_objective(work.z, n_u, n_k, data, k, loss, True, work, h_pair, h_bonus)
    states = work.local_state[:n_k].copy()
    grad = np.zeros_like(z)
    grad[states] = work.grad[:n_k]

    def hessian_vector(v):
        local = np.zeros_like(work.z)
        local[:n_k] = v[states]
        out = np.zeros_like(work.z)
        tl.token_logit_hessian_vector(local, n_u, n_k, data, k, work, h_pair, h_bonus, out)
        full = np.zeros_like(z)
        full[states] = out[:n_k]
        return full

    return value, grad, hessian_vector, (n_u, n_k)


# ----------------------------------------------------------------------------- kernels vs numpy
@pytest.mark.fast
@pytest.mark.parametrize("pair_kind,param,bonus_kind,alpha", KINDS)
def test_objective_gradient_and_hessian_vector_match_numpy(pair_kind, param, bonus_kind, alpha):
    env = env_with_zero_reference()
    rng = make_rng(pair_kind * 10 + bonus_kind)
    data = random_data(env, rng, 8, 4)
    loss = LossParameters(pair_kind, param, bonus_kind, alpha, 0.4)
    work = tl.new_token_logit_work(env.n_leaves, env.n_states, 3, 2)
    for k in range(2):
        allowed = env.ref_probs[data.contexts[k]] > 0
        z = np.where(allowed, rng.standard_normal((env.n_states, 3)), 0.0)
        value, grad, hessian_vector, sizes = local_objective(env, z, data, k, loss, work)
        ref_value, ref_grad = token_logit_objective_numpy(z, allowed, 2, data, k, loss)
        assert value == pytest.approx(ref_value, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-12)
        v = np.where(allowed, rng.standard_normal(z.shape), 0.0)
        eps = 1e-5
        numeric = (token_logit_objective_numpy(z + eps * v, allowed, 2, data, k, loss)[1]
                   - token_logit_objective_numpy(z - eps * v, allowed, 2, data, k, loss)[1]) / (2 * eps)
        np.testing.assert_allclose(hessian_vector(v), numeric, rtol=1e-6, atol=1e-7 * max(1.0, np.abs(numeric).max()))
        tl.token_logit_release(*sizes, work)
        assert np.all(work.leaf_local == -1) and np.all(work.state_local == -1)


@pytest.mark.fast
def test_policy_kernels_match_exact_module():
    env = env_with_zero_reference()
    z = make_rng(2).standard_normal(env.ref_probs.shape)
    allowed = np.ascontiguousarray(env.ref_probs > 0)
    log_policy = np.empty_like(z)
    tl.token_log_policy_into(z, allowed, log_policy)
    masked = np.where(allowed, z, -np.inf)
    expected = masked - np.log(np.exp(masked - masked.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - masked.max(-1, keepdims=True)
    np.testing.assert_allclose(log_policy, expected, atol=1e-13)
    leaf = np.empty(env.n_leaves)
    scratch = np.empty(env.n_states)
    reference = exact.trajectory_logprobs(env, np.exp(log_policy))
    for x in range(2):
        tl.leaf_logprobs_from_token_log_policy(log_policy, x, leaf, scratch)
        np.testing.assert_allclose(leaf, reference[x], atol=1e-12)
        assert np.array_equal(leaf == -np.inf, reference[x] == -np.inf)


@pytest.mark.fast
def test_gradient_step_descends_and_clips_to_the_box():
    env = env_with_zero_reference()
    data = random_data(env, make_rng(5), 6, 3)
    loss = LossParameters(PAIR_DPO, 0.0, BONUS_XPO, 0.2, 0.5)
    work = tl.new_token_logit_work(env.n_leaves, env.n_states, 3, 2)
    x = data.contexts[0]
    allowed = np.ascontiguousarray(env.ref_probs[x] > 0)
    z = np.where(allowed, make_rng(1).uniform(-1, 1, (env.n_states, 3)), 0.0)
    before, grad, _, sizes = local_objective(env, z, data, 0, loss, work)
    tl.token_logit_release(*sizes, work)
    start = z.copy()
    assert tl.token_logit_gradient_step_context(z, allowed, data, 0, loss, 2.0, 1e-3, work) == pytest.approx(before)
    np.testing.assert_allclose(z, np.where(allowed, start - 1e-3 * grad, start), rtol=1e-13, atol=1e-15)
    after = token_logit_objective_numpy(z, allowed, 2, data, 0, loss)[0]
    assert after < before
    tl.token_logit_gradient_step_context(z, allowed, data, 0, loss, 2.0, 1e6, work)
    assert np.abs(z).max() == 2.0


# ----------------------------------------------------------------------------- argmin vs scipy
@pytest.mark.parametrize("pair_kind,param", [(PAIR_DPO, 0.0), (PAIR_IPO, 1.0)])
def test_argmin_matches_scipy_on_convex_bandit(pair_kind, param):
    """H = 1: l(tau+) - l(tau-) = z(tau+) - z(tau-) is linear in z, so DPO / IPO are convex."""
    for seed in range(3):
        env = random_token_mdp(1, 6, 1, seed=seed)
        data = random_data(env, make_rng(seed + 30), 12, 0, perturb_reference=False)
        loss = LossParameters(pair_kind, param, BONUS_NONE, 0.0, 0.5)
        bound = 3.0
        work = tl.new_token_logit_work(env.n_leaves, 1, 6, 1)
        z0, _ = tl.centered_log_probabilities(env.ref_probs)
        z = np.clip(z0[0], -bound, bound)
        allowed = np.ascontiguousarray(env.ref_probs[0] > 0)
        value, status, _, _, _, _ = tl.token_logit_solve_context(z, allowed, data, 0, loss, bound, 1e-11, 200,
                                                              np.zeros((0, 6)), 1e-9, work)
        assert status == tl.STATUS_CONVERGED
        _, ref_value, _ = solve_token_logit_scipy(np.clip(z0[0], -bound, bound), allowed, 1, data, 0, loss, bound)
        assert value == pytest.approx(ref_value, rel=1e-9, abs=1e-9)
        assert np.abs(z).max() <= bound


def test_argmin_not_worse_than_scipy_on_nonconvex_xpo():
    """H = 2, XPO: our warm-started multi-start Newton-CG ends at or below scipy's L-BFGS-B from the warm start."""
    restarts = 6
    for seed in range(3):
        env = random_token_mdp(2, 3, 2, seed=seed)
        data = random_data(env, make_rng(seed + 40), 14, 8, perturb_reference=False)
        loss = LossParameters(PAIR_DPO, 0.0, BONUS_XPO, 0.3, 0.5)
        bound = 3.0
        work = tl.new_token_logit_work(env.n_leaves, env.n_states, 3, 2)
        z0, _ = tl.centered_log_probabilities(env.ref_probs)
        starts = make_rng(seed).random((restarts, env.n_states * 3))
        for k in range(2):
            x = data.contexts[k]
            allowed = np.ascontiguousarray(env.ref_probs[x] > 0)
            z = np.clip(z0[x], -bound, bound)
            value, status, _, _, _, _ = tl.token_logit_solve_context(z, allowed, data, k, loss, bound, 1e-11, 500,
                                                                  starts, 1e-9, work)
            assert status == tl.STATUS_CONVERGED
            _, ref_value, _ = solve_token_logit_scipy(np.clip(z0[x], -bound, bound), allowed, 2, data, k, loss, bound)
            assert value <= ref_value + 1e-9
            ref_at_ours, grad = token_logit_objective_numpy(z, allowed, 2, data, k, loss)
            assert ref_at_ours == pytest.approx(value, rel=1e-12)
            assert box_projected_gradient_numpy(z, grad, allowed, context_terms(data, k, loss), bound) <= 1e-10


def test_solution_is_stationary_and_untouched_states_keep_their_logits():
    env = random_token_mdp(1, 3, 3, seed=5)
    data = make_leaf_data(env.trajectory_ref_logprobs, [0], [0, 0], [0, 1], [2, 0], [2.0, 1.0], [0], [5], [1.0])
    loss = LossParameters(PAIR_DPO, 0.0, BONUS_XPO, 0.2, 0.5)
    work = tl.new_token_logit_work(env.n_leaves, env.n_states, 3, 3)
    z = make_rng(0).uniform(-1, 1, (env.n_states, 3))
    before = z.copy()
    allowed = np.ones((env.n_states, 3), dtype=np.bool_)
    _, status, _, _, _, changed = tl.token_logit_solve_context(z, allowed, data, 0, loss, 2.0, 1e-10, 300,
                                                            np.zeros((0, 39)), 1e-9, work)
    assert status == tl.STATUS_CONVERGED and changed
    # states on the paths of leaves 0, 1, 2, 5: root (0), prefix (0) = state 1, prefixes (0,0), (0,1) = states 4, 5
    touched = {0, 1, 4, 5}
    untouched = [s for s in range(env.n_states) if s not in touched]
    np.testing.assert_array_equal(z[untouched], before[untouched])
    assert not np.array_equal(z[sorted(touched)], before[sorted(touched)])


# ----------------------------------------------------------------------------- class, realizability, views
@pytest.mark.fast
def test_realizability_and_default_bound():
    env = env_with_zero_reference()
    beta = 0.2
    cls = tl.TokenLogitClass()
    arrays = env_arrays(env)
    state = cls.create_state(env, arrays, beta, SolverSettings())
    needed = tl.realizability_bound(env, beta)
    assert state.bound == pytest.approx(1.0 + needed)
    optimum = exact.solve(env, beta)
    z_star, spread = tl.centered_log_probabilities(optimum.policy)
    assert np.abs(z_star).max() <= needed + 1e-12 <= state.bound
    state.z[:] = z_star
    np.testing.assert_allclose(cls.token_policy(env, state), optimum.policy, atol=1e-12)
    # the initial iterate is pi_ref, and tokens pi_ref never emits have probability 0
    fresh = cls.create_state(env, arrays, beta, SolverSettings())
    np.testing.assert_allclose(cls.token_policy(env, fresh), env.ref_probs, atol=1e-12)
    assert np.all(cls.token_policy(env, state)[env.ref_probs == 0] == 0.0)
    # a box smaller than pi*'s largest half-spread cannot hold pi*
    clipped = state._replace(z=np.clip(z_star, -0.9 * spread.max(), 0.9 * spread.max()))
    assert np.abs(cls.token_policy(env, clipped) - optimum.policy).max() > 1e-3


@pytest.mark.fast
def test_view_matches_exact_evaluation_of_token_policy():
    env = env_with_zero_reference()
    beta = 0.3
    arrays = env_arrays(env)
    cls = tl.TokenLogitClass(bound=4.0)
    state = cls.create_state(env, arrays, beta, SolverSettings())
    view = cls.initial_view(arrays, state)
    state.z[:] = np.clip(make_rng(3).standard_normal(state.z.shape) * 2, -4, 4)
    tl.token_logit_write_view(state.z, state.allowed, state.log_policy, view, np.ones(2, dtype=np.bool_),
                              state.leaf_logp, state.scratch)
    policy = cls.token_policy(env, state)
    evaluation = exact.evaluate(env, policy, beta)
    logp = exact.trajectory_logprobs(env, policy)
    for x in range(2):
        value, _, kl = view_context_stats(view, arrays, beta, x)
        assert value == pytest.approx(evaluation.value_per_context[x], abs=1e-12)
        assert kl == pytest.approx(evaluation.kl_per_context[x], abs=1e-12)
        np.testing.assert_allclose(view.slot_logw[x] - view.log_partition[x], logp[x], atol=1e-12)


@pytest.mark.fast
def test_validation_errors():
    env = env_with_zero_reference()
    with pytest.raises(ValueError, match="bound"):
        tl.TokenLogitClass(bound=0.0)
    _, spread = tl.centered_log_probabilities(env.ref_probs)
    with pytest.raises(ValueError, match="half-spread of log pi_ref"):
        tl.TokenLogitClass(bound=0.5 * spread.max()).validate(env)
    tl.TokenLogitClass(bound=spread.max()).validate(env)
    with pytest.raises(ValueError, match="rng must be a numpy.random.Generator when settings.restarts = 1"):
        tl.TokenLogitClass(bound=5.0).create_state(env, env_arrays(env), 0.5, SolverSettings(restarts=1))
    state = tl.TokenLogitClass(bound=5.0).create_state(env, env_arrays(env), 0.5, SolverSettings(restarts=2),
                                                       rng=np.random.default_rng(0))
    assert state.starts.shape == (2, state.z.shape[1] * state.z.shape[2])
    assert np.all((state.starts >= 0.0) & (state.starts < 1.0))


# ----------------------------------------------------------------------------- under the learner engine
def _run(env, name, seed, rounds=40, **overrides):
    from xposim.learners.registry import make_learner
    from xposim.learners.runner import run_learner

    return run_learner(env, make_learner(name, **overrides), beta=0.3, rounds=rounds, seed=seed,
                       policy_class=tl.TokenLogitClass())


@pytest.mark.parametrize("name,overrides", [("xpo", {"alpha": 0.02}), ("online_dpo", {}),
                                            ("xpo", {"alpha": 0.02, "solver": SolverSettings(restarts=2)}),
                                            ("xpo_trl", {"alpha": 0.02})])
def test_runs_under_the_engine_deterministically(name, overrides):
    env = random_token_mdp(2, 3, 2, seed=7)
    first = _run(env, name, 1, **overrides)
    second = _run(env, name, 1, **overrides)
    np.testing.assert_array_equal(first.metrics, second.metrics)
    assert first.counters[1] == 0  # no solver failures
    assert first.final_value == pytest.approx(exact.evaluate(env, first.token_policy(), 0.3).value, abs=1e-10)
    assert not np.array_equal(first.metrics, _run(env, name, 2, **overrides).metrics)


def test_engine_iterate_is_a_token_softmax_inside_the_box():
    env = random_token_mdp(1, 3, 2, seed=9)
    result = _run(env, "xpo", 3, rounds=60, alpha=0.05)
    policy = result.token_policy()
    bound = tl.TokenLogitClass().resolved_bound(env, 0.3)
    with np.errstate(divide="ignore"):
        logp = np.log(policy)
    spread = logp.max(axis=2) - logp.min(axis=2)
    assert spread.max() <= 2 * bound + 1e-9
    assert np.abs(policy - env.ref_probs).max() > 1e-3  # it learned something


class TestTokenLogitClassContract(PolicyClassContract):
    """The interface contract (xposim.testing) on the token-logit class (generic loop)."""

    def make_env(self):
        return env_with_zero_reference()

    def make_policy_class(self):
        return tl.TokenLogitClass(bound=5.0)


def test_offline_dpo_runs_on_a_class_without_fused_loop_and_returns_the_argmin():
    """Offline learners on the token-logit class (the runner's generic offline path): the policy is
    the minimizer of DPO's loss over the box of logits, checked against scipy (convex problem)."""
    from scipy.optimize import minimize
    from scipy.special import logsumexp

    from xposim.learners import make_learner, run_learner
    from xposim.policies.store import store_gather
    from xposim.policies.token_logit import TokenLogitClass

    env = random_token_mdp(1, 5, 1, seed=8)
    beta = 0.2
    pclass = TokenLogitClass()
    result = run_learner(env, make_learner("dpo"), beta, 300, seed=4, policy_class=pclass)
    size = result.store.edge_weight.shape[0]
    chosen, rejected, weight = np.empty(size, np.int64), np.empty(size, np.int64), np.empty(size)
    n = store_gather(result.store, 0, chosen, rejected, weight)
    leaf = result.view.slot_leaf[0]
    chosen, rejected, weight = leaf[chosen[:n]], leaf[rejected[:n]], weight[:n]
    log_ref = env.trajectory_ref_logprobs[0]
    bound = pclass.resolved_bound(env, beta)

    def loss(z):
        log_ratio = z - logsumexp(z) - log_ref
        margin = beta * (log_ratio[chosen] - log_ratio[rejected])
        return float(np.sum(weight * np.logaddexp(0.0, -margin)))

    best = min((minimize(loss, start, method="L-BFGS-B", bounds=[(-bound, bound)] * env.n_leaves,
                         options={"ftol": 1e-15, "gtol": 1e-12}) for start in (log_ref - log_ref.mean(), np.zeros(5))),
               key=lambda r: r.fun)
    got = result.leaf_logprobs()[0]
    assert loss(got) <= best.fun + 1e-8 * max(1.0, best.fun)
    assert result.metrics[-1][list(result.columns).index("uncertified_solves")] == 0
