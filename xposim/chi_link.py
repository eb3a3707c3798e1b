"""chiPO's link function and its normalizer, in float64 for every ``beta`` (numba kernels).

chiPO (Huang et al. 2024, arXiv 2407.13399; THEORY 4.5) regularizes with the mixed divergence
``D(pi || pi_ref) = E_{pi_ref}[f(z)]``, ``z = pi / pi_ref``, ``f(z) = (z - 1)^2 / 2 + z log z``
(``chi^2 / 2 + KL``), whose derivative is the link ``phi(z) = f'(z) = z + log z``. Its
realizable class and its regularized optimum both have the form

    pi(tau) = pi_ref(tau) * z(tau),   phi(z(tau)) = 1 + (f(tau) - mu) / beta,

with ``mu`` chosen so that ``sum_tau pi_ref(tau) z(tau) = 1``. ``phi^{-1}(y) = W0(e^y)`` is the
Wright omega function ``omega(y)`` (``scipy.special.wrightomega``). Writing the argument as
``1 + delta`` (``phi(1) = 1``) keeps ``z - 1`` accurate where ``z`` is close to 1 (large ``beta``).

* :func:`chi_link` — ``(log z, z - 1)`` of ``phi(z) = 1 + delta``, both to a few ulps for every
  finite ``delta`` (Newton on ``u + log1p(u) = delta`` for ``|delta| < 1/2``, on
  ``e^w + w = 1 + delta`` otherwise; both converge monotonically from the chosen start);
* :func:`chi_normalizer` — the root ``mu`` of ``sum_i m_i (z_i(mu) - 1) = 0`` over weighted items
  (log masses ``log m_i``, values ``f_i``), safeguarded Newton inside ``[min f, max f]``;
* :func:`mixed_divergence_term` — ``f(z) - (z - 1) = (z - 1)^2/2 + z log z - z + 1 >= 0``, each
  term non-negative, so ``E_ref f(z)`` sums without cancellation (``E_ref[z - 1] = 0``).

Plain-numpy reference: :mod:`xposim.reference.chi_numpy` (``scipy.special.wrightomega``).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from xposim.numerics import NEG_INF

#: Newton iterations allowed per link evaluation / per normalizer solve (never reached in tests).
MAX_LINK_ITERATIONS = 100
MAX_NORMALIZER_ITERATIONS = 200


@njit(cache=True)
def chi_link(delta: float) -> tuple[float, float]:
    """``(log z, z - 1)`` where ``z + log z = 1 + delta`` (``z = omega(1 + delta)``, chiPO's ``phi^{-1}``).

    ``delta = -inf`` gives ``(-inf, -1)``; ``delta = +inf`` gives ``(inf, inf)``.
    """
    if delta == NEG_INF:
        return NEG_INF, -1.0
    if delta == math.inf:
        return math.inf, math.inf
    if abs(delta) < 0.5:
        # h(u) = u + log1p(u) - delta: increasing and concave, so Newton from any start lands
        # below the root and then climbs monotonically to it.
        u = 0.5 * delta
        for _ in range(MAX_LINK_ITERATIONS):
            step = (u + math.log1p(u) - delta) / (1.0 + 1.0 / (1.0 + u))
            u_new = u - step
            if u_new == u or abs(step) <= 1e-17 * abs(u):
                u = u_new
                break
            u = u_new
        return math.log1p(u), u
    y = 1.0 + delta
    # h(w) = e^w + w - y: increasing and convex; start at or above the root (w <= log y for
    # y >= 1, w <= y always), so Newton descends monotonically.
    if y > 1.0:
        w = math.log(y)
    else:
        w = y
    for _ in range(MAX_LINK_ITERATIONS):
        ew = math.exp(w)
        step = (ew + w - y) / (ew + 1.0)
        w_new = w - step
        if w_new >= w:  # monotone descent stalled: converged to rounding
            break
        w = w_new
        if abs(step) <= 1e-16 * max(abs(w), 1e-300):
            break
    return w, math.expm1(w)


@njit(cache=True)
def mixed_divergence_term(log_z: float, u: float) -> float:
    """``f(z) - (z - 1) = u^2/2 + (1 + u) log(1 + u) - u >= 0`` for ``z = 1 + u``, ``log z = log_z``.

    The KL part ``z log z - z + 1`` is summed by its series ``sum_k>=2 (-u)^k / (k (k-1))`` for
    ``|u| < 0.1`` (no cancellation); ``z = 0`` gives ``1/2 + 1``.
    """
    if u == -1.0 or log_z == NEG_INF:
        return 1.5
    if abs(u) < 0.1:
        total = 0.0
        power = u * u
        k = 2
        while k < 60:
            term = power / (k * (k - 1))
            total += term if k % 2 == 0 else -term
            if abs(term) <= 1e-18 * abs(total):
                break
            power *= u
            k += 1
        kl_part = total
    else:
        kl_part = (1.0 + u) * log_z - u
        if kl_part < 0.0:
            kl_part = 0.0
    return 0.5 * u * u + kl_part


@njit(cache=True)
def _normalizer_residual(log_mass: np.ndarray, values: np.ndarray, n: int, mu: float, beta: float,
                         log_z: np.ndarray, u: np.ndarray) -> tuple[float, float]:
    """``g(mu) = sum_i m_i u_i`` and ``g'(mu) = -sum_i m_i z_i / ((1 + z_i) beta)``; fills ``log_z``, ``u``."""
    g = 0.0
    slope = 0.0
    for i in range(n):
        if log_mass[i] == NEG_INF:
            log_z[i] = NEG_INF
            u[i] = -1.0
            continue
        lz, ui = chi_link((values[i] - mu) / beta)
        log_z[i] = lz
        u[i] = ui
        m = math.exp(log_mass[i])
        g += m * ui
        # dz/ddelta = z / (1 + z), formed without overflow for z tiny or huge
        if lz < 0.0:
            ratio = math.exp(lz) / (1.0 + math.exp(lz))
        else:
            ratio = 1.0 / (1.0 + math.exp(-lz))
        slope -= m * ratio / beta
    return g, slope


@njit(cache=True)
def chi_normalizer(log_mass: np.ndarray, values: np.ndarray, n: int, beta: float,
                   log_z: np.ndarray, u: np.ndarray) -> float:
    """``mu`` with ``sum_{i < n} m_i z_i = sum_i m_i`` for ``phi(z_i) = 1 + (values_i - mu)/beta``.

    ``m_i = exp(log_mass[i])`` (``-inf``: the item is absent). The masses need not sum to 1: the
    policy's total mass then equals the reference's (the class uses normalized ``pi_ref``, where
    this is ``sum pi = 1``). ``g(mu) = sum m_i (z_i - 1)`` is decreasing and convex in ``mu``,
    positive at ``min f`` and negative at ``max f``; Newton from the left end climbs
    monotonically to the root (a bisection step guards against rounding). On return ``log_z``
    and ``u = z - 1`` hold the items' values at ``mu``, rescaled by ``1/(1 + g(mu)/M)``
    (``M = sum m_i``) so that ``sum m_i z_i = M`` to rounding even where one ulp of ``mu`` moves
    ``z`` by more (``beta`` tiny: ``dz/dmu ~ 1/beta``).
    """
    lo = math.inf
    hi = -math.inf
    for i in range(n):
        if log_mass[i] > NEG_INF:
            lo = min(lo, values[i])
            hi = max(hi, values[i])
    if lo == math.inf:
        return 0.0
    if lo == hi:
        for i in range(n):
            log_z[i] = 0.0 if log_mass[i] > NEG_INF else NEG_INF
            u[i] = 0.0 if log_mass[i] > NEG_INF else -1.0
        return lo
    mu = lo
    for _ in range(MAX_NORMALIZER_ITERATIONS):
        g, slope = _normalizer_residual(log_mass, values, n, mu, beta, log_z, u)
        if g == 0.0:
            return mu
        if g > 0.0:
            lo = mu
        else:
            hi = mu
        candidate = mu - g / slope if slope < 0.0 else 0.5 * (lo + hi)
        if not (lo <= candidate <= hi) or candidate != candidate:
            candidate = 0.5 * (lo + hi)
        if candidate == mu or hi - lo <= 4e-16 * max(abs(lo), abs(hi)):
            break
        mu = candidate
    g, _ = _normalizer_residual(log_mass, values, n, mu, beta, log_z, u)
    # At tiny beta one ulp of mu moves the dominant z by far more than rounding (dz/dmu ~ 1/beta):
    # rescale every z by 1/(1 + g/M) so that sum m z = M holds to rounding.
    total = 0.0
    for i in range(n):
        if log_mass[i] > NEG_INF:
            total += math.exp(log_mass[i])
    excess = g / total
    if excess != 0.0:
        shift = math.log1p(excess)
        for i in range(n):
            if log_mass[i] > NEG_INF:
                log_z[i] -= shift
                u[i] = (u[i] - excess) / (1.0 + excess)
    return mu


__all__ = ["chi_link", "chi_normalizer", "mixed_divergence_term", "MAX_LINK_ITERATIONS",
           "MAX_NORMALIZER_ITERATIONS"]
