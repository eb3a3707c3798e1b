"""Exact ground truth at every beta (issue 9): ``solve``, ``evaluate`` and the implicit rewards
against a high-precision brute force, for ``beta`` from 1e-6 to 1e300.

The brute force enumerates trajectories with ``itertools.product`` and uses the trajectory-level
formulas of THEORY 2 only (``V*(x) = beta log sum_tau pi_ref(tau|x) e^{r(tau)/beta}``,
``J_beta(pi) = E_pi r - beta KL(pi || pi_ref)`` with the KL summed over trajectories) in
``mpmath`` at ``40 + log10(beta)`` significant digits (so that ``sum_tau pi_ref(tau) = 1`` holds far
below ``1/beta``); every reference row ``pi_ref(.|s)`` and policy row is normalized in that
precision. It shares no code with ``xposim.exact`` or its kernels.
"""
from __future__ import annotations

import itertools
import math

import mpmath
import numpy as np
import pytest

from xposim import exact
from xposim.envs import TokenMDP, needle, random_token_mdp, two_arm_lower_bound
from xposim.seeding import make_rng

pytestmark = pytest.mark.fast

TOL = 1e-10
BETAS = [1e-6, 1e-3, 0.05, 1.0, 1e3, 1e6, 1e12, 1e16, 1e17, 1e18, 1e100, 1e300]


# ----------------------------------------------------------------------------- instances
def zero_reference_env() -> TokenMDP:
    """Dense rewards and exact zeros in ``pi_ref`` (never a whole row)."""
    base = random_token_mdp(2, 3, 2, seed=3, reward="dense")
    ref = base.ref_probs.copy()
    ref[0, 0] = [0.6, 0.4, 0.0]
    ref[1, 2] = [0.0, 0.3, 0.7]
    return TokenMDP.from_arrays(base.rho, ref, base.rewards, name="zero_reference")


INSTANCES = {
    "random_terminal": lambda: random_token_mdp(2, 3, 3, seed=0),  # the instance of the issue
    "random_dense": lambda: random_token_mdp(2, 2, 3, seed=1, reward="dense", rho_concentration=1.0),
    "two_arm": lambda: two_arm_lower_bound(0.05),
    "needle": lambda: needle(2, 3, 0.02, n_contexts=2, seed=4),
    "zero_reference": zero_reference_env,
}
_ENVS: dict[str, TokenMDP] = {}


def instance(name: str) -> TokenMDP:
    if name not in _ENVS:
        _ENVS[name] = INSTANCES[name]()
    return _ENVS[name]


# ----------------------------------------------------------------------------- brute force
def digits_for(beta: float) -> int:
    return 40 + max(0, math.ceil(math.log10(beta)))


def trajectories(env: TokenMDP):
    """``(leaf, states visited, tokens)`` of every token sequence, walking the heap numbering."""
    rows = []
    for tokens in itertools.product(range(env.vocab_size), repeat=env.horizon):
        states, node = [], 0
        for a in tokens:
            states.append(node)
            node = env.vocab_size * node + 1 + a
        rows.append((node - env.n_states, states, tokens))
    return rows


def normalized_rows(array: np.ndarray):
    """``array[x][s][a]`` as mpf, every row divided by its (high-precision) sum."""
    out = []
    for x in range(array.shape[0]):
        context = []
        for s in range(array.shape[1]):
            row = [mpmath.mpf(float(v)) for v in array[x, s]]
            total = mpmath.fsum(row)
            context.append([v / total for v in row])
        out.append(context)
    return out


def trajectory_table(env: TokenMDP, policy: np.ndarray | None = None):
    """Per context: list of ``(leaf, pi_ref(tau), r(tau), pi(tau))`` in the current mp precision."""
    ref = normalized_rows(env.ref_probs)
    pol = normalized_rows(policy) if policy is not None else None
    table = []
    for x in range(env.n_contexts):
        rows = []
        for leaf, states, tokens in trajectories(env):
            ref_prob = mpmath.fprod(ref[x][s][a] for s, a in zip(states, tokens))
            reward = mpmath.fsum(mpmath.mpf(float(env.rewards[x, s, a])) for s, a in zip(states, tokens))
            prob = mpmath.fprod(pol[x][s][a] for s, a in zip(states, tokens)) if pol is not None else None
            rows.append((leaf, ref_prob, reward, prob))
        table.append(rows)
    return table


