"""XPO — Algorithm 1 of the paper (THEORY 4.3) and its variants (Algorithms 2, 3, 4; THEORY 4.4)."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from xposim.learners.config import LearnerConfig, TheoryAlpha
from xposim.learners.plan import BonusOn, Sampler
from xposim.losses.kinds import Bonus, PairLoss

_XPO_SAMPLERS = ("reference", "historical", "behaviour", "policy")


@dataclasses.dataclass(frozen=True)
class XPO(LearnerConfig):
    """Exploratory Preference Optimization, Algorithm 1::

        pi^(1) = pi_ref ; D = {}
        for t = 1..T:
            x ~ rho
            tau  ~ pi^(t)(.|x)                        # first_sampler
            tau~ ~ pi_ref(.|x)                        # second_sampler (Alg. 2, 3: other samplers)
            (tau+, tau-) = label(tau, tau~)           # the preference oracle (``labels``)
            D <- D ∪ {(tau+, tau-)}
            pi^(t+1) = argmin_{pi in Pi} alpha sum_{i<=t} log pi(tau~_i|x_i) + L_DPO(pi; D)
                                                      # bonus, bonus_on, pair_loss

    The fields below declare these lines; :mod:`xposim.learners.round` executes them (read it
    next), and the policy class's ``solve`` is the argmin (on the tabular class,
    :mod:`xposim.policies.tabular.solve`, certified global by default).

    The bonus enters the MINIMIZATION with a plus sign (``Bonus.XPO``: ``+alpha log pi``):
    the reference samples become less likely — global optimism. ``alpha = 0`` is NOT online
    DPO: it is DPO on asymmetric pairs ``(pi^(t), pi_ref)``.

    Variants: ``sampler='historical'`` draws ``tau~`` from the uniform mixture of
    ``pi^(1..t)`` (Algorithm 3); ``sampler='behaviour'`` from a fixed policy (Algorithm 2);
    ``batch_size = B`` draws B pairs per round and solves once (Algorithm 4).
    """

    # -- Algorithm 1, line by line (the round, xposim.learners.round, executes these) ---------
    first_sampler = Sampler.POLICY  # tau ~ pi^(t)(.|x)
    # second_sampler: tau~ ~ pi_ref(.|x) (Alg. 1), or the variant's sampler: the property below
    pair_loss = PairLoss.DPO  # -log sigma(beta [l(tau+) - l(tau-)]) over D
    bonus = Bonus.XPO  # + alpha log pi(tau~) ...
    bonus_on = BonusOn.SECOND  # ... on the second response, tau~

    sampler: str = "reference"
    """Sampler of ``tau~`` (and of the bonus): 'reference' (Alg. 1), 'historical' (Alg. 3),
    'behaviour' (Alg. 2 with the fixed policy ``behaviour``), 'policy'."""
    behaviour: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)
    """Token-level policy ``(n_contexts, n_states, A)`` for ``sampler='behaviour'``."""

    registry_name: ClassVar[str] = "xpo"
    #: default alpha = 5 beta / sqrt(T) (THEORY 6.1 shape, [R] constant c = 5: with it XPO escapes
    #: Proposition 2.1's trap by round 100 at beta = 0.02 and solves needle(4, 3) by T = 10^4)
    default_alpha: ClassVar = TheoryAlpha(c=5.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sampler not in _XPO_SAMPLERS:
            raise ValueError(f"sampler must be one of {list(_XPO_SAMPLERS)}, got {self.sampler!r}")
        if (self.sampler == "behaviour") != (self.behaviour is not None):
            raise ValueError("behaviour must be given exactly when sampler='behaviour'")

    def behaviour_policy(self):
        return self.behaviour

    @property
    def second_sampler(self) -> Sampler:
        """``tau~ ~ pi_ref`` (Algorithm 1), the mixture of ``pi^(1..t)`` (Algorithm 3), the fixed
        ``behaviour`` policy (Algorithm 2), or ``pi^(t)`` itself: the ``sampler`` field."""
        return Sampler[self.sampler.upper()]

    @property
    def bonus_sampler(self) -> Sampler:
        return self.second_sampler  # the bonus is on tau~ itself
