"""Coverage coefficients of THEORY section 5, computed exactly on a :class:`TokenMDP`.

* Coverability [P] ``C_cov(Pi) = inf_mu sup_tau sup_pi d^pi(tau)/mu(tau)``; the infimum is attained
  at ``mu ∝ sup_pi d^pi`` [D], so ``C_cov = E_{x~rho} sum_tau sup_{pi in Pi} pi(tau|x)``.
* Concentrability [P] ``C_conc(Pi) = sup_x sup_tau sup_{pi in Pi} pi(tau|x)/pi_ref(tau|x)``.
* Sequential extrapolation coefficient [P, authors' restatement] realized along a sequence of
  policies (:func:`sec_along`).

Classes: a finite class given as an array of policies ``(N, n_contexts, n_states, A)``, the
tabular reward-induced box class ``Pi_F``, ``F = [0, R_max]^{trajectories}`` (THEORY 3, closed
forms), and the class of all policies. Everything is computed in the log domain.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from xposim.envs.token_mdp import TokenMDP
from xposim.exact import trajectory_logprobs
from xposim.validation import check_positive

#: Tolerance on the normalization of every policy row ``pi(.|s)``.
POLICY_TOLERANCE = 1e-9


# ------------------------------------------------------------------------------- helpers
def _policy_stack(env: TokenMDP, policies, argument: str = "policies") -> np.ndarray:
    """Validate ``policies`` as ``(N, n_contexts, n_states, A)`` row-stochastic float64 arrays."""
    stack = np.asarray(policies, dtype=np.float64)
    expected = (env.n_contexts, env.n_states, env.vocab_size)
    if stack.ndim != 4 or stack.shape[1:] != expected or stack.shape[0] < 1:
        raise ValueError(
            f"{argument} must have shape (N, n_contexts, n_states, vocab_size) = (N, {', '.join(map(str, expected))}) "
            f"with N >= 1, got {stack.shape}"
        )
    if not np.all(np.isfinite(stack)) or np.any(stack < 0):
        raise ValueError(f"{argument} must be finite and non-negative")
    deviation = np.abs(stack.sum(axis=3) - 1.0)
    if np.any(deviation > POLICY_TOLERANCE):
        i, x, s = np.unravel_index(np.argmax(deviation), deviation.shape)
        raise ValueError(
            f"every row {argument}[i, context, state, :] must sum to 1 (within {POLICY_TOLERANCE:g}); "
            f"{argument}[{i}, {x}, {s}, :] sums to {float(stack[i, x, s].sum())!r}"
        )
    return stack


def _trajectory_logprob_stack(env: TokenMDP, policies: np.ndarray) -> np.ndarray:
    """``log pi_i(tau|x)`` for every policy: ``(N, n_contexts, n_leaves)``, ``-inf`` where impossible."""
    return np.stack([np.asarray(trajectory_logprobs(env, policy), dtype=np.float64) for policy in policies])


def _expect_over_contexts(env: TokenMDP, per_context: np.ndarray, keep: bool):
    return per_context if keep else float(env.rho @ per_context)


def _log1mexp(a: np.ndarray) -> np.ndarray:
    """``log(1 - e^a)`` for ``a <= 0`` (Mächler's two-branch formula); ``-inf`` at ``a = 0``."""
    a = np.asarray(a, dtype=np.float64)
    out = np.empty_like(a)
    with np.errstate(divide="ignore"):
        near = a > -np.log(2.0)
        out[near] = np.log(-np.expm1(a[near]))
        out[~near] = np.log1p(-np.exp(a[~near]))
    return out


def _log_box_max_terms(env: TokenMDP, beta: float, r_max: float | None) -> tuple[np.ndarray, np.ndarray]:
    """``(log ref(tau), log(ref(tau) + (1 - ref(tau)) e^{-R/beta}))`` per ``(context, leaf)``.

    Their difference is ``log max_f pi_f(tau)``; minus the second is ``log max_f pi_f(tau)/ref(tau)``.
    Written with ``e^{-R/beta}`` so nothing of size ``R/beta`` is ever subtracted (exact as ``beta -> 0``).
    """
    beta = check_positive(beta, "beta")
    r_max = env.r_max if r_max is None else check_positive(r_max, "r_max")
    log_ref = env.trajectory_ref_logprobs
    log_denominator = np.logaddexp(log_ref, _log1mexp(np.minimum(log_ref, 0.0)) - r_max / beta)
    return log_ref, log_denominator


# ------------------------------------------------------------------------------- coverability
def coverability(env: TokenMDP, policies, per_context: bool = False) -> float | np.ndarray:
    """Coverability of the finite class ``{pi_1..pi_N}`` (THEORY 5) [D exact form].

    ``C_cov = E_{x~rho} sum_tau max_i pi_i(tau|x)``; per context ``1 <= C_cov(x) <= min(N, A^H)``.
    ``policies``: ``(N, n_contexts, n_states, A)``. ``per_context=True`` returns the
    ``(n_contexts,)`` array ``sum_tau max_i pi_i(tau|x)`` instead of the ``rho``-expectation.
    """
    stack = _policy_stack(env, policies)
    log_max = _trajectory_logprob_stack(env, stack).max(axis=0)
    per = np.exp(log_max).sum(axis=1)
    return _expect_over_contexts(env, per, per_context)


def coverability_box_class(
    env: TokenMDP, beta: float, r_max: float | None = None, per_context: bool = False
) -> float | np.ndarray:
    """Coverability of the tabular reward-induced class ``Pi_F``, ``F = [0, R_max]^{trajectories}`` [D].

    ``pi_f(tau|x) = pi_ref(tau|x) e^{f(tau)/beta} / sum_tau' pi_ref(tau'|x) e^{f(tau')/beta}`` is
    increasing in ``f(tau)`` and decreasing in every other ``f(tau')``, so its maximum over the box is
    at ``f(tau) = R_max`` and ``f = 0`` elsewhere:
    ``max_f pi_f(tau|x) = ref e^{R/beta} / (ref e^{R/beta} + 1 - ref)`` with ``ref = pi_ref(tau|x)``.
    ``C_cov = E_x sum_tau`` of that, evaluated in the log domain as
    ``ref / (ref + (1 - ref) e^{-R/beta})`` (exact as ``beta -> 0``, where it tends to 1 on every
    leaf with ``pi_ref > 0``).
    ``r_max`` defaults to ``env.r_max``. Leaves with ``pi_ref = 0`` contribute 0.
    """
    log_ref, log_denominator = _log_box_max_terms(env, beta, r_max)
    supported = np.isfinite(log_ref)  # pi_f(tau) = 0 for every f where pi_ref = 0
    log_max = np.where(supported, log_ref - np.where(supported, log_denominator, 0.0), -np.inf)
    per = np.exp(log_max).sum(axis=1)
    return _expect_over_contexts(env, per, per_context)


def coverability_unrestricted(env: TokenMDP, per_context: bool = False) -> float | np.ndarray:
    """Coverability of the class of ALL policies: ``A^H`` per context.

    Every trajectory is the deterministic output of some policy, so ``sup_pi pi(tau|x) = 1`` for
    every leaf — including leaves with ``pi_ref = 0``: the unrestricted class is not tied to the
    reference support. The largest possible value (``C_cov <= min(|Pi|, A^H)``).
    """
    per = np.full(env.n_contexts, float(env.n_leaves))
    return _expect_over_contexts(env, per, per_context)


# ------------------------------------------------------------------------------- concentrability
def log_concentrability(env: TokenMDP, policies) -> float:
    """``log C_conc`` of a finite class: ``max log(pi_i(tau|x)/pi_ref(tau|x))``.

    The max runs over contexts with ``rho(x) > 0`` and leaves with ``pi_i(tau|x) > 0``; it is
    ``+inf`` if some ``pi_i`` puts mass where ``pi_ref = 0``.
    """
    stack = _policy_stack(env, policies)
    log_policy = _trajectory_logprob_stack(env, stack)
    log_ref = np.broadcast_to(env.trajectory_ref_logprobs, log_policy.shape)
    active = (env.rho > 0)[None, :, None] & np.isfinite(log_policy)
    if np.any(active & np.isneginf(log_ref)):
        return float("inf")
    with np.errstate(invalid="ignore"):  # -inf - -inf off the active set
        log_ratio = log_policy - log_ref
    return float(np.max(log_ratio[active]))


def concentrability(env: TokenMDP, policies) -> float:
    """``C_conc = sup_x sup_tau max_i pi_i(tau|x)/pi_ref(tau|x)`` of a finite class (THEORY 5) [P].

    ``exp`` of :func:`log_concentrability`: ``inf`` if the ratio is unbounded or exceeds the float range.
    """
    with np.errstate(over="ignore"):
        return float(np.exp(log_concentrability(env, policies)))


def log_concentrability_box_class(env: TokenMDP, beta: float, r_max: float | None = None) -> float:
    """``log C_conc`` of the tabular box class ``Pi_F`` [D]: the ratio ``pi_f/pi_ref = e^{f(tau)/beta}/Z_f``
    is maximized at the same vertex as in :func:`coverability_box_class`:
    ``max_f pi_f(tau)/ref(tau) = e^{R/beta} / (ref e^{R/beta} + 1 - ref)``; the sup runs over
    contexts with ``rho > 0`` and leaves with ``pi_ref > 0`` (elsewhere ``pi_f = 0``).
    Up to ``e^{R_max/beta}`` (THEORY 5); finite for any ``beta > 0``.
    """
    log_ref, log_denominator = _log_box_max_terms(env, beta, r_max)
    active = (env.rho > 0)[:, None] & np.isfinite(log_ref)
    return float(np.max(-log_denominator[active]))


def concentrability_box_class(env: TokenMDP, beta: float, r_max: float | None = None) -> float:
    """``C_conc`` of the tabular box class: ``exp`` of :func:`log_concentrability_box_class`
    (``inf`` only when the value exceeds the float64 range; use the log version then)."""
    with np.errstate(over="ignore"):
        return float(np.exp(log_concentrability_box_class(env, beta, r_max)))


# ------------------------------------------------------------------------------- SEC
class SequentialExtrapolation(NamedTuple):
    """Realized SEC along a sequence: ``total = per_round.sum()``, ``per_round[t] = numerators[t] / max(lam, denominators[t])``."""

    total: float
    per_round: np.ndarray
    numerators: np.ndarray
    denominators: np.ndarray


def sec_along(env: TokenMDP, policies, beta: float, v_max: float, lam: float | None = None) -> SequentialExtrapolation:
    """Sequential extrapolation coefficient realized along ``pi^(1..T)`` (THEORY 5) [P, authors' restatement].

    With ``f_pi(tau) = beta log(pi(tau|x)/pi_ref(tau|x)) - r(tau)`` and
    ``delta_pi(tau, tau') = f_pi(tau) - f_pi(tau')``::

        SEC = sum_t (E^(t)[delta_{pi^(t)}])^2 / max(lam, sum_{i<t} E^(i)[delta_{pi^(t)}^2])

    where ``E^(i)`` draws ``x ~ rho, tau ~ pi^(i)(.|x), tau' ~ pi_ref(.|x)`` independently and
    ``lam = v_max^2`` by default. The paper writes the denominator as ``lam v sum``; ``v`` is the
    maximum. The round-1 denominator is ``lam`` (empty sum).

    Exact evaluation: ``delta`` is unchanged by a per-context shift of ``f``, so ``f`` is centred
    at ``E_ref f`` (``g = f - E_ref f``); then ``E^(i)[delta] = E_x E_{pi^(i)} g`` and
    ``E^(i)[delta^2] = E_x (E_{pi^(i)} g^2 + E_ref g^2)`` (independent draws), and the sum over
    ``i < t`` uses the cumulative sum of the trajectory distributions. Cost ``O(T n_contexts n_leaves)``.

    Requires bounded density ratios (THEORY 3): on every context with ``rho > 0`` each
    ``pi^(t)`` must have the same trajectory support as ``pi_ref`` (else ``f`` is infinite on a
    trajectory of positive weight and ``ValueError`` is raised). Trajectories outside the
    support have zero weight under every draw and are ignored.

    ``policies``: ``(T, n_contexts, n_states, A)``. Returns :class:`SequentialExtrapolation`.
    """
    beta = check_positive(beta, "beta")
    v_max = check_positive(v_max, "v_max")
    lam = v_max**2 if lam is None else check_positive(lam, "lam")
    stack = _policy_stack(env, policies)
    log_policy = _trajectory_logprob_stack(env, stack)  # (T, C, L)
    log_ref = env.trajectory_ref_logprobs
    support = np.isfinite(log_ref)
    active = env.rho > 0
    mismatch = (np.isfinite(log_policy) != support[None]) & active[None, :, None]
    if np.any(mismatch):
        t, x, k = np.argwhere(mismatch)[0]
        raise ValueError(
            f"sec_along needs bounded density ratios: policies[{t}] gives trajectory {k} of context {x} "
            f"probability {np.exp(log_policy[t, x, k]):.3g} while pi_ref gives {np.exp(log_ref[x, k]):.3g} "
            "(f_pi is infinite on a trajectory of positive weight)"
        )
    keep = support[None] & active[None, :, None]
    with np.errstate(invalid="ignore"):
        f = np.where(keep, beta * (log_policy - log_ref[None]) - env.trajectory_rewards[None], 0.0)
    policy_probs = np.where(keep, np.exp(np.where(keep, log_policy, 0.0)), 0.0)
    ref_probs = np.where(support, np.exp(np.where(support, log_ref, 0.0)), 0.0)
    g = f - np.einsum("cl,tcl->tc", ref_probs, f)[:, :, None]
    g = np.where(keep, g, 0.0)
    g2 = g * g
    rho = env.rho
    numerators = (np.einsum("tcl,tcl->tc", policy_probs, g) @ rho) ** 2
    previous = np.zeros_like(policy_probs)  # sum_{i<t} pi^(i)(tau|x)
    np.cumsum(policy_probs[:-1], axis=0, out=previous[1:])
    n_previous = np.arange(stack.shape[0], dtype=np.float64)
    second_moments = np.einsum("tcl,tcl->tc", previous, g2) + n_previous[:, None] * np.einsum("cl,tcl->tc", ref_probs, g2)
    denominators = second_moments @ rho
    per_round = numerators / np.maximum(lam, denominators)
    return SequentialExtrapolation(float(per_round.sum()), per_round, numerators, denominators)
