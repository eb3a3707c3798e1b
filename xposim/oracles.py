"""Preference oracles (THEORY 1.2): who wins a comparison of two responses to the same prompt.

Every oracle offers, vectorized over broadcastable arrays of rewards,

* ``preference_probability(r1, r2) -> float array``: ``P(first response preferred)``;
* ``sample(rng, r1, r2) -> bool array``: ``True`` where the first response wins, drawn as
  ``u < P`` with ``u ~ U[0, 1)`` from the numpy ``Generator`` ``rng``.

Jitted learners use the integer ``oracle.code`` and float ``oracle.parameter`` with
:func:`preference_probability_code` / :func:`first_wins_code`, which reproduce the same
probabilities (and, for the same uniform draws, the same labels) inside numba loops.

Oracles:

* :class:`BradleyTerry` — ``P = sigma((r1 - r2)/temperature)``; ``temperature = 1`` is the paper's model.
* :class:`Argmax` — the higher reward wins, ties go to the FIRST response (trl/oat practice mode).
* :class:`Probit` — Thurstone ``P = Phi((r1 - r2)/scale)`` (beyond the paper; robustness runs).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Protocol, runtime_checkable

import numpy as np
from numba import njit
from scipy.special import ndtr

from xposim.numerics import sigmoid, sigmoid_np
from xposim.validation import check_positive

BRADLEY_TERRY_CODE = 0
ARGMAX_CODE = 1
PROBIT_CODE = 2

_SQRT_HALF = math.sqrt(0.5)


@runtime_checkable
class PreferenceOracle(Protocol):
    """What learners need from an oracle (see the module docstring)."""

    code: int
    parameter: float

    def preference_probability(self, r1, r2) -> np.ndarray: ...

    def sample(self, rng: np.random.Generator, r1, r2) -> np.ndarray: ...


def _reward_arrays(r1, r2) -> tuple[np.ndarray, np.ndarray]:
    r1 = np.asarray(r1, dtype=np.float64)
    r2 = np.asarray(r2, dtype=np.float64)
    if not (np.all(np.isfinite(r1)) and np.all(np.isfinite(r2))):
        raise ValueError("rewards r1 and r2 must be finite (found NaN or inf)")
    return np.broadcast_arrays(r1, r2)


class _SamplingMixin:
    def sample(self, rng: np.random.Generator, r1, r2) -> np.ndarray:
        """Labels ``u < P(first preferred)`` with ``u = rng.random(shape)``; ``True`` = first wins."""
        p = self.preference_probability(r1, r2)
        return rng.random(p.shape) < p


@dataclasses.dataclass(frozen=True)
class BradleyTerry(_SamplingMixin):
    """Bradley–Terry link ``P(tau1 > tau2) = sigma((r1 - r2)/temperature)`` [P] (THEORY 1.2).

    Computed as ``exp(log_sigmoid(z))``, finite and in ``[0, 1]`` for any finite rewards.
    ``temperature = 1`` is the theory's model; larger temperatures give noisier labels.
    """

    temperature: float = 1.0
    code: int = dataclasses.field(default=BRADLEY_TERRY_CODE, init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "temperature", check_positive(self.temperature, "temperature"))

    @property
    def parameter(self) -> float:
        """The float passed to :func:`preference_probability_code` (the temperature)."""
        return self.temperature

    def preference_probability(self, r1, r2) -> np.ndarray:
        r1, r2 = _reward_arrays(r1, r2)
        return sigmoid_np((r1 - r2) / self.temperature)


@dataclasses.dataclass(frozen=True)
class Argmax(_SamplingMixin):
    """Deterministic labels: the higher reward wins; ties go to the FIRST response.

    ``P = 1`` if ``r1 >= r2`` else ``0`` (what trl's online trainers did; not the theory's model).
    """

    code: int = dataclasses.field(default=ARGMAX_CODE, init=False, repr=False)

    @property
    def parameter(self) -> float:
        """Unused by the argmax rule (0.0)."""
        return 0.0

    def preference_probability(self, r1, r2) -> np.ndarray:
        r1, r2 = _reward_arrays(r1, r2)
        return np.where(r1 >= r2, 1.0, 0.0)


@dataclasses.dataclass(frozen=True)
class Probit(_SamplingMixin):
    """Thurstone/probit link ``P(tau1 > tau2) = Phi((r1 - r2)/scale)`` (standard normal CDF, ``scipy.special.ndtr``)."""

    scale: float = 1.0
    code: int = dataclasses.field(default=PROBIT_CODE, init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", check_positive(self.scale, "scale"))

    @property
    def parameter(self) -> float:
        """The float passed to :func:`preference_probability_code` (the scale)."""
        return self.scale

    def preference_probability(self, r1, r2) -> np.ndarray:
        r1, r2 = _reward_arrays(r1, r2)
        return np.asarray(ndtr((r1 - r2) / self.scale), dtype=np.float64)


_NAMES = {
    "bradley_terry": BradleyTerry,
    "bt": BradleyTerry,
    "argmax": Argmax,
    "probit": Probit,
}


def make_oracle(name: str, **parameters: float) -> BradleyTerry | Argmax | Probit:
    """Oracle by name: ``"bradley_terry"``/``"bt"`` (``temperature=``), ``"argmax"``, ``"probit"`` (``scale=``)."""
    key = name.lower() if isinstance(name, str) else name
    if key not in _NAMES:
        raise ValueError(f"oracle name must be one of {sorted(_NAMES)}, got {name!r}")
    try:
        return _NAMES[key](**parameters)
    except TypeError as error:
        raise ValueError(f"bad parameters {parameters} for oracle {name!r}: {error}") from None


def oracle_from_code(code: int, parameter: float) -> BradleyTerry | Argmax | Probit:
    """Inverse of ``(oracle.code, oracle.parameter)``."""
    if code == BRADLEY_TERRY_CODE:
        return BradleyTerry(temperature=parameter)
    if code == ARGMAX_CODE:
        return Argmax()
    if code == PROBIT_CODE:
        return Probit(scale=parameter)
    raise ValueError(f"oracle code must be one of {BRADLEY_TERRY_CODE}, {ARGMAX_CODE}, {PROBIT_CODE}, got {code!r}")


@njit(cache=True)
def preference_probability_code(code: int, parameter: float, r1: float, r2: float) -> float:
    """``P(first preferred)`` for the oracle ``(code, parameter)``; scalar, callable inside numba loops.

    BT: ``sigma((r1 - r2)/parameter)``; argmax: ``1.0 if r1 >= r2 else 0.0``;
    probit: ``Phi((r1 - r2)/parameter) = erfc(-(r1 - r2)/(parameter sqrt 2))/2``.
    """
    if code == BRADLEY_TERRY_CODE:
        return sigmoid((r1 - r2) / parameter)
    if code == ARGMAX_CODE:
        return 1.0 if r1 >= r2 else 0.0
    if code == PROBIT_CODE:
        return 0.5 * math.erfc(-(r1 - r2) / parameter * _SQRT_HALF)
    raise ValueError("unknown oracle code (allowed: 0 Bradley-Terry, 1 argmax, 2 probit)")


@njit(cache=True)
def first_wins_code(code: int, parameter: float, r1: float, r2: float, uniform: float) -> bool:
    """Label from a uniform draw ``u in [0, 1)``: the first response wins iff ``u < P(first preferred)``."""
    return uniform < preference_probability_code(code, parameter, r1, r2)
