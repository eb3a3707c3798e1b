"""Learner configuration: the common fields, the alpha schedules, and the round plan's declaration.

A learner is a frozen dataclass (one per algorithm, in the sibling modules) that declares its
round in the terms of :mod:`xposim.learners.plan` as named class fields, one per line of its
pseudocode::

    first_sampler = Sampler.POLICY        # tau  ~ pi^(t)(.|x)
    second_sampler = Sampler.REFERENCE    # tau~ ~ pi_ref(.|x)
    bonus_on = BonusOn.SECOND             # the bonus is on tau~
    pair_loss = PairLoss.DPO              # -log sigma(beta (l(tau+) - l(tau-)))
    bonus = Bonus.XPO                     # + alpha log pi(tau~)

(settings that depend on the instance are properties: XPO's ``sampler='historical'`` variant,
online DPO's ``greedy``). :meth:`LearnerConfig.plan` packs them into a :class:`~xposim.learners.plan.Plan`;
the jitted round (:mod:`xposim.learners.round`) executes it and knows no learner by name.
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from xposim.learners.plan import BonusOn, LossReference, Mode, Plan, Sampler
from xposim.losses.kinds import Bonus, PairLoss, bonus_kind, pair_kind
from xposim.oracles import Argmax, BradleyTerry, PreferenceOracle, Probit, make_oracle
from xposim.policies.solving import SolverSettings
from xposim.validation import check_int, check_nonnegative, check_positive

#: names of the plan's settings in configs and tables (the members' names, lower case) -> codes
REFERENCE_NAMES = {member.name.lower(): member for member in LossReference}
MODE_NAMES = {member.name.lower(): member for member in Mode}


# ----------------------------------------------------------------------------- alpha schedules
@runtime_checkable
class AlphaSchedule(Protocol):
    """``values(beta, rounds) -> (rounds,)`` array: ``alpha`` used in the argmin of round ``t = 1..rounds``.

    A schedule may also define ``values_at(beta, rounds, t) -> array like t``: ``alpha`` at the
    rounds ``t`` (1-based ints). The runner then asks for one block of rounds at a time and never
    holds a ``(rounds,)`` array (the built-in schedules do; without it the runner calls ``values``
    once and keeps its result).
    """

    def values(self, beta: float, rounds: int) -> np.ndarray: ...


class _RoundwiseSchedule:
    """A schedule defined round by round (``values_at``); ``values`` is all of its rounds at once."""

    def values(self, beta: float, rounds: int) -> np.ndarray:
        return self.values_at(beta, rounds, np.arange(1, rounds + 1))


@dataclasses.dataclass(frozen=True)
class _ScaledSchedule(_RoundwiseSchedule):
    """A schedule ``c * beta * (a function of t and T)`` with a constant ``c >= 0``."""

    c: float = 1.0
    """The constant ``c`` (>= 0; reconstructed where the theory leaves it open)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "c", check_nonnegative(self.c, "c"))