def brute_optimum(env: TokenMDP, beta: float):
    """``V*(x)`` per context and ``beta log(pi*(tau|x)/pi_ref(tau|x)) = r(tau) - V*(x)`` per trajectory
    (``-inf`` where ``pi_ref(tau) = 0``), as floats rounded from the mp values."""
    with mpmath.workdps(digits_for(beta)):
        b = mpmath.mpf(beta)
        values = np.empty(env.n_contexts)
        implicit = np.empty((env.n_contexts, env.n_leaves))
        for x, rows in enumerate(trajectory_table(env)):
            z = mpmath.fsum(p * mpmath.exp(r / b) for _, p, r, _ in rows if p > 0)
            v = b * mpmath.log(z)
            values[x] = float(v)
            for leaf, p, r, _ in rows:
                implicit[x, leaf] = float(r - v) if p > 0 else -np.inf
        return values, implicit


def brute_objective(env: TokenMDP, policy: np.ndarray, beta: float):
    """``(value, reward, beta * kl)`` per context of ``J_beta(pi) = E_pi r - beta KL(pi || pi_ref)``."""
    with mpmath.workdps(digits_for(beta)):
        b = mpmath.mpf(beta)
        out = np.empty((3, env.n_contexts))
        for x, rows in enumerate(trajectory_table(env, policy)):
            reward = mpmath.fsum(p * r for _, _, r, p in rows if p > 0)
            if any(p > 0 and q == 0 for _, q, _, p in rows):
                kl = mpmath.inf
            else:
                kl = mpmath.fsum(p * mpmath.log(p / q) for _, q, _, p in rows if p > 0)
            out[:, x] = float(reward - b * kl), float(reward), float(b * kl)
        return out


def assert_close(actual, expected, scale, what):
    actual, expected, scale = np.asarray(actual), np.asarray(expected), np.asarray(scale)
    error = np.abs(actual - expected)
    assert np.all(error <= TOL * scale), f"{what}: error {error.max():.3g} > {TOL:g} * {scale.max():.3g}"


def random_policy(env: TokenMDP, seed: int) -> np.ndarray:
    policy = make_rng(seed).dirichlet(np.ones(env.vocab_size), size=env.ref_probs.shape[:2])
    return np.where(env.ref_probs > 0, policy, 0.0) / np.where(env.ref_probs > 0, policy, 0.0).sum(axis=2, keepdims=True)


