"""Numba kernels of the exact KL-regularized solver (THEORY 2), on raw float64 arrays.

Every kernel works on the tree numbering of :mod:`xposim.envs.tree`: per context, state ``s``
with token ``a`` leads to node ``A*s + 1 + a``, a *leaf* (trajectory ``A*s + 1 + a - n_states``)
when that number is ``>= n_states``. Children always have larger indices than their parent, so
one sweep over the states in *decreasing* index order is a backward pass (children before
parents, one tree level after the other), and a sweep in increasing order is a forward pass.

Array arguments (all float64, C-contiguous):

* per-token ``(n_contexts, n_states, A)``: ``log_ref`` (``log pi_ref(a|s)``, ``-inf`` where
  ``pi_ref = 0``), ``rewards`` (``r(s, a)``), policies and log-policies, ``Q``;
* per-state ``(n_contexts, n_states)``: ``V``;
* per-trajectory ``(n_contexts, n_leaves)``: leaf values, trajectory log-probabilities.

The kernels allocate nothing: outputs (and the one per-state scratch buffer of
:func:`policy_reward_and_kl`) are passed in, so learners can call them every round from jitted
code. Argument checking is the job of the Python wrappers in :mod:`xposim.exact`; the kernels
assume valid shapes, ``beta > 0`` and every ``pi_ref(.|s)`` row with at least one positive entry.
Plain-numpy references: :mod:`xposim.reference.exact_numpy`.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

NEG_INF = -math.inf
POS_INF = math.inf

__all__ = [
    "soft_value_iteration",
    "soft_backup_leaf_values",
    "soft_backup_leaf_values_into",
    "policy_reward_and_kl",
    "trajectory_logprobs_into",
    "find_invalid_policy_row",
]


@njit(cache=True)
def soft_value_iteration(
    log_ref: np.ndarray,
    rewards: np.ndarray,
    beta: float,
    out_policy: np.ndarray,
    out_log_policy: np.ndarray,
    out_q: np.ndarray,
    out_v: np.ndarray,
) -> None:
    """Soft (KL-regularized) value iteration, one backward sweep (THEORY 2, token level).

    ``Q*(s,a) = r(s,a) + V*(child)`` with ``V*(leaf) = 0``;
    ``V*(s) = beta * log sum_a exp(log pi_ref(a|s) + Q*(s,a)/beta)``;
    ``log pi*(a|s) = log pi_ref(a|s) + Q*(s,a)/beta - V*(s)/beta``.

    The log-sum-exp is shifted by its largest term, so any ``beta > 0`` and finite rewards with
    finite ``Q/beta`` give finite ``V``; tokens with ``pi_ref = 0`` get ``pi* = 0`` and
    ``log pi* = -inf``. Writes ``out_policy``, ``out_log_policy``, ``out_q`` (all
    ``(n_contexts, n_states, A)``) and ``out_v`` ``(n_contexts, n_states)``.
    """
    n_contexts, n_states, vocab_size = log_ref.shape
    for c in range(n_contexts):
        for s in range(n_states - 1, -1, -1):
            first_child = vocab_size * s + 1
            largest = NEG_INF
            for a in range(vocab_size):
                child = first_child + a
                q = rewards[c, s, a]
                if child < n_states:
                    q += out_v[c, child]
                out_q[c, s, a] = q
                z = log_ref[c, s, a] + q / beta
                out_log_policy[c, s, a] = z
                if z > largest:
                    largest = z
            if largest == NEG_INF:  # no token with pi_ref > 0 (excluded by the wrappers)
                out_v[c, s] = NEG_INF
                for a in range(vocab_size):
                    out_policy[c, s, a] = 0.0
                    out_log_policy[c, s, a] = NEG_INF
                continue
            total = 0.0
            for a in range(vocab_size):
                weight = math.exp(out_log_policy[c, s, a] - largest)
                out_policy[c, s, a] = weight
                total += weight
            log_normalizer = largest + math.log(total)
            out_v[c, s] = beta * log_normalizer
            inverse_total = 1.0 / total
            for a in range(vocab_size):
                out_log_policy[c, s, a] -= log_normalizer
                out_policy[c, s, a] *= inverse_total


@njit(cache=True)
def soft_backup_leaf_values_into(
    log_ref: np.ndarray,
    leaf_values: np.ndarray,
    beta: float,
    out_log_policy: np.ndarray,
    out_log_partition: np.ndarray,
) -> None:
    """Token-level form of ``pi_f(tau|x) ∝ pi_ref(tau|x) exp(f(tau)/beta)`` (THEORY 3), in place.

    Soft Bellman backup with terminal-only values ``f = leaf_values (n_contexts, n_leaves)`` in
    units of ``beta``: ``L(leaf) = f(leaf)/beta``,
    ``L(s) = log sum_a exp(log pi_ref(a|s) + L(child))``,
    ``log pi_f(a|s) = log pi_ref(a|s) + L(child) - L(s)``; ``L(root) = log Z_f(x)`` goes to
    ``out_log_partition[x]`` (``Z_f(x) = sum_tau pi_ref(tau|x) e^{f(tau)/beta}``).

    No scratch memory: ``L(s)`` of a finished state is parked in its parent's slot
    ``out_log_policy[x, parent, token]`` until the parent (processed later) turns it into a
    log-probability.
    """
    n_contexts, n_states, vocab_size = log_ref.shape
    for c in range(n_contexts):
        for s in range(n_states - 1, -1, -1):
            first_child = vocab_size * s + 1
            largest = NEG_INF
            for a in range(vocab_size):
                child = first_child + a
                if child >= n_states:
                    child_log_partition = leaf_values[c, child - n_states] / beta
                else:
                    child_log_partition = out_log_policy[c, s, a]
                z = log_ref[c, s, a] + child_log_partition
                out_log_policy[c, s, a] = z
                if z > largest:
                    largest = z
            if largest == NEG_INF:  # no token with pi_ref > 0 (excluded by the wrappers)
                log_normalizer = NEG_INF
                for a in range(vocab_size):
                    out_log_policy[c, s, a] = NEG_INF
            else:
                total = 0.0
                for a in range(vocab_size):
                    total += math.exp(out_log_policy[c, s, a] - largest)
                log_normalizer = largest + math.log(total)
                for a in range(vocab_size):
                    out_log_policy[c, s, a] -= log_normalizer
            if s == 0:
                out_log_partition[c] = log_normalizer
            else:
                parent = (s - 1) // vocab_size
                out_log_policy[c, parent, s - 1 - vocab_size * parent] = log_normalizer


@njit(cache=True)
def soft_backup_leaf_values(
    log_ref: np.ndarray,
    leaf_values: np.ndarray,
    beta: float,
    out_log_policy: np.ndarray,
) -> np.ndarray:
    """:func:`soft_backup_leaf_values_into` returning a new ``(n_contexts,)`` array ``log Z_f(x)``."""
    out_log_partition = np.empty(log_ref.shape[0])
    soft_backup_leaf_values_into(log_ref, leaf_values, beta, out_log_policy, out_log_partition)
    return out_log_partition


@njit(cache=True)
def policy_reward_and_kl(
    policy: np.ndarray,
    log_ref: np.ndarray,
    rewards: np.ndarray,
    out_reward: np.ndarray,
    out_kl: np.ndarray,
    scratch_reward: np.ndarray,
    scratch_kl: np.ndarray,
) -> None:
    """Exact backward policy evaluation of expected reward and trajectory KL (THEORY 2).

    ``R_pi(s) = sum_a pi(a|s) [r(s,a) + R_pi(child)]``,
    ``K_pi(s) = sum_a pi(a|s) [log pi(a|s) - log pi_ref(a|s) + K_pi(child)]`` with leaves 0 and
    ``0 log 0 = 0`` (tokens with ``pi(a|s) = 0`` contribute nothing, so unreachable subtrees
    never matter). ``K_pi`` at the root is ``KL(pi(.|x) || pi_ref(.|x))`` over trajectories (chain
    rule); it is ``+inf`` when ``pi`` reaches a token with ``pi_ref = 0``. Writes the root values
    to ``out_reward[x]`` and ``out_kl[x]``; ``scratch_reward`` and ``scratch_kl`` are
    ``(n_states,)`` buffers reused across contexts. ``V_pi = R_pi - beta K_pi``.
    """
    n_contexts, n_states, vocab_size = policy.shape
    for c in range(n_contexts):
        for s in range(n_states - 1, -1, -1):
            first_child = vocab_size * s + 1
            reward_sum = 0.0
            kl_sum = 0.0
            for a in range(vocab_size):
                p = policy[c, s, a]
                if p > 0.0:
                    child = first_child + a
                    r = rewards[c, s, a]
                    k = math.log(p) - log_ref[c, s, a]
                    if child < n_states:
                        r += scratch_reward[child]
                        k += scratch_kl[child]
                    reward_sum += p * r
                    kl_sum += p * k
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
