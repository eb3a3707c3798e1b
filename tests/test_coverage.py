"""Coverage coefficients against brute-force enumeration (independent of xposim.exact)."""
import itertools
import math

import numpy as np
import pytest

from xposim.coverage import (
    concentrability,
    concentrability_box_class,
    coverability,
    coverability_box_class,
    coverability_unrestricted,
    log_concentrability,
    log_concentrability_box_class,
    sec_along,
)
from xposim.envs import TokenMDP, random_token_mdp, tree, two_arm_lower_bound


# ----------------------------------------------------------------------------- brute force
def brute_trajectory_probs(env, policy):
    """pi(tau|x) by multiplying token probabilities along every itertools.product sequence."""
    out = np.zeros((env.n_contexts, env.n_leaves))
    for x in range(env.n_contexts):
        for tokens in itertools.product(range(env.vocab_size), repeat=env.horizon):
            p = 1.0
            for h, a in enumerate(tokens):
                p *= policy[x, tree.state_index(tokens[:h], env.vocab_size), a]
            out[x, tree.leaf_index(tokens, env.vocab_size)] = p
    return out


def random_policies(env, n, seed, concentration=1.0, respect_ref_zeros=False):
    rng = np.random.default_rng(seed)
    shape = (n, env.n_contexts, env.n_states)
    policies = rng.dirichlet(np.full(env.vocab_size, concentration), size=shape)
    if respect_ref_zeros:
        policies = np.where(env.ref_probs[None] > 0, policies + 1e-3, 0.0)
        policies /= policies.sum(axis=3, keepdims=True)
    return policies


def env_with_ref_zeros(seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.dirichlet(np.ones(3), size=(2, tree.n_states(3, 2)))
    ref[0, 0, 2] = 0.0  # context 0 never starts with token 2
    ref[1, 2, 0] = 0.0  # context 1 never continues (1,) with 0
    ref /= ref.sum(axis=2, keepdims=True)
    leaf = rng.uniform(0.0, 1.0, size=(2, 9))
    return TokenMDP.terminal_only([0.3, 0.7], ref, leaf)


def box_class_vertex_maxima(env, beta, r_max):
    """max over the vertices f in {0, R}^leaves of pi_f(tau|x) and of pi_f(tau|x)/pi_ref(tau|x)."""
    ref = brute_trajectory_probs(env, env.ref_probs)
    best_prob = np.zeros_like(ref)
    best_ratio = np.zeros_like(ref)
    for vertex in itertools.product((0.0, r_max), repeat=env.n_leaves):
        weights = ref * np.exp(np.array(vertex) / beta)[None, :]
        pi_f = weights / weights.sum(axis=1, keepdims=True)
        best_prob = np.maximum(best_prob, pi_f)
        with np.errstate(divide="ignore", invalid="ignore"):
            best_ratio = np.maximum(best_ratio, np.where(ref > 0, pi_f / ref, 0.0))
    return ref, best_prob, best_ratio


# ----------------------------------------------------------------------------- coverability
@pytest.mark.fast
@pytest.mark.parametrize("n_policies", [1, 2, 5])
def test_coverability_of_a_finite_class_matches_brute_force(n_policies):
    env = random_token_mdp(3, 2, 3, seed=4, rho_concentration=1.0)
    policies = random_policies(env, n_policies, seed=n_policies, concentration=0.5)
    brute = np.max([brute_trajectory_probs(env, p) for p in policies], axis=0).sum(axis=1)
    got = coverability(env, policies, per_context=True)
    np.testing.assert_allclose(got, brute, rtol=1e-13)
    assert coverability(env, policies) == pytest.approx(float(env.rho @ brute), rel=1e-13)
    assert np.all(got >= 1.0 - 1e-12) and np.all(got <= min(n_policies, env.n_leaves) + 1e-12)
    if n_policies == 1:
        np.testing.assert_allclose(got, 1.0, rtol=0, atol=1e-14)


@pytest.mark.fast
def test_coverability_of_deterministic_policies_counts_distinct_leaves():
    env = random_token_mdp(1, 3, 2, seed=0)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 3, size=(6, env.n_states))
    policies = np.zeros((6, 1, env.n_states, 3))
    for i in range(6):
        policies[i, 0, np.arange(env.n_states), tokens[i]] = 1.0
    reached = {int(np.argmax(brute_trajectory_probs(env, p)[0])) for p in policies}
    assert coverability(env, policies) == pytest.approx(len(reached), abs=1e-14)
    assert coverability_unrestricted(env) == 9.0
    assert np.array_equal(coverability_unrestricted(env, per_context=True), [9.0])