# ----------------------------------------------------------------------------- solve
@pytest.mark.parametrize("name", sorted(INSTANCES))
@pytest.mark.parametrize("beta", BETAS)
def test_solve_matches_high_precision_brute_force(name, beta):
    env = instance(name)
    solution = exact.solve(env, beta)
    values, _ = brute_optimum(env, beta)
    assert_close(solution.value_per_context, values, np.abs(values), "V*(x)")
    expected = float(env.rho @ values)
    assert abs(solution.value - expected) <= TOL * abs(expected)
    # J(pi*) never exceeds the largest trajectory reward (up to the rounding of the reward sums)
    best = env.trajectory_rewards.max(axis=1)
    assert np.all(solution.value_per_context <= best * (1 + 4e-16))
    assert np.all(np.isfinite(solution.V)) and not np.any(np.isnan(solution.log_policy))
    # the reward-induced class member with f = r(tau) is pi*_beta: beta log Z_f(x) = V*(x)
    policy_f, log_partition = exact.policy_from_leaf_values(env, env.trajectory_rewards, beta)
    assert_close(beta * log_partition, values, np.abs(values), "beta log Z_f(x)")
    np.testing.assert_allclose(policy_f, solution.policy, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("beta", [1e16, 1e18])
def test_two_arm_optimum_tends_to_the_reference_value(beta):
    """The issue's numbers: 0.0 at 1e16 and -55.5 at 1e18, where ``J(pi_ref) = 0.541``."""
    env = two_arm_lower_bound(0.05)
    reference = exact.evaluate(env, env.ref_probs, beta)
    optimum = exact.solve(env, beta)
    assert reference.value == pytest.approx(0.5410424993119494, rel=1e-15)
    assert 0 <= optimum.value - reference.value <= 1e-15
    # |Q* - M|/beta is below half an ulp: pi* is pi_ref bit for bit, so its evaluation is J(pi_ref)
    assert np.array_equal(optimum.policy, env.ref_probs)
    assert exact.evaluate(env, optimum.policy, beta).value == reference.value


# ----------------------------------------------------------------------------- evaluate
@pytest.mark.parametrize("name", sorted(INSTANCES))
@pytest.mark.parametrize("beta", BETAS)
def test_evaluate_matches_high_precision_brute_force(name, beta):
    env = instance(name)
    solution = exact.solve(env, beta)
    for label, policy in (
        ("pi_ref", env.ref_probs),
        ("pi*", solution.policy),
        ("random", random_policy(env, seed=7)),
    ):
        evaluation = exact.evaluate(env, policy, beta)
        value, reward, penalty = brute_objective(env, policy, beta)
        scale = np.abs(reward) + penalty
        assert_close(evaluation.reward_per_context, reward, np.abs(reward), f"{label} reward")
        assert_close(beta * evaluation.kl_per_context, penalty, scale, f"{label} beta * KL")
        assert_close(evaluation.value_per_context, value, scale, f"{label} value")
        assert evaluation.kl >= 0.0
    # the sub-optimality of pi* itself (what simulate reports for the optimum) is ~0 at every beta
    optimum = exact.evaluate(env, solution.policy, beta)
    assert abs(solution.value - optimum.value) <= TOL * abs(solution.value)


def test_kl_of_order_1e_minus_225_keeps_its_digits_at_beta_1e300():
    """``beta * KL`` with ``KL ~ 4e-225``: the per-token terms ``p log(p/q) - p + q >= 0`` do not
    cancel; ``sum p log(p/q)`` would be rounding noise of ``1e-213`` instead."""
    q = 1e-200
    p = q * (1.0 + 2.0**-40)
    ref = np.array([[[q, 1.0 - q]]])
    env = TokenMDP.from_arrays([1.0], ref, np.array([[[1.0, 0.0]]]))
    policy = np.array([[[p, 1.0 - q]]])
    beta = 1e300
    evaluation = exact.evaluate(env, policy, beta)
    value, reward, penalty = brute_objective(env, policy, beta)
    assert 1e-226 < evaluation.kl < 1e-224
    assert beta * evaluation.kl == pytest.approx(penalty[0], rel=TOL)
    assert evaluation.value == pytest.approx(value[0], rel=TOL)
    assert exact.evaluate(env, env.ref_probs, beta).kl == 0.0


# ----------------------------------------------------------------------------- implicit rewards
@pytest.mark.parametrize("name", sorted(INSTANCES))
@pytest.mark.parametrize("beta", BETAS)
def test_implicit_rewards_of_the_solution_are_exact_at_every_beta(name, beta):
    """Eq. 9, ``beta log(pi*(tau)/pi_ref(tau)) = r(tau) - V*(x)``, to 1e-10 from 1e-6 to 1e300."""
    env = instance(name)
    solution = exact.solve(env, beta)
    _, brute = brute_optimum(env, beta)
    implicit = exact.implicit_rewards(env, solution)
    impossible = env.trajectory_ref_logprobs == -np.inf
    assert np.all(implicit[impossible] == -np.inf) and np.all(np.isfinite(implicit[~impossible]))
    np.testing.assert_allclose(implicit[~impossible], brute[~impossible], rtol=0, atol=TOL)
    expected = env.trajectory_rewards - solution.value_per_context[:, None]
    np.testing.assert_allclose(implicit[~impossible], expected[~impossible], rtol=0, atol=TOL)
    assert np.array_equal(exact.implicit_rewards(env, solution, beta), implicit)
    # with another beta the same policy's implicit reward scales: beta' log(pi*/pi_ref)
    np.testing.assert_allclose(
        exact.implicit_rewards(env, solution, 2.0 * beta)[~impossible], 2.0 * brute[~impossible], rtol=0, atol=2 * TOL
    )
    if beta <= 1e3:  # from log-probabilities: exact while beta * 1e-16 * |log pi_ref(tau)| is negligible
        from_logs = exact.implicit_rewards(env, log_policy=solution.log_policy, beta=beta)
        assert np.all(from_logs[impossible] == -np.inf)
        np.testing.assert_allclose(from_logs[~impossible], brute[~impossible], rtol=0, atol=TOL)


@pytest.mark.parametrize("beta", [1e-6, 1e-3])
def test_implicit_rewards_where_probabilities_underflow(beta):
    """The issue's case: from ``solution.policy`` some entries are ``-inf`` (underflow) although
    ``r - V* ~ -0.96``; the Solution and its log-policy give them exactly."""
    env = random_token_mdp(2, 3, 3, seed=0)
    solution = exact.solve(env, beta)
    from_probabilities = exact.implicit_rewards(env, solution.policy, beta)
    assert np.any(from_probabilities == -np.inf)  # documented loss of the probability form
    expected = env.trajectory_rewards - solution.value_per_context[:, None]
    for implicit in (exact.implicit_rewards(env, solution), exact.implicit_rewards(env, None, beta, log_policy=solution.log_policy)):
        assert np.all(np.isfinite(implicit))
        np.testing.assert_allclose(implicit, expected, rtol=0, atol=TOL)
    logprobs = exact.trajectory_logprobs(env, solution)
    assert np.all(np.isfinite(logprobs))
    assert np.array_equal(logprobs, exact.trajectory_logprobs(env, log_policy=solution.log_policy))
    positive = from_probabilities > -np.inf
    np.testing.assert_array_equal(exact.trajectory_logprobs(env, solution.policy) > -np.inf, positive)


def test_log_policy_and_solution_arguments_are_checked():
    env = random_token_mdp(1, 2, 2, seed=5)
    solution = exact.solve(env, 0.5)
    other = exact.solve(random_token_mdp(1, 3, 2, seed=5), 0.5)
    with pytest.raises(ValueError, match="Solution"):
        exact.implicit_rewards(env, other)
    with pytest.raises(ValueError, match="Solution"):
        exact.trajectory_logprobs(env, other)
    with pytest.raises(ValueError, match="not both"):
        exact.trajectory_logprobs(env, solution.policy, log_policy=solution.log_policy)
    with pytest.raises(ValueError, match="not both"):
        exact.implicit_rewards(env, solution, log_policy=solution.log_policy)
    with pytest.raises(ValueError, match="beta"):
        exact.implicit_rewards(env, solution.policy)
    with pytest.raises(ValueError, match="policy"):
        exact.trajectory_logprobs(env)
    bad = solution.log_policy.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="log_policy"):
        exact.trajectory_logprobs(env, log_policy=bad)
    with pytest.raises(ValueError, match="log_policy"):
        exact.trajectory_logprobs(env, log_policy=np.log(solution.policy * 1.1))
    with pytest.raises(ValueError, match="log_policy"):
        exact.trajectory_logprobs(env, log_policy=solution.log_policy[:, :1])


