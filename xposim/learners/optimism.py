"""Related optimistic learners (THEORY 4.5): VPO, SELM, POPO / SE-POPO, COPO — one-line changes on XPO's kernels."""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from xposim.learners.config import LearnerConfig
from xposim.learners.plan import BonusOn, Sampler
from xposim.losses.kinds import Bonus, PairLoss
from xposim.validation import check_int, check_nonnegative


@dataclasses.dataclass(frozen=True)
class VPO(LearnerConfig):
    """Online VPO (THEORY 4.5, [R] scale)::

        x ~ rho ; tau, tau' ~ pi^(t)(.|x) ; label ; y ~ pi_ref(.|x) (unlabeled)
        pi^(t+1) = argmin  L_DPO(pi; D) + alpha beta sum_i log pi(y_i|x_i)

    ``Bonus.VPO`` (``+alpha beta log pi``): pushes ``pi`` DOWN on the reference samples.
    """

    first_sampler = Sampler.POLICY  # tau  ~ pi^(t)(.|x)
    second_sampler = Sampler.POLICY  # tau' ~ pi^(t)(.|x)
    pair_loss = PairLoss.DPO  # L_DPO(pi; D)
    bonus = Bonus.VPO  # + alpha beta log pi(y) ...
    bonus_on = BonusOn.SEPARATE  # ... on a third, unlabeled response y
    bonus_sampler = Sampler.REFERENCE  # y ~ pi_ref(.|x)

    registry_name: ClassVar[str] = "vpo"
    default_alpha: ClassVar[float] = 0.1  # untuned starting point (alpha beta log pi)


@dataclasses.dataclass(frozen=True)
class SELM(LearnerConfig):
    """SELM (THEORY 4.5)::

        x ~ rho ; tau ~ pi^(t)(.|x) ; y_ref ~ pi_ref(.|x) ; label (tau, y_ref)
        reference_loss(x) <- pi^(t)(.|x)                    # reference drift, per context
        pi^(t+1) = argmin  L_DPO(pi; D | reference_loss) + alpha beta sum_i l(y_ref_i)

    ``l(y) = log pi(y) - log pi_reference_loss(y)``. ``Bonus.SELM`` (pushes ``pi`` DOWN on
    ``y_ref``). The loss reference of context ``x`` is the iterate just before ``x``'s latest
    update (``reference='previous_iterate'``; identical to "``pi_ref <- pi_t`` each round" with one
    context). The regret target stays the environment's ``J_beta`` with the fixed ``pi_ref``.
    """

    first_sampler = Sampler.POLICY  # tau   ~ pi^(t)(.|x)
    second_sampler = Sampler.REFERENCE  # y_ref ~ pi_ref(.|x)
    pair_loss = PairLoss.DPO  # L_DPO(pi; D | reference_loss)
    bonus = Bonus.SELM  # + alpha beta l(y_ref) ...
    bonus_on = BonusOn.SECOND  # ... on the second response, y_ref

    registry_name: ClassVar[str] = "selm"
    default_alpha: ClassVar[float] = 0.1  # untuned starting point (alpha beta l)
    default_reference: ClassVar[str] = "previous_iterate"  # reference_loss(x) <- pi^(t)(.|x)


@dataclasses.dataclass(frozen=True)
class POPO(LearnerConfig):
    """POPO and SE-POPO (THEORY 4.5)::

        x ~ rho ; tau ~ pi^(t)(.|x) ; y_sam ~ pi_sam(.|x) ; label (tau, y_sam)
        pi^(t+1) = argmin  L_DPO(pi; D) + alpha sum_i (sigma(beta l(y_sam_i)) - 1/2) / beta

    Bounded bonus (``Bonus.POPO``, pushes ``pi`` DOWN on ``y_sam``). ``pi_sam = pi_ref``
    for POPO. SE-POPO (``self_exploring=True``): the run is cut into ``outer_rounds`` outer rounds
    of equal length; at the start of each outer round ``pi_sam <- the last iterate``. The data
    accumulate over outer rounds.
    """

    self_exploring: bool = False
    """SE-POPO: reset ``pi_sam`` to the last iterate at every outer round."""
    outer_rounds: int = 10
    """SE-POPO: number of outer rounds (each ``ceil(T / outer_rounds)`` rounds long)."""

    first_sampler = Sampler.POLICY  # tau   ~ pi^(t)(.|x)
    second_sampler = Sampler.FROZEN  # y_sam ~ pi_sam(.|x)
    pair_loss = PairLoss.DPO  # L_DPO(pi; D)
    bonus = Bonus.POPO  # + alpha (sigma(beta l(y_sam)) - 1/2) / beta ...
    bonus_on = BonusOn.SECOND  # ... on the second response, y_sam
    bonus_sampler = Sampler.FROZEN

    registry_name: ClassVar[str] = "popo"
    default_alpha: ClassVar[float] = 0.02  # untuned starting point (d bonus / d log pi = alpha/4 at l = 0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.self_exploring, bool):
            raise ValueError(f"self_exploring must be a bool, got {self.self_exploring!r}")
        check_int(self.outer_rounds, "outer_rounds", 1)

    def outer_round_length(self, rounds: int) -> int:
        if not self.self_exploring:
            return 0
        return max(1, math.ceil(rounds / self.outer_rounds))


@dataclasses.dataclass(frozen=True)
class COPO(LearnerConfig):
    """COPO (THEORY 4.5), count-based, OPPOSITE sign::

        x ~ rho ; tau, tau' ~ pi^(t)(.|x) ; label ; y ~ pi_ref(.|x) (unlabeled)
        pi^(t+1) = argmin  L_DPO(pi; D) - alpha sum_i sg[c / sqrt(N(x_i, y_i))] log pi(y_i|x_i)

    ``N(x, y)`` = number of times ``y`` appeared in context ``x``'s data so far (any of the
    round's responses), evaluated at the current round (stop-gradient weight, kernel
    ``Bonus.COPO``): pushes ``pi`` UP on rarely seen responses.
    """

    count_weight: float = 1.0
    """The constant ``c`` of the weight ``c / sqrt(N(x, y))``."""

    first_sampler = Sampler.POLICY  # tau  ~ pi^(t)(.|x)
    second_sampler = Sampler.POLICY  # tau' ~ pi^(t)(.|x)
    pair_loss = PairLoss.DPO  # L_DPO(pi; D)
    bonus = Bonus.COPO  # - alpha sg[c / sqrt(N(x, y))] log pi(y) ...
    bonus_on = BonusOn.SEPARATE  # ... on a third, unlabeled response y
    bonus_sampler = Sampler.REFERENCE  # y ~ pi_ref(.|x)

    registry_name: ClassVar[str] = "copo"
    default_alpha: ClassVar[float] = 0.05  # untuned starting point (weight c / sqrt(N))

    def __post_init__(self) -> None:
        super().__post_init__()
        check_nonnegative(self.count_weight, "count_weight")

    @property
    def bonus_weight(self) -> float:
        return float(self.count_weight)  # the c of the weight c / sqrt(N(x, y))
