"""Exact ground truth of chiPO's objective: the mixed-chi^2-regularized optimum (THEORY 4.5, 6.3).

chiPO (Huang et al. 2024, arXiv 2407.13399) targets

    J_mix(pi) = E_{x, tau ~ pi}[r(tau)] - beta E_x D(pi(.|x) || pi_ref(.|x)),
    D(pi || pi_ref) = E_{pi_ref}[f(z)],  f(z) = (z - 1)^2 / 2 + z log z,  z = pi / pi_ref,

i.e. ``D = chi^2 + KL`` with ``chi^2 = E_ref[(z - 1)^2] / 2`` (the convention under which
``f' = phi``, chiPO's link ``phi(z) = z + log z``). ``D`` is taken over whole trajectories (it does
not decompose over tokens), so everything here works at trajectory level and is tabulated to a
token-level policy by marginalization.

* :func:`solve_mixed_chi2` — the maximizer ``pi*_mix(tau|x) = pi_ref(tau|x) omega(1 + (r(tau) - mu_x)/beta)``
  (``omega`` = Wright omega = ``W0(e^.)``, ``mu_x`` the normalizer; first-order condition
  ``r - beta phi(z) = const``, and ``D`` is strictly convex), its value and its parts;
* :func:`evaluate_mixed_chi2` — ``J_mix``, reward, ``chi^2`` and KL of any token-level policy;
* :func:`chi_class_policy` — chiPO's realizable class ``pi_f = pi_ref phi^{-1}((f - Z_f)/beta)``
  (in the form above: ``1 + (f - mu)/beta``) for any trajectory values ``f``, token-level.

Numerics: :mod:`xposim.chi_link` (every ``beta`` from 1e-300 to 1e300; ``D`` summed from
non-negative terms ``f(z) - (z - 1)``, whose ``pi_ref``-weighted sum equals ``D`` because
``E_ref[z - 1] = 0``). Tested against the Lambert-W closed form in 60-digit arithmetic and against
a brute-force maximization (``tests/test_mixed_chi2.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xposim import chi_link
from xposim import exact
from xposim.envs.token_mdp import TokenMDP
from xposim.policies.view import token_log_policy_from_leaf_logprobs
from xposim.validation import check_positive

__all__ = ["MixedChi2Solution", "MixedChi2Evaluation", "solve_mixed_chi2", "evaluate_mixed_chi2",
           "chi_class_policy", "chi_class_trajectory_logprobs"]


@dataclass(frozen=True, eq=False)
class MixedChi2Evaluation:
    """``J_mix(pi) = reward - beta * divergence`` with ``divergence = chi2 + kl`` (module docstring).

    All are ``E_x`` over contexts; ``*_per_context`` are ``(n_contexts,)`` arrays.
    ``divergence = +inf`` (``value = -inf``) if ``pi`` puts mass where ``pi_ref`` has none.
    """

    value: float
    reward: float
    divergence: float
    chi2: float
    kl: float
    value_per_context: np.ndarray
    reward_per_context: np.ndarray
    divergence_per_context: np.ndarray
    beta: float


@dataclass(frozen=True, eq=False)
class MixedChi2Solution:
    """The mixed-chi^2 optimum ``pi*_mix`` (module docstring).

    ``policy`` / ``log_policy``: token level ``(n_contexts, n_states, A)``;
    ``trajectory_log_policy``: ``(n_contexts, n_leaves)`` ``log pi*_mix(tau|x)`` (``-inf`` where
    ``pi_ref = 0``); ``normalizer``: ``mu_x`` per context; ``evaluation``: its
    :class:`MixedChi2Evaluation` (``value = max_pi J_mix``).
    """

    policy: np.ndarray
    log_policy: np.ndarray
    trajectory_log_policy: np.ndarray
    normalizer: np.ndarray
    evaluation: MixedChi2Evaluation
    beta: float

    @property
    def value(self) -> float:
        """``J_mix(pi*_mix) = max_pi J_mix(pi)``."""
        return self.evaluation.value


def _check_env(env) -> TokenMDP:
    if not isinstance(env, TokenMDP):
        raise ValueError(f"env must be an xposim.envs.TokenMDP, got {type(env).__name__}")
    return env


def _linked_trajectories(leaf_logref: np.ndarray, values: np.ndarray, beta: float):
    """Per context: ``mu``, ``log z`` and ``u = z - 1`` of the chi link with values ``values``."""
    n_contexts, n_leaves = leaf_logref.shape
    log_z = np.empty((n_contexts, n_leaves))
    u = np.empty((n_contexts, n_leaves))
    mu = np.empty(n_contexts)
    for x in range(n_contexts):
        mu[x] = chi_link.chi_normalizer(leaf_logref[x], values[x], n_leaves, beta, log_z[x], u[x])
    return mu, log_z, u


def _token_policy(env: TokenMDP, trajectory_log_policy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    log_policy = np.empty(env.ref_probs.shape)
    token_log_policy_from_leaf_logprobs(np.ascontiguousarray(trajectory_log_policy), env.vocab_size, env.n_states,
                                        log_policy)
    return np.exp(log_policy), log_policy


def _evaluation(env: TokenMDP, leaf_logref: np.ndarray, log_z: np.ndarray, u: np.ndarray,
                beta: float) -> MixedChi2Evaluation:
    ref = np.exp(leaf_logref)
    possible = leaf_logref > -np.inf
    rewards = np.asarray(env.trajectory_rewards, dtype=np.float64)
    z = np.where(possible, 1.0 + u, 0.0)
    reward = np.sum(np.where(possible, ref * z * rewards, 0.0), axis=1)
    term = np.vectorize(chi_link.mixed_divergence_term, otypes=[float])(log_z, u)
    chi2 = np.sum(np.where(possible, ref * 0.5 * u * u, 0.0), axis=1)
    divergence = np.sum(np.where(possible, ref * term, 0.0), axis=1)
    kl = np.maximum(divergence - chi2, 0.0)
    with np.errstate(over="ignore"):
        value = reward - beta * divergence
    rho = np.asarray(env.rho, dtype=np.float64)
    average = lambda a: float(np.sum(np.where(rho > 0, rho * a, 0.0)))  # noqa: E731
    return MixedChi2Evaluation(
        value=average(value), reward=average(reward), divergence=average(divergence), chi2=average(chi2),
        kl=average(kl), value_per_context=value, reward_per_context=reward, divergence_per_context=divergence,
        beta=beta)


def chi_class_trajectory_logprobs(env: TokenMDP, leaf_values, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """``(log pi_f(tau|x), mu_x)`` of chiPO's class for trajectory values ``leaf_values (n_contexts, n_leaves)``."""
    env = _check_env(env)
    beta = check_positive(beta, "beta")
    values = np.ascontiguousarray(np.asarray(leaf_values, dtype=np.float64))
    if values.shape != (env.n_contexts, env.n_leaves):
        raise ValueError(f"leaf_values must have shape (n_contexts, n_leaves) = {(env.n_contexts, env.n_leaves)}, "
                         f"got {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("leaf_values must be finite (found NaN or inf)")
    leaf_logref = np.ascontiguousarray(env.trajectory_ref_logprobs, dtype=np.float64)
    mu, log_z, _ = _linked_trajectories(leaf_logref, values, beta)
    return leaf_logref + log_z, mu


def chi_class_policy(env: TokenMDP, leaf_values, beta: float) -> np.ndarray:
    """Token-level policy of chiPO's class member ``pi_f(tau|x) = pi_ref(tau|x) z(tau)``,
    ``z + log z = 1 + (f(tau) - mu_x)/beta``, ``sum_tau pi_f(tau|x) = 1`` (the normalizer ``mu_x``
    is the ``Z_f`` of the paper's ``phi^{-1}((f - Z_f)/beta)`` up to the constant ``beta``).
    ``chi_class_policy(env, r, beta)`` is ``pi*_mix``; ``f`` and ``f + c`` give the same policy."""
    trajectory, _ = chi_class_trajectory_logprobs(env, leaf_values, beta)
    return _token_policy(env, trajectory)[0]


def solve_mixed_chi2(env: TokenMDP, beta: float) -> MixedChi2Solution:
    """The maximizer of ``J_mix`` over all policies, ``pi*_mix = pi_ref omega(1 + (r - mu)/beta)``.

    ``D`` is strictly convex in ``pi`` on the simplex, so the stationarity condition
    ``r(tau) - beta phi(z(tau)) = lambda_x`` (with the normalization) has the unique solution above
    (``lambda_x = mu_x - beta``). As ``beta -> 0`` it concentrates on the best responses, as
    ``beta -> inf`` it tends to ``pi_ref``.
    """
    env = _check_env(env)
    beta = check_positive(beta, "beta")
    leaf_logref = np.ascontiguousarray(env.trajectory_ref_logprobs, dtype=np.float64)
    rewards = np.ascontiguousarray(env.trajectory_rewards, dtype=np.float64)
    mu, log_z, u = _linked_trajectories(leaf_logref, rewards, beta)
    trajectory = leaf_logref + log_z
    policy, log_policy = _token_policy(env, trajectory)
    return MixedChi2Solution(policy=policy, log_policy=log_policy, trajectory_log_policy=trajectory, normalizer=mu,
                             evaluation=_evaluation(env, leaf_logref, log_z, u, beta), beta=beta)


def evaluate_mixed_chi2(env: TokenMDP, policy, beta: float) -> MixedChi2Evaluation:
    """``J_mix(pi)``, its reward, ``chi^2 = E_ref[(z - 1)^2]/2`` and KL for a token-level policy.

    ``policy`` as in :func:`xposim.exact.evaluate` (validated the same way); ``z - 1`` is formed
    as ``expm1(log pi(tau) - log pi_ref(tau))`` so that ``beta * D`` stays exact near ``pi_ref``.
    """
    env = _check_env(env)
    beta = check_positive(beta, "beta")
    evaluation = exact.evaluate(env, policy, beta)  # validates the policy
    leaf_logref = np.ascontiguousarray(env.trajectory_ref_logprobs, dtype=np.float64)
    log_pi = exact.trajectory_logprobs(env, policy)
    possible = leaf_logref > -np.inf
    if np.any(~possible & (log_pi > -np.inf)):
        inf = np.full(env.n_contexts, np.inf)
        return MixedChi2Evaluation(value=-np.inf, reward=evaluation.reward, divergence=np.inf, chi2=np.inf,
                                   kl=evaluation.kl, value_per_context=-inf, reward_per_context=evaluation.reward_per_context,
                                   divergence_per_context=inf, beta=beta)
    with np.errstate(invalid="ignore"):
        log_z = np.where(possible, log_pi - leaf_logref, 0.0)
    u = np.expm1(log_z)
    return _evaluation(env, leaf_logref, log_z, u, beta)
