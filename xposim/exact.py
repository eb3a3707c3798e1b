"""Exact ground truth of the KL-regularized objective on a :class:`~xposim.envs.TokenMDP` (THEORY 2).

* :func:`solve` — the optimum ``pi*_beta`` by soft value iteration (token-level soft Bellman
  equations), with ``V*``, ``Q*`` and ``J_beta(pi*)``.
* :func:`evaluate` — exact ``J_beta(pi) = E[r] - beta E_x KL(pi(.|x) || pi_ref(.|x))`` of any
  token-level policy.
* :func:`trajectory_logprobs`, :func:`trajectory_probabilities`, :func:`implicit_rewards` —
  trajectory-level quantities (THEORY 2.1.1, the paper's Eq. 9).
* :func:`regret_decomposition` — THEORY 2.1.3, the preference term plus the exploration bonus.
* :func:`policy_from_leaf_values` — the reward-induced class ``pi_f ∝ pi_ref e^{f/beta}`` (THEORY 3).
* :func:`greedy_policy` — temperature-0 policy, for argmax regret.

Every function takes the environment and returns float64 arrays following
``docs/architecture.md`` (per-token ``(n_contexts, n_states, A)``, per-trajectory
``(n_contexts, n_leaves)``). The numba kernels behind them live in :mod:`xposim._exact_kernels`
and take raw arrays; :mod:`xposim.reference.exact_numpy` is the plain-numpy reference.

Conventions: log-probabilities of impossible events are ``-inf``; ``0 log 0 = 0`` in every
expectation; contexts with ``rho(x) = 0`` do not enter expectations. A policy that puts mass on
a token with ``pi_ref = 0`` has ``KL = +inf`` and ``J_beta = -inf`` (never NaN).

Every ``beta > 0`` works, from 1e-300 to 1e300: :func:`solve` centres each soft maximum on the
best token and takes ``log1p`` of a one-signed sum, :func:`evaluate` sums non-negative
per-token KL terms (their docstrings give the formulas), and the exact implicit rewards of the
optimum come from ``implicit_rewards(env, solution)`` (no log-probability is formed). Tested
against a trajectory-level brute force in 40 + log10(beta) digits
(``tests/test_exact_extreme_beta.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xposim import _exact_kernels as kernels
from xposim.envs.token_mdp import TokenMDP
from xposim.resources import check_memory
from xposim.validation import check_positive

__all__ = [
    "Solution",
    "Evaluation",
    "RegretDecomposition",
    "solve",
    "evaluate",
    "kl_regularized_value",
    "trajectory_logprobs",
    "trajectory_probabilities",
    "implicit_rewards",
    "regret_decomposition",
    "policy_from_leaf_values",
    "greedy_policy",
    "POLICY_NORMALIZATION_TOLERANCE",
]

#: Rows of a policy must sum to 1 within this tolerance.
POLICY_NORMALIZATION_TOLERANCE = 1e-9


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class Solution:
    """The KL-regularized optimum ``pi*_beta`` of an environment (THEORY 2).

    Attributes
    ----------
    policy, log_policy : (n_contexts, n_states, A) ``pi*(a|s)`` and its log (``-inf`` where
        ``pi_ref(a|s) = 0``). ``log_policy`` is computed directly (never as ``log(policy)``), so
        it is finite where ``policy`` underflows to 0 at small ``beta``; pass the Solution itself
        to :func:`trajectory_logprobs` and :func:`implicit_rewards` to use it.
    V : (n_contexts, n_states) soft value ``V*(s)``; ``V[:, 0] = beta log Z(x)``.
    Q : (n_contexts, n_states, A) soft action value ``Q*(s, a) = r(s, a) + V*(child)``;
        ``Q*(s, a) - V*(s) = beta log(pi*(a|s)/pi_ref(a|s))`` (what ``implicit_rewards`` sums).
    value : ``J_beta(pi*) = sum_x rho(x) V*(x)``.
    value_per_context : (n_contexts,) ``V*(x)``.
    beta : the KL coefficient.
    """

    policy: np.ndarray
    log_policy: np.ndarray
    V: np.ndarray
    Q: np.ndarray
    value: float
    value_per_context: np.ndarray
    beta: float


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Exact evaluation of a policy: ``J_beta(pi) = reward - beta * kl`` (THEORY 2).

    ``reward = E_{x~rho, tau~pi} r(tau)``; ``kl = E_x KL(pi(.|x) || pi_ref(.|x))`` over
    trajectories (the sum of expected per-token KLs); ``+inf`` (and ``value = -inf``) when ``pi``
    reaches a token with ``pi_ref = 0``. ``*_per_context`` are ``(n_contexts,)`` arrays.
    """

    value: float
    reward: float
    kl: float
    value_per_context: np.ndarray
    reward_per_context: np.ndarray
    kl_per_context: np.ndarray
    beta: float


