"""Learners (THEORY 4): XPO and its relatives as configs; the jitted round that runs them (:mod:`xposim.learners.round`).

* :func:`make_learner` — by name (``"xpo"``, ``"online_dpo"``, ``"dpo"``, ``"ipo"``, ``"chipo"``,
  ``"vpo"``, ``"selm"``, ``"popo"``, ``"se_popo"``, ``"copo"``, ``"xpo_historical"``,
  ``"online_dpo_greedy"``, ...);
* config classes :class:`XPO`, :class:`OnlineDPO`, :class:`OfflineDPO`, :class:`IPO`,
  :class:`ChiPO`, :class:`VPO`, :class:`SELM`, :class:`POPO`, :class:`COPO`;
* the plan's vocabulary (:mod:`xposim.learners.plan`): :class:`Sampler`, :class:`BonusOn`,
  :class:`LossReference`, :class:`Mode` — a learner declares its round in these terms (a new
  learner: subclass :class:`LearnerConfig`, set ``first_sampler``, ``second_sampler``, ``pair_loss``,
  ``bonus``, ``bonus_on``; see :class:`XPO`);
* alpha schedules :class:`ConstantAlpha`, :class:`TheoryAlpha` (``c beta / sqrt(T)``),
  :class:`DecayingAlpha`;
* :func:`run_learner` — one learner, one seed (``xposim.simulate`` runs many).
* reward-model explorers (:mod:`xposim.learners.reward_models`): :class:`MaxInP`, :class:`CoLSTIM`,
  :class:`ThompsonEE`, :class:`ThompsonBAI`, :class:`PassiveMLE`, :class:`PessimisticMLE` (``"maxinp"``,
  ``"colstim"``, ``"thompson_ee"``, ``"thompson_bai"``, ``"passive_mle"``, ``"pessimistic_mle"``).
"""
from xposim.learners.config import ConstantAlpha, DecayingAlpha, LearnerConfig, TheoryAlpha
from xposim.learners.dpo import IPO, ChiPO, OfflineDPO, OnlineDPO
from xposim.learners.optimism import COPO, POPO, SELM, VPO
from xposim.learners.plan import BonusOn, LossReference, Mode, Plan, Sampler
from xposim.learners.registry import LEARNERS, learner_names, loss_spec, make_learner, register_learner
from xposim.learners.reward_models import (
    CoLSTIM,
    MaxInP,
    PassiveMLE,
    PessimisticMLE,
    RewardModelLearner,
    ThompsonBAI,
    ThompsonEE,
    run_reward_model,
)
from xposim.learners.runner import RunResult, default_checkpoints, run_learner
from xposim.learners.xpo import XPO

__all__ = [
    "LearnerConfig",
    "Sampler",
    "BonusOn",
    "LossReference",
    "Mode",
    "Plan",
    "ConstantAlpha",
    "TheoryAlpha",
    "DecayingAlpha",
    "XPO",
    "OnlineDPO",
    "OfflineDPO",
    "IPO",
    "ChiPO",
    "VPO",
    "SELM",
    "POPO",
    "COPO",
    "RewardModelLearner",
    "MaxInP",
    "CoLSTIM",
    "ThompsonEE",
    "ThompsonBAI",
    "PassiveMLE",
    "PessimisticMLE",
    "run_reward_model",
    "LEARNERS",
    "learner_names",
    "make_learner",
    "loss_spec",
    "register_learner",
    "run_learner",
    "RunResult",
    "default_checkpoints",
]
