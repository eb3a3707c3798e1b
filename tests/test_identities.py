"""THEORY 2.1: the three identities every implementation must satisfy to ~1e-10, and the
Proposition 2.1 table of THEORY 6.2.

KLs here are computed from trajectory distributions (``exact.trajectory_logprobs``, checked
against a brute force in ``test_exact.py``), independently of ``exact.evaluate``'s token-level
backward pass.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from xposim import exact
from xposim.envs import TokenMDP, random_token_mdp, two_arm_lower_bound
from xposim.seeding import make_rng

TOL = 1e-10

INSTANCES = [
    (3, 2, 1, "terminal"),
    (2, 3, 3, "dense"),
    (2, 4, 2, "terminal"),
    (1, 2, 4, "dense"),
    (3, 3, 2, "terminal"),
]
BETAS = [0.03, 0.25, 3.0]


def make_env(n_contexts, vocab_size, horizon, reward, seed):
    return random_token_mdp(n_contexts, vocab_size, horizon, seed=seed, reward=reward, rho_concentration=2.0)


def random_policy(env: TokenMDP, seed: int, concentration: float = 1.0) -> np.ndarray:
    rng = make_rng(seed)
    return rng.dirichlet(np.full(env.vocab_size, concentration), size=env.ref_probs.shape[:2])


def trajectory_kl(env: TokenMDP, p_logprobs: np.ndarray, q_logprobs: np.ndarray) -> np.ndarray:
    """``KL(p(.|x) || q(.|x))`` per context from trajectory log-probabilities (``0 log 0 = 0``)."""
    p = np.exp(p_logprobs)
    on = p > 0
    return np.where(on, p * (np.where(on, p_logprobs, 0.0) - np.where(on, q_logprobs, 0.0)), 0.0).sum(axis=1)


# ----------------------------------------------------------------------------- identity 1
@pytest.mark.parametrize("instance", INSTANCES)
@pytest.mark.parametrize("beta", BETAS)
def test_implicit_reward_of_optimum_is_reward_minus_value(instance, beta):
    """Eq. 9: ``beta log(pi*(tau|x)/pi_ref(tau|x)) = r(tau) - V*(x)`` for every trajectory."""
    env = make_env(*instance, seed=sum(instance[:3]) + int(100 * beta))
    solution = exact.solve(env, beta)
    implicit = exact.implicit_rewards(env, solution.policy, beta)
    expected = env.trajectory_rewards - solution.value_per_context[:, None]
    assert implicit.shape == (env.n_contexts, env.n_leaves)
    np.testing.assert_allclose(implicit, expected, rtol=0, atol=TOL)


@pytest.mark.fast
def test_implicit_reward_identity_small_and_fails_for_other_policies():
    env = make_env(2, 2, 2, "dense", seed=5)
    beta = 0.2
    solution = exact.solve(env, beta)
    expected = env.trajectory_rewards - solution.value_per_context[:, None]
    np.testing.assert_allclose(exact.implicit_rewards(env, solution.policy, beta), expected, rtol=0, atol=TOL)
    # the identity characterizes pi*: the reference policy (implicit reward 0) violates it
    np.testing.assert_allclose(exact.implicit_rewards(env, env.ref_probs, beta), 0.0, atol=1e-15)
    assert np.max(np.abs(expected)) > 1e-3


# ----------------------------------------------------------------------------- identity 2
@pytest.mark.parametrize("instance", INSTANCES)
@pytest.mark.parametrize("beta", BETAS)
def test_suboptimality_is_beta_times_kl_to_optimum(instance, beta):
    """``J(pi*) - J(pi) = beta E_x KL(pi || pi*)`` [D]."""
    env = make_env(*instance, seed=7 + sum(instance[:3]))
    solution = exact.solve(env, beta)
    optimal_logprobs = exact.trajectory_logprobs(env, solution.policy)
    for k, concentration in enumerate((0.3, 1.0, 5.0)):
        policy = random_policy(env, seed=11 * k + sum(instance[:3]), concentration=concentration)
        gap = solution.value - exact.evaluate(env, policy, beta).value
        kl = float(env.rho @ trajectory_kl(env, exact.trajectory_logprobs(env, policy), optimal_logprobs))
        assert gap > 0
        assert gap == pytest.approx(beta * kl, rel=1e-9, abs=TOL)


# ----------------------------------------------------------------------------- identity 3
@pytest.mark.parametrize("instance", INSTANCES)
@pytest.mark.parametrize("beta", BETAS)
def test_regret_decomposition_holds_for_any_comparator(instance, beta):
    """``J(pi*) - J(pi) = E[f_pi(tau) - f_pi(tau')] + beta E_nu[log pi - log pi*]`` [D]."""
    env = make_env(*instance, seed=13 + sum(instance[:3]))
    solution = exact.solve(env, beta)
    policy = random_policy(env, seed=17 + sum(instance[:3]))
    comparators = {
        "random": random_policy(env, seed=19 + sum(instance[:3]), concentration=0.5),
        "reference": env.ref_probs,
        "policy": policy,
        "optimum": solution.policy,
    }
    suboptimality = solution.value - exact.evaluate(env, policy, beta).value
    for name, comparator in comparators.items():
        decomposition = exact.regret_decomposition(env, policy, beta, comparator)
        assert decomposition.suboptimality == pytest.approx(suboptimality, rel=1e-12, abs=1e-14)
        assert decomposition.total == pytest.approx(decomposition.preference_term + decomposition.bonus_term, abs=1e-15)
        assert decomposition.total == pytest.approx(decomposition.suboptimality, rel=1e-9, abs=TOL), name
    # with nu = pi the preference term vanishes and the bonus is beta KL(pi || pi*);
    # with nu = pi* the bonus is -beta KL(pi* || pi) <= 0
    on_policy = exact.regret_decomposition(env, policy, beta, policy)
    assert on_policy.preference_term == pytest.approx(0.0, abs=TOL)
    assert on_policy.bonus_term == pytest.approx(suboptimality, rel=1e-9, abs=TOL)
    at_optimum = exact.regret_decomposition(env, policy, beta, solution.policy)
    reverse_kl = float(env.rho @ trajectory_kl(
        env, exact.trajectory_logprobs(env, solution.policy), exact.trajectory_logprobs(env, policy)
    ))
    assert at_optimum.bonus_term == pytest.approx(-beta * reverse_kl, rel=1e-9, abs=TOL)


@pytest.mark.fast
def test_regret_decomposition_small_instance_terms_by_hand():
    """Both terms recomputed from their definitions on a bandit (``H = 1``)."""
    env = make_env(2, 3, 1, "terminal", seed=23)
    beta = 0.4
    policy = random_policy(env, seed=29)
    comparator = random_policy(env, seed=31)
    solution = exact.solve(env, beta)
    pi, nu, pi_star, ref, r = policy[:, 0], comparator[:, 0], solution.policy[:, 0], env.ref_probs[:, 0], env.trajectory_rewards
    f = beta * np.log(pi / ref) - r
    preference = float(env.rho @ ((pi * f).sum(axis=1) - (nu * f).sum(axis=1)))
    bonus = float(env.rho @ (beta * (nu * (np.log(pi) - np.log(pi_star))).sum(axis=1)))
    decomposition = exact.regret_decomposition(env, policy, beta, comparator)
    assert decomposition.preference_term == pytest.approx(preference, rel=1e-12, abs=1e-14)
    assert decomposition.bonus_term == pytest.approx(bonus, rel=1e-12, abs=1e-14)
    assert decomposition.total == pytest.approx(decomposition.suboptimality, abs=TOL)


@pytest.mark.fast
def test_regret_decomposition_with_policy_off_reference_support_is_infinite_not_nan():
    base = make_env(1, 3, 1, "terminal", seed=37)
    ref = np.array([[[0.5, 0.5, 0.0]]])
    env = TokenMDP.from_arrays(base.rho, ref, base.rewards)
    policy = np.array([[[0.4, 0.4, 0.2]]])  # mass on the zero-reference arm
    decomposition = exact.regret_decomposition(env, policy, 0.3, env.ref_probs)
    assert decomposition.suboptimality == np.inf and decomposition.total == np.inf
    assert decomposition.preference_term == np.inf and np.isfinite(decomposition.bonus_term)


# ----------------------------------------------------------------------------- Proposition 2.1 table
# THEORY 6.2, as printed: beta -> (pi_ref(a), pi*(a), J(pi*) - J(pi_ref), (1/2) e^{1/(8 beta)})
PROPOSITION_2_1_TABLE = {
    0.02: ("1.9e-3", "1", "0.374", "259"),  # pi*(a) printed as "≈1"
    0.05: ("8.2e-2", "0.9995", "0.334", "6.1"),
    0.10: ("0.29", "0.98", "0.233", "1.75"),
}


def significant_digits(printed: str) -> int:
    mantissa = printed.lower().split("e")[0].replace(".", "").lstrip("0")
    return len(mantissa)


def agrees_with_printed(value: float, printed: str) -> bool:
    """``value`` rounded to the printed number of significant digits (at most 4) equals the print."""
    digits = min(significant_digits(printed), 4)
    return float(f"{value:.{digits}g}") == float(printed)


@pytest.mark.fast
def test_significant_digit_comparison_helper():
    assert significant_digits("1.9e-3") == 2 and significant_digits("0.374") == 3 and significant_digits("259") == 3
    assert agrees_with_printed(0.0019304, "1.9e-3") and not agrees_with_printed(0.00199, "1.9e-3")
    assert agrees_with_printed(1.74517, "1.75") and not agrees_with_printed(1.744, "1.75")
    assert agrees_with_printed(0.99949, "0.9995") and not agrees_with_printed(0.9993, "0.9995")


@pytest.mark.fast
@pytest.mark.parametrize("beta", sorted(PROPOSITION_2_1_TABLE))
def test_proposition_2_1_table(beta):
    env = two_arm_lower_bound(beta)
    solution = exact.solve(env, beta)
    ref_prob_a = float(env.ref_probs[0, 0, 0])
    optimal_prob_a = float(solution.policy[0, 0, 0])
    gap = solution.value - exact.evaluate(env, env.ref_probs, beta).value
    horizon_bound = 0.5 * math.exp(1.0 / (8.0 * beta))
    computed = (ref_prob_a, optimal_prob_a, gap, horizon_bound)
    for value, printed in zip(computed, PROPOSITION_2_1_TABLE[beta]):
        assert agrees_with_printed(value, printed), (beta, value, printed)
    # the gap exceeds 1/8 (the failure threshold of Prop. 2.1) in every row of the table
    assert gap > 1 / 8
    # and it is the KL identity on this instance: beta KL(pi_ref || pi*)
    kl = sum(p * math.log(p / q) for p, q in zip(env.ref_probs[0, 0], solution.policy[0, 0]))
    assert gap == pytest.approx(beta * kl, rel=1e-10)
    if beta == 0.02:
        assert 1.0 - optimal_prob_a < 1e-3  # printed "≈1"