@dataclass(frozen=True, eq=False)
class RegretDecomposition:
    """THEORY 2.1.3: ``J(pi*) - J(pi) = preference_term + bonus_term`` for any comparator ``nu``.

    ``preference_term = E_x E_{tau~pi, tau'~nu}[f_pi(tau) - f_pi(tau')]`` with
    ``f_pi(tau) = beta log(pi(tau)/pi_ref(tau)) - r(tau)`` (what preference labels on
    ``(pi, nu)`` pairs measure); ``bonus_term = beta E_x E_{tau'~nu}[log pi(tau') - log pi*(tau')]``
    (what the XPO bonus controls); ``total`` is their sum and ``suboptimality`` is
    ``J_beta(pi*) - J_beta(pi)`` computed independently by :func:`solve` and :func:`evaluate`.
    """

    preference_term: float
    bonus_term: float
    total: float
    suboptimality: float
    beta: float


# ----------------------------------------------------------------------------- validation
def _check_env(env) -> TokenMDP:
    if not isinstance(env, TokenMDP):
        raise ValueError(f"env must be an xposim.envs.TokenMDP, got {type(env).__name__}")
    return env


def _check_beta(beta) -> float:
    """``beta`` must be a finite real number > 0."""
    return check_positive(beta, "beta")


def _check_backup_finite(root_values: np.ndarray, beta: float, what: str) -> None:
    """After a soft backup: a non-finite root value means ``values / beta`` overflowed float64.

    An overflow anywhere in the tree (``Q/beta = inf``) turns into NaN and propagates to the
    root, so checking the roots (cheap) catches it without a pass over the tree.
    """
    if not np.all(np.isfinite(root_values)):
        raise ValueError(
            f"beta={beta!r} is too small for the scale of the {what}: {what}/beta overflows float64; "
            f"increase beta (any beta with max|{what}| * horizon / beta < 1e300 works)"
        )


def _token_array(env: TokenMDP, value, argument: str, kind: str) -> np.ndarray:
    """``value`` as a C-contiguous float64 array of the shape of ``env``'s per-token arrays
    (``ValueError`` naming ``argument`` otherwise; ``kind`` says what its entries are)."""
    try:
        array = np.ascontiguousarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{argument} must be an array of {kind} ({error})") from None
    expected = env.ref_probs.shape
    if array.shape != expected:
        raise ValueError(
            f"{argument} must have shape (n_contexts, n_states, vocab_size) = {expected}, got {array.shape}"
        )
    return array


def _check_policy(env: TokenMDP, policy, argument: str = "policy") -> np.ndarray:
    """A C-contiguous float64 copy-or-view of ``policy`` after checking it is a valid policy."""
    array = _token_array(env, policy, argument, "probabilities")
    code, x, s = kernels.find_invalid_policy_row(array, POLICY_NORMALIZATION_TOLERANCE)
    if code == kernels.POLICY_NOT_FINITE:
        raise ValueError(f"{argument} must be finite; {argument}[{x}, {s}, :] = {array[x, s]}")
    if code == kernels.POLICY_NEGATIVE:
        raise ValueError(f"{argument} must be non-negative; {argument}[{x}, {s}, :] = {array[x, s]}")
    if code == kernels.POLICY_NOT_NORMALIZED:
        raise ValueError(
            f"every row {argument}[context, state, :] must sum to 1 (within "
            f"{POLICY_NORMALIZATION_TOLERANCE:g}); {argument}[{x}, {s}, :] sums to {array[x, s].sum()!r}"
        )
    return array


