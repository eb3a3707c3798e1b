"""Plain-numpy reference of the exact solver (THEORY 2): one vectorized step per tree level.

The states of depth ``h`` are the block ``[level_start(h), level_start(h+1))`` of the state axis;
reshaped to ``(n_contexts, A^h, A)`` it lines up with the values of its children, which are the
next block reshaped the same way (or the leaves when ``h = H-1``), see :mod:`xposim.envs.tree`.
Arrays follow the kernel conventions of :mod:`xposim._exact_kernels`; no argument checking.
"""
from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from xposim.envs import tree


def _shape(array: np.ndarray) -> tuple[int, int, int, int]:
    """``(n_contexts, n_states, A, H)`` of a per-token array."""
    n_contexts, n_states, vocab_size = array.shape
    horizon = 1
    while tree.n_states(vocab_size, horizon) < n_states:
        horizon += 1
    return n_contexts, n_states, vocab_size, horizon


def _level(h: int, vocab_size: int) -> slice:
    return slice(tree.level_start(vocab_size, h), tree.level_start(vocab_size, h + 1))


def soft_value_iteration_numpy(ref: np.ndarray, log_ref: np.ndarray, rewards: np.ndarray, beta: float):
    """``(policy, log_policy, Q, V)`` of the KL-regularized optimum by soft value iteration.

    ``Q*(s,a) = r(s,a) + V*(child)``, ``V*(leaf) = 0``, and the soft maximum centred on the best
    token with ``pi_ref > 0``: ``M = max_a Q*(s,a)``, ``u_a = (Q*(s,a) - M)/beta``,
    ``S = sum_a pi_ref(a|s) e^{u_a}``, ``L = log S`` if ``S < 1/2`` else
    ``log1p(sum_a pi_ref(a|s) expm1(u_a))``, ``V*(s) = M + beta L``,
    ``log pi*(a|s) = log pi_ref(a|s) + (u_a - L)``; ``pi* = pi_ref e^{u_a}/S`` (``S < 1/2``) or
    ``pi_ref e^{u_a - L}``. (The kernel also switches to a log-domain sum when ``S`` is subnormal.)
    """
    n_contexts, n_states, vocab_size, horizon = _shape(log_ref)
    q = np.empty_like(rewards)
    v = np.empty((n_contexts, n_states))
    log_policy = np.empty_like(log_ref)
    policy = np.empty_like(log_ref)
    for h in range(horizon - 1, -1, -1):
        block = _level(h, vocab_size)
        width = vocab_size**h
        if h == horizon - 1:
            child_values = np.zeros((n_contexts, width, vocab_size))
        else:
            child_values = v[:, _level(h + 1, vocab_size)].reshape(n_contexts, width, vocab_size)
        q[:, block] = rewards[:, block] + child_values
        p = ref[:, block]
        on = p > 0
        best = np.where(on, q[:, block], -np.inf).max(axis=2, keepdims=True)
        with np.errstate(over="ignore", invalid="ignore"):
            u = np.where(on, (q[:, block] - best) / beta, -np.inf)
            weights = p * np.exp(u)
            total = weights.sum(axis=2, keepdims=True)
            large = total >= 0.5
            log_sum = np.where(large, np.log1p(np.where(on, p * np.expm1(u), 0.0).sum(axis=2, keepdims=True)),
                               np.log(total))
            ratio = u - log_sum
            log_policy[:, block] = np.where(on, log_ref[:, block] + ratio, -np.inf)
            policy[:, block] = np.where(large, p * np.exp(ratio), weights / total)
        v[:, block] = (best + beta * log_sum)[:, :, 0]
    return policy, log_policy, q, v