@dataclasses.dataclass(frozen=True)
class ConstantAlpha(_RoundwiseSchedule):
    """``alpha(t) = value`` for every round."""

    value: float
    """The constant bonus weight (>= 0)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", check_nonnegative(self.value, "alpha"))

    def values_at(self, beta: float, rounds: int, t: np.ndarray) -> np.ndarray:
        return np.full(len(t), self.value)


@dataclasses.dataclass(frozen=True)
class TheoryAlpha(_ScaledSchedule):
    """``alpha = c * beta / sqrt(T)`` for the whole run of ``T`` rounds (THEORY 6.1, [R] shape).

    The theory's tuning is ``alpha ~ beta / ((V_max + R_max) e^{2 R_max}) sqrt(log(|Pi| T/delta) / (C_cov T))``;
    only the ``beta / sqrt(T)`` shape is certain, so every other factor is folded into the
    exposed constant ``c``. Constant within a run (``T`` is the run's number of rounds).
    """

    def values_at(self, beta: float, rounds: int, t: np.ndarray) -> np.ndarray:
        return np.full(len(t), self.c * beta / math.sqrt(rounds))


@dataclasses.dataclass(frozen=True)
class DecayingAlpha(_ScaledSchedule):
    """``alpha(t) = c * beta / sqrt(t)`` (anytime version of :class:`TheoryAlpha`).

    ``alpha`` changes every round, so every context's objective changes: the round re-solves all
    contexts with data every round (cost x number of contexts).
    """

    def values_at(self, beta: float, rounds: int, t: np.ndarray) -> np.ndarray:
        return self.c * beta / np.sqrt(np.asarray(t, dtype=np.float64))


def as_alpha_schedule(alpha) -> AlphaSchedule:
    """A float becomes :class:`ConstantAlpha`; schedules pass through (``ValueError`` otherwise)."""
    if isinstance(alpha, AlphaSchedule) and not isinstance(alpha, (int, float)):
        return alpha
    return ConstantAlpha(check_nonnegative(alpha, "alpha"))


def _checked_alpha(values, shape: tuple[int], what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.shape != shape:
        raise ValueError(f"alpha schedule must return shape {what} = {shape}, got {values.shape}")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("alpha schedule values must be finite and >= 0")
    return np.ascontiguousarray(values)


def alpha_values(alpha, beta: float, rounds: int) -> np.ndarray:
    """The per-round ``alpha`` array, validated (finite, ``>= 0``, shape ``(rounds,)``)."""
    return _checked_alpha(as_alpha_schedule(alpha).values(beta, rounds), (rounds,), "(rounds,)")


class AlphaBlocks:
    """``alpha`` of a run block by block: :meth:`block` gives rounds ``first .. first + count - 1``.

    Memory ``O(count)`` for schedules with ``values_at`` (every built-in one); other schedules are
    evaluated once with ``values(beta, rounds)``. Each block is validated (finite, ``>= 0``).
    """

    def __init__(self, alpha, beta: float, rounds: int) -> None:
        self.schedule = as_alpha_schedule(alpha)
        self.beta, self.rounds = beta, rounds
        self._all = None if hasattr(self.schedule, "values_at") else alpha_values(self.schedule, beta, rounds)

    def block(self, first: int, count: int) -> np.ndarray:
        if self._all is not None:
            return self._all[first - 1:first - 1 + count]
        t = np.arange(first, first + count, dtype=np.int64)
        return _checked_alpha(self.schedule.values_at(self.beta, self.rounds, t), (count,), "(len(t),)")


def resolve_oracle(labels) -> PreferenceOracle:
    """An oracle object from a name (``"bradley_terry"``, ``"argmax"``, ``"probit"``) or an oracle."""
    if isinstance(labels, (BradleyTerry, Argmax, Probit)):
        return labels
    if isinstance(labels, str):
        return make_oracle(labels)
    raise ValueError(f"labels must be an oracle name ('bradley_terry', 'argmax', 'probit') or oracle, got {labels!r}")


# ----------------------------------------------------------------------------- base config
@dataclasses.dataclass(frozen=True)
class LearnerConfig:
    """Fields shared by every learner. Subclasses fix the sampler pair and the losses (THEORY 4.5)."""

    name: str | None = None
    """Label in result tables (default: the registry name of the learner)."""
    alpha: float | AlphaSchedule | None = None
    """Bonus weight: a float, or a schedule (:class:`TheoryAlpha`, :class:`DecayingAlpha`).
    ``None`` = the learner's default (1e-5 in trl mode). Ignored by learners without a bonus."""
    batch_size: int = 1
    """Preference pairs per round (Algorithm 4); queries = rounds * batch_size."""
    labels: str | PreferenceOracle | None = None
    """Oracle: 'bradley_terry' (paper default), 'argmax' (trl default, ties to the first), 'probit'."""
    reference: str | None = None
    """Loss reference: 'fixed' (pi_ref) or 'previous_iterate' (SELM's drift). None = learner default."""
    mode: str = "paper"
    """'paper': argmin over all data each round (exact for convex objectives; for the non-convex
    bonus objectives the local minimum reached from the previous iterate, see SolverSettings);
    'trl': one gradient step on the fresh batch only."""
    learning_rate: float = 0.1
    """trl mode: step size of the projected gradient step on the class parameters (reward units)."""
    temperature: float | None = None
    """Token temperature of draws from the policy and from ``pi_ref`` (None: 1 in paper mode, 0.9 in
    trl mode, where trl generated both completions at 0.9 and scored them at 1). The greedy,
    historical, frozen and behaviour samplers ignore it."""
    solver: SolverSettings = dataclasses.field(default_factory=SolverSettings)
    """Settings of the argmin (tolerance, max iterations, restarts, dense limit)."""

    # -- the round plan, declared by each learner (Algorithm 1's lines as data) ---------
    #: Sampler of the first response ``tau`` (XPO: ``Sampler.POLICY``, ``tau ~ pi^(t)``).
    first_sampler: ClassVar[Sampler]
    #: Sampler of the second response (XPO: ``Sampler.REFERENCE``, ``tau~ ~ pi_ref``).
    second_sampler: ClassVar[Sampler]
    #: Which response carries the bonus term (``BonusOn.NONE``: no bonus).
    bonus_on: ClassVar[BonusOn] = BonusOn.NONE
    #: Sampler of the bonus response when ``bonus_on = BonusOn.SEPARATE`` (VPO, COPO: ``pi_ref``).
    bonus_sampler: ClassVar[Sampler] = Sampler.REFERENCE
    #: The loss of each labeled pair.
    pair_loss: ClassVar[PairLoss] = PairLoss.DPO
    #: The bonus term (``Bonus.NONE``: none).
    bonus: ClassVar[Bonus] = Bonus.NONE
    #: Bonus weight ``c`` of COPO's ``c / sqrt(N(x, y))`` (1 for every other bonus).
    bonus_weight: ClassVar[float] = 1.0
    #: False for learners that fit a reward model instead (they have no :mod:`xposim.losses` kernel).
    has_policy_loss: ClassVar[bool] = True

    registry_name: ClassVar[str] = "learner"
    #: Policy class the learner runs on when the caller names none (``policy_class=None``): the
    #: class in which its loss is the paper's (``"tabular"``; chiPO: ``"tabular_chi"``).
    default_policy_class: ClassVar[str] = "tabular"
    default_alpha: ClassVar = 0.0
    default_reference: ClassVar[str] = "fixed"

    def __post_init__(self) -> None:
        if self.name is not None and not isinstance(self.name, str):
            raise ValueError(f"name must be a string or None, got {self.name!r}")
        if self.alpha is not None:
            as_alpha_schedule(self.alpha)
        check_int(self.batch_size, "batch_size", 1)
        if self.labels is not None:
            resolve_oracle(self.labels)
        if self.reference is not None and self.reference not in REFERENCE_NAMES:
            raise ValueError(f"reference must be one of {sorted(REFERENCE_NAMES)}, got {self.reference!r}")
        if self.mode not in MODE_NAMES:
            raise ValueError(f"mode must be one of {sorted(MODE_NAMES)}, got {self.mode!r}")
        check_positive(self.learning_rate, "learning_rate")
        if self.temperature is not None:
            check_nonnegative(self.temperature, "temperature")
        if not isinstance(self.solver, SolverSettings):
            raise ValueError(f"solver must be a SolverSettings, got {self.solver!r}")

    # -- resolved settings ------------------------------------------------------
    @property
    def has_bonus(self) -> bool:
        """Whether the argmin has a bonus term (``bonus`` is not ``Bonus.NONE``)."""
        return self.bonus != Bonus.NONE

    @property
    def label(self) -> str:
        return self.name if self.name is not None else self.registry_name

    def resolved_alpha(self):
        if not self.has_bonus:
            return 0.0
        if self.alpha is not None:
            return self.alpha
        return 1e-5 if self.mode == "trl" else self.default_alpha

    def resolved_oracle(self) -> PreferenceOracle:
        if self.labels is not None:
            return resolve_oracle(self.labels)
        return Argmax() if self.mode == "trl" else BradleyTerry()

    def resolved_temperature(self) -> float:
        if self.temperature is not None:
            return float(self.temperature)
        return 0.9 if self.mode == "trl" else 1.0

    def resolved_reference(self) -> str:
        return self.reference if self.reference is not None else self.default_reference

    @property
    def is_offline(self) -> bool:
        return False

    def behaviour_policy(self):
        """Token-level behaviour policy ``(nc, n_states, A)`` if the learner samples from one."""
        return None

    # -- the plan -----------------------------------------------------------------
    def pair_parameter(self, r_max: float) -> float:
        """The pair loss's parameter: chiPO's clip ``R_max`` (the environment's), IPO's ``tau``."""
        return float(r_max)

    def outer_round_length(self, rounds: int) -> int:
        """SE-POPO: rounds per outer round (the frozen sampler is reset between them); 0 = never."""
        return 0

    def plan(self, r_max: float, rounds: int) -> Plan:
        """The :class:`~xposim.learners.plan.Plan` the round executes: the declared fields, resolved."""
        name = type(self).__name__
        for old in ("samplers", "losses"):
            if hasattr(self, old):
                raise ValueError(f"learner {name} defines {old}(), which xposim no longer reads: declare first_sampler, "
                                 "second_sampler, bonus_on, bonus_sampler, pair_loss and bonus as fields instead "
                                 "(see xposim.learners.XPO)")
        for field in ("first_sampler", "second_sampler"):
            if not isinstance(getattr(self, field, None), Sampler):
                raise ValueError(f"learner {name} must declare {field} (an xposim.learners.plan.Sampler)")
        if self.has_bonus and self.bonus_on == BonusOn.NONE:
            raise ValueError(f"learner {name} declares bonus = {self.bonus!r} but bonus_on = BonusOn.NONE: say which "
                             "response carries it (BonusOn.SECOND or BonusOn.SEPARATE)")
        oracle = self.resolved_oracle()
        return Plan(
            first_sampler=int(self.first_sampler),
            second_sampler=int(self.second_sampler),
            bonus_sampler=int(self.bonus_sampler),
            bonus_response=int(self.bonus_on if self.has_bonus else BonusOn.NONE),
            pair_kind=int(self.pair_loss),
            pair_param=float(self.pair_parameter(r_max)),
            bonus_kind=int(self.bonus),
            copo_weight=float(self.bonus_weight),
            reference_mode=int(REFERENCE_NAMES[self.resolved_reference()]),
            batch_size=int(self.batch_size),
            oracle_code=int(oracle.code),
            oracle_param=float(oracle.parameter),
            mode=int(MODE_NAMES[self.mode]),
            learning_rate=float(self.learning_rate),
            temperature=self.resolved_temperature(),
            outer_round_length=int(self.outer_round_length(rounds)),
            offline=bool(self.is_offline),
        )

    def describe(self) -> dict:
        """Settings as a flat dict (for result tables)."""
        alpha = self.resolved_alpha()
        return {
            "learner": self.label,
            "algorithm": self.registry_name,
            "alpha": float(alpha) if isinstance(alpha, (int, float)) else repr(alpha),
            "batch_size": self.batch_size,
            "mode": self.mode,
            "reference": self.resolved_reference(),
        }


def check_pair_name(name: str) -> int:
    """Pair-loss code (ValueError lists the allowed names)."""
    return pair_kind(name)


def check_bonus_name(name: str) -> int:
    """Bonus code (ValueError lists the allowed names)."""
    return bonus_kind(name)


__all__ = [
    "AlphaSchedule",
    "ConstantAlpha",
    "TheoryAlpha",
    "DecayingAlpha",
    "LearnerConfig",
    "alpha_values",
    "as_alpha_schedule",
    "resolve_oracle",
]
