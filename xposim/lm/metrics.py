"""Logged metrics of the LM training loops, under trl's names but defined correctly.

Per round ``t`` the log has one row (tidy: one row per round; round 0 is the initial policy
``pi^(1) = pi_ref``). Two groups of columns:

**Batch metrics** (trl's names, computed as trl computes them on the round's freshly labelled
pairs with the policy ``pi^(t)`` that generated them, before the update, log-probabilities at
temperature 1; ``l(y) = log pi(y) - log pi_ref(y)``), except where stated under "Where trl
differs" below:

* ``rewards/chosen``, ``rewards/rejected``: batch means of the implicit rewards ``beta l(y+)``,
  ``beta l(y-)``; ``rewards/margins``: mean of ``beta (l(y+) - l(y-))``; ``rewards/accuracies``:
  fraction of pairs with a margin ``> 0`` (0 at ``pi^(1) = pi_ref``, where every margin is 0);
* ``logps/chosen``, ``logps/rejected``: batch means of ``log pi(y+)``, ``log pi(y-)``;
* ``objective/model_scores``, ``objective/ref_scores``, ``objective/scores_margin``: mean true
  reward of the first (policy) response, of the second response, and of their difference;
* ``loss/dpo``, ``loss/xpo``: mean per pair of the pair loss and of the bonus term
  ``alpha log pi(tau~)`` over the gradient steps of the round's update (the kernels'
  values on each minibatch before its step; in trl mode the one step on the fresh batch, as trl
  logged them);
* ``trl/objective_kl``, ``trl/objective_entropy``: what trl logged as ``objective/kl`` and
  ``objective/entropy``: the mean of ``l(y)`` and of ``-log pi(y)`` over the 2B completions of the
  batch, measured on ``pi^(t)``. That is ``E_{y ~ pi_s}[log pi(y) - log pi_ref(y)]`` for the
  distribution ``pi_s`` that produced the completions, an unbiased KL estimate only when
  ``pi_s = pi``. For online DPO in trl mode ``pi_s`` is the temperature-0.9 policy while ``pi``
  is scored at temperature 1, so the number is not ``KL(pi || pi_ref)`` of the scored policy. For
  XPO half of the completions come from ``pi_ref``, where ``E_{pi_ref}[l] = -KL(pi_ref || pi) <= 0``:
  trl's XPO number averages a KL-like term with a negative reverse KL and can stay near 0 (or go
  negative) while the true KL grows.

Where trl differs (checked against trl's ``OnlineDPOTrainer`` and ``XPOTrainer`` sources, which
ship under ``trl.experimental`` since trl 0.29 removed their ``trl.trainer`` aliases):

* ``logps/chosen`` / ``logps/rejected``: trl's ``XPOTrainer`` logs the policy's log-probability
  *plus* the reference's (a known trl bug); xposim logs the policy's ``log pi(y+)``, ``log pi(y-)``
  as trl's ``OnlineDPOTrainer`` does.
* ``objective/scores_margin``: trl's ``OnlineDPOTrainer`` logs the true reward of the chosen minus
  the rejected response (so it is ``>= 0`` with a reward-model judge); xposim logs first (policy)
  minus second (``tau~`` for XPO) response, the difference of ``objective/model_scores`` and
  ``objective/ref_scores``, which says whether the policy's samples beat the comparator's.

**Evaluation metrics** of the iterate after the update, ``pi^(t+1)``:

* exact (when the tree is enumerable and ``scoring="exact"``; NaN otherwise):
  ``kl_regularized_value`` = ``J_beta(pi)``, ``expected_reward``, ``kl_to_ref`` =
  ``E_x KL(pi(.|x) || pi_ref(.|x))`` (sequence level), ``entropy`` (sequence entropy),
  ``pattern_probability``, ``optimal_value`` = ``J_beta(pi*_beta)`` and ``suboptimality``;
* Monte Carlo from ``eval_samples`` fresh samples of ``pi`` at temperature 1 (independent
  random stream, so evaluation never changes training): ``mc/kl_regularized_value``,
  ``mc/expected_reward``, ``mc/kl_to_ref``, ``mc/entropy`` (each with ``*_ci95``, the normal 95%
  half-width) and ``mc/pattern_probability``;
* ``objective/kl``: a real estimate of ``KL(pi || pi_ref)``: exact ``kl_to_ref`` when available,
  else ``mc/kl_to_ref`` (mean of ``l(tau)`` over fresh ``tau ~ pi`` at temperature 1, unbiased);
  ``objective/entropy`` likewise the sequence entropy of ``pi``.
"""
from __future__ import annotations

