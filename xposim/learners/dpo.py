"""DPO-family learners without exploration bonus: offline DPO, chiPO, online DPO, IPO (THEORY 4.1, 4.2, 4.5)."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from xposim.learners.config import (
    BONUS_ON_NONE,
    SAMPLER_BEHAVIOUR,
    SAMPLER_GREEDY,
    SAMPLER_POLICY,
    SAMPLER_REFERENCE,
    LearnerConfig,
)
from xposim.losses.kinds import BONUS_NONE, PAIR_CHIPO, PAIR_DPO, PAIR_IPO
from xposim.validation import check_int, check_positive


@dataclasses.dataclass(frozen=True)
class OfflineDPO(LearnerConfig):
    """Offline DPO (THEORY 4.1)::

        D = n pairs (x ~ rho, tau, tau' ~ behaviour(.|x) [pi_ref by default], one label each)
        pi_hat = argmin_{pi in Pi} L_DPO(pi; D)          # one argmin, reported at every checkpoint

    ``rounds`` of :func:`xposim.simulate` is the default ``n``. The online-learning columns make
    no sense for a single fit: ``cumulative_regret`` is NaN; the best and average iterate are
    ``pi_hat`` itself; ``queries = n`` at every checkpoint.
    """

    n_pairs: int | None = None
    """Size ``n`` of the offline dataset (None: the ``rounds`` of the run)."""
    behaviour: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)
    """Token-level behaviour policy ``(n_contexts, n_states, A)`` generating both responses (None: ``pi_ref``)."""

    registry_name: ClassVar[str] = "dpo"
    pair_loss_name: ClassVar[int] = PAIR_DPO

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_pairs is not None:
            check_int(self.n_pairs, "n_pairs", 1)
        if self.mode != "paper":
            raise ValueError(f"mode must be 'paper' for an offline learner (one argmin), got {self.mode!r}")

    @property
    def is_offline(self) -> bool:
        return True

    def behaviour_policy(self):
        return self.behaviour

    def samplers(self):
        source = SAMPLER_REFERENCE if self.behaviour is None else SAMPLER_BEHAVIOUR
        # tau ~ behaviour, tau' ~ behaviour ; no bonus
        return source, source, SAMPLER_REFERENCE, BONUS_ON_NONE

    def losses(self, r_max: float):
        # L_DPO: -log sigma(beta (l(tau+) - l(tau-)))
        return self.pair_loss_name, r_max, BONUS_NONE, 1.0


@dataclasses.dataclass(frozen=True)
class ChiPO(OfflineDPO):
    """chiPO (offline, THEORY 4.5 / 6.3): as :class:`OfflineDPO` with the pair loss
    ``-log sigma(clip(beta [phi(z+) - phi(z-)], -2 R_max, 2 R_max))``, ``z = pi/pi_ref``,
    ``phi(z) = z + log z`` (the clip uses the environment's ``R_max``).

    Its default class is chiPO's own, ``"tabular_chi"``
    (:class:`~xposim.policies.tabular.chi_class.ChiTabularClass`: ``pi_ref phi^{-1}((f - Z_f)/beta)``,
    which contains the mixed-chi^2 optimum); ``policy_class="tabular"`` runs the chiPO loss over
    DPO's exponential-tilt class instead (not realizable for chiPO's objective).
    """

    registry_name: ClassVar[str] = "chipo"
    default_policy_class: ClassVar[str] = "tabular_chi"
    pair_loss_name: ClassVar[int] = PAIR_CHIPO


@dataclasses.dataclass(frozen=True)
class OnlineDPO(LearnerConfig):
    """Online DPO (THEORY 4.2)::

        pi^(1) = pi_ref
        for t = 1..T:
            x ~ rho ; tau, tau' ~ pi^(t)(.|x)         # greedy variant: tau = greedy(pi^(t))(x)
            label -> (tau+, tau-) ; D <- D ∪ {(tau+, tau-)}
            pi^(t+1) = argmin_{pi in Pi} L_DPO(pi; D)   # over ALL pairs so far

    ``batch_size > 1`` is iterative DPO. ``greedy=True`` draws the first response at temperature 0
    (argmax token per state, ties to the lowest token).
    """

    greedy: bool = False
    """Draw the first response from the temperature-0 policy (``online_dpo_greedy``)."""

    registry_name: ClassVar[str] = "online_dpo"
    pair_loss_name: ClassVar[int] = PAIR_DPO

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.greedy, bool):
            raise ValueError(f"greedy must be a bool, got {self.greedy!r}")

    def samplers(self):
        first = SAMPLER_GREEDY if self.greedy else SAMPLER_POLICY  # tau ~ pi^(t) (or greedy)
        second = SAMPLER_POLICY  # tau' ~ pi^(t)
        return first, second, SAMPLER_REFERENCE, BONUS_ON_NONE

    def losses(self, r_max: float):
        return self.pair_loss_name, r_max, BONUS_NONE, 1.0


@dataclasses.dataclass(frozen=True)
class IPO(OnlineDPO):
    """Online IPO (THEORY 4.5): online DPO's sampler pair ``(pi^(t), pi^(t))`` with the pair loss
    ``(l(tau+) - l(tau-) - 1/(2 tau_ipo))^2`` (summed log-probabilities, as trl's online DPO and XPO
    trainers; trl's offline ``DPOTrainer`` averages them over tokens for ``loss_type="ipo"``)."""

    tau_ipo: float = 0.1
    """IPO's regularization ``tau``: the loss pulls ``l(tau+) - l(tau-)`` to ``1/(2 tau_ipo)``."""

    registry_name: ClassVar[str] = "ipo"
    pair_loss_name: ClassVar[int] = PAIR_IPO

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.tau_ipo, "tau_ipo")

    def losses(self, r_max: float):
        return PAIR_IPO, self.tau_ipo, BONUS_NONE, 1.0