@pytest.mark.fast
def test_policy_validation():
    env = random_token_mdp(2, 2, 2, seed=0)
    good = random_policies(env, 2, seed=0)
    with pytest.raises(ValueError, match=r"policies must have shape \(N, n_contexts, n_states, vocab_size\) = \(N, 2, 3, 2\)"):
        coverability(env, good[0])
    bad = good.copy()
    bad[1, 0, 2, 0] += 0.1
    with pytest.raises(ValueError, match=r"policies\[1, 0, 2, :\] sums to"):
        coverability(env, bad)
    with pytest.raises(ValueError, match="finite and non-negative"):
        concentrability(env, np.where(good > 0.5, np.nan, good))


# ----------------------------------------------------------------------------- box class
@pytest.mark.fast
@pytest.mark.parametrize("beta,r_max", [(0.3, 1.0), (0.05, 1.0), (1.0, 2.0)])
def test_box_class_closed_forms_match_vertex_maximization(beta, r_max):
    env = env_with_ref_zeros(seed=1)
    ref, best_prob, best_ratio = box_class_vertex_maxima(env, beta, r_max)
    expected_cov = best_prob.sum(axis=1)
    np.testing.assert_allclose(coverability_box_class(env, beta, r_max, per_context=True), expected_cov, rtol=1e-12)
    assert coverability_box_class(env, beta, r_max) == pytest.approx(float(env.rho @ expected_cov), rel=1e-12)
    assert concentrability_box_class(env, beta, r_max) == pytest.approx(best_ratio.max(), rel=1e-12)
    # no interior point of the box beats the closed form (random points of F = [0, R]^leaves)
    rng = np.random.default_rng(0)
    for f in rng.uniform(0.0, r_max, size=(2000, env.n_leaves)):
        weights = ref * np.exp(f / beta)[None, :]
        pi_f = weights / weights.sum(axis=1, keepdims=True)
        assert np.all(pi_f <= best_prob * (1 + 1e-12))


@pytest.mark.fast
def test_box_class_is_stable_as_beta_goes_to_zero():
    env = env_with_ref_zeros(seed=2)
    n_supported = np.isfinite(env.trajectory_ref_logprobs).sum(axis=1)
    for beta in (1e-3, 1e-6, 1e-12, 1e-320):  # R/beta overflows to inf for the last one
        per = coverability_box_class(env, beta, per_context=True)
        assert np.all(np.isfinite(per))
        assert np.all(per <= n_supported + 1e-12) and np.all(per >= 1.0)
        log_c = log_concentrability_box_class(env, beta)
        assert math.isfinite(log_c)
    # beta -> 0: every supported leaf can take all the mass; the ratio tends to 1/min pi_ref(tau)
    np.testing.assert_allclose(coverability_box_class(env, 1e-12, per_context=True), n_supported, rtol=1e-12)
    assert log_concentrability_box_class(env, 1e-12) == pytest.approx(
        -np.min(env.trajectory_ref_logprobs[np.isfinite(env.trajectory_ref_logprobs)]), rel=1e-12
    )
    # a ratio beyond the float range: the log stays finite, the value is inf
    ref = np.array([[[1e-300, 1.0 - 1e-300], [1e-300, 1.0 - 1e-300], [0.5, 0.5]]])
    tiny = TokenMDP.terminal_only([1.0], ref, np.full((1, 4), 0.5))
    log_c = log_concentrability_box_class(tiny, 5e-4)
    assert log_c == pytest.approx(600 * math.log(10), rel=1e-9)
    assert concentrability_box_class(tiny, 5e-4) == math.inf
    with pytest.raises(ValueError, match="beta must be a finite real number > 0"):
        coverability_box_class(tiny, 0.0)


@pytest.mark.fast
@pytest.mark.parametrize("beta", [0.02, 0.05, 0.1])
def test_proposition_2_1_coverage_separation(beta):
    env = two_arm_lower_bound(beta)
    p_a = math.exp(-1.0 / (8.0 * beta))
    # box class: C_cov <= 2 while C_conc = e^{1/(8 beta)} / (1 + (1 - p_a) e^{-7/(8 beta)}) ~ e^{1/(8 beta)}
    assert 1.0 <= coverability_box_class(env, beta) <= 2.0
    expected = math.exp(1 / (8 * beta)) / (1 + (1 - p_a) * math.exp(-7 / (8 * beta)))
    assert concentrability_box_class(env, beta) == pytest.approx(expected, rel=1e-12)
    assert concentrability_box_class(env, beta) >= math.exp(1 / (8 * beta)) / (1 + math.exp(-7 / (8 * beta)))
    # finite class {pi_ref, pi*}: pi*(a) = p_a e^{1/beta} / (p_a e^{1/beta} + (1 - p_a) e^{1/(2 beta)})
    star_a = 1.0 / (1.0 + (1 - p_a) / p_a * math.exp(-1 / (2 * beta)))
    policies = np.array([env.ref_probs, [[[star_a, 1.0 - star_a]]]])
    assert 1.0 <= coverability(env, policies) <= 2.0
    assert concentrability(env, policies) == pytest.approx(star_a / p_a, rel=1e-12)
    assert log_concentrability(env, policies) == pytest.approx(math.log(star_a / p_a), rel=1e-12)


