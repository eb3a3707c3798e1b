"""XPO — Algorithm 1 of the paper (THEORY 4.3) and its variants (Algorithms 2, 3, 4; THEORY 4.4)."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from xposim.learners.config import (
    BONUS_ON_SECOND,
    SAMPLER_BEHAVIOUR,
    SAMPLER_HISTORICAL,
    SAMPLER_NAMES,
    SAMPLER_POLICY,
    SAMPLER_REFERENCE,
    LearnerConfig,
    TheoryAlpha,
)
from xposim.losses.kinds import BONUS_XPO, PAIR_DPO

_XPO_SAMPLERS = ("reference", "historical", "behaviour", "policy")


@dataclasses.dataclass(frozen=True)
class XPO(LearnerConfig):
    """Exploratory Preference Optimization, Algorithm 1::

        pi^(1) = pi_ref ; D = {}
        for t = 1..T:
            x ~ rho                                   # Alg.1 line: x ~ rho
            tau  ~ pi^(t)(.|x)                        # Alg.1 line: tau ~ pi^(t)(.|x)
            tau~ ~ pi_ref(.|x)                        # Alg.1 line: tau~ ~ pi_ref(.|x)   (Alg.2: any sampler)
            (tau+, tau-) = label(tau, tau~)           # Alg.1 line: oracle label
            D <- D ∪ {(tau+, tau-)}
            pi^(t+1) = argmin_{pi in Pi} alpha sum_{i<=t} log pi(tau~_i|x_i) + L_DPO(pi; D)

    The bonus enters the MINIMIZATION with a plus sign (kernel ``BONUS_XPO``: ``+alpha log pi``):
    the reference samples become less likely — global optimism. ``alpha = 0`` is NOT online
    DPO: it is DPO on asymmetric pairs ``(pi^(t), pi_ref)``.

    Variants: ``sampler='historical'`` draws ``tau~`` from the uniform mixture of
    ``pi^(1..t)`` (Algorithm 3); ``sampler='behaviour'`` from a fixed policy (Algorithm 2);
    ``batch_size = B`` draws B pairs per round and solves once (Algorithm 4).
    """

    sampler: str = "reference"
    """Sampler of ``tau~`` (and of the bonus): 'reference' (Alg. 1), 'historical' (Alg. 3),
    'behaviour' (Alg. 2 with the fixed policy ``behaviour``), 'policy'."""
    behaviour: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)
    """Token-level policy ``(n_contexts, n_states, A)`` for ``sampler='behaviour'``."""

    registry_name: ClassVar[str] = "xpo"
    #: default alpha = 5 beta / sqrt(T) (THEORY 6.1 shape, [R] constant c = 5: with it XPO escapes
    #: Proposition 2.1's trap by round 100 at beta = 0.02 and solves needle(4, 3) by T = 10^4)
    default_alpha: ClassVar = TheoryAlpha(c=5.0)
    has_bonus: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sampler not in _XPO_SAMPLERS:
            raise ValueError(f"sampler must be one of {list(_XPO_SAMPLERS)}, got {self.sampler!r}")
        if (self.sampler == "behaviour") != (self.behaviour is not None):
            raise ValueError("behaviour must be given exactly when sampler='behaviour'")

    def behaviour_policy(self):
        return self.behaviour

    def samplers(self):
        first = SAMPLER_POLICY  # tau ~ pi^(t)(.|x)
        second = {
            "reference": SAMPLER_REFERENCE,  # tau~ ~ pi_ref(.|x)
            "historical": SAMPLER_HISTORICAL,  # tau~ ~ uniform mixture of pi^(1..t)
            "behaviour": SAMPLER_BEHAVIOUR,
            "policy": SAMPLER_POLICY,
        }[self.sampler]
        assert second in SAMPLER_NAMES.values()
        # the bonus alpha log pi(tau~) is on the second response
        return first, second, second, BONUS_ON_SECOND

    def losses(self, r_max: float):
        # per pair: -log sigma(h) ; per tau~: + alpha log pi(tau~)
        return PAIR_DPO, r_max, BONUS_XPO, 1.0
