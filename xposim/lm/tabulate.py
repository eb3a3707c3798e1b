"""Exact and Monte Carlo scoring of a network policy on an :class:`~xposim.lm.task.LMTask`.

* :func:`tabulate_log_policy` runs the network on every prefix of every prompt and returns the
  token-level policy array ``log pi(a | x, a_1..a_h)`` of shape ``(n_contexts, n_states, A)``
  (tree numbering of :mod:`xposim.envs.tree`), so :func:`xposim.exact.evaluate` gives the exact
  ``J_beta`` of the network (THEORY 2).

  Trick: a causal network's logits at position ``t`` depend on tokens ``0..t`` only, so one forward
  pass over the ``A^(H-1)`` sequences ``prompt + (b_1..b_{H-1})`` yields the next-token
  distribution after every prefix: the prefix ``(a_1..a_h)`` of depth ``h`` is read at position
  ``prompt_length - 1 + h`` of the sequence whose first ``h`` response tokens are ``a_1..a_h``
  (e.g. the one numbered ``offset * A^(H-1-h)``, the remaining tokens being 0).
* :func:`exact_scores` — exact ``J_beta``, expected reward, ``KL(pi || pi_ref)``, sequence entropy
  and the probability of the rare pattern of a tabulated policy.
* :func:`monte_carlo_scores` — the same quantities estimated from fresh samples ``tau ~ pi`` at
  temperature 1, each with a normal 95% confidence half-width (for trees too large to tabulate).
  The KL estimator is the mean of ``log pi(tau) - log pi_ref(tau)`` over ``tau ~ pi``: unbiased
  for the sequence-level ``KL(pi || pi_ref)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xposim import exact
from xposim.envs import tree
from xposim.envs.token_mdp import TokenMDP
from xposim.lm.model import Transformer
from xposim.lm.task import LMTask, check_exact_scoring

__all__ = [
    "tabulate_log_policy",
    "tabulate_policy",
    "score_sequences",
    "ExactScores",
    "exact_scores",
    "MonteCarloScores",
    "monte_carlo_scores",
    "mixture_value",
    "Z_95",
]

#: Two-sided 95% normal quantile used by every confidence half-width of this module.
Z_95 = 1.959963984540054

#: Sequences per forward pass when tabulating or scoring without gradients.
_CHUNK = 4096


def _check_model(model: Transformer, task: LMTask) -> None:
    if not isinstance(model, Transformer):
        raise ValueError(f"model must be an xposim.lm.Transformer, got {type(model).__name__}")
    cfg = model.config
    if cfg.vocab_size != task.vocab_size:
        raise ValueError(f"model vocab_size {cfg.vocab_size} differs from the task's vocab_size {task.vocab_size}")
    if cfg.max_len < task.sequence_length:
        raise ValueError(
            f"model max_len {cfg.max_len} is shorter than prompt_length + horizon = {task.sequence_length}"
        )


def tabulate_log_policy(model: Transformer, task: LMTask, chunk_size: int = _CHUNK) -> np.ndarray:
    """``log pi(a | x, prefix)`` of the network at every state: ``(n_contexts, n_states, A)`` float64.

    Raises ValueError (naming the settings) when the tree is too large for exact scoring
    (:func:`xposim.lm.task.check_exact_scoring`).
    """
    _check_model(model, task)
    a, horizon, p = task.vocab_size, task.horizon, task.prompt_length
    check_exact_scoring(task.n_contexts, a, horizon)
    n_tail = a ** (horizon - 1)  # sequences per prompt: every (H-1)-token continuation
    tails = tree.leaf_tokens(a, horizon - 1) if horizon > 1 else np.zeros((1, 0), dtype=np.int64)
    out = np.empty((task.n_contexts, tree.n_states(a, horizon), a))
    for x in range(task.n_contexts):
        sequences = np.concatenate([np.broadcast_to(task.prompts[x], (n_tail, p)), tails], axis=1)
        logp = np.empty((n_tail, sequences.shape[1], a))
        for lo in range(0, n_tail, chunk_size):
            logp[lo : lo + chunk_size] = model.next_token_logprobs(sequences[lo : lo + chunk_size])
        for depth in range(horizon):
            start, stop = tree.level_start(a, depth), tree.level_start(a, depth + 1)
            # the sequence whose first `depth` response tokens spell the prefix, zeros after
            rows = np.arange(stop - start) * a ** (horizon - 1 - depth)
            out[x, start:stop] = logp[rows, p - 1 + depth]
    return out


def tabulate_policy(model: Transformer, task: LMTask, chunk_size: int = _CHUNK) -> np.ndarray:
    """``pi(a | x, prefix)``: :func:`tabulate_log_policy` exponentiated and renormalized per row
    (the rows already sum to 1 up to float64 rounding)."""
    probs = np.exp(tabulate_log_policy(model, task, chunk_size))
    probs /= probs.sum(axis=2, keepdims=True)
    return probs


def score_sequences(model: Transformer, sequences: np.ndarray, start: int, chunk_size: int = _CHUNK) -> np.ndarray:
    """``(B,)`` float64 completion log-probabilities ``sum_{t >= start} log pi(tok_t | tok_<t)`` at
    temperature 1, without touching the model's backward cache (no gradients)."""
    sequences = np.asarray(sequences)
    out = np.empty(sequences.shape[0])
    for lo in range(0, sequences.shape[0], chunk_size):
        chunk = sequences[lo : lo + chunk_size]
        logp = model.next_token_logprobs(chunk)[:, start - 1 : -1]
        out[lo : lo + chunk_size] = np.take_along_axis(logp, chunk[:, start:, None], axis=-1)[..., 0].sum(axis=1)
    return out


