"""Scalar exploration-bonus terms and their derivatives w.r.t. ``log pi(y)`` (numba kernels).

Each bonus is a term *added to the minimized loss* for one bonus response ``y`` (drawn from
``pi_ref`` or the learner's sampler). Inputs: ``logp = log pi(y|x)`` (the only input that depends
on the policy parameters) and ``logp_ref = log pi_ref(y|x)``; ``l(y) = logp - logp_ref``. Every
kernel returns ``(loss_term, d loss_term / d logp)``.

Sign conventions (THEORY 4.5 "Pitfalls"): XPO, VPO, SELM and POPO have ``d/dlogp >= 0``, so a
gradient step *lowers* ``log pi(y)`` (moves mass off the sampler's responses: optimism); COPO has
``d/dlogp <= 0`` and *raises* it (count-based bonus). Scales differ between papers on purpose:
``alpha log pi`` (XPO) vs ``alpha beta log pi`` (VPO, SELM) vs ``alpha sigma(.)/beta`` (POPO).

Preconditions (checked by the batch kernels and the Python API, not here): finite ``logp``,
``logp_ref``; ``alpha >= 0``, ``beta > 0`` finite; COPO ``weight >= 0`` finite.
"""
from __future__ import annotations

import math

from numba import njit

from xposim.numerics import sigmoid
from xposim.losses.kinds import BONUS_COPO, BONUS_NONE, BONUS_POPO, BONUS_SELM, BONUS_VPO, BONUS_XPO


@njit(cache=True)
def xpo_bonus(logp: float, alpha: float) -> tuple[float, float]:
    """XPO bonus ``+alpha log pi(y)`` (THEORY 4.3, Algorithm 1), ``y ~ pi_ref`` or a sampler.

    Derivative ``+alpha``: minimizing pushes ``pi`` DOWN on ``y``. Equals
    ``(alpha/beta) * implicit reward of y`` up to a policy-independent constant.
    """
    return alpha * logp, alpha


@njit(cache=True)
def vpo_bonus(logp: float, alpha: float, beta: float) -> tuple[float, float]:
    """VPO bonus ``+alpha beta log pi(y)``, ``y ~ pi_ref`` (THEORY 4.5, [R] scale).

    Derivative ``+alpha beta``: pushes ``pi`` DOWN on ``y``. Same as XPO with ``alpha -> alpha beta``.
    """
    return alpha * beta * logp, alpha * beta


@njit(cache=True)
def selm_bonus(logp: float, logp_ref: float, alpha: float, beta: float) -> tuple[float, float]:
    """SELM bonus ``+alpha beta l(y)``, ``l(y) = log pi(y) - log pi_ref(y)``, ``y`` from the reference (THEORY 4.5).

    Derivative ``+alpha beta``: pushes ``pi`` DOWN on ``y``. The reference drift of SELM
    (``pi_ref <- pi_t`` each round) is the learner's business: pass the current reference's ``logp_ref``.
    """
    return alpha * beta * (logp - logp_ref), alpha * beta


@njit(cache=True)
def popo_bonus(logp: float, logp_ref: float, alpha: float, beta: float) -> tuple[float, float]:
    """POPO bounded bonus ``+alpha (sigma(beta l(y)) - 1/2) / beta``, ``y ~ pi_sam`` (THEORY 4.5).

    Bounded in ``[-alpha/(2 beta), alpha/(2 beta)]``; evaluated as ``alpha tanh(beta l / 2) / (2 beta)``
    (same value, no cancellation near ``l = 0``). Derivative ``+alpha sigma(beta l) sigma(-beta l)``
    (``>= 0``, pushes ``pi`` DOWN on ``y``; vanishes for ``|beta l|`` large).
    """
    x = beta * (logp - logp_ref)
    return alpha * 0.5 * math.tanh(0.5 * x) / beta, alpha * sigmoid(x) * sigmoid(-x)


@njit(cache=True)
def popo_bonus_hessian(logp: float, logp_ref: float, alpha: float, beta: float) -> float:
    """``d2/dlogp^2`` of :func:`popo_bonus`: ``-alpha beta sigma(x) sigma(-x) tanh(x/2)``, ``x = beta l(y)``.

    (``d/dx [sigma(x) sigma(-x)] = sigma(x) sigma(-x) (1 - 2 sigma(x))`` and ``1 - 2 sigma(x) = -tanh(x/2)``.)
    """
    x = beta * (logp - logp_ref)
    return -alpha * beta * sigmoid(x) * sigmoid(-x) * math.tanh(0.5 * x)


@njit(cache=True)
def copo_bonus(logp: float, alpha: float, weight: float) -> tuple[float, float]:
    """COPO count bonus ``-alpha w log pi(y)``, ``y ~ pi_ref`` (THEORY 4.5), OPPOSITE sign.

    ``weight = w = sg[c / sqrt(N(x, y))] >= 0`` is precomputed by the learner (stop-gradient: a
    constant here). Derivative ``-alpha w <= 0``: minimizing pushes ``pi`` UP on rarely seen ``y``.
    """
    return -alpha * weight * logp, -alpha * weight


# ---------------------------------------------------------------------------------- dispatchers
@njit(cache=True)
def bonus_loss(kind: int, logp: float, logp_ref: float, alpha: float, beta: float, weight: float) -> tuple[float, float]:
    """``(loss_term, d/dlogp)`` of bonus ``kind`` (``BONUS_*`` code).

    ``logp_ref`` is used by SELM and POPO, ``beta`` by VPO, SELM and POPO, ``weight`` by COPO only;
    ``BONUS_NONE`` returns ``(0, 0)``.
    """
    if kind == BONUS_NONE:
        return 0.0, 0.0
    if kind == BONUS_XPO:
        return xpo_bonus(logp, alpha)
    if kind == BONUS_VPO:
        return vpo_bonus(logp, alpha, beta)
    if kind == BONUS_SELM:
        return selm_bonus(logp, logp_ref, alpha, beta)
    if kind == BONUS_POPO:
        return popo_bonus(logp, logp_ref, alpha, beta)
    if kind == BONUS_COPO:
        return copo_bonus(logp, alpha, weight)
    raise ValueError("bonus kind must be one of BONUS_NONE..BONUS_COPO (0..5)")


@njit(cache=True)
def bonus_loss_hessian(kind: int, logp: float, logp_ref: float, alpha: float, beta: float, weight: float) -> float:
    """``d2/dlogp^2`` of bonus ``kind``: 0 for the bonuses linear in ``log pi`` (NONE, XPO, VPO, SELM, COPO)."""
    if kind == BONUS_POPO:
        return popo_bonus_hessian(logp, logp_ref, alpha, beta)
    if kind >= BONUS_NONE and kind <= BONUS_COPO:
        return 0.0
    raise ValueError("bonus kind must be one of BONUS_NONE..BONUS_COPO (0..5)")
