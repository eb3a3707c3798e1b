"""chiPO's link, the mixed-chi^2 optimum and chiPO's realizable class (issue 14).

References that share no code with the package: ``mpmath`` (Lambert W at hundreds of digits),
``scipy.special.wrightomega`` / ``brentq`` (:mod:`xposim.reference.chi_numpy`) and a direct
maximization of ``J_mix`` over the simplex.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from xposim import chi_link, exact
from xposim.envs import TokenMDP, headroom_bandit, random_token_mdp
from xposim.mixed_chi2 import (chi_class_policy, chi_class_trajectory_logprobs, evaluate_mixed_chi2,
                               solve_mixed_chi2)
from xposim.reference import chi_numpy
from xposim.seeding import make_rng

pytestmark = pytest.mark.fast

DELTAS = sorted({*(-10.0 ** k for k in range(-300, 4, 23)), 0.0, *(10.0 ** k for k in range(-300, 301, 23)),
                 -0.5, 0.5, -0.4999, 0.4999, -1.0, 1.0, -30.0, 30.0, -746.0, 800.0})


def mp_omega(delta: float, digits: int = 360):
    """``z`` with ``z + log z = 1 + delta`` by ``W0(e^(1 + delta))`` at ``digits`` significant digits."""
    with mpmath.workdps(digits):
        y = mpmath.mpf(1) + mpmath.mpf(delta)
        return mpmath.re(mpmath.lambertw(mpmath.exp(y)))


def rel_error(value: float, reference) -> float:
    reference = mpmath.mpf(reference)
    if reference == 0:
        return abs(value)
    return float(abs(mpmath.mpf(value) - reference) / abs(reference))


@pytest.mark.parametrize("delta", DELTAS)
def test_chi_link_against_lambert_w_in_360_digits(delta):
    log_z, u = chi_link.chi_link(delta)
    z = mp_omega(delta)
    with mpmath.workdps(360):
        assert rel_error(log_z, mpmath.log(z)) <= 1e-13
        assert rel_error(u, z - 1) <= 1e-13
        term = (z - 1) ** 2 / 2 + z * mpmath.log(z) - z + 1
        if 1e-300 < term < 1e300:
            assert rel_error(chi_link.mixed_divergence_term(log_z, u), term) <= 1e-12


def test_chi_link_agrees_with_scipy_reference_and_limits():
    deltas = np.concatenate([-np.geomspace(1e-3, 700, 40), np.geomspace(1e-3, 1e6, 40)])
    ref_log_z, ref_u = chi_numpy.chi_link(deltas)
    for delta, lz, u in zip(deltas, ref_log_z, ref_u):
        got_log_z, got_u = chi_link.chi_link(float(delta))
        assert got_log_z == pytest.approx(lz, rel=1e-12, abs=1e-300)
        assert got_u == pytest.approx(u, rel=1e-11, abs=1e-300)
    assert chi_link.chi_link(-math.inf) == (-math.inf, -1.0)
    assert chi_link.chi_link(math.inf) == (math.inf, math.inf)
    assert chi_link.chi_link(0.0) == (0.0, 0.0)  # phi(1) = 1: f = mu gives pi = pi_ref


@pytest.mark.parametrize("beta", [1e-6, 1e-3, 0.05, 1.0, 1e3, 1e12, 1e100, 1e300])
def test_normalizer_normalizes_and_matches_brentq(beta):
    rng = make_rng(7)
    masses = rng.dirichlet(np.full(9, 0.4))
    values = rng.uniform(0.0, 2.0, 9)
    log_mass = np.log(masses)
    log_z, u = np.empty(9), np.empty(9)
    mu = chi_link.chi_normalizer(log_mass, values, 9, beta, log_z, u)
    assert abs(float(np.sum(masses * u))) <= 1e-15 * max(1.0, float(np.sum(masses * np.abs(u))))
    assert np.sum(masses * np.exp(log_z)) == pytest.approx(1.0, abs=1e-14)
    if 1e-3 <= beta <= 1e3:
        assert mu == pytest.approx(chi_numpy.chi_normalizer(masses, values, beta), rel=1e-12, abs=1e-14)
    assert values.min() <= mu <= values.max()


def test_normalizer_absent_items_and_ties():
    log_z, u = np.empty(3), np.empty(3)
    mu = chi_link.chi_normalizer(np.array([math.log(0.5), -math.inf, math.log(0.5)]), np.array([1.0, 9.0, 1.0]), 3,
                                 0.1, log_z, u)
    assert mu == 1.0 and log_z[0] == 0.0 and log_z[1] == -math.inf and u[1] == -1.0


# ----------------------------------------------------------------------------- the mixed-chi^2 optimum
def lambert_w_optimum(ref: np.ndarray, rewards: np.ndarray, beta: float, digits: int = 60):
    """``pi*_mix`` of one context from ``pi_ref W0(exp((r - lambda)/beta))`` and its ``J_mix`` in mpmath."""
    with mpmath.workdps(digits):
        q = [mpmath.mpf(p) for p in ref]
        r = [mpmath.mpf(v) for v in rewards]
        b = mpmath.mpf(beta)

        def excess(lam):
            return sum(qi * mpmath.re(mpmath.lambertw(mpmath.exp((ri - lam) / b))) for qi, ri in zip(q, r)) - 1

        lam = mpmath.findroot(excess, (min(r) - b, max(r) - b), solver="anderson")
        z = [mpmath.re(mpmath.lambertw(mpmath.exp((ri - lam) / b))) for ri in r]
        value = sum(qi * zi * ri for qi, zi, ri in zip(q, z, r)) - b * sum(
            qi * ((zi - 1) ** 2 / 2 + zi * mpmath.log(zi)) for qi, zi in zip(q, z))
        return [qi * zi for qi, zi in zip(q, z)], value


@pytest.mark.parametrize("beta", [1e-3, 0.03, 0.3, 3.0, 300.0])
def test_solve_matches_lambert_w_closed_form(beta):
    env = random_token_mdp(2, 5, 1, seed=2)
    solution = solve_mixed_chi2(env, beta)
    for x in range(env.n_contexts):
        ref = np.exp(env.trajectory_ref_logprobs[x])
        policy, value = lambert_w_optimum(ref, env.trajectory_rewards[x], beta)
        for got, want in zip(solution.trajectory_log_policy[x], policy):  # in logs: pi* may underflow
            with mpmath.workdps(60):
                assert abs(mpmath.mpf(float(got)) - mpmath.log(want)) <= 1e-10 * max(1.0, abs(float(got)))
        assert rel_error(float(solution.evaluation.value_per_context[x]), value) <= 1e-10


def test_solve_is_the_maximizer_and_evaluate_agrees():
    env = random_token_mdp(2, 3, 2, seed=1)  # H = 2: D is over trajectories, tabulated per token
    beta = 0.2
    solution = solve_mixed_chi2(env, beta)
    again = evaluate_mixed_chi2(env, solution.policy, beta)
    assert again.value == pytest.approx(solution.value, rel=1e-12, abs=1e-14)
    assert again.divergence == pytest.approx(again.chi2 + again.kl, rel=1e-12)
    assert again.kl == pytest.approx(exact.evaluate(env, solution.policy, beta).kl, rel=1e-9, abs=1e-14)
    # the token-level tabulation reproduces the trajectory distribution
    np.testing.assert_allclose(exact.trajectory_logprobs(env, solution.policy), solution.trajectory_log_policy,
                               atol=1e-12)
    # stationarity: r - beta phi(z) is constant over each context's trajectories
    z = np.exp(solution.trajectory_log_policy - env.trajectory_ref_logprobs)
    stationary = env.trajectory_rewards - beta * (z + np.log(z))
    assert np.ptp(stationary, axis=1).max() <= 1e-12
    # no other policy does better (random trajectory distributions and perturbations of the optimum)
    rng = make_rng(3)
    ref = np.exp(env.trajectory_ref_logprobs)
    for trial in range(200):
        if trial < 100:
            candidate = rng.dirichlet(np.ones(env.n_leaves), size=env.n_contexts)
        else:
            candidate = np.exp(solution.trajectory_log_policy) * np.exp(rng.normal(0, 0.05, (env.n_contexts, env.n_leaves)))
            candidate /= candidate.sum(axis=1, keepdims=True)
        value = sum(env.rho[x] * (candidate[x] @ env.trajectory_rewards[x]
                                  - beta * chi_numpy.mixed_divergence(ref[x], candidate[x]))
                    for x in range(env.n_contexts))
        assert value <= solution.value + 1e-12


@pytest.mark.parametrize("beta", [1e-6, 1e12, 1e300])
def test_solve_is_finite_and_sensible_at_extreme_beta(beta):
    env = headroom_bandit(rare_exponents=(5, 9, 30), rare_per_scale=1)
    solution = solve_mixed_chi2(env, beta)
    best = float(env.trajectory_rewards.max())
    assert np.isfinite(solution.value) and solution.value <= best + 1e-15
    assert np.exp(solution.trajectory_log_policy).sum() == pytest.approx(1.0, abs=1e-14)
    reference_reward = float(np.exp(env.trajectory_ref_logprobs[0]) @ env.trajectory_rewards[0])
    if beta >= 1e12:
        assert solution.evaluation.reward == pytest.approx(reference_reward, abs=1e-9)
        assert 0.0 <= beta * solution.evaluation.divergence <= 1e-9  # pi* = pi_ref + O(1/beta)
    else:
        assert solution.evaluation.reward == pytest.approx(best, abs=1e-5)


def test_chi_class_policy_is_shift_invariant_and_contains_the_optimum():
    env = random_token_mdp(2, 3, 2, seed=5)
    beta = 0.1
    rewards = env.trajectory_rewards
    np.testing.assert_allclose(chi_class_policy(env, rewards, beta), solve_mixed_chi2(env, beta).policy, atol=1e-14)
    shifted, _ = chi_class_trajectory_logprobs(env, rewards + 0.7, beta)
    np.testing.assert_allclose(shifted, solve_mixed_chi2(env, beta).trajectory_log_policy, atol=1e-12)
    constant = chi_class_policy(env, np.full_like(rewards, 0.3), beta)
    np.testing.assert_allclose(constant, env.ref_probs, atol=1e-14)


def test_bad_input_is_refused():
    env = random_token_mdp(1, 3, 1, seed=0)
    with pytest.raises(ValueError, match="beta"):
        solve_mixed_chi2(env, 0.0)
    with pytest.raises(ValueError, match="leaf_values must have shape"):
        chi_class_policy(env, np.zeros((2, 3)), 0.1)
    with pytest.raises(ValueError, match="finite"):
        chi_class_policy(env, np.full((1, 3), np.nan), 0.1)
    with pytest.raises(ValueError, match="env must be"):
        solve_mixed_chi2("env", 0.1)
    policy = env.ref_probs.copy()
    zero = TokenMDP.from_arrays([1.0], [[[0.5, 0.5, 0.0]]], [[[0.0, 1.0, 1.0]]])
    with pytest.raises(ValueError, match="policy"):
        evaluate_mixed_chi2(env, policy[:, :, :2], 0.1)
    assert evaluate_mixed_chi2(zero, np.array([[[0.0, 0.5, 0.5]]]), 0.1).value == -np.inf


def test_headroom_bandit_layout_and_errors():
    env = headroom_bandit(n_covered=4, covered_reward_max=0.5, rare_exponents=(6, 8), rare_per_scale=2, r_max=2.0)
    ref = np.exp(env.trajectory_ref_logprobs[0])
    assert env.n_leaves == 8 and env.r_max == 2.0
    np.testing.assert_allclose(ref[4:], [2 ** -6, 2 ** -6, 2 ** -8, 2 ** -8])
    np.testing.assert_allclose(env.trajectory_rewards[0], [0, 1 / 6, 1 / 3, 0.5, 0, 0, 0, 0])
    assert ref.sum() == pytest.approx(1.0, abs=1e-15)
    with pytest.raises(ValueError, match="r_max"):
        headroom_bandit(r_max=0.1)
    with pytest.raises(ValueError, match="rare_exponents"):
        headroom_bandit(rare_exponents=(0, 3))
    with pytest.raises(ValueError, match="covered arms"):
        headroom_bandit(rare_exponents=(1, 2), rare_per_scale=4)
