"""Argument checks shared by the package (in the style of optax's ``utils.check_*``).

Each returns the value converted (``float`` / ``int``) or raises a one-line ``ValueError`` that
names the argument and the allowed range. Booleans are never numbers here.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["check_positive", "check_nonnegative", "check_int", "check_open_probability"]

_REAL = (int, float, np.integer, np.floating)


def _real(value, argument: str, bound: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, _REAL):
        raise ValueError(f"{argument} must be a finite real number {bound}, got {value!r}")
    return float(value)


def check_positive(value, argument: str) -> float:
    """``value`` as a float, finite and ``> 0``."""
    number = _real(value, argument, "> 0")
    if not math.isfinite(number) or number <= 0.0:
        raise ValueError(f"{argument} must be a finite real number > 0, got {number!r}")
    return number


def check_nonnegative(value, argument: str) -> float:
    """``value`` as a float, finite and ``>= 0``."""
    number = _real(value, argument, ">= 0")
    if not math.isfinite(number) or number < 0.0:
        raise ValueError(f"{argument} must be a finite real number >= 0, got {number!r}")
    return number


def check_int(value, argument: str, minimum: int) -> int:
    """``value`` as an int, an integer (not a bool) ``>= minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{argument} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_open_probability(value, argument: str) -> float:
    """``value`` as a float in the open interval ``(0, 1)``."""
    number = check_positive(value, argument)
    if number >= 1.0:
        raise ValueError(f"{argument} must lie in the open interval (0, 1), got {number!r}")
    return number
