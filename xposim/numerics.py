"""Log-domain scalar and array helpers shared by every numba kernel.

All functions are ``numba.njit(cache=True)`` and therefore callable both from Python and from
other jitted kernels; with ``NUMBA_DISABLE_JIT=1`` they run as plain Python on the same code.
They return finite numbers for finite inputs of any magnitude (no overflow in ``exp``).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

NEG_INF = -math.inf
#: Largest float64 strictly below 1 (inverse-CDF draws are clipped to it).
ONE_MINUS = 1.0 - 2.0**-53


@njit(cache=True)
def log_sigmoid(z: float) -> float:
    """``log sigma(z) = -log(1 + e^{-z})``, stable for every finite ``z``."""
    if z >= 0.0:
        return -math.log1p(math.exp(-z))
    return z - math.log1p(math.exp(z))


@njit(cache=True)
def sigmoid(z: float) -> float:
    """``sigma(z) = 1 / (1 + e^{-z})`` without overflow."""
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(cache=True)
def softplus(z: float) -> float:
    """``log(1 + e^z) = -log_sigmoid(-z)``."""
    return -log_sigmoid(-z)


@njit(cache=True)
def logaddexp(a: float, b: float) -> float:
    """``log(e^a + e^b)``; ``-inf`` entries are handled exactly."""
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    if a >= b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


@njit(cache=True)
def logsumexp(values: np.ndarray) -> float:
    """``log sum_i e^{values_i}`` over a 1-d array; ``-inf`` if the array is empty or all ``-inf``."""
    m = NEG_INF
    for v in values:
        if v > m:
            m = v
    if m == NEG_INF:
        return NEG_INF
    s = 0.0
    for v in values:
        s += math.exp(v - m)
    return m + math.log(s)


@njit(cache=True)
def log_softmax_inplace(values: np.ndarray) -> float:
    """Replace ``values`` by ``values - logsumexp(values)``; returns the logsumexp."""
    lse = logsumexp(values)
    for i in range(values.shape[0]):
        values[i] = values[i] - lse
    return lse


def log_sigmoid_np(z):
    """Vectorized numpy ``log sigma(z)`` (reference for :func:`log_sigmoid`)."""
    z = np.asarray(z, dtype=np.float64)
    return -np.logaddexp(0.0, -z)


def sigmoid_np(z):
    """Vectorized numpy ``sigma(z)`` (reference for :func:`sigmoid`)."""
    z = np.asarray(z, dtype=np.float64)
    return np.exp(log_sigmoid_np(z))
