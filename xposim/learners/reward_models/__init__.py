"""Reward-model learners: the dueling-bandit field's explorers on xposim's environments (issue #12).

Each fits a Bradley–Terry reward model by maximum likelihood (linear in ``env.features``, or one
value per (context, response)), picks the pair to query by its own rule, and outputs
``pi_hat ∝ pi_ref exp(r_hat / beta)`` exactly — two-stage RLHF with an exploration rule, whose
``J_beta`` suboptimality is comparable with XPO's and online DPO's.

* :class:`MaxInP` (``"maxinp"``), :class:`CoLSTIM` (``"colstim"``), :class:`ThompsonEE`
  (``"thompson_ee"``), :class:`ThompsonBAI` (``"thompson_bai"``), :class:`PassiveMLE`
  (``"passive_mle"``), :class:`PessimisticMLE` (``"pessimistic_mle"``, offline);
* :func:`run_reward_model` — what :func:`xposim.learners.run_learner` dispatches them to.

Modules: ``config`` (the learners and their constants, with sources), ``linalg`` (Sherman–Morrison,
Cholesky and its rank-one update), ``mle`` (pair counts, warm-started Newton), ``rules`` (the query
rules), ``policy`` (``pi_hat`` and its exact value), ``loop`` (the jitted rounds), ``runner``.
"""
from xposim.learners.reward_models.config import (
    REWARD_MODEL_LEARNERS,
    CoLSTIM,
    MaxInP,
    PassiveMLE,
    PessimisticMLE,
    RewardModelLearner,
    ThompsonBAI,
    ThompsonEE,
    link_slope,
)


def run_reward_model(*args, **kwargs):
    """:func:`xposim.learners.reward_models.runner.run_reward_model` (imported on first use: the runner
    imports :mod:`xposim.learners.runner`, which must not be imported while the registry is)."""
    from xposim.learners.reward_models.runner import run_reward_model as run

    return run(*args, **kwargs)


__all__ = ["RewardModelLearner", "MaxInP", "CoLSTIM", "ThompsonEE", "ThompsonBAI", "PassiveMLE", "PessimisticMLE",
           "REWARD_MODEL_LEARNERS", "link_slope", "run_reward_model"]