# ----------------------------------------------------------------------------- scalar helpers
EPS = np.finfo(float).eps


def test_kernel_scalar_helpers_match_mpmath():
    """``expm1_nonpositive`` (<= 30 ulps), ``log1p_accurate`` (<= 2 ulps) and
    ``relative_entropy_term`` (<= 1e-12 relative, always >= 0) against 40-digit mpmath."""
    from xposim import _exact_kernels as kernels

    rng = make_rng(13)
    with mpmath.workdps(40):
        us = [0.0, -1e-300, -1e-17, -(2.0**-7), -(2.0**-7) * (1 + 1e-15), -0.3, -0.69, -0.7, -5.0, -700.0]
        for u in us + list(-(10.0 ** rng.uniform(-20, 2.5, 300))):
            e, g = kernels.expm1_nonpositive(u)
            exact_g = mpmath.expm1(mpmath.mpf(u))
            assert abs(g - exact_g) <= 30 * EPS * abs(exact_g), u
            assert abs(e - mpmath.exp(mpmath.mpf(u))) <= 2 * EPS * mpmath.exp(mpmath.mpf(u)), u
            assert g <= 0.0 and 0.0 <= e <= 1.0
        for t in [0.0, -1e-300, 1e-300, -1e-17, 1e-16, -0.5, 0.3, 1.0, 1e10] + list(-rng.uniform(0, 0.6, 300)):
            exact_log = mpmath.log1p(mpmath.mpf(t))
            assert abs(kernels.log1p_accurate(t) - exact_log) <= 2 * EPS * abs(exact_log), t
        qs = [1e-320, 1e-300, 1e-200, 1e-20, 0.3, 0.999]
        ratios = [0.0, 1e-30, 0.3, 0.5, 0.9, 0.951, 0.99, 1 - 1e-12, 1.0, 1 + 1e-15, 1.01, 1.049, 1.06, 2.0, 2.5, 1e20]
        for q in qs:
            for ratio in ratios + list(rng.uniform(0.4, 2.2, 40)):
                p = min(q * ratio, 1.0)
                term = kernels.relative_entropy_term(p, q, math.log(q))
                with mpmath.workdps(90):  # the term cancels ~35 digits when p/q = 1 + 1e-15
                    mp_p, mp_q = mpmath.mpf(p), mpmath.mpf(q)
                    exact_term = (mp_p * mpmath.log(mp_p / mp_q) if p > 0 else 0) - mp_p + mp_q
                assert term >= 0.0
                assert abs(term - exact_term) <= 1e-12 * exact_term + 1e-322, (p, q)  # + subnormal spacing
        assert kernels.relative_entropy_term(0.5, 0.0, -math.inf) == math.inf
        assert kernels.relative_entropy_term(0.0, 0.0, -math.inf) == 0.0
