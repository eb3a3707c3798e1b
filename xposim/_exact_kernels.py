"""Numba kernels of the exact KL-regularized solver (THEORY 2), on raw float64 arrays.

Every kernel works on the tree numbering of :mod:`xposim.envs.tree`: per context, state ``s``
with token ``a`` leads to node ``A*s + 1 + a``, a *leaf* (trajectory ``A*s + 1 + a - n_states``)
when that number is ``>= n_states``. Children always have larger indices than their parent, so
one sweep over the states in *decreasing* index order is a backward pass (children before
parents, one tree level after the other), and a sweep in increasing order is a forward pass.

Array arguments (all float64, C-contiguous):

* per-token ``(n_contexts, n_states, A)``: ``ref`` (``pi_ref(a|s)``), ``log_ref``
  (``log pi_ref(a|s)``, ``-inf`` where ``pi_ref = 0``), ``rewards`` (``r(s, a)``), policies and
  log-policies, ``Q``;
* per-state ``(n_contexts, n_states)``: ``V``;
* per-trajectory ``(n_contexts, n_leaves)``: leaf values, trajectory log-probabilities.

The kernels allocate nothing: outputs (and the one per-state scratch buffer of
:func:`policy_reward_and_kl`) are passed in, so learners can call them every round from jitted
code. Argument checking is the job of the Python wrappers in :mod:`xposim.exact`; the kernels
assume valid shapes, ``beta > 0`` and every ``pi_ref(.|s)`` row with at least one positive entry.
Plain-numpy references: :mod:`xposim.reference.exact_numpy`.

Every ``beta > 0`` is exact (1e-300 to 1e300): the soft maxima are centred on the best token and
take ``log1p`` of one-signed sums (:func:`soft_value_iteration`), and the KL is a sum of
non-negative terms (:func:`relative_entropy_term`).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from xposim._jit import internal_kernel

NEG_INF = -math.inf
POS_INF = math.inf

__all__ = [
    "soft_value_iteration",
    "soft_backup_leaf_values",
    "soft_backup_leaf_values_into",
    "policy_reward_and_kl",
    "relative_entropy_term",
    "trajectory_logprobs_into",
    "find_invalid_policy_row",
]


#: At or above this sum ``S = sum_a pi_ref(a|s) e^{u_a}`` the solver takes ``log1p(S - 1)`` with
#: ``S - 1 = sum_a pi_ref(a|s) (e^{u_a} - 1)``; below it, ``log S`` (see :func:`soft_value_iteration`).
LOG1P_THRESHOLD = 0.5
#: For ``|u|`` at most this, ``e^u - 1`` is a degree-7 Taylor polynomial (0.7 ulp the worst of
#: 20,000 points against mpmath); beyond it, ``exp(u) - 1`` (27 ulps the worst, as ``|e^u - 1| >= 0.0078``).
EXPM1_SERIES_THRESHOLD = 2.0**-7
#: Smallest positive normal float64; a sum ``S`` below it is recomputed in the log domain.
TINY = 2.2250738585072014e-308


@njit(cache=True)
def expm1_nonpositive(u: float) -> tuple[float, float]:
    """``(e^u, e^u - 1)`` for ``u <= 0``, both to a few ulps relative, with one ``exp`` at most.

    ``|u| <= EXPM1_SERIES_THRESHOLD``: ``e^u - 1 = sum_{k=1..7} u^k/k!`` (Horner)
    (truncation ``|u|^7/8! < 1e-19`` relative) and ``e^u = 1 + (e^u - 1)``; otherwise
    ``e^u = exp(u)`` and ``e^u - 1`` by subtraction (``<= 30`` ulps, measured against mpmath).
    ``math.expm1`` would cost twice an ``exp`` here.
    """
    if u >= -EXPM1_SERIES_THRESHOLD:
        g = u * (1.0 + u * (1.0 / 2.0 + u * (1.0 / 6.0 + u * (1.0 / 24.0 + u * (1.0 / 120.0 + u * (1.0 / 720.0 + u * (1.0 / 5040.0)))))))
        return 1.0 + g, g
    e = math.exp(u)
    return e, e - 1.0


@njit(cache=True)
def log1p_accurate(t: float) -> float:
    """``log(1 + t)`` within 2 ulps relative for ``t > -1`` (1.3 ulps the worst of 40,000 points
    against mpmath): ``t`` if ``1 + t`` rounds to 1, else ``log(w) t / (w - 1)`` with ``w = 1 + t``
    (the rounding of ``w`` cancels in the ratio). One ``log``; ``math.log1p`` costs twice that."""
    w = 1.0 + t
    if w == 1.0:
        return t
    return math.log(w) * t / (w - 1.0)


@internal_kernel
def centred_log_sum(total: float, t: float, log_ref: np.ndarray, u: np.ndarray, c: int, s: int) -> float:
    """``L = log S`` of one state's centred soft backup, ``S = sum_a pi_ref(a|s) e^{u_a}``.

    ``total = S`` and ``t = S - 1`` are the two sums of the caller (one-signed terms); ``u[c, s, :]``
    holds ``u_a <= 0`` and ``log_ref[c, s, :]`` is ``log pi_ref(.|s)``. ``log1p(t)`` when
    ``S >= 1/2`` (large ``beta``), ``log S`` when ``S`` is a normal number, and a log-domain sum
    ``max_a z_a + log sum_a e^{z_a - max}`` of ``z_a = log pi_ref(a|s) + u_a`` when ``S`` is subnormal.
    """
    if total >= LOG1P_THRESHOLD:
        return log1p_accurate(t)
    if total >= TINY:
        return math.log(total)
    vocab_size = u.shape[2]
    largest = NEG_INF
    for a in range(vocab_size):
        z = log_ref[c, s, a] + u[c, s, a]
        if z > largest:
            largest = z
    acc = 0.0
    for a in range(vocab_size):
        acc += math.exp(log_ref[c, s, a] + u[c, s, a] - largest)
    return largest + math.log(acc)


@njit(cache=True)
def soft_value_iteration(
    ref: np.ndarray,
    log_ref: np.ndarray,
    rewards: np.ndarray,
    beta: float,
    out_policy: np.ndarray,
    out_log_policy: np.ndarray,
    out_q: np.ndarray,
    out_v: np.ndarray,
) -> None:
    """Soft (KL-regularized) value iteration, one backward sweep (THEORY 2, token level).

    ``Q*(s,a) = r(s,a) + V*(child)`` with ``V*(leaf) = 0`` and
    ``V*(s) = beta log sum_a pi_ref(a|s) exp(Q*(s,a)/beta)``, evaluated *centred on the best
    token*: with ``M = max_{a: pi_ref(a|s) > 0} Q*(s,a)`` and ``u_a = (Q*(s,a) - M)/beta <= 0``,

        ``V*(s) = M + beta * L``,  ``L = log S``,  ``S = sum_a pi_ref(a|s) e^{u_a}`` in ``(0, 1]``,

    where ``L`` is computed as ``log S`` when ``S < 1/2`` (small ``beta``: ``S`` is a sum of
    positive terms, so ``log S`` has full relative precision and ``|log S| >= log 2``) and as
    ``log1p(sum_a pi_ref(a|s) (e^{u_a} - 1))`` when ``S >= 1/2`` (large ``beta``: every term is
    ``<= 0``, so the sum has no cancellation and ``beta * L`` keeps its relative precision even
    when ``L ~ (E_ref Q - M)/beta`` is 1e-300). Hence ``V*(s)`` has an absolute error of a few ulps
    of ``max|Q|`` for *every* ``beta > 0``, ``V*(s) <= M`` exactly, and nothing overflows (an
    underflowing ``u_a = -inf`` just gives ``pi* = 0``). The naive ``beta * logsumexp(log pi_ref +
    Q/beta)`` loses ``beta * eps * |log pi_ref|`` instead (``J(pi*) = 16.65`` instead of 0.61 on
    ``random_token_mdp(2, 3, 3, seed=0)`` at ``beta = 1e17``).

    Per token one ``exp`` (or, for ``|u_a| <= 2^-7``, a degree-7 polynomial) gives both ``e^{u_a}``
    and ``e^{u_a} - 1`` to a few ulps (:func:`expm1_nonpositive`), and ``log1p`` is
    :func:`log1p_accurate`: the same count of transcendental calls as the naive backup.
    ``log pi*(a|s) = log pi_ref(a|s) + (u_a - L)`` and ``pi*(a|s) = pi_ref(a|s) e^{u_a} / S`` (with
    ``S = 1 + sum pi_ref (e^{u_a} - 1)`` at large ``beta``, so ``pi* = pi_ref`` bit for bit once
    ``|u_a|`` is below half an ulp). If ``S`` is subnormal (the best token's ``pi_ref`` is), ``L``
    is a log-domain sum instead. Tokens with ``pi_ref = 0`` get ``pi* = 0`` and
    ``log pi* = -inf``. Writes ``out_policy``, ``out_log_policy``, ``out_q`` (all
    ``(n_contexts, n_states, A)``) and ``out_v`` ``(n_contexts, n_states)``; ``ref`` is
    ``pi_ref`` and ``log_ref`` its log (``-inf`` where ``pi_ref = 0``).
    """
    n_contexts, n_states, vocab_size = log_ref.shape
    for c in range(n_contexts):
        for s in range(n_states - 1, -1, -1):
            first_child = vocab_size * s + 1
            best = NEG_INF
            for a in range(vocab_size):
                child = first_child + a
                q = rewards[c, s, a]
                if child < n_states:
                    q += out_v[c, child]
                out_q[c, s, a] = q
                if q > best and ref[c, s, a] > 0.0:
                    best = q
            if best == NEG_INF:  # no token with pi_ref > 0 (excluded by the wrappers)
                out_v[c, s] = NEG_INF
                for a in range(vocab_size):
                    out_policy[c, s, a] = 0.0
                    out_log_policy[c, s, a] = NEG_INF
                continue
            # One exp (or a short polynomial) per token: u_a = (Q - M)/beta <= 0 (clamped: a token
            # with pi_ref = 0 may have Q > M; its terms vanish), e_a = e^{u_a} and g_a = e_a - 1 both
            # to a few ulps (expm1_nonpositive). S = sum pi_ref e_a, t = S - 1 = sum pi_ref g_a <= 0.
            # u_a parked in out_log_policy, e_a in out_policy.
            total = 0.0
            t = 0.0
            for a in range(vocab_size):
                u = min((out_q[c, s, a] - best) / beta, 0.0)
                out_log_policy[c, s, a] = u
                e, g = expm1_nonpositive(u)
                out_policy[c, s, a] = e
                p = ref[c, s, a]
                total += p * e
                t += p * g
            log_sum = centred_log_sum(total, t, log_ref, out_log_policy, c, s)
            if total >= LOG1P_THRESHOLD:  # large beta: S = 1 + t
                total = 1.0 + t
            elif total < TINY:  # subnormal S: pi* from the log-domain L
                for a in range(vocab_size):
                    log_pi = log_ref[c, s, a] + (out_log_policy[c, s, a] - log_sum)
                    out_log_policy[c, s, a] = log_pi
                    out_policy[c, s, a] = math.exp(log_pi)
                out_v[c, s] = best + beta * log_sum
                continue
            for a in range(vocab_size):
                out_log_policy[c, s, a] = log_ref[c, s, a] + (out_log_policy[c, s, a] - log_sum)
                out_policy[c, s, a] = ref[c, s, a] * out_policy[c, s, a] / total
            out_v[c, s] = best + beta * log_sum


@njit(cache=True)
def soft_backup_leaf_values_into(
    ref: np.ndarray,
    log_ref: np.ndarray,
    leaf_values: np.ndarray,
    beta: float,
    out_log_policy: np.ndarray,
    out_log_partition: np.ndarray,
) -> None:
    """Token-level form of ``pi_f(tau|x) ∝ pi_ref(tau|x) exp(f(tau)/beta)`` (THEORY 3), in place.

    Soft Bellman backup of terminal-only values ``f = leaf_values (n_contexts, n_leaves)``, in
    value units and centred like :func:`soft_value_iteration`: ``W(leaf) = f(leaf)``,
    ``W(s) = beta log sum_a pi_ref(a|s) e^{W(child)/beta} = M + beta L`` with
    ``M = max_{a: pi_ref > 0} W(child)``, ``u_a = (W(child) - M)/beta``,
    ``L = log sum_a pi_ref e^{u_a}`` (``log`` of the sum below 1/2, ``log1p`` of the sum of
    ``e^{u_a} - 1`` above), ``log pi_f(a|s) = log pi_ref(a|s) + (u_a - L)``; exact at every
    ``beta``. ``W(root)/beta = log Z_f(x)`` goes to ``out_log_partition[x]``
    (``Z_f(x) = sum_tau pi_ref(tau|x) e^{f(tau)/beta}``); it overflows to ``inf`` only when
    ``f/beta`` does.

    No scratch memory: ``W(s)`` of a finished state is parked in its parent's slot
    ``out_log_policy[x, parent, token]`` until the parent (processed later) turns it into a
    log-probability.
    """
    n_contexts, n_states, vocab_size = log_ref.shape
    for c in range(n_contexts):
        for s in range(n_states - 1, -1, -1):
            first_child = vocab_size * s + 1
            best = NEG_INF
            for a in range(vocab_size):
                child = first_child + a
                if child >= n_states:
                    value = leaf_values[c, child - n_states]
                    out_log_policy[c, s, a] = value
                else:
                    value = out_log_policy[c, s, a]
                if value > best and ref[c, s, a] > 0.0:
                    best = value
            if best == NEG_INF:  # no token with pi_ref > 0 (excluded by the wrappers)
                state_value = NEG_INF
                for a in range(vocab_size):
                    out_log_policy[c, s, a] = NEG_INF
            else:
                total = 0.0
                t = 0.0
                for a in range(vocab_size):
                    u = min((out_log_policy[c, s, a] - best) / beta, 0.0)
                    out_log_policy[c, s, a] = u
                    e, g = expm1_nonpositive(u)
                    p = ref[c, s, a]
                    total += p * e
                    t += p * g
                log_sum = centred_log_sum(total, t, log_ref, out_log_policy, c, s)
                for a in range(vocab_size):
                    out_log_policy[c, s, a] = log_ref[c, s, a] + (out_log_policy[c, s, a] - log_sum)
                state_value = best + beta * log_sum
            if s == 0:
                out_log_partition[c] = state_value / beta
            else:
                parent = (s - 1) // vocab_size
                out_log_policy[c, parent, s - 1 - vocab_size * parent] = state_value


@njit(cache=True)
def soft_backup_leaf_values(
    ref: np.ndarray,
    log_ref: np.ndarray,
    leaf_values: np.ndarray,
    beta: float,
    out_log_policy: np.ndarray,
) -> np.ndarray:
    """:func:`soft_backup_leaf_values_into` returning a new ``(n_contexts,)`` array ``log Z_f(x)``."""
    out_log_partition = np.empty(log_ref.shape[0])
    soft_backup_leaf_values_into(ref, log_ref, leaf_values, beta, out_log_policy, out_log_partition)
    return out_log_partition


#: Below this ``|d|`` the relative-entropy term uses its Taylor series (:func:`relative_entropy_term`).
SERIES_THRESHOLD = 0.05


@njit(cache=True)
def relative_entropy_term(p: float, q: float, log_q: float) -> float:
    """``g(p, q) = p log(p/q) - p + q = q phi(p/q)`` with ``phi(y) = y log y - y + 1 >= 0``.

    Summed over the tokens of a row it is that row's ``KL(p || q)`` (the ``-p + q`` parts cancel
    for normalized rows) but every term is ``>= 0``, so the sum never cancels: a KL of ``1e-300``
    keeps its digits. Cases: ``p = 0``: ``q``; ``q = 0 < p``: ``+inf``; ``1/2 <= p/q <= 2``
    (``p - q`` is then exact, Sterbenz): for ``|p/q - 1| < SERIES_THRESHOLD`` the series
    ``q sum_{k=2..14} (-d)^k / (k (k - 1))`` with ``d = (p - q)/q`` (truncation below 1e-18
    relative), else ``p log(p/q) - (p - q)`` (relative error below ``2 eps / phi(1.05)``, about
    4e-13); otherwise ``p (log p - log q) - p + q``. One ``log`` at most.
    """
    if p == 0.0:
        return q
    if q == 0.0:
        return POS_INF
    ratio = p / q
    if ratio < 0.5 or ratio > 2.0:
        return p * (math.log(p) - log_q) - p + q
    if abs(ratio - 1.0) >= SERIES_THRESHOLD:
        return p * math.log(ratio) - (p - q)
    d = (p - q) / q
    series = 1.0 / 182.0
    series = 1.0 / 156.0 - d * series
    series = 1.0 / 132.0 - d * series
    series = 1.0 / 110.0 - d * series
    series = 1.0 / 90.0 - d * series
    series = 1.0 / 72.0 - d * series
    series = 1.0 / 56.0 - d * series
    series = 1.0 / 42.0 - d * series
    series = 1.0 / 30.0 - d * series
    series = 1.0 / 20.0 - d * series
    series = 1.0 / 12.0 - d * series
    series = 1.0 / 6.0 - d * series
    series = 0.5 - d * series
    return q * (d * d * series)


@njit(cache=True)
def policy_reward_and_kl(
    policy: np.ndarray,
    ref: np.ndarray,
    log_ref: np.ndarray,
    rewards: np.ndarray,
    out_reward: np.ndarray,
    out_kl: np.ndarray,
    scratch_reward: np.ndarray,
    scratch_kl: np.ndarray,
) -> None:
    """Exact backward policy evaluation of expected reward and trajectory KL (THEORY 2).

    ``R_pi(s) = sum_a pi(a|s) [r(s,a) + R_pi(child)]``,
    ``K_pi(s) = sum_a [g(pi(a|s), pi_ref(a|s)) + pi(a|s) K_pi(child)]`` with leaves 0 and
    ``g(p, q) = p log(p/q) - p + q >= 0`` (:func:`relative_entropy_term`): for rows summing to 1
    ``sum_a g = KL(pi(.|s) || pi_ref(.|s))``, and since every term is non-negative the KL keeps full
    relative precision however small it is (``beta * KL`` stays exact at ``beta = 1e300``, where
    ``sum_a p (log p - log q)`` would be rounding noise of ``1e-16`` times ``beta``). Tokens with
    ``pi(a|s) = 0`` contribute ``pi_ref(a|s)`` to their row and nothing from their subtree, so
    unreachable subtrees never matter. ``K_pi`` at the root is ``KL(pi(.|x) || pi_ref(.|x))`` over
    trajectories (chain rule); it is ``+inf`` when ``pi`` reaches a token with ``pi_ref = 0``.
    Writes the root values to ``out_reward[x]`` and ``out_kl[x]``; ``scratch_reward`` and
    ``scratch_kl`` are ``(n_states,)`` buffers reused across contexts. ``V_pi = R_pi - beta K_pi``.
    """
    n_contexts, n_states, vocab_size = policy.shape
    for c in range(n_contexts):
        for s in range(n_states - 1, -1, -1):
            first_child = vocab_size * s + 1
            reward_sum = 0.0
            kl_sum = 0.0
            for a in range(vocab_size):
                p = policy[c, s, a]
                kl_sum += relative_entropy_term(p, ref[c, s, a], log_ref[c, s, a])
                if p > 0.0:
                    child = first_child + a
                    r = rewards[c, s, a]
                    if child < n_states:
                        r += scratch_reward[child]
                        kl_sum += p * scratch_kl[child]
                    reward_sum += p * r
            scratch_reward[s] = reward_sum
            scratch_kl[s] = kl_sum
        out_reward[c] = scratch_reward[0]
        out_kl[c] = scratch_kl[0]


@njit(cache=True)
def trajectory_logprobs_into(log_policy: np.ndarray, out: np.ndarray) -> None:
    """``log pi(tau|x) = sum_h log pi(a_h|s_h)`` for every leaf, into ``out (n_contexts, n_leaves)``.

    Forward pass, level by level, in place in ``out``: after level ``h`` the first ``A^(h+1)``
    entries hold the log-probabilities of the depth-``h+1`` prefixes (prefix offset ``i`` with
    token ``a`` has offset ``A*i + a``). Expanding offsets in decreasing order never overwrites an
    entry before it is read. ``-inf`` entries of ``log_policy`` propagate as ``-inf``.
    """
    n_contexts, n_states, vocab_size = log_policy.shape
    for c in range(n_contexts):
        out[c, 0] = 0.0
        level_first_state = 0
        width = 1
        while level_first_state < n_states:
            for i in range(width - 1, -1, -1):
                prefix = out[c, i]
                s = level_first_state + i
                for a in range(vocab_size):
                    out[c, vocab_size * i + a] = prefix + log_policy[c, s, a]
            level_first_state += width
            width *= vocab_size


#: Codes returned by :func:`find_invalid_policy_row`.
POLICY_OK, POLICY_NOT_FINITE, POLICY_NEGATIVE, POLICY_NOT_NORMALIZED = 0, 1, 2, 3


@njit(cache=True)
def find_invalid_policy_row(policy: np.ndarray, tolerance: float) -> tuple[int, int, int]:
    """First row ``policy[x, s, :]`` that is not a probability vector, in one pass.

    Returns ``(code, x, s)``: code ``POLICY_NOT_FINITE`` (NaN or inf entry), ``POLICY_NEGATIVE``
    (an entry ``< 0``), ``POLICY_NOT_NORMALIZED`` (``|sum_a policy[x, s, a] - 1| > tolerance``),
    or ``(POLICY_OK, -1, -1)`` when every row is valid.
    """
    n_contexts, n_states, vocab_size = policy.shape
    for c in range(n_contexts):
        for s in range(n_states):
            total = 0.0
            for a in range(vocab_size):
                p = policy[c, s, a]
                if not math.isfinite(p):
                    return POLICY_NOT_FINITE, c, s
                if p < 0.0:
                    return POLICY_NEGATIVE, c, s
                total += p
            if abs(total - 1.0) > tolerance:
                return POLICY_NOT_NORMALIZED, c, s
    return POLICY_OK, -1, -1
