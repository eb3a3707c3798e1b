"""Weighted batch sums of the pair losses and bonuses (numba kernels, plain loops).

``weights`` are multiplicities (learners keep sufficient statistics: how many times a pair or a
bonus sample was seen). Each batch kernel returns ``sum_i weights[i] * loss_i`` and writes into the
``out_*`` arrays the derivative of that *sum* w.r.t. each element's inputs, i.e.
``weights[i] * d loss_i / d input_i``. An element with weight 0 contributes exactly nothing (its
derivatives are set to 0 and its loss is not evaluated, so it cannot inject ``inf``).

Arrays are 1-d float64 of equal length. Parameters and weights are validated here (ValueError
naming the argument); the scalar kernels are in :mod:`xposim.losses.pair` and
:mod:`xposim.losses.bonus`.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from xposim._jit import internal_kernel
from xposim.losses.bonus import bonus_loss, bonus_loss_hessian
from xposim.losses.kinds import BONUS_COPO, BONUS_NONE, PAIR_CHIPO, PAIR_DPO, PAIR_IPO
from xposim.losses.pair import pair_loss, pair_loss_hessian


@njit(cache=True)
def check_pair_parameters(kind: int, beta: float, param: float) -> None:
    """Raise ValueError unless ``kind`` is a ``PAIR_*`` code, ``beta`` is finite > 0 and ``param``
    (``tau_ipo`` for IPO, ``r_max`` for chiPO) is finite > 0."""
    if kind != PAIR_DPO and kind != PAIR_IPO and kind != PAIR_CHIPO:
        raise ValueError("kind must be PAIR_DPO (0), PAIR_IPO (1) or PAIR_CHIPO (2)")
    if not (beta > 0.0 and beta < math.inf):
        raise ValueError("beta must be finite and > 0")
    if kind == PAIR_IPO and not (param > 0.0 and param < math.inf):
        raise ValueError("param (tau_ipo) must be finite and > 0 for IPO")
    if kind == PAIR_CHIPO and not (param > 0.0 and param < math.inf):
        raise ValueError("param (r_max) must be finite and > 0 for chiPO")


@njit(cache=True)
def check_bonus_parameters(kind: int, alpha: float, beta: float) -> None:
    """Raise ValueError unless ``kind`` is a ``BONUS_*`` code, ``alpha`` finite >= 0, ``beta`` finite > 0."""
    if kind < BONUS_NONE or kind > BONUS_COPO:
        raise ValueError("kind must be one of BONUS_NONE..BONUS_COPO (0..5)")
    if not (alpha >= 0.0 and alpha < math.inf):
        raise ValueError("alpha must be finite and >= 0")
    if not (beta > 0.0 and beta < math.inf):
        raise ValueError("beta must be finite and > 0")


@internal_kernel
def _check_weight(w: float) -> None:
    if not (w >= 0.0 and w < math.inf):
        raise ValueError("weights must be finite and >= 0")


@njit(cache=True)
def pair_loss_batch(kind: int, l_chosen: np.ndarray, l_rejected: np.ndarray, weights: np.ndarray,
                    beta: float, param: float, out_d_chosen: np.ndarray, out_d_rejected: np.ndarray) -> float:
    """``sum_i weights[i] * pair_loss(kind, l_chosen[i], l_rejected[i], beta, param)``.

    Writes ``out_d_chosen[i] = weights[i] * d loss_i / d l_chosen[i]`` and likewise ``out_d_rejected``.
    """
    n = l_chosen.shape[0]
    if l_rejected.shape[0] != n or weights.shape[0] != n:
        raise ValueError("l_rejected and weights must have the length of l_chosen")
    if out_d_chosen.shape[0] != n or out_d_rejected.shape[0] != n:
        raise ValueError("out_d_chosen and out_d_rejected must have the length of l_chosen")
    check_pair_parameters(kind, beta, param)
    total = 0.0
    for i in range(n):
        w = weights[i]
        _check_weight(w)
        if w == 0.0:
            out_d_chosen[i] = 0.0
            out_d_rejected[i] = 0.0
            continue
        loss, d_chosen, d_rejected = pair_loss(kind, l_chosen[i], l_rejected[i], beta, param)
        total += w * loss
        out_d_chosen[i] = w * d_chosen
        out_d_rejected[i] = w * d_rejected
    return total


@njit(cache=True)
def pair_loss_hessian_batch(kind: int, l_chosen: np.ndarray, l_rejected: np.ndarray, weights: np.ndarray,
                            beta: float, param: float, out_d2_cc: np.ndarray, out_d2_cr: np.ndarray,
                            out_d2_rr: np.ndarray) -> None:
    """Per-element weighted second derivatives of :func:`pair_loss_batch`'s sum:
    ``out_d2_cc[i] = weights[i] d2 loss_i / dl_c^2``, ``out_d2_cr`` (mixed), ``out_d2_rr``."""
    n = l_chosen.shape[0]
    if l_rejected.shape[0] != n or weights.shape[0] != n:
        raise ValueError("l_rejected and weights must have the length of l_chosen")
    if out_d2_cc.shape[0] != n or out_d2_cr.shape[0] != n or out_d2_rr.shape[0] != n:
        raise ValueError("out_d2_cc, out_d2_cr and out_d2_rr must have the length of l_chosen")
    check_pair_parameters(kind, beta, param)
    for i in range(n):
        w = weights[i]
        _check_weight(w)
        if w == 0.0:
            out_d2_cc[i] = 0.0
            out_d2_cr[i] = 0.0
            out_d2_rr[i] = 0.0
            continue
        d2_cc, d2_cr, d2_rr = pair_loss_hessian(kind, l_chosen[i], l_rejected[i], beta, param)
        out_d2_cc[i] = w * d2_cc
        out_d2_cr[i] = w * d2_cr
        out_d2_rr[i] = w * d2_rr


@njit(cache=True)
def bonus_loss_batch(kind: int, logp: np.ndarray, logp_ref: np.ndarray, weights: np.ndarray,
                     bonus_weights: np.ndarray, alpha: float, beta: float, out_d_logp: np.ndarray) -> float:
    """``sum_i weights[i] * bonus_loss(kind, logp[i], logp_ref[i], alpha, beta, bonus_weights[i])``.

    ``weights`` are multiplicities; ``bonus_weights`` are COPO's per-sample ``w = sg[c/sqrt(N)] >= 0``
    (ignored by other kinds, any finite values allowed then). Writes
    ``out_d_logp[i] = weights[i] * d bonus_i / d logp[i]``.
    """
    n = logp.shape[0]
    if logp_ref.shape[0] != n or weights.shape[0] != n or bonus_weights.shape[0] != n:
        raise ValueError("logp_ref, weights and bonus_weights must have the length of logp")
    if out_d_logp.shape[0] != n:
        raise ValueError("out_d_logp must have the length of logp")
    check_bonus_parameters(kind, alpha, beta)
    total = 0.0
    for i in range(n):
        w = weights[i]
        _check_weight(w)
        if w == 0.0:
            out_d_logp[i] = 0.0
            continue
        b = bonus_weights[i]
        if kind == BONUS_COPO and not (b >= 0.0 and b < math.inf):
            raise ValueError("bonus_weights must be finite and >= 0 for COPO")
        loss, d_logp = bonus_loss(kind, logp[i], logp_ref[i], alpha, beta, b)
        total += w * loss
        out_d_logp[i] = w * d_logp
    return total


@njit(cache=True)
def bonus_loss_hessian_batch(kind: int, logp: np.ndarray, logp_ref: np.ndarray, weights: np.ndarray,
                             bonus_weights: np.ndarray, alpha: float, beta: float, out_d2_logp: np.ndarray) -> None:
    """``out_d2_logp[i] = weights[i] * d2 bonus_i / dlogp[i]^2`` (non-zero only for POPO)."""
    n = logp.shape[0]
    if logp_ref.shape[0] != n or weights.shape[0] != n or bonus_weights.shape[0] != n:
        raise ValueError("logp_ref, weights and bonus_weights must have the length of logp")
    if out_d2_logp.shape[0] != n:
        raise ValueError("out_d2_logp must have the length of logp")
    check_bonus_parameters(kind, alpha, beta)
    for i in range(n):
        w = weights[i]
        _check_weight(w)
        if w == 0.0:
            out_d2_logp[i] = 0.0
            continue
        out_d2_logp[i] = w * bonus_loss_hessian(kind, logp[i], logp_ref[i], alpha, beta, bonus_weights[i])