def _expectation_over_contexts(rho: np.ndarray, per_context: np.ndarray) -> float:
    """``sum_x rho(x) g(x)`` over the contexts with ``rho(x) > 0`` (so ``0 * inf`` never occurs)."""
    support = rho > 0
    return float(np.sum(rho[support] * per_context[support]))


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _log_policy(policy: np.ndarray) -> np.ndarray:
    """``log pi`` with ``-inf`` exactly where ``pi = 0``."""
    out = np.full(policy.shape, -np.inf)
    np.log(policy, out=out, where=policy > 0)
    return out


#: Requests below this many bytes of working memory skip the memory check (reading
#: ``/proc/meminfo`` costs more than such a solve).
MEMORY_CHECK_BYTES = 64 << 20


def _check_working_memory(env: TokenMDP, per_token_outputs: int, what: str) -> None:
    """``ValueError`` if ``per_token_outputs`` new per-token arrays (plus ``env.log_ref_probs``
    when not yet cached) do not fit in the available memory (:func:`xposim.resources.check_memory`)."""
    arrays = per_token_outputs + (0 if "log_ref_probs" in env.__dict__ else 1)
    needed = arrays * env.ref_probs.nbytes + 3 * env.n_contexts * env.n_states * 8
    if needed >= MEMORY_CHECK_BYTES:
        check_memory(
            needed,
            f"{what} on {env.name} ({arrays} per-token arrays of {env.ref_probs.size:,} float64)",
            "use a smaller tree or free memory",
        )


# ----------------------------------------------------------------------------- solver
def solve(env: TokenMDP, beta: float) -> Solution:
    """The KL-regularized optimum ``pi*_beta`` by soft value iteration (THEORY 2, [P]).

    One backward pass over the tree: ``Q*(s,a) = r(s,a) + V*(child)``, ``V*(leaf) = 0``,
    ``V*(s) = beta log sum_a pi_ref(a|s) exp(Q*(s,a)/beta)``,
    ``pi*(a|s) = pi_ref(a|s) exp((Q*(s,a) - V*(s))/beta)``. This reproduces the trajectory-level
    Gibbs policy ``pi*(tau|x) = pi_ref(tau|x) e^{r(tau)/beta} / Z(x)`` exactly, with
    ``V*(x) = beta log Z(x) = max_pi J_beta`` on context ``x``.

    Formulation (stable for every ``beta > 0``): the log-sum-exp is centred on the best token,
    ``V*(s) = M + beta L`` with ``M = max_{a: pi_ref > 0} Q*(s,a)``, ``u_a = (Q*(s,a) - M)/beta <= 0``
    and ``L = log sum_a pi_ref(a|s) e^{u_a}``, computed as ``log(sum_a pi_ref e^{u_a})`` when that
    sum is below 1/2 (small ``beta``) and as ``log1p(sum_a pi_ref(a|s) (e^{u_a} - 1))`` otherwise
    (large ``beta``), with ``e^{u_a} - 1`` itself accurate (``expm1``-grade). Both sums have terms
    of one sign only, so ``L`` has full relative precision and ``beta L`` is never a large number
    times a rounding error: ``V*`` is accurate to a few ulps of ``max|Q*|`` at every ``beta``
    (tested from 1e-6 to 1e300 against a trajectory-level brute force in 40 + log10(beta) digits,
    ``tests/test_exact_extreme_beta.py``, and at ``beta = 1e-320`` against the greedy limit),
    ``V*(x) <= max_tau r(tau)`` always, and ``J(pi*) -> E_ref r`` as ``beta -> inf``. (The textbook
    ``beta * logsumexp(log pi_ref + Q/beta)`` loses ``beta * 1e-16 * |log pi_ref|``: 16.65 instead
    of 0.61 on ``random_token_mdp(2, 3, 3, seed=0)`` at ``beta = 1e17``.) At large ``beta`` the
    returned ``policy`` equals ``pi_ref`` bit for bit once ``|Q* - M|/beta`` is below half an ulp,
    so :func:`evaluate` of it gives ``J(pi_ref)`` and not rounding noise times ``beta``.

    ``log_policy`` is ``log pi_ref + (Q* - V*)/beta`` computed from the centred terms (never from
    ``log(policy)``), so it stays finite where ``pi*`` underflows to 0 at small ``beta``; use it (or
    pass the whole :class:`Solution`) in :func:`trajectory_logprobs` and :func:`implicit_rewards`.
    Tokens with ``pi_ref = 0`` get ``pi* = 0`` and ``log pi* = -inf``. Cost
    ``O(n_contexts * n_states * A)``, memory: the outputs (three per-token arrays and ``V``) plus
    ``env.log_ref_probs`` once; a request whose outputs would not fit in the available memory is
    refused with a ``ValueError`` stating both numbers.
    """
    env = _check_env(env)
    beta = _check_beta(beta)
    _check_working_memory(env, 3, "exact.solve")
    shape = env.ref_probs.shape
    policy = np.empty(shape)
    log_policy = np.empty(shape)
    q = np.empty(shape)
    v = np.empty(shape[:2])
    with np.errstate(over="ignore"):  # (Q - M)/beta = -inf at subnormal beta means pi* = 0 (no-JIT mode warns)
        kernels.soft_value_iteration(env.ref_probs, env.log_ref_probs, env.rewards, beta, policy, log_policy, q, v)
    value_per_context = v[:, 0].copy()
    return Solution(
        policy=_read_only(policy),
        log_policy=_read_only(log_policy),
        V=_read_only(v),
        Q=_read_only(q),
        value=_expectation_over_contexts(env.rho, value_per_context),
        value_per_context=_read_only(value_per_context),
        beta=beta,
    )