import math

import numpy as np

from xposim.lm.tabulate import ExactScores, MonteCarloScores

__all__ = ["BATCH_METRICS", "EVAL_METRICS", "batch_metrics", "evaluation_metrics", "empty_batch_metrics"]

BATCH_METRICS = (
    "loss/dpo", "loss/xpo",
    "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
    "logps/chosen", "logps/rejected",
    "objective/model_scores", "objective/ref_scores", "objective/scores_margin",
    "trl/objective_kl", "trl/objective_entropy",
)
EVAL_METRICS = (
    "objective/kl", "objective/entropy",
    "kl_regularized_value", "expected_reward", "kl_to_ref", "entropy", "pattern_probability",
    "optimal_value", "suboptimality",
    "mc/kl_regularized_value", "mc/kl_regularized_value_ci95", "mc/expected_reward", "mc/expected_reward_ci95",
    "mc/kl_to_ref", "mc/kl_to_ref_ci95", "mc/entropy", "mc/entropy_ci95", "mc/pattern_probability",
)


def empty_batch_metrics() -> dict[str, float]:
    """All batch metrics set to NaN (the row of the initial policy)."""
    return {name: math.nan for name in BATCH_METRICS}


def batch_metrics(beta: float, logp_chosen: np.ndarray, logp_rejected: np.ndarray, ref_chosen: np.ndarray,
                  ref_rejected: np.ndarray, first_rewards: np.ndarray, second_rewards: np.ndarray,
                  loss_dpo: float, loss_xpo: float) -> dict[str, float]:
    """The batch metrics of the module docstring from the batch's temperature-1 log-probabilities
    under the policy and the reference, the true rewards of both responses and the round's losses."""
    l_chosen = logp_chosen - ref_chosen
    l_rejected = logp_rejected - ref_rejected
    margins = beta * (l_chosen - l_rejected)
    log_ratios = np.concatenate([l_chosen, l_rejected])
    logps = np.concatenate([logp_chosen, logp_rejected])
    return {
        "loss/dpo": float(loss_dpo),
        "loss/xpo": float(loss_xpo),
        "rewards/chosen": float(beta * l_chosen.mean()),
        "rewards/rejected": float(beta * l_rejected.mean()),
        "rewards/margins": float(margins.mean()),
        "rewards/accuracies": float((margins > 0).mean()),
        "logps/chosen": float(logp_chosen.mean()),
        "logps/rejected": float(logp_rejected.mean()),
        "objective/model_scores": float(first_rewards.mean()),
        "objective/ref_scores": float(second_rewards.mean()),
        "objective/scores_margin": float((first_rewards - second_rewards).mean()),
        "trl/objective_kl": float(log_ratios.mean()),
        "trl/objective_entropy": float(-logps.mean()),
    }


def evaluation_metrics(exact: ExactScores | None, optimal_value: float,
                       monte_carlo: MonteCarloScores | None) -> dict[str, float]:
    """The evaluation metrics of the module docstring (NaN for what was not computed)."""
    out = {name: math.nan for name in EVAL_METRICS}
    if exact is not None:
        out.update(
            kl_regularized_value=exact.kl_regularized_value,
            expected_reward=exact.expected_reward,
            kl_to_ref=exact.kl_to_ref,
            entropy=exact.entropy,
            pattern_probability=exact.pattern_probability,
            optimal_value=optimal_value,
            suboptimality=optimal_value - exact.kl_regularized_value,
        )
    if monte_carlo is not None:
        for name in ("kl_regularized_value", "expected_reward", "kl_to_ref", "entropy"):
            out[f"mc/{name}"] = getattr(monte_carlo, name)
            out[f"mc/{name}_ci95"] = getattr(monte_carlo, f"{name}_ci95")
        out["mc/pattern_probability"] = monte_carlo.pattern_probability
    source = "" if exact is not None else "mc/"
    out["objective/kl"] = out[f"{source}kl_to_ref"]
    out["objective/entropy"] = out[f"{source}entropy"]
    return out