# --------------------------------------------------------------------------------------------
# exact scores
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExactScores:
    """Exact quantities of a tabulated policy ``pi`` on the task's TokenMDP (THEORY 2).

    ``kl_regularized_value = expected_reward - beta * kl_to_ref`` is ``J_beta(pi)``; ``entropy`` is
    the sequence entropy ``E_x E_{tau~pi}[-log pi(tau|x)]``; ``pattern_probability`` is
    ``E_x P_pi(pattern occurs in tau)``.
    """

    kl_regularized_value: float
    expected_reward: float
    kl_to_ref: float
    entropy: float
    pattern_probability: float


def exact_scores(env: TokenMDP, task: LMTask, policy: np.ndarray, beta: float) -> ExactScores:
    """:class:`ExactScores` of ``policy (n_contexts, n_states, A)`` on ``env`` (see :meth:`LMTask.token_mdp`)."""
    evaluation = exact.evaluate(env, policy, beta)
    logp = exact.trajectory_logprobs(env, policy)  # (n_contexts, n_leaves)
    prob = np.exp(logp)
    finite = np.where(prob > 0, logp, 0.0)
    entropy_per_context = -(prob * finite).sum(axis=1)
    has_pattern = task.contains_pattern(env.trajectories())
    pattern_per_context = prob[:, has_pattern].sum(axis=1)
    return ExactScores(
        kl_regularized_value=float(evaluation.value),
        expected_reward=float(evaluation.reward),
        kl_to_ref=float(evaluation.kl),
        entropy=float(env.rho @ entropy_per_context),
        pattern_probability=float(env.rho @ pattern_per_context),
    )


def mixture_value(env: TokenMDP, trajectory_probabilities: np.ndarray, beta: float) -> float:
    """Exact ``J_beta`` of a response distribution given per trajectory, e.g. the uniform mixture
    of iterates ``pi_bar(tau|x) = (1/k) sum_i pi_i(tau|x)`` (the "average iterate" of THEORY 4.3),
    which is not a token-level policy of any single network:

    ``J_beta(pi_bar) = sum_x rho(x) sum_tau pi_bar(tau|x) [r(tau) - beta log(pi_bar(tau|x) / pi_ref(tau|x))]``
    with ``0 log 0 = 0``. ``trajectory_probabilities``: ``(n_contexts, n_leaves)``, rows summing to 1.
    """
    probs = np.asarray(trajectory_probabilities, dtype=np.float64)
    if probs.shape != (env.n_contexts, env.n_leaves):
        raise ValueError(f"trajectory_probabilities must have shape {(env.n_contexts, env.n_leaves)}, got {probs.shape}")
    if np.any(probs < 0) or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-9):
        raise ValueError("trajectory_probabilities must be non-negative with rows summing to 1 (within 1e-9)")
    positive = probs > 0
    log_ratio = np.zeros_like(probs)
    np.subtract(np.log(probs, where=positive, out=np.zeros_like(probs)), env.trajectory_ref_logprobs,
                out=log_ratio, where=positive)
    per_context = (probs * env.trajectory_rewards).sum(axis=1) - beta * np.where(positive, probs * log_ratio, 0.0).sum(axis=1)
    return float(env.rho @ per_context)


# --------------------------------------------------------------------------------------------
# Monte Carlo scores
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MonteCarloScores:
    """Estimates from ``n`` fresh samples ``x ~ rho, tau ~ pi(.|x)`` (temperature 1).

    Each ``*_ci95`` is the normal 95% half-width ``1.96 * sd / sqrt(n)``. ``kl_to_ref`` is the mean
    of ``log pi(tau) - log pi_ref(tau)`` (unbiased for the sequence KL); ``kl_regularized_value``
    the mean of ``r(tau) - beta (log pi(tau) - log pi_ref(tau))`` (unbiased for ``J_beta``);
    ``entropy`` the mean of ``-log pi(tau)``.
    """

    n: int
    kl_regularized_value: float
    kl_regularized_value_ci95: float
    expected_reward: float
    expected_reward_ci95: float
    kl_to_ref: float
    kl_to_ref_ci95: float
    entropy: float
    entropy_ci95: float
    pattern_probability: float


def _mean_ci(values: np.ndarray) -> tuple[float, float]:
    n = values.shape[0]
    mean = float(values.mean())
    if n < 2:
        return mean, math.inf
    return mean, float(Z_95 * values.std(ddof=1) / math.sqrt(n))


def monte_carlo_scores(task: LMTask, contexts: np.ndarray, responses: np.ndarray, logp_policy: np.ndarray,
                       logp_reference: np.ndarray, beta: float) -> MonteCarloScores:
    """:class:`MonteCarloScores` from samples ``responses (n, H)`` of the policy at temperature 1 to
    ``contexts (n,)`` with their log-probabilities under the policy and the reference (both at
    temperature 1)."""
    rewards = task.reward(contexts, responses)
    log_ratio = np.asarray(logp_policy, dtype=np.float64) - np.asarray(logp_reference, dtype=np.float64)
    value, value_ci = _mean_ci(rewards - beta * log_ratio)
    reward, reward_ci = _mean_ci(rewards)
    kl, kl_ci = _mean_ci(log_ratio)
    entropy, entropy_ci = _mean_ci(-np.asarray(logp_policy, dtype=np.float64))
    return MonteCarloScores(
        n=int(rewards.shape[0]),
        kl_regularized_value=value, kl_regularized_value_ci95=value_ci,
        expected_reward=reward, expected_reward_ci95=reward_ci,
        kl_to_ref=kl, kl_to_ref_ci95=kl_ci,
        entropy=entropy, entropy_ci95=entropy_ci,
        pattern_probability=float(task.contains_pattern(responses).mean()),
    )