def evaluate(env: TokenMDP, policy, beta: float) -> Evaluation:
    """Exact ``J_beta(pi)``, expected reward and KL of a token-level policy (THEORY 2).

    Backward over the tree: ``V_pi(s) = sum_a pi(a|s)[r(s,a) - beta log(pi(a|s)/pi_ref(a|s)) + V_pi(child)]``
    with ``0 log 0 = 0``; ``J_beta(pi) = E_x V_pi(x) = reward - beta * kl`` where ``kl`` is the
    trajectory-level ``E_x KL(pi(.|x) || pi_ref(.|x))`` (the sum of expected per-token KLs).
    If ``pi`` gives positive probability to a reachable token with ``pi_ref = 0`` then
    ``kl = +inf`` and ``value = -inf`` (the reward stays finite); tokens ``pi`` never reaches do
    not matter. Per-context KLs are clipped at 0 (rounding can give ``-1e-17`` for ``pi = pi_ref``).

    Formulation (stable for every ``beta > 0``): each state's KL is summed as
    ``sum_a g(pi(a|s), pi_ref(a|s))`` with ``g(p, q) = p log(p/q) - p + q >= 0`` (equal to the
    KL for normalized rows, :func:`xposim._exact_kernels.relative_entropy_term`), so no term
    cancels another and ``kl`` keeps full relative precision even at ``1e-300``; ``beta * kl`` is
    then exact to a few ulps at any ``beta`` (``sum_a p log(p/q)`` would leave rounding noise of
    ``1e-16`` times ``beta``). ``pi = pi_ref`` gives ``kl = 0`` exactly.

    ``policy`` must be ``(n_contexts, n_states, A)``, finite, non-negative, every row summing to
    1 within ``POLICY_NORMALIZATION_TOLERANCE``; ``beta`` finite and > 0.
    """
    env = _check_env(env)
    beta = _check_beta(beta)
    policy = _check_policy(env, policy)
    _check_working_memory(env, 0, "exact.evaluate")
    n_contexts, n_states, _ = policy.shape
    reward = np.empty(n_contexts)
    kl = np.empty(n_contexts)
    kernels.policy_reward_and_kl(
        policy, env.ref_probs, env.log_ref_probs, env.rewards, reward, kl, np.empty(n_states), np.empty(n_states)
    )
    np.maximum(kl, 0.0, out=kl)
    with np.errstate(over="ignore"):  # beta * kl may overflow to inf for absurd beta: value -inf
        value = reward - beta * kl
    return Evaluation(
        value=_expectation_over_contexts(env.rho, value),
        reward=_expectation_over_contexts(env.rho, reward),
        kl=_expectation_over_contexts(env.rho, kl),
        value_per_context=_read_only(value),
        reward_per_context=_read_only(reward),
        kl_per_context=_read_only(kl),
        beta=beta,
    )


def kl_regularized_value(env: TokenMDP, policy, beta: float) -> float:
    """``J_beta(pi) = E[r] - beta E_x KL(pi || pi_ref)``; shortcut for ``evaluate(env, policy, beta).value``."""
    return evaluate(env, policy, beta).value


