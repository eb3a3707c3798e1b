"""Scalar per-pair preference losses and their first and second derivatives (numba kernels).

Inputs are the sequence-level log-ratios ``l(tau) = log pi(tau|x) - log pi_ref(tau|x)`` (summed
over tokens) of the preferred (``l_chosen``, ``tau+``) and dispreferred (``l_rejected``, ``tau-``)
responses. Every kernel returns ``(loss, d loss/d l_chosen, d loss/d l_rejected)``; the
``*_hessian`` kernels return ``(d2/dl_c^2, d2/dl_c dl_r, d2/dl_r^2)``. The loss is *minimized*.

Preconditions (not checked here, for speed inside learners' loops; the batch kernels and the Python
API check them): finite ``l_chosen``, ``l_rejected``; ``beta > 0``, ``tau_ipo > 0``, ``r_max > 0``
finite. Results are finite whenever the exact value is representable in float64; where it is
not (only the chiPO derivatives with an unclipped pair and ``beta e^l > 1.8e308``) they are
``+-inf``, never NaN.

References: THEORY.md 4.1 (DPO), 4.5 (IPO, chiPO rows).
"""
from __future__ import annotations

import math
import sys

from numba import njit

from xposim._jit import internal_kernel
from xposim.numerics import log_sigmoid, sigmoid, softplus
from xposim.losses.kinds import PAIR_CHIPO, PAIR_DPO, PAIR_IPO

#: ``log`` of the largest finite float64; ``exp`` of anything larger is ``inf``.
LOG_FLOAT_MAX = math.log(sys.float_info.max)


@internal_kernel
def safe_exp(x: float) -> float:
    """``e^x``, saturating to ``inf`` instead of raising (plain Python's ``math.exp`` raises)."""
    if x > LOG_FLOAT_MAX:
        return math.inf
    return math.exp(x)


@internal_kernel
def exp_minus_exp(x: float, y: float) -> float:
    """``e^x - e^y`` without overflowing when both are huge (``inf`` only if the result is)."""
    if x == y:
        return 0.0
    if x > y:
        return safe_exp(x + math.log(-math.expm1(y - x)))
    return -safe_exp(y + math.log(-math.expm1(x - y)))


# ----------------------------------------------------------------------------------------- DPO
@njit(cache=True)
def dpo_pair(l_chosen: float, l_rejected: float, beta: float) -> tuple[float, float, float]:
    """DPO pair loss ``-log sigma(h)``, ``h = beta (l_chosen - l_rejected)`` (THEORY 4.1).

    Derivatives: ``d/dl_chosen = -beta sigma(-h)``, ``d/dl_rejected = +beta sigma(-h)``.
    At ``h = 0``: loss ``log 2``, derivatives ``-beta/2`` and ``+beta/2``.
    """
    h = beta * (l_chosen - l_rejected)
    g = beta * sigmoid(-h)
    return -log_sigmoid(h), -g, g


@njit(cache=True)
def dpo_pair_hessian(l_chosen: float, l_rejected: float, beta: float) -> tuple[float, float, float]:
    """Second derivatives of :func:`dpo_pair`: ``c, -c, c`` with ``c = beta^2 sigma(h) sigma(-h)``."""
    h = beta * (l_chosen - l_rejected)
    c = (beta * sigmoid(h)) * (beta * sigmoid(-h))
    return c, -c, c


# ----------------------------------------------------------------------------------------- IPO
@njit(cache=True)
def ipo_pair(l_chosen: float, l_rejected: float, tau_ipo: float) -> tuple[float, float, float]:
    """IPO pair loss ``(l_chosen - l_rejected - 1/(2 tau_ipo))^2`` (THEORY 4.5, ``(h/beta - 1/(2 tau))^2``).

    ``beta`` cancels out of the IPO loss, so it is not an argument. Minimum (0) at
    ``l_chosen - l_rejected = 1/(2 tau_ipo)``. Derivatives ``+-2 (l_chosen - l_rejected - 1/(2 tau_ipo))``.
    ``l`` is the *summed* log-ratio of the response, as trl's online DPO and XPO trainers use it
    (``tau_ipo`` = their ``beta``); trl's offline ``DPOTrainer`` averages the log-probabilities over
    tokens for ``loss_type="ipo"`` instead, which differs by the response length.
    """
    d = (l_chosen - l_rejected) - 0.5 / tau_ipo
    return d * d, 2.0 * d, -2.0 * d


@njit(cache=True)
def ipo_pair_hessian(l_chosen: float, l_rejected: float, tau_ipo: float) -> tuple[float, float, float]:
    """Second derivatives of :func:`ipo_pair`: the constants ``(2, -2, 2)``."""
    return 2.0, -2.0, 2.0


# --------------------------------------------------------------------------------------- chiPO
@njit(cache=True)
def chipo_margin(l_chosen: float, l_rejected: float, beta: float) -> float:
    """Unclipped chiPO margin ``u = beta [phi(z+) - phi(z-)]``, ``z = e^l``, ``phi(z) = z + log z``.

    ``u = beta (e^{l+} - e^{l-}) + beta (l+ - l-)``; both terms have the sign of ``l+ - l-``
    (``phi`` is increasing), so ``|u|`` is a sum of two non-negative terms, the first computed as
    ``exp(log beta + max(l) + log(1 - e^{-|l+ - l-|}))``. Saturates to ``+-inf``, never NaN.
    """
    diff = l_chosen - l_rejected
    if diff == 0.0:
        return 0.0
    gap = abs(diff)
    top = max(l_chosen, l_rejected)
    magnitude = safe_exp(math.log(beta) + top + math.log(-math.expm1(-gap))) + beta * gap
    if diff > 0.0:
        return magnitude
    return -magnitude