def soft_backup_leaf_values_numpy(ref: np.ndarray, log_ref: np.ndarray, leaf_values: np.ndarray, beta: float):
    """``(log_policy, log_partition)`` of ``pi_f ∝ pi_ref exp(f/beta)`` for leaf values ``f`` (THEORY 3).

    The backup of :func:`soft_value_iteration_numpy` with zero per-token rewards and terminal
    values ``f``; ``log_partition = W(root)/beta``.
    """
    n_contexts, n_states, vocab_size, horizon = _shape(log_ref)
    rewards = np.zeros(log_ref.shape)
    last = _level(horizon - 1, vocab_size)
    rewards[:, last] = leaf_values.reshape(n_contexts, vocab_size ** (horizon - 1), vocab_size)
    _, log_policy, _, v = soft_value_iteration_numpy(ref, log_ref, rewards, beta)
    return log_policy, v[:, 0] / beta


def relative_entropy_terms_numpy(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``g(p, q) = p log(p/q) - p + q`` elementwise (``g(0, q) = q``, ``g(p > 0, 0) = inf``), by cases
    as :func:`xposim._exact_kernels.relative_entropy_term`: ``q phi(d)`` with ``d = (p - q)/q`` when
    ``q/2 <= p <= 2q`` (series ``sum_{k=2..14} (-d)^k/(k(k-1))`` for ``|d| < 0.05``, else
    ``(1 + d) log1p(d) - d``), else the direct form."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d = np.where(q > 0, (p - q) / np.where(q > 0, q, 1.0), 0.0)
        series = sum((-d) ** k / (k * (k - 1)) for k in range(2, 15))
        near = q * np.where(np.abs(d) < 0.05, series, (1.0 + d) * np.log1p(np.maximum(d, -0.5)) - d)
        far = p * (np.log(p) - np.log(q)) - p + q
        close = (q > 0) & (0.5 * q <= p) & (p <= 2.0 * q)
        out = np.where(close, near, far)
    out = np.where(p == 0, q, out)
    return np.where((q == 0) & (p > 0), np.inf, out)


def policy_reward_and_kl_numpy(policy: np.ndarray, ref: np.ndarray, rewards: np.ndarray):
    """``(reward, kl)`` per context: expected trajectory reward and ``KL(pi(.|x) || pi_ref(.|x))``.

    Backward: ``R(s) = sum_a pi(a|s)[r(s,a) + R(child)]``,
    ``K(s) = sum_a [g(pi(a|s), pi_ref(a|s)) + pi(a|s) K(child)]`` with
    ``g(p, q) = p log(p/q) - p + q >= 0`` (:func:`relative_entropy_terms_numpy`).
    """
    n_contexts, n_states, vocab_size, horizon = _shape(policy)
    positive = policy > 0
    local = relative_entropy_terms_numpy(policy, ref)
    child_reward = np.zeros((n_contexts, vocab_size ** (horizon - 1), vocab_size))
    child_kl = np.zeros_like(child_reward)
    for h in range(horizon - 1, -1, -1):
        block = _level(h, vocab_size)
        p = policy[:, block]
        on = positive[:, block]
        with np.errstate(invalid="ignore"):  # 0 * inf in masked-out entries
            reward = np.where(on, p * (rewards[:, block] + child_reward), 0.0).sum(axis=2)
            kl = (local[:, block] + np.where(on, p * child_kl, 0.0)).sum(axis=2)
        if h > 0:
            child_reward = reward.reshape(n_contexts, vocab_size ** (h - 1), vocab_size)
            child_kl = kl.reshape(n_contexts, vocab_size ** (h - 1), vocab_size)
    return reward[:, 0], kl[:, 0]


def trajectory_logprobs_numpy(log_policy: np.ndarray) -> np.ndarray:
    """``log pi(tau|x) = sum_h log pi(a_h|s_h)``, ``(n_contexts, n_leaves)``, by gathering along paths."""
    _, _, vocab_size, horizon = _shape(log_policy)
    path_states = tree.leaf_path_states(vocab_size, horizon)
    tokens = tree.leaf_tokens(vocab_size, horizon)
    return log_policy[:, path_states, tokens].sum(axis=2)