# ----------------------------------------------------------------------------- trajectories
def _check_log_policy(env: TokenMDP, log_policy, argument: str = "log_policy") -> np.ndarray:
    """A C-contiguous float64 ``log_policy`` after checking it is the log of a valid policy.

    Entries must be ``<= POLICY_NORMALIZATION_TOLERANCE`` (rounding above 0), never NaN (``-inf``
    is probability 0), and every row's ``exp`` must sum to 1 within ``POLICY_NORMALIZATION_TOLERANCE``.
    """
    array = _token_array(env, log_policy, argument, "log-probabilities")
    bad = np.isnan(array) | (array > POLICY_NORMALIZATION_TOLERANCE)
    if np.any(bad):
        x, s, _ = np.argwhere(bad)[0]
        raise ValueError(
            f"{argument} must be log-probabilities in [-inf, 0] (up to {POLICY_NORMALIZATION_TOLERANCE:g}); "
            f"{argument}[{x}, {s}, :] = {array[x, s]}"
        )
    _check_policy(env, np.exp(array), argument=f"exp({argument})")
    return array


def _check_solution_argument(env: TokenMDP, solution: "Solution", log_policy) -> None:
    """A :class:`Solution` given as ``policy`` must be of ``env`` and come without ``log_policy``."""
    if log_policy is not None:
        raise ValueError("give either a Solution (policy=solution) or log_policy, not both")
    if solution.log_policy.shape != env.ref_probs.shape:
        raise ValueError(
            f"policy (a Solution) must belong to env: its arrays have shape {solution.log_policy.shape}, "
            f"env needs {env.ref_probs.shape}"
        )


def _log_policy_argument(env: TokenMDP, policy, log_policy) -> np.ndarray:
    """The per-token log-policy given as a :class:`Solution`, a ``log_policy`` array, or a ``policy`` array."""
    if isinstance(policy, Solution):
        _check_solution_argument(env, policy, log_policy)
        return policy.log_policy
    if log_policy is not None:
        if policy is not None:
            raise ValueError("give either policy or log_policy, not both")
        return _check_log_policy(env, log_policy)
    if policy is None:
        raise ValueError("policy must be given (a probability array or a Solution), or log_policy")
    return _log_policy(_check_policy(env, policy))


def trajectory_logprobs(env: TokenMDP, policy=None, *, log_policy=None) -> np.ndarray:
    """``log pi(tau|x) = sum_h log pi(a_h|s_h)`` for every trajectory, ``(n_contexts, n_leaves)``.

    The policy is given as one of: ``policy`` a ``(n_contexts, n_states, A)`` probability array;
    ``policy`` a :class:`Solution` (its ``log_policy`` is used: no underflow at small ``beta``);
    or ``log_policy=`` a per-token log-probability array. From probabilities, ``log pi`` is
    ``-inf`` wherever a token probability underflowed to 0, although the true log-probability is
    finite; pass log-probabilities to keep them. ``-inf`` for trajectories ``pi`` cannot produce.
    Leaves are numbered as in :mod:`xposim.envs.tree` (base-``A`` integer of the tokens).
    """
    env = _check_env(env)
    per_token = _log_policy_argument(env, policy, log_policy)
    out = np.empty((env.n_contexts, env.n_leaves))
    kernels.trajectory_logprobs_into(per_token, out)
    return out


def trajectory_probabilities(env: TokenMDP, policy=None, *, log_policy=None) -> np.ndarray:
    """``pi(tau|x) = prod_h pi(a_h|s_h)``, ``(n_contexts, n_leaves)``; each row sums to 1.

    Arguments as in :func:`trajectory_logprobs`.
    """
    return np.exp(trajectory_logprobs(env, policy, log_policy=log_policy))


