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


def soft_value_iteration_numpy(log_ref: np.ndarray, rewards: np.ndarray, beta: float):
    """``(policy, log_policy, Q, V)`` of the KL-regularized optimum by soft value iteration.

    ``Q*(s,a) = r(s,a) + V*(child)``, ``V*(leaf) = 0``,
    ``V*(s) = beta logsumexp_a(log pi_ref(a|s) + Q*(s,a)/beta)``,
    ``log pi*(a|s) = log pi_ref(a|s) + (Q*(s,a) - V*(s))/beta``.
    """
    n_contexts, n_states, vocab_size, horizon = _shape(log_ref)
    q = np.empty_like(rewards)
    v = np.empty((n_contexts, n_states))
    log_policy = np.empty_like(log_ref)
    for h in range(horizon - 1, -1, -1):
        block = _level(h, vocab_size)
        width = vocab_size**h
        if h == horizon - 1:
            child_values = np.zeros((n_contexts, width, vocab_size))
        else:
            child_values = v[:, _level(h + 1, vocab_size)].reshape(n_contexts, width, vocab_size)
        q[:, block] = rewards[:, block] + child_values
        logits = log_ref[:, block] + q[:, block] / beta
        log_normalizer = logsumexp(logits, axis=2)
        v[:, block] = beta * log_normalizer
        log_policy[:, block] = logits - log_normalizer[:, :, None]
    return np.exp(log_policy), log_policy, q, v


def soft_backup_leaf_values_numpy(log_ref: np.ndarray, leaf_values: np.ndarray, beta: float):
    """``(log_policy, log_partition)`` of ``pi_f ∝ pi_ref exp(f/beta)`` for leaf values ``f`` (THEORY 3)."""
    n_contexts, n_states, vocab_size, horizon = _shape(log_ref)
    log_policy = np.empty_like(log_ref)
    child_log_partition = leaf_values / beta
    for h in range(horizon - 1, -1, -1):
        block = _level(h, vocab_size)
        logits = log_ref[:, block] + child_log_partition.reshape(n_contexts, vocab_size**h, vocab_size)
        log_normalizer = logsumexp(logits, axis=2)
        log_policy[:, block] = logits - log_normalizer[:, :, None]
        child_log_partition = log_normalizer
    return log_policy, child_log_partition[:, 0]


def policy_reward_and_kl_numpy(policy: np.ndarray, log_ref: np.ndarray, rewards: np.ndarray):
    """``(reward, kl)`` per context: expected trajectory reward and ``KL(pi(.|x) || pi_ref(.|x))``.

    Backward: ``R(s) = sum_a pi(a|s)[r(s,a) + R(child)]``,
    ``K(s) = sum_a pi(a|s)[log(pi(a|s)/pi_ref(a|s)) + K(child)]``, ``0 log 0 = 0``.
    """
    n_contexts, n_states, vocab_size, horizon = _shape(policy)
    positive = policy > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(policy) - log_ref
    child_reward = np.zeros((n_contexts, vocab_size ** (horizon - 1), vocab_size))
    child_kl = np.zeros_like(child_reward)
    for h in range(horizon - 1, -1, -1):
        block = _level(h, vocab_size)
        p = policy[:, block]
        on = positive[:, block]
        with np.errstate(invalid="ignore"):  # 0 * inf in masked-out entries
            reward = np.where(on, p * (rewards[:, block] + child_reward), 0.0).sum(axis=2)
            kl = np.where(on, p * (np.where(on, log_ratio[:, block], 0.0) + child_kl), 0.0).sum(axis=2)
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
