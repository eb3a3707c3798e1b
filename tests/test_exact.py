"""Exact solver, policy evaluation and trajectory quantities against an independent brute force.

The brute force below enumerates token sequences with ``itertools.product``, walks the tree by
the heap rule of ``docs/architecture.md`` and works with trajectory-level distributions only
(Gibbs ``pi*(tau|x) = pi_ref(tau|x) e^{r(tau)/beta} / Z(x)``, THEORY 2); it shares no code with
``xposim.exact`` or its kernels.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from xposim import _exact_kernels as kernels
from xposim import exact
from xposim.envs import TokenMDP, random_token_mdp, two_arm_lower_bound
from xposim.reference import exact_numpy
from xposim.seeding import make_rng

TOL = 1e-10

# (n_contexts, vocab_size, horizon, reward kind)
INSTANCES = [
    (3, 2, 1, "terminal"),
    (2, 4, 1, "dense"),
    (3, 2, 4, "terminal"),
    (2, 3, 3, "dense"),
    (2, 4, 3, "terminal"),
    (1, 4, 4, "dense"),
    (3, 3, 2, "dense"),
]
SMALL_INSTANCES = [(2, 2, 2, "dense"), (2, 3, 2, "terminal")]
BETAS = [0.05, 0.3, 2.0]


# ----------------------------------------------------------------------------- brute force
def enumerate_trajectories(vocab_size: int, horizon: int, n_states: int):
    """``(tokens, states visited, leaf index)`` for every token sequence, by walking the tree."""
    rows = []
    for tokens in itertools.product(range(vocab_size), repeat=horizon):
        states, node = [], 0
        for a in tokens:
            states.append(node)
            node = vocab_size * node + 1 + a
        rows.append((tokens, states, node - n_states))
    return rows


def brute_force_trajectories(env: TokenMDP, policy: np.ndarray | None = None):
    """Per context and leaf: ``pi_ref(tau|x)``, ``r(tau)`` and, if given, ``pi(tau|x)`` (products)."""
    rows = enumerate_trajectories(env.vocab_size, env.horizon, env.n_states)
    n_leaves = len(rows)
    ref = np.zeros((env.n_contexts, n_leaves))
    reward = np.zeros((env.n_contexts, n_leaves))
    prob = np.zeros((env.n_contexts, n_leaves))
    for x in range(env.n_contexts):
        for tokens, states, leaf in rows:
            ref[x, leaf] = math.prod(env.ref_probs[x, s, a] for s, a in zip(states, tokens))
            reward[x, leaf] = sum(env.rewards[x, s, a] for s, a in zip(states, tokens))
            if policy is not None:
                prob[x, leaf] = math.prod(policy[x, s, a] for s, a in zip(states, tokens))
    return ref, reward, prob


def brute_force_gibbs(ref: np.ndarray, reward: np.ndarray, beta: float):
    """Trajectory-level optimum ``pi*(tau|x)`` and ``log Z(x)`` (shifted for stability)."""
    shift = reward.max(axis=1, keepdims=True) / beta
    weights = ref * np.exp(reward / beta - shift)
    z = weights.sum(axis=1)
    return weights / z[:, None], np.log(z) + shift[:, 0]


def brute_force_log_gibbs(ref: np.ndarray, reward: np.ndarray, beta: float) -> np.ndarray:
    """``log pi*(tau|x)`` in the log domain (no underflow at tiny ``beta``; ``-inf`` where ``pi_ref = 0``)."""
    with np.errstate(divide="ignore"):
        logits = np.log(ref) + reward / beta
    top = logits.max(axis=1, keepdims=True)
    return logits - (top + np.log(np.exp(logits - top).sum(axis=1, keepdims=True)))


def kl_rows(p: np.ndarray, q: np.ndarray, log_q: np.ndarray | None = None) -> np.ndarray:
    """``sum_tau p log(p/q)`` per row with ``0 log 0 = 0``; ``log_q`` (if given) replaces ``log q``."""
    out = np.zeros(p.shape[0])
    for x in range(p.shape[0]):
        for i, (a, b) in enumerate(zip(p[x], q[x])):
            if a > 0:
                out[x] += a * (math.log(a) - (log_q[x, i] if log_q is not None else math.log(b)))
    return out


def brute_force_objective(env: TokenMDP, traj_prob, ref, reward, beta):
    reward_pc = (traj_prob * reward).sum(axis=1)
    kl_pc = kl_rows(traj_prob, ref)
    return reward_pc - beta * kl_pc, reward_pc, kl_pc


def token_marginals(env: TokenMDP, traj_prob: np.ndarray):
    """``pi(a|s) = P(s, a) / P(s)`` from a trajectory distribution; NaN rows where ``P(s) = 0``."""
    rows = enumerate_trajectories(env.vocab_size, env.horizon, env.n_states)
    mass = np.zeros(env.ref_probs.shape)
    for x in range(env.n_contexts):
        for tokens, states, leaf in rows:
            for s, a in zip(states, tokens):
                mass[x, s, a] += traj_prob[x, leaf]
    state_mass = mass.sum(axis=2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return mass / state_mass, state_mass[:, :, 0]


def random_policy(env: TokenMDP, seed: int, sparse: bool = False) -> np.ndarray:
    rng = make_rng(seed)
    policy = rng.dirichlet(np.ones(env.vocab_size), size=env.ref_probs.shape[:2])
    if sparse:  # exact zeros, at least one positive entry per row
        keep = rng.random(policy.shape) < 0.6
        keep[np.arange(policy.shape[0])[:, None], np.arange(policy.shape[1])[None, :], rng.integers(0, env.vocab_size, policy.shape[:2])] = True
        policy = np.where(keep, policy, 0.0)
        policy /= policy.sum(axis=2, keepdims=True)
    return policy


def make_env(n_contexts, vocab_size, horizon, reward, seed=0, rho_concentration=1.0):
    return random_token_mdp(
        n_contexts, vocab_size, horizon, seed=seed, reward=reward, rho_concentration=rho_concentration
    )


def env_with_zero_reference(seed: int = 3) -> TokenMDP:
    """Random instance where some reference probabilities are exactly 0 (never a whole row)."""
    base = make_env(2, 3, 3, "dense", seed=seed)
    rng = make_rng(seed + 100)
    ref = base.ref_probs.copy()
    zero = rng.random(ref.shape) < 0.3
    zero[:, :, 0] = False
    zero[0, 0] = [False, False, True]  # the root of context 0 has a zero-reference token (token 2)
    ref[zero] = 0.0
    ref /= ref.sum(axis=2, keepdims=True)
    return TokenMDP.from_arrays(base.rho, ref, base.rewards, r_max=base.r_max)


# ----------------------------------------------------------------------------- solve
@pytest.mark.parametrize("instance", INSTANCES)
@pytest.mark.parametrize("beta", BETAS)
def test_solve_matches_brute_force(instance, beta):
    env = make_env(*instance, seed=sum(instance[:3]))
    solution = exact.solve(env, beta)
    ref, reward, _ = brute_force_trajectories(env)
    gibbs, log_z = brute_force_gibbs(ref, reward, beta)
    value_pc, _, _ = brute_force_objective(env, gibbs, ref, reward, beta)
    # V*(x) = beta log Z(x) = J_beta(pi*) on x, and the overall value
    np.testing.assert_allclose(solution.V[:, 0], beta * log_z, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(solution.value_per_context, value_pc, rtol=TOL, atol=TOL)
    assert solution.value == pytest.approx(float(env.rho @ value_pc), rel=TOL, abs=TOL)
    assert solution.beta == beta
    # token-level pi* = marginals of the trajectory-level Gibbs policy
    marginals, state_mass = token_marginals(env, gibbs)
    reachable = state_mass > 0
    np.testing.assert_allclose(solution.policy[reachable], marginals[reachable], rtol=0, atol=TOL)
    np.testing.assert_allclose(np.exp(solution.log_policy), solution.policy, rtol=1e-13, atol=0)
    # Q*(s, a) = r(s, a) + V*(child), V*(leaf) = 0
    for s in range(env.n_states):
        for a in range(env.vocab_size):
            child = env.vocab_size * s + 1 + a
            child_value = solution.V[:, child] if child < env.n_states else 0.0
            np.testing.assert_allclose(solution.Q[:, s, a], env.rewards[:, s, a] + child_value, rtol=0, atol=1e-14)


@pytest.mark.fast
@pytest.mark.parametrize("instance", SMALL_INSTANCES)
def test_solve_small_matches_brute_force(instance):
    env = make_env(*instance, seed=7)
    beta = 0.2
    solution = exact.solve(env, beta)
    ref, reward, _ = brute_force_trajectories(env)
    gibbs, log_z = brute_force_gibbs(ref, reward, beta)
    np.testing.assert_allclose(solution.V[:, 0], beta * log_z, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(exact.trajectory_probabilities(env, solution.policy), gibbs, rtol=0, atol=TOL)


@pytest.mark.fast
def test_solution_arrays_are_read_only_and_shaped():
    env = make_env(2, 3, 2, "dense")
    solution = exact.solve(env, 0.5)
    assert solution.policy.shape == solution.log_policy.shape == solution.Q.shape == env.ref_probs.shape
    assert solution.V.shape == (env.n_contexts, env.n_states)
    assert solution.value_per_context.shape == (env.n_contexts,)
    with pytest.raises(ValueError):
        solution.policy[0, 0, 0] = 1.0
    with pytest.raises(AttributeError):
        solution.value = 0.0


# ----------------------------------------------------------------------------- evaluate
@pytest.mark.parametrize("instance", INSTANCES)
@pytest.mark.parametrize("sparse", [False, True])
def test_evaluate_matches_brute_force(instance, sparse):
    env = make_env(*instance, seed=11 + sum(instance[:3]))
    beta = 0.4
    for k in range(3):
        policy = random_policy(env, seed=100 * k + sum(instance[:3]), sparse=sparse)
        ref, reward, prob = brute_force_trajectories(env, policy)
        value_pc, reward_pc, kl_pc = brute_force_objective(env, prob, ref, reward, beta)
        evaluation = exact.evaluate(env, policy, beta)
        np.testing.assert_allclose(evaluation.value_per_context, value_pc, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(evaluation.reward_per_context, reward_pc, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(evaluation.kl_per_context, kl_pc, rtol=TOL, atol=TOL)
        assert evaluation.value == pytest.approx(float(env.rho @ value_pc), rel=TOL, abs=TOL)
        assert evaluation.reward == pytest.approx(float(env.rho @ reward_pc), rel=TOL, abs=TOL)
        assert evaluation.kl == pytest.approx(float(env.rho @ kl_pc), rel=TOL, abs=TOL)
        assert evaluation.value == pytest.approx(evaluation.reward - beta * evaluation.kl, rel=TOL, abs=TOL)
        assert exact.kl_regularized_value(env, policy, beta) == evaluation.value


@pytest.mark.fast
def test_evaluate_reference_policy_has_zero_kl_and_reference_reward():
    env = make_env(2, 3, 2, "dense", seed=5)
    evaluation = exact.evaluate(env, env.ref_probs, 0.7)
    ref, reward, _ = brute_force_trajectories(env)
    np.testing.assert_allclose(evaluation.kl_per_context, 0.0, atol=1e-15)
    np.testing.assert_allclose(evaluation.reward_per_context, (ref * reward).sum(axis=1), rtol=TOL, atol=TOL)


# ----------------------------------------------------------------------------- trajectories
@pytest.mark.parametrize("instance", INSTANCES)
def test_trajectory_logprobs_match_brute_force(instance):
    env = make_env(*instance, seed=23)
    policy = random_policy(env, seed=29, sparse=True)
    _, _, prob = brute_force_trajectories(env, policy)
    logprobs = exact.trajectory_logprobs(env, policy)
    assert logprobs.shape == (env.n_contexts, env.n_leaves)
    positive = prob > 0
    np.testing.assert_allclose(logprobs[positive], np.log(prob[positive]), rtol=0, atol=TOL)
    assert np.all(logprobs[~positive] == -np.inf)
    probabilities = exact.trajectory_probabilities(env, policy)
    np.testing.assert_allclose(probabilities, prob, rtol=0, atol=TOL)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.fast
def test_leaf_numbering_is_base_a_integer_of_tokens():
    env = make_env(1, 3, 3, "terminal")
    for tokens, _, leaf in enumerate_trajectories(3, 3, env.n_states):
        assert leaf == int("".join(str(t) for t in tokens), 3)
    # a deterministic policy following tokens (2, 0, 1) puts all mass on leaf 2*9 + 0*3 + 1 = 19
    policy = np.zeros(env.ref_probs.shape)
    policy[:, :, 0] = 1.0
    policy[0, 0] = [0, 0, 1]          # root: token 2 -> state 3
    policy[0, 3] = [1, 0, 0]          # state 3: token 0 -> state 3*3 + 1 = 10
    policy[0, 10] = [0, 1, 0]         # state 10: token 1 -> leaf 3*10 + 2 - 13 = 19
    probabilities = exact.trajectory_probabilities(env, policy)
    assert probabilities[0, 19] == 1.0 and probabilities.sum() == 1.0


@pytest.mark.parametrize("instance", INSTANCES)
@pytest.mark.parametrize("beta", [0.1, 1.5])
def test_policy_from_leaf_values_matches_brute_force(instance, beta):
    env = make_env(*instance, seed=31)
    values = make_rng(37).normal(scale=2.0, size=(env.n_contexts, env.n_leaves))
    policy, log_partition = exact.policy_from_leaf_values(env, values, beta)
    ref, _, _ = brute_force_trajectories(env)
    gibbs, log_z = brute_force_gibbs(ref, values, beta)
    np.testing.assert_allclose(log_partition, log_z, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(exact.trajectory_probabilities(env, policy), gibbs, rtol=0, atol=TOL)
    # with f = r (terminal) the class member is pi*_beta
    if instance[3] == "terminal":
        solution = exact.solve(env, beta)
        policy_r, log_partition_r = exact.policy_from_leaf_values(env, env.trajectory_rewards, beta)
        np.testing.assert_allclose(policy_r, solution.policy, rtol=0, atol=TOL)
        np.testing.assert_allclose(beta * log_partition_r, solution.value_per_context, rtol=TOL, atol=TOL)


@pytest.mark.fast
def test_soft_backup_kernel_returns_log_partition_and_writes_buffer():
    env = make_env(2, 2, 3, "terminal", seed=41)
    values = make_rng(43).normal(size=(env.n_contexts, env.n_leaves))
    out = np.full(env.ref_probs.shape, np.nan)
    log_partition = kernels.soft_backup_leaf_values(env.ref_probs, env.log_ref_probs, values, 0.5, out)
    expected_log_policy, expected_log_partition = exact_numpy.soft_backup_leaf_values_numpy(env.ref_probs, env.log_ref_probs, values, 0.5)
    np.testing.assert_allclose(log_partition, expected_log_partition, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(out, expected_log_policy, rtol=1e-13, atol=1e-13)


# ----------------------------------------------------------------------------- numba vs numpy
@pytest.mark.fast
@pytest.mark.parametrize("case", ["dense", "terminal", "zero_reference"])
@pytest.mark.parametrize("beta", [1e-6, 0.3, 1e17])
def test_kernels_match_numpy_reference(case, beta):
    if case == "zero_reference":
        env = env_with_zero_reference()
    else:
        env = make_env(2, 3, 3, case, seed=47)
    solution = exact.solve(env, beta)
    policy, log_policy, q, v = exact_numpy.soft_value_iteration_numpy(env.ref_probs, env.log_ref_probs, env.rewards, beta)
    np.testing.assert_allclose(solution.policy, policy, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(solution.log_policy == -np.inf, log_policy == -np.inf)
    finite = np.isfinite(log_policy)
    np.testing.assert_allclose(solution.log_policy[finite], log_policy[finite], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(solution.Q, q, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(solution.V, v, rtol=1e-13, atol=1e-14)
    for candidate in (solution.policy, random_policy(env, 53, sparse=True), env.ref_probs):
        evaluation = exact.evaluate(env, candidate, beta)
        reward, kl = exact_numpy.policy_reward_and_kl_numpy(candidate, env.ref_probs, env.rewards)
        np.testing.assert_allclose(evaluation.reward_per_context, reward, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(evaluation.kl_per_context, np.maximum(kl, 0.0), rtol=1e-12, atol=0)
    logprobs = exact.trajectory_logprobs(env, solution)  # from log pi*: no underflow at small beta
    expected = exact_numpy.trajectory_logprobs_numpy(log_policy)
    np.testing.assert_array_equal(logprobs == -np.inf, expected == -np.inf)
    finite = np.isfinite(expected)
    np.testing.assert_allclose(logprobs[finite], expected[finite], rtol=1e-13, atol=1e-13)
    values = make_rng(59).normal(size=(env.n_contexts, env.n_leaves))
    policy_f, log_partition = exact.policy_from_leaf_values(env, values, beta)
    log_policy_f, log_partition_np = exact_numpy.soft_backup_leaf_values_numpy(env.ref_probs, env.log_ref_probs, values, beta)
    np.testing.assert_allclose(policy_f, np.exp(log_policy_f), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(log_partition, log_partition_np, rtol=1e-13, atol=1e-13)


@pytest.mark.fast
def test_policy_validation_kernel_matches_numpy_checks():
    rng = make_rng(61)
    base = rng.dirichlet(np.ones(3), size=(2, 4))
    cases = {"ok": base.copy()}
    for name, (x, s, a, value) in {
        "nan": (1, 2, 0, np.nan), "inf": (0, 3, 1, np.inf), "negative": (1, 1, 2, -0.1), "unnormalized": (0, 2, 1, 0.9)
    }.items():
        bad = base.copy()
        bad[x, s, a] = value
        cases[name] = bad
    for name, array in cases.items():
        code, x, s = kernels.find_invalid_policy_row(array, 1e-9)
        finite = np.all(np.isfinite(array), axis=2)
        non_negative = np.all(np.nan_to_num(array, nan=0.0) >= 0, axis=2)
        normalized = np.abs(array.sum(axis=2) - 1.0) <= 1e-9
        valid = finite & non_negative & normalized
        if name == "ok":
            assert (code, x, s) == (kernels.POLICY_OK, -1, -1) and valid.all()
        else:
            assert not valid[x, s] and valid.reshape(-1)[: x * array.shape[1] + s].all()
            expected = (
                kernels.POLICY_NOT_FINITE if not finite[x, s]
                else kernels.POLICY_NEGATIVE if not non_negative[x, s]
                else kernels.POLICY_NOT_NORMALIZED
            )
            assert code == expected


# ----------------------------------------------------------------------------- zero reference / extreme beta
@pytest.mark.fast
def test_zero_reference_probabilities_give_zero_policy_and_infinite_kl():
    env = env_with_zero_reference()
    zero = env.ref_probs == 0
    assert zero.any()
    solution = exact.solve(env, 0.3)
    assert np.all(solution.policy[zero] == 0.0) and np.all(solution.log_policy[zero] == -np.inf)
    assert np.all(np.isfinite(solution.V)) and np.all(np.isfinite(solution.Q))
    assert not np.any(np.isnan(solution.log_policy))
    # mass on a zero-reference token at the root of context 0: KL = +inf, value = -inf, reward finite
    x = 0
    policy = env.ref_probs.copy()
    policy[x, 0] = 0.0
    policy[x, 0, 2] = 1.0
    evaluation = exact.evaluate(env, policy, 0.3)
    assert evaluation.kl_per_context[x] == np.inf and evaluation.value_per_context[x] == -np.inf
    assert evaluation.kl == np.inf and evaluation.value == -np.inf
    assert np.all(np.isfinite(evaluation.reward_per_context))
    assert not np.any(np.isnan(evaluation.value_per_context))
    rewards = exact.implicit_rewards(env, policy, 0.3)
    assert not np.any(np.isnan(rewards)) and np.any(rewards == np.inf)


@pytest.mark.fast
def test_mass_on_zero_reference_token_in_unreachable_state_does_not_matter():
    env = env_with_zero_reference()
    zero = env.ref_probs == 0
    # a deterministic policy choosing token 0 (never zero-reference here) everywhere ...
    policy = np.zeros(env.ref_probs.shape)
    policy[:, :, 0] = 1.0
    before = exact.evaluate(env, policy, 0.3)
    # ... changed only in states it never reaches, to put all mass on zero-reference tokens
    unreachable = [s for s in range(1, env.n_states) if (s - 1) % env.vocab_size != 0]
    changed = policy.copy()
    for x in range(env.n_contexts):
        for s in unreachable:
            if zero[x, s].any():
                changed[x, s] = 0.0
                changed[x, s, np.argmax(zero[x, s])] = 1.0
    assert not np.array_equal(changed, policy)
    after = exact.evaluate(env, changed, 0.3)
    assert np.isfinite(after.value) and after.value == before.value and after.kl == before.kl


@pytest.mark.fast
@pytest.mark.parametrize("beta", [1e-6, 1e-3, 1.0, 1e3, 1e6])
def test_extreme_beta_gives_finite_numbers_and_correct_limits(beta):
    env = make_env(2, 3, 2, "dense", seed=67)
    solution = exact.solve(env, beta)
    for array in (solution.policy, solution.V, solution.Q, solution.value_per_context):
        assert np.all(np.isfinite(array))
    np.testing.assert_allclose(solution.policy.sum(axis=2), 1.0, atol=1e-12)
    optimum = exact.evaluate(env, solution.policy, beta)
    reference = exact.evaluate(env, env.ref_probs, beta)
    assert np.isfinite(optimum.value) and np.isfinite(optimum.kl) and np.isfinite(reference.value)
    assert optimum.value == pytest.approx(solution.value, rel=1e-9, abs=1e-9 * max(1.0, beta * 1e-6))
    assert solution.value >= reference.value - 1e-12
    best = env.trajectory_rewards.max(axis=1)
    mean_ref = (np.exp(env.trajectory_ref_logprobs) * env.trajectory_rewards).sum(axis=1)
    min_log_ref = env.trajectory_ref_logprobs.min()
    # V*(x) lies in [max(E_ref r, max r + beta min log pi_ref(tau)), max r] for every beta
    assert np.all(solution.value_per_context <= best + 1e-12)
    assert np.all(solution.value_per_context >= np.maximum(mean_ref, best + beta * min_log_ref) - 1e-9)
    if beta <= 1e-3:
        np.testing.assert_allclose(solution.value_per_context, best, atol=beta * abs(min_log_ref) + 1e-12)
    if beta >= 1e3:
        np.testing.assert_allclose(solution.value_per_context, mean_ref, atol=1.0 / beta)
    values = env.trajectory_rewards
    policy_f, log_partition = exact.policy_from_leaf_values(env, values, beta)
    assert np.all(np.isfinite(policy_f)) and np.all(np.isfinite(log_partition))
    # implicit rewards (Eq. 9) on the trajectories whose pi* probability did not underflow to 0
    implicit = exact.implicit_rewards(env, solution.policy, beta)
    possible = exact.trajectory_probabilities(env, solution.policy) > 0
    assert possible.any(axis=1).all() and np.all(implicit[~possible] == -np.inf)
    expected = env.trajectory_rewards - solution.value_per_context[:, None]
    np.testing.assert_allclose(implicit[possible], expected[possible], rtol=0, atol=1e-9)


@pytest.mark.fast
def test_subnormal_beta_solves_to_the_greedy_limit_and_leaf_value_overflow_raises():
    """The centred solver never forms ``Q/beta``: even ``beta = 1e-320`` gives the reward-greedy
    optimum (it used to raise an overflow error). ``policy_from_leaf_values`` returns
    ``log Z_f = f/beta``-scale numbers, which genuinely overflow, and still refuses."""
    env = make_env(1, 2, 2, "dense", seed=71)
    solution = exact.solve(env, 1e-320)
    best = env.trajectory_rewards.max(axis=1)
    np.testing.assert_allclose(solution.value_per_context, best, rtol=0, atol=1e-15)
    assert np.all(solution.value_per_context <= best)
    probabilities = exact.trajectory_probabilities(env, solution.policy)
    np.testing.assert_array_equal(probabilities, env.trajectory_rewards == best[:, None])
    assert not np.any(np.isnan(solution.log_policy))
    with pytest.raises(ValueError, match="beta"):
        exact.policy_from_leaf_values(env, np.full((1, env.n_leaves), 1e10), 1e-300)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.fast
def test_bad_inputs_raise_value_error_naming_the_argument():
    env = make_env(2, 2, 2, "dense", seed=73)
    good = env.ref_probs.copy()
    for beta in (0.0, -1.0, np.nan, np.inf, True, "0.1", None):
        with pytest.raises(ValueError, match="beta"):
            exact.solve(env, beta)
        with pytest.raises(ValueError, match="beta"):
            exact.evaluate(env, good, beta)
    bad_policies = {
        "shape": good[:, :, :1],
        "negative": np.where(np.arange(2) == 0, -0.5, 1.5) + 0.0 * good,
        "unnormalized": good * 1.01,
        "nan": np.where(good > 0.5, np.nan, good),
    }
    for name, policy in bad_policies.items():
        for call in (
            lambda p: exact.evaluate(env, p, 0.1),
            lambda p: exact.trajectory_logprobs(env, p),
            lambda p: exact.implicit_rewards(env, p, 0.1),
            lambda p: exact.regret_decomposition(env, p, 0.1, good),
        ):
            with pytest.raises(ValueError, match="policy"):
                call(policy)
        with pytest.raises(ValueError, match="comparator"):
            exact.regret_decomposition(env, good, 0.1, policy)
    # rows summing to 1 within 1e-9 are accepted
    nearly = good.copy()
    nearly[:, :, 0] += 5e-10
    assert np.isfinite(exact.evaluate(env, nearly, 0.1).value)
    with pytest.raises(ValueError, match="env"):
        exact.solve("not an env", 0.1)
    with pytest.raises(ValueError, match="leaf_values"):
        exact.policy_from_leaf_values(env, np.zeros((2, env.n_leaves + 1)), 0.1)
    with pytest.raises(ValueError, match="leaf_values"):
        exact.policy_from_leaf_values(env, np.full((2, env.n_leaves), np.nan), 0.1)
    with pytest.raises(ValueError, match="policy"):
        exact.greedy_policy(np.ones((2, 3)))
    with pytest.raises(ValueError, match="policy"):
        exact.greedy_policy(np.full((1, 1, 2), np.nan))


@pytest.mark.fast
def test_comparator_outside_policy_support_raises():
    env = make_env(1, 2, 2, "dense", seed=79)
    policy = np.zeros(env.ref_probs.shape)
    policy[:, :, 0] = 1.0
    with pytest.raises(ValueError, match="comparator"):
        exact.regret_decomposition(env, policy, 0.2, env.ref_probs)


# ----------------------------------------------------------------------------- greedy
@pytest.mark.fast
def test_greedy_policy_argmax_with_ties_to_lowest_token():
    policy = np.array([[[0.2, 0.5, 0.3], [0.4, 0.2, 0.4], [1 / 3, 1 / 3, 1 / 3]]])
    greedy = exact.greedy_policy(policy)
    np.testing.assert_array_equal(greedy, [[[0, 1, 0], [1, 0, 0], [1, 0, 0]]])
    log_greedy = exact.greedy_policy(np.array([[[-np.inf, np.log(0.4), np.log(0.6)]]]))
    np.testing.assert_array_equal(log_greedy, [[[0, 0, 1]]])


def test_greedy_of_small_beta_optimum_is_reward_maximizing():
    env = make_env(2, 3, 3, "terminal", seed=83)
    greedy = exact.greedy_policy(exact.solve(env, 1e-4).policy)
    evaluation = exact.evaluate(env, greedy, 1.0)
    np.testing.assert_allclose(evaluation.reward_per_context, env.trajectory_rewards.max(axis=1), rtol=0, atol=1e-15)


# ----------------------------------------------------------------------------- property tests
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.sampled_from([(1, 2, 1), (2, 2, 3), (2, 3, 2), (1, 4, 2), (3, 2, 2)]),
    reward=st.sampled_from(["terminal", "dense"]),
    log_beta=st.floats(-3.0, 1.0),
    mix=st.sampled_from([0.0, 1e-6, 1e-3, 0.3, 1.0]),
)
# small beta: pi* probabilities below float64's range in a non-log brute force (a regression)
@example(seed=0, shape=(2, 2, 3), reward="terminal", log_beta=-2.9921875, mix=0.0)
def test_optimum_beats_every_policy_and_gap_is_kl_to_optimum(seed, shape, reward, log_beta, mix):
    """``J(pi*) >= J(pi)``, gap ``= beta E_x KL(pi || pi*)`` (THEORY 2.1.2), zero only at ``pi*``."""
    beta = 10.0**log_beta
    env = make_env(*shape, reward, seed=seed)
    solution = exact.solve(env, beta)
    other = random_policy(env, seed=seed + 1, sparse=bool(seed % 2))
    policy = (1.0 - mix) * solution.policy + mix * other
    gap = solution.value - exact.evaluate(env, policy, beta).value
    ref, reward_traj, prob = brute_force_trajectories(env, policy)
    gibbs, _ = brute_force_gibbs(ref, reward_traj, beta)
    kl = float(env.rho @ kl_rows(prob, gibbs, log_q=brute_force_log_gibbs(ref, reward_traj, beta)))
    assert gap >= -1e-12
    assert gap == pytest.approx(beta * kl, rel=1e-8, abs=1e-11)
    # equality only at pi*: Pinsker bounds the total variation to pi* by the gap
    total_variation = float(env.rho @ (0.5 * np.abs(prob - gibbs).sum(axis=1)))
    assert total_variation <= math.sqrt(max(gap, 0.0) / (2.0 * beta)) + 1e-6
    if mix == 0.0:
        assert abs(gap) <= 1e-12
    elif mix >= 0.3 and total_variation > 1e-3:
        assert gap > 0.0


# ----------------------------------------------------------------------------- the lower-bound instance
@pytest.mark.fast
def test_two_arm_instance_optimum_in_closed_form():
    beta = 0.05
    env = two_arm_lower_bound(beta)
    solution = exact.solve(env, beta)
    p_a = math.exp(-1.0 / (8.0 * beta))
    z = p_a * math.exp(1.0 / beta) + (1.0 - p_a) * math.exp(0.5 / beta)
    assert solution.value == pytest.approx(beta * math.log(z), rel=1e-13)
    assert solution.policy[0, 0, 0] == pytest.approx(p_a * math.exp(1.0 / beta) / z, rel=1e-13)


# ----------------------------------------------------------------------------- memory
@pytest.mark.fast
def test_solve_and_evaluate_refuse_what_cannot_fit(monkeypatch):
    """The working memory (3 per-token outputs and env.log_ref_probs once: 4 arrays of 2,046
    float64, plus 3 per-state arrays of 1,023: 87.9 KiB here) is checked against the available
    memory, with both numbers in the message (requests below MEMORY_CHECK_BYTES skip the check)."""
    env = make_env(1, 2, 10, "dense")
    monkeypatch.setattr(exact, "MEMORY_CHECK_BYTES", 0)
    monkeypatch.setenv("XPOSIM_MEMORY_LIMIT", str(64 << 10))
    with pytest.raises(ValueError, match=r"exact\.solve on .*needs about 87\.9 KiB .*64\.0 KiB available"):
        exact.solve(env, 0.1)
    monkeypatch.setenv("XPOSIM_MEMORY_LIMIT", str(32 << 10))  # evaluate needs log_ref_probs and scratch: 40 KiB
    with pytest.raises(ValueError, match=r"exact\.evaluate on .*needs about 40\.0 KiB .*32\.0 KiB available"):
        exact.evaluate(env, env.ref_probs, 0.1)
    monkeypatch.setenv("XPOSIM_MEMORY_LIMIT", str(1 << 30))
    assert np.isfinite(exact.solve(env, 0.1).value)