def implicit_rewards(env: TokenMDP, policy=None, beta: float | None = None, *, log_policy=None) -> np.ndarray:
    """DPO implicit reward ``beta log(pi(tau|x) / pi_ref(tau|x))``, ``(n_contexts, n_leaves)``.

    For ``pi = pi*_beta`` it equals ``r(tau) - V*(x)`` on every trajectory (THEORY 2.1.1, the
    paper's Eq. 9). The policy is given as one of:

    * ``policy`` a :class:`Solution` of :func:`solve` (recommended for ``pi*``): the sum along the
      path of ``Q*(s_h,a_h) - V*(s_h) = beta log(pi*(a_h|s_h)/pi_ref(a_h|s_h))``, times
      ``beta / solution.beta`` (``beta`` defaults to ``solution.beta``). Exact to a few ulps of
      ``max|r|`` at every ``beta`` from 1e-300 to 1e300: no log-probability is formed, so neither
      underflow (small ``beta``) nor ``beta`` times a rounding error of ``log pi_ref`` (large
      ``beta``) enters.
    * ``log_policy=`` a per-token log-probability array: ``beta (sum_h log pi - log pi_ref(tau))``;
      exact while ``beta * 1e-16 * |log pi_ref(tau)|`` is negligible (``beta <~ 1e3`` for 1e-10).
    * ``policy`` a probability array (the original form): as ``log_policy = log(policy)``, so
      trajectories whose token probabilities underflowed to 0 (``pi*`` at ``beta <~ 1e-3``) come
      out as ``-inf`` and subnormal ones lose digits; prefer one of the forms above.

    Conventions (never NaN): ``-inf`` where ``pi(tau) = 0`` (whatever ``pi_ref(tau)``; for a
    :class:`Solution`, exactly where ``pi_ref(tau) = 0``), ``+inf`` where ``pi(tau) > 0 = pi_ref(tau)``.
    """
    env = _check_env(env)
    if isinstance(policy, Solution):
        solution = policy
        _check_solution_argument(env, solution, log_policy)
        beta = solution.beta if beta is None else _check_beta(beta)
        advantage = np.subtract(solution.Q, solution.V[:, :, None])
        out = np.empty((env.n_contexts, env.n_leaves))
        kernels.trajectory_logprobs_into(advantage, out)
        del advantage
        if beta != solution.beta:
            out *= beta / solution.beta
        out[env.trajectory_ref_logprobs == -np.inf] = -np.inf
        return out
    if beta is None:
        raise ValueError("beta must be a finite real number > 0, got None (only a Solution carries its own beta)")
    beta = _check_beta(beta)
    logprobs = trajectory_logprobs(env, policy, log_policy=log_policy)
    with np.errstate(invalid="ignore"):
        log_ratio = np.where(logprobs == -np.inf, -np.inf, logprobs - env.trajectory_ref_logprobs)
    return beta * log_ratio


def regret_decomposition(env: TokenMDP, policy, beta: float, comparator) -> RegretDecomposition:
    """THEORY 2.1.3 [D]: ``J(pi*) - J(pi) = preference_term + bonus_term`` for a comparator ``nu``.

    With ``f_pi(tau) = beta log(pi(tau|x)/pi_ref(tau|x)) - r(tau)``:
    ``preference_term = E_x E_{tau~pi, tau'~nu}[f_pi(tau) - f_pi(tau')]`` and
    ``bonus_term = beta E_x E_{tau'~nu}[log pi(tau'|x) - log pi*(tau'|x)]``. The comparator ``nu``
    is a token-level policy array ``(n_contexts, n_states, A)``; its trajectory distribution is
    used. ``suboptimality`` is computed independently (``solve(...).value - evaluate(...).value``).

    Both terms are finite only if ``nu`` is supported where ``pi`` and ``pi_ref`` are (otherwise
    they are ``+inf`` and ``-inf``): a comparator with mass on a trajectory of zero ``pi`` or
    ``pi_ref`` probability raises ``ValueError``. If ``pi`` itself has mass where ``pi_ref = 0``,
    the preference term, total and suboptimality are ``+inf``.
    """
    env = _check_env(env)
    beta = _check_beta(beta)
    policy = _check_policy(env, policy, "policy")
    comparator = _check_policy(env, comparator, "comparator")
    optimum = solve(env, beta)
    logprobs = trajectory_logprobs(env, policy)
    comparator_logprobs = trajectory_logprobs(env, comparator)
    optimal_logprobs = np.empty_like(logprobs)
    kernels.trajectory_logprobs_into(optimum.log_policy, optimal_logprobs)
    ref_logprobs = env.trajectory_ref_logprobs
    on_policy = logprobs > -np.inf
    on_comparator = comparator_logprobs > -np.inf
    uncovered = on_comparator & ~(on_policy & (ref_logprobs > -np.inf))
    if np.any(uncovered[env.rho > 0]):
        x, k = np.argwhere(uncovered & (env.rho > 0)[:, None])[0]
        raise ValueError(
            "comparator must only reach trajectories that policy and pi_ref both give positive "
            f"probability (else the two terms are +inf and -inf); context {x}, trajectory {k} has "
            f"comparator log-prob {comparator_logprobs[x, k]:.3g}, policy log-prob {logprobs[x, k]:.3g}, "
            f"reference log-prob {ref_logprobs[x, k]:.3g}"
        )
    with np.errstate(invalid="ignore"):
        f_pi = beta * (logprobs - ref_logprobs) - env.trajectory_rewards  # +inf where pi > 0 = pi_ref
        policy_mean_f = np.where(on_policy, np.exp(logprobs) * np.where(on_policy, f_pi, 0.0), 0.0).sum(axis=1)
        comparator_probs = np.exp(comparator_logprobs)
        comparator_mean_f = np.where(on_comparator, comparator_probs * np.where(on_comparator, f_pi, 0.0), 0.0).sum(axis=1)
        log_ratio_to_optimum = np.where(on_comparator, logprobs - optimal_logprobs, 0.0)
        bonus = beta * (comparator_probs * log_ratio_to_optimum).sum(axis=1)
        preference = policy_mean_f - comparator_mean_f
    preference_term = _expectation_over_contexts(env.rho, preference)
    bonus_term = _expectation_over_contexts(env.rho, bonus)
    return RegretDecomposition(
        preference_term=preference_term,
        bonus_term=bonus_term,
        total=preference_term + bonus_term,
        suboptimality=optimum.value - evaluate(env, policy, beta).value,
        beta=beta,
    )