# ----------------------------------------------------------------------------- concentrability
@pytest.mark.fast
def test_concentrability_matches_brute_force_and_handles_supports():
    env = env_with_ref_zeros(seed=3)
    ref = brute_trajectory_probs(env, env.ref_probs)
    policies = random_policies(env, 3, seed=3, respect_ref_zeros=True)
    ratios = [brute_trajectory_probs(env, p)[ref > 0] / ref[ref > 0] for p in policies]
    assert concentrability(env, policies) == pytest.approx(max(r.max() for r in ratios), rel=1e-12)
    assert concentrability(env, env.ref_probs[None]) == pytest.approx(1.0, abs=1e-14)
    # mass where pi_ref = 0 on a context with rho > 0: unbounded
    leaky = random_policies(env, 1, seed=4)
    assert concentrability(env, leaky) == math.inf and log_concentrability(env, leaky) == math.inf
    # ... but ignored on a context with rho = 0
    ignored = TokenMDP.from_arrays([1.0, 0.0], env.ref_probs, env.rewards)
    leaky_on_context_1 = random_policies(env, 1, seed=5)
    leaky_on_context_1[0, 0] = policies[0, 0]
    pi = brute_trajectory_probs(env, policies[0])
    expected = (pi[0, ref[0] > 0] / ref[0, ref[0] > 0]).max()
    assert concentrability(ignored, leaky_on_context_1) == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------------------- SEC
def brute_sec(env, policies, beta, lam):
    """The SEC ratio by direct double sums over (x, tau ~ pi^(i), tau' ~ pi_ref)."""
    ref = brute_trajectory_probs(env, env.ref_probs)
    probs = [brute_trajectory_probs(env, p) for p in policies]
    terms = []
    for t, pt in enumerate(probs):
        with np.errstate(divide="ignore"):
            f = np.where(ref > 0, beta * np.log(np.where(ref > 0, pt, 1.0) / np.where(ref > 0, ref, 1.0)), 0.0)
        f = f - env.trajectory_rewards

        def moment(pi_i, power):
            total = 0.0
            for x in range(env.n_contexts):
                for k in range(env.n_leaves):
                    for kk in range(env.n_leaves):
                        weight = env.rho[x] * pi_i[x, k] * ref[x, kk]
                        if weight > 0:
                            total += weight * (f[x, k] - f[x, kk]) ** power
            return total

        numerator = moment(pt, 1) ** 2
        denominator = sum(moment(probs[i], 2) for i in range(t))
        terms.append(numerator / max(lam, denominator))
    return np.array(terms)


@pytest.mark.fast
def test_sec_along_matches_the_brute_force_double_sum():
    env = env_with_ref_zeros(seed=6)
    beta, v_max = 0.5, 1.5
    policies = np.concatenate([env.ref_probs[None], random_policies(env, 4, seed=6, respect_ref_zeros=True)])
    result = sec_along(env, policies, beta, v_max)
    expected = brute_sec(env, policies, beta, v_max**2)
    np.testing.assert_allclose(result.per_round, expected, rtol=1e-10, atol=1e-14)
    assert result.total == pytest.approx(expected.sum(), rel=1e-10)
    # pi^(1) = pi_ref: f_pi = -r, so E[delta] = E_ref r - E_ref r = 0 up to rounding
    assert result.per_round[0] == pytest.approx(0.0, abs=1e-28) and result.per_round[1:].min() > 0
    assert result.denominators[0] == 0.0 and np.all(result.denominators[1:] > 0)
    custom = sec_along(env, policies, beta, v_max, lam=1e-3)
    np.testing.assert_allclose(custom.per_round, brute_sec(env, policies, beta, 1e-3), rtol=1e-10, atol=1e-14)


@pytest.mark.fast
def test_sec_along_is_zero_for_the_optimal_policy_and_rejects_unbounded_ratios():
    env = random_token_mdp(1, 2, 1, seed=0)
    beta = 0.2
    weights = env.ref_probs[0, 0] * np.exp(env.trajectory_rewards[0] / beta)
    optimal = (weights / weights.sum())[None, None, None, :]
    result = sec_along(env, np.repeat(optimal, 3, axis=0), beta, v_max=1.0)
    np.testing.assert_allclose(result.numerators, 0.0, atol=1e-28)
    assert result.total == pytest.approx(0.0, abs=1e-27)
    zero_env = env_with_ref_zeros(seed=7)
    leaky = random_policies(zero_env, 2, seed=7)
    with pytest.raises(ValueError, match="bounded density ratios"):
        sec_along(zero_env, leaky, beta, v_max=1.0)
    with pytest.raises(ValueError, match="v_max must be a finite real number > 0"):
        sec_along(env, optimal, beta, v_max=0.0)
