"""Plain-numpy/scipy reference of :mod:`xposim.chi_link` (chiPO's link and its normalizer).

``z = omega(1 + delta)`` by ``scipy.special.wrightomega``; the normalizer by ``scipy.optimize.brentq``
on ``sum_i m_i omega(1 + (f_i - mu)/beta) = sum_i m_i``. Accurate where ``z`` is not within ~1e-8
of 1 (``omega - 1`` cancels there); the kernels are tested against ``mpmath`` in that regime.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import brentq
from scipy.special import wrightomega


def chi_link(delta):
    """``(log z, z - 1)`` with ``z + log z = 1 + delta`` (arrays broadcast)."""
    z = np.real(wrightomega(1.0 + np.asarray(delta, dtype=np.float64)))
    return np.log(z), z - 1.0


def chi_normalizer(masses, values, beta: float) -> float:
    """``mu`` with ``sum_i m_i z_i = sum_i m_i``, ``phi(z_i) = 1 + (values_i - mu)/beta``."""
    masses = np.asarray(masses, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    keep = masses > 0
    masses, values = masses[keep], values[keep]
    if values.min() == values.max():
        return float(values[0])

    def residual(mu: float) -> float:
        return float(np.sum(masses * (np.real(wrightomega(1.0 + (values - mu) / beta)) - 1.0)))

    return float(brentq(residual, values.min(), values.max(), xtol=1e-15, rtol=1e-15))


def mixed_divergence(ref, policy) -> float:
    """``E_ref[(z - 1)^2 / 2 + z log z]``, ``z = policy / ref`` (``0 log 0 = 0``), over one distribution."""
    ref = np.asarray(ref, dtype=np.float64)
    policy = np.asarray(policy, dtype=np.float64)
    keep = ref > 0
    z = policy[keep] / ref[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        zlogz = np.where(z > 0, z * np.log(z), 0.0)
    return float(np.sum(ref[keep] * (0.5 * (z - 1.0) ** 2 + zlogz)))