# ----------------------------------------------------------------------------- policy classes
def policy_from_leaf_values(env: TokenMDP, leaf_values, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Token-level policy of ``pi_f(tau|x) ∝ pi_ref(tau|x) exp(f(tau)/beta)`` (THEORY 3, reward-induced class).

    ``f = leaf_values`` has shape ``(n_contexts, n_leaves)``. The soft Bellman backup of the
    terminal values ``f`` gives ``pi_f(a|s)``; returns ``(policy, log_partition)`` with
    ``policy (n_contexts, n_states, A)`` and ``log_partition[x] = log Z_f(x) =
    log sum_tau pi_ref(tau|x) e^{f(tau)/beta}``. ``policy_from_leaf_values(env, r, beta)`` is
    ``pi*_beta`` for terminal rewards ``r``. The backup is centred like :func:`solve` (in value
    units ``W = beta L``), so ``beta * log_partition`` is exact at every ``beta``; ``ValueError``
    only if ``log Z_f = W/beta`` itself overflows float64. Learners should call the
    allocation-free kernel :func:`xposim._exact_kernels.soft_backup_leaf_values_into` directly.
    """
    env = _check_env(env)
    try:
        values = np.ascontiguousarray(leaf_values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"leaf_values must be an array of real numbers ({error})") from None
    expected = (env.n_contexts, env.n_leaves)
    if values.shape != expected:
        raise ValueError(f"leaf_values must have shape (n_contexts, n_leaves) = {expected}, got {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("leaf_values must be finite (found NaN or inf)")
    beta = _check_beta(beta)
    log_policy = np.empty(env.ref_probs.shape)
    log_partition = np.empty(env.n_contexts)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow of f/beta: caught below
        kernels.soft_backup_leaf_values_into(env.ref_probs, env.log_ref_probs, values, beta, log_policy, log_partition)
    _check_backup_finite(log_partition, beta, "leaf_values")
    return np.exp(log_policy), log_partition


def greedy_policy(policy) -> np.ndarray:
    """Temperature-0 version of ``policy``: all mass on ``argmax_a pi(a|s)`` in every state.

    Ties go to the lowest token. Input and output are ``(n_contexts, n_states, A)`` arrays; the
    input need not be normalized (log-probabilities and logits work too, ``-inf`` included) but
    must not contain NaN.
    """
    try:
        array = np.asarray(policy, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"policy must be an array of real numbers ({error})") from None
    if array.ndim != 3 or array.shape[2] < 2:
        raise ValueError(f"policy must have shape (n_contexts, n_states, vocab_size >= 2), got {array.shape}")
    if np.any(np.isnan(array)):
        raise ValueError("policy must not contain NaN")
    out = np.zeros(array.shape)
    np.put_along_axis(out, np.argmax(array, axis=2)[:, :, None], 1.0, axis=2)
    return out
