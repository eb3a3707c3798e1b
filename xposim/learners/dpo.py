"""DPO-family learners without exploration bonus: offline DPO, chiPO, online DPO, IPO (THEORY 4.1, 4.2, 4.5)."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from xposim.learners.config import LearnerConfig
from xposim.learners.plan import Sampler
from xposim.losses.kinds import PairLoss
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

    # tau, tau' ~ behaviour (pi_ref unless ``behaviour`` is given): the properties below
    pair_loss = PairLoss.DPO  # -log sigma(beta [l(tau+) - l(tau-)]) ; no bonus

    n_pairs: int | None = None
    """Size ``n`` of the offline dataset (None: the ``rounds`` of the run)."""
    behaviour: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)
    """Token-level behaviour policy ``(n_contexts, n_states, A)`` generating both responses (None: ``pi_ref``)."""

    registry_name: ClassVar[str] = "dpo"

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

    @property
    def first_sampler(self) -> Sampler:
        """``tau ~ pi_ref``, or ``behaviour`` when given."""
        return Sampler.REFERENCE if self.behaviour is None else Sampler.BEHAVIOUR

    @property
    def second_sampler(self) -> Sampler:
        """``tau' ~`` the same source as ``tau``."""
        return self.first_sampler


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

    pair_loss = PairLoss.CHIPO  # -log sigma(clip(beta [phi(z+) - phi(z-)], -2 R_max, 2 R_max))

    registry_name: ClassVar[str] = "chipo"
    default_policy_class: ClassVar[str] = "tabular_chi"


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

    # first_sampler: tau ~ pi^(t)(.|x), or its greedy version: the property below
    second_sampler = Sampler.POLICY  # tau' ~ pi^(t)(.|x)
    pair_loss = PairLoss.DPO  # -log sigma(beta [l(tau+) - l(tau-)]) over D ; no bonus

    greedy: bool = False
    """Draw the first response from the temperature-0 policy (``online_dpo_greedy``)."""

    registry_name: ClassVar[str] = "online_dpo"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.greedy, bool):
            raise ValueError(f"greedy must be a bool, got {self.greedy!r}")

    @property
    def first_sampler(self) -> Sampler:
        """``tau ~ pi^(t)``, or the temperature-0 policy when ``greedy``."""
        return Sampler.GREEDY if self.greedy else Sampler.POLICY


@dataclasses.dataclass(frozen=True)
class IPO(OnlineDPO):
    """Online IPO (THEORY 4.5): online DPO's sampler pair ``(pi^(t), pi^(t))`` with the pair loss
    ``(l(tau+) - l(tau-) - 1/(2 tau_ipo))^2`` (summed log-probabilities, as trl's online DPO and XPO
    trainers; trl's offline ``DPOTrainer`` averages them over tokens for ``loss_type="ipo"``)."""

    pair_loss = PairLoss.IPO  # (l(tau+) - l(tau-) - 1/(2 tau_ipo))^2 over D

    tau_ipo: float = 0.1
    """IPO's regularization ``tau``: the loss pulls ``l(tau+) - l(tau-)`` to ``1/(2 tau_ipo)``."""

    registry_name: ClassVar[str] = "ipo"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.tau_ipo, "tau_ipo")

    def pair_parameter(self, r_max: float) -> float:
        return float(self.tau_ipo)