@njit(cache=True)
def chipo_pair(l_chosen: float, l_rejected: float, beta: float, r_max: float) -> tuple[float, float, float]:
    """chiPO pair loss ``-log sigma(clip(u, -2 r_max, 2 r_max))``, ``u`` = :func:`chipo_margin` (THEORY 4.5).

    Unclipped (``|u| <= 2 r_max``, boundary included as in ``torch.clamp``):
    ``d/dl_chosen = -beta (1 + e^{l+}) sigma(-u)``, ``d/dl_rejected = +beta (1 + e^{l-}) sigma(-u)``,
    computed in the log domain. Clipped (``|u| > 2 r_max``): both derivatives are exactly 0 and the
    loss is ``-log sigma(+-2 r_max)``, so huge log-ratios never overflow.
    """
    u = chipo_margin(l_chosen, l_rejected, beta)
    two_r = 2.0 * r_max
    if u > two_r:
        return -log_sigmoid(two_r), 0.0, 0.0
    if u < -two_r:
        return -log_sigmoid(-two_r), 0.0, 0.0
    log_scale = math.log(beta) + log_sigmoid(-u)
    d_chosen = -safe_exp(log_scale + softplus(l_chosen))
    d_rejected = safe_exp(log_scale + softplus(l_rejected))
    return -log_sigmoid(u), d_chosen, d_rejected


@njit(cache=True)
def chipo_pair_hessian(l_chosen: float, l_rejected: float, beta: float, r_max: float) -> tuple[float, float, float]:
    """Second derivatives of :func:`chipo_pair`; all 0 where the clip is active.

    With ``s = sigma(u)``, ``s' = sigma(-u)``, ``u_c = beta (1 + e^{l+})``, ``u_r = -beta (1 + e^{l-})``:
    ``d2/dl_c^2 = s s' u_c^2 - s' beta e^{l+}``, ``d2/dl_c dl_r = s s' u_c u_r``,
    ``d2/dl_r^2 = s s' u_r^2 + s' beta e^{l-}`` (the loss is ``softplus(-u)``, ``u_cr = 0``).
    Evaluated in the log domain; the difference in ``d2/dl_c^2`` by :func:`exp_minus_exp`.
    """
    u = chipo_margin(l_chosen, l_rejected, beta)
    two_r = 2.0 * r_max
    if u > two_r or u < -two_r:
        return 0.0, 0.0, 0.0
    log_beta = math.log(beta)
    log_s_neg = log_sigmoid(-u)
    log_ss = log_sigmoid(u) + log_s_neg
    log_uc = log_beta + softplus(l_chosen)
    log_ur = log_beta + softplus(l_rejected)
    d_cc = exp_minus_exp(log_ss + 2.0 * log_uc, log_s_neg + log_beta + l_chosen)
    d_cr = -safe_exp(log_ss + log_uc + log_ur)
    d_rr = safe_exp(log_ss + 2.0 * log_ur) + safe_exp(log_s_neg + log_beta + l_rejected)
    return d_cc, d_cr, d_rr


# ---------------------------------------------------------------------------------- dispatchers
@njit(cache=True)
def pair_loss(kind: int, l_chosen: float, l_rejected: float, beta: float, param: float) -> tuple[float, float, float]:
    """``(loss, d/dl_chosen, d/dl_rejected)`` of pair loss ``kind`` (``PAIR_*`` code).

    ``param`` is ``tau_ipo`` for IPO, ``r_max`` for chiPO, ignored for DPO; ``beta`` is ignored by IPO.
    """
    if kind == PAIR_DPO:
        return dpo_pair(l_chosen, l_rejected, beta)
    if kind == PAIR_IPO:
        return ipo_pair(l_chosen, l_rejected, param)
    if kind == PAIR_CHIPO:
        return chipo_pair(l_chosen, l_rejected, beta, param)
    raise ValueError("pair loss kind must be PAIR_DPO (0), PAIR_IPO (1) or PAIR_CHIPO (2)")


@njit(cache=True)
def pair_loss_hessian(kind: int, l_chosen: float, l_rejected: float, beta: float, param: float) -> tuple[float, float, float]:
    """``(d2/dl_c^2, d2/dl_c dl_r, d2/dl_r^2)`` of pair loss ``kind``; arguments as in :func:`pair_loss`."""
    if kind == PAIR_DPO:
        return dpo_pair_hessian(l_chosen, l_rejected, beta)
    if kind == PAIR_IPO:
        return ipo_pair_hessian(l_chosen, l_rejected, param)
    if kind == PAIR_CHIPO:
        return chipo_pair_hessian(l_chosen, l_rejected, beta, param)
    raise ValueError("pair loss kind must be PAIR_DPO (0), PAIR_IPO (1) or PAIR_CHIPO (2)")
