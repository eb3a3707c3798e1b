"""The vocabulary of a learner's round plan: which sampler draws each response, where the bonus
sits, which reference the loss uses, paper or trl mode — and :class:`Plan`, the record the jitted
round (:mod:`xposim.learners.round`) executes.

Each learner declares its plan as named fields in these terms (``second_sampler = Sampler.REFERENCE
# tau~ ~ pi_ref`` for XPO); :meth:`~xposim.learners.config.LearnerConfig.plan` packs them, with the
loss kinds of :mod:`xposim.losses.kinds`, into a :class:`Plan`. The codes are ``IntEnum`` s: the
kernels compare against the members (numba reads them as integer constants), a :class:`Plan`
carries plain ints.
"""
from __future__ import annotations

from collections import namedtuple
from enum import IntEnum


class Sampler(IntEnum):
    """Where a response of the round is drawn from."""

    POLICY = 0
    """``tau ~ pi^(t)(.|x)``, at the plan's token temperature (1 = the policy itself)."""
    REFERENCE = 1
    """``tau ~ pi_ref(.|x)`` (Algorithm 1's ``tau~``), at the plan's token temperature (trl draws
    both responses at 0.9; 1 = ``pi_ref`` itself)."""
    GREEDY = 2
    """The temperature-0 policy: the argmax token in every state, ties to the lowest token."""
    HISTORICAL = 3
    """The uniform mixture of the past iterates ``pi^(1..t)`` (Algorithm 3)."""
    FROZEN = 4
    """A frozen snapshot of an iterate (POPO's ``pi_sam``; ``pi_ref`` until the first SE-POPO reset)."""
    BEHAVIOUR = 5
    """A fixed behaviour policy given by the user (offline data; Algorithm 2 with a fixed sampler)."""


class BonusOn(IntEnum):
    """Which response carries the bonus term of the argmin."""

    NONE = 0
    """No bonus response."""
    SECOND = 1
    """The second response of the pair (XPO's ``tau~``, POPO's ``y_sam``)."""
    SEPARATE = 2
    """A third, unlabeled response from the plan's ``bonus_sampler`` (VPO, COPO)."""


class LossReference(IntEnum):
    """The reference policy inside the loss (``l(tau) = log pi(tau) - log pi_loss_ref(tau)``)."""

    FIXED = 0
    """The environment's ``pi_ref``."""
    PREVIOUS_ITERATE = 1
    """Per context, the iterate just before the context's latest update (SELM's drift)."""


class Mode(IntEnum):
    """What the update of a round is."""

    PAPER = 0
    """The argmin over all the data so far, every round (the paper)."""
    TRL = 1
    """One gradient step on the fresh batch only (trl's ``XPOTrainer`` / ``OnlineDPOTrainer``,
    under ``trl.experimental`` since trl 0.29)."""


#: Uniforms drawn per preference query: context, first response, second response, label, bonus response.
UNIFORMS_PER_PAIR = 5

Plan = namedtuple(
    "Plan",
    [
        "first_sampler",  # Sampler of tau
        "second_sampler",  # Sampler of tau~
        "bonus_sampler",  # Sampler of the bonus response when bonus_response == BonusOn.SEPARATE
        "bonus_response",  # BonusOn
        "pair_kind",  # PairLoss (xposim.losses.kinds)
        "pair_param",  # the pair loss's parameter (chiPO's clip R_max, IPO's tau)
        "bonus_kind",  # Bonus (xposim.losses.kinds)
        "copo_weight",  # COPO's constant c of the weight c / sqrt(N(x, y)); 1 otherwise
        "reference_mode",  # LossReference
        "batch_size",  # pairs per round (Algorithm 4)
        "oracle_code",  # the preference oracle (xposim.oracles)
        "oracle_param",  # its parameter
        "mode",  # Mode
        "learning_rate",  # trl mode's step size
        "temperature",  # token temperature of the policy and reference samplers
        "outer_round_length",  # SE-POPO: rounds between resets of the frozen sampler (0 = never)
        "offline",  # one argmin after all pairs are drawn
    ],
)
Plan.__doc__ = """One learner's round as plain numbers, executed by the jitted round
(:mod:`xposim.learners.round`); built by :meth:`~xposim.learners.config.LearnerConfig.plan`."""

__all__ = ["Sampler", "BonusOn", "LossReference", "Mode", "Plan", "UNIFORMS_PER_PAIR"]
