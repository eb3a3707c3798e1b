"""Objective of one context of the tabular class, its gradient and its curvature.

Objective of context ``x`` (paper mode, every pair and bonus sample of ``x`` so far)::

    F(f) = sum_{(i,j)} W_ij pair_loss(l_i, l_j) + sum_i M_i bonus_loss(log pi_f(i), log pi_ref_loss(i))
    l_i  = log pi_f(i) - log pi_ref_loss(i)

with the kernels of :mod:`xposim.losses` (``pi_ref_loss`` = the learner's loss reference: the
environment's ``pi_ref``, or the previous iterate for SELM). Contexts are separable.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from xposim._jit import internal_kernel

from xposim.losses.bonus import bonus_loss, bonus_loss_hessian
from xposim.losses.kinds import BONUS_NONE
from xposim.losses.pair import pair_loss, pair_loss_hessian
from xposim.numerics import NEG_INF
from xposim.policies.tabular.state import Workspace


@internal_kernel
def tilted_log_softmax(n: int, log_weight: np.ndarray, v: np.ndarray, inv_beta: float, out: np.ndarray) -> float:
    """``out[j] = log pi_f(j) = lw_j + v_j/beta - log Z`` for ``j < n``, ``Z = sum_j e^{lw_j + v_j/beta}``
    (centred on the largest term); returns ``log Z``."""
    largest = NEG_INF
    for j in range(n):
        z = log_weight[j] + v[j] * inv_beta
        out[j] = z
        if z > largest:
            largest = z
    total = 0.0
    for j in range(n):
        total += math.exp(out[j] - largest)
    log_partition = largest + math.log(total)
    for j in range(n):
        out[j] -= log_partition
    return log_partition


@njit(cache=True)
def context_objective(n: int, k: int, v: np.ndarray, ws: Workspace, n_edges: int,
                      pair_kind: int, pair_param: float, bonus_kind: int, alpha: float,
                      beta: float) -> tuple[float, float]:
    """Objective ``F(v)`` of one context and its gradient (in ``ws.grad``); returns ``(F, S)``.

    Variables ``0..k-1`` are slots, variable ``k`` (if ``n > k``) is the shared unobserved value
    ``g``. Reads ``ws.lw`` (log reference weight of each variable: ``log pi_ref(leaf)`` for slots,
    ``log P_U`` for ``g``), the gathered edges, ``ws.mcount``, ``ws.bweight``, ``ws.lref``; writes
    ``ws.logp``, ``ws.p``, ``ws.d`` (``dF/d log pi``) and ``ws.grad`` (``dF/dv``).
    """
    inv_beta = 1.0 / beta
    tilted_log_softmax(n, ws.lw, v, inv_beta, ws.logp)
    for j in range(n):
        ws.p[j] = math.exp(ws.logp[j])
        ws.d[j] = 0.0
    value = 0.0
    for e in range(n_edges):
        a = ws.edge_a[e]
        b = ws.edge_b[e]
        w = ws.edge_w[e]
        loss, d_chosen, d_rejected = pair_loss(pair_kind, ws.logp[a] - ws.lref[a], ws.logp[b] - ws.lref[b], beta, pair_param)
        value += w * loss
        ws.d[a] += w * d_chosen
        ws.d[b] += w * d_rejected
    if bonus_kind != BONUS_NONE:
        for j in range(k):
            m = ws.mcount[j]
            if m > 0.0:
                loss, d_logp = bonus_loss(bonus_kind, ws.logp[j], ws.lref[j], alpha, beta, ws.bweight[j])
                value += m * loss
                ws.d[j] += m * d_logp
    s_total = 0.0
    for j in range(n):
        s_total += ws.d[j]
    for j in range(n):
        ws.grad[j] = (ws.d[j] - ws.p[j] * s_total) * inv_beta
    return value, s_total


@njit(cache=True)
def objective_value(n: int, k: int, v: np.ndarray, ws: Workspace, n_edges: int, pair_kind: int,
                     pair_param: float, bonus_kind: int, alpha: float, beta: float) -> float:
    """``F(v)`` only (uses ``ws.scratch`` for log-probabilities; leaves ``ws.grad`` untouched)."""
    lp = ws.scratch
    tilted_log_softmax(n, ws.lw, v, 1.0 / beta, lp)
    value = 0.0
    for e in range(n_edges):
        a = ws.edge_a[e]
        b = ws.edge_b[e]
        loss, _, _ = pair_loss(pair_kind, lp[a] - ws.lref[a], lp[b] - ws.lref[b], beta, pair_param)
        value += ws.edge_w[e] * loss
    if bonus_kind != BONUS_NONE:
        for j in range(k):
            m = ws.mcount[j]
            if m > 0.0:
                loss, _ = bonus_loss(bonus_kind, lp[j], ws.lref[j], alpha, beta, ws.bweight[j])
                value += m * loss
    return value


@njit(cache=True)
def _curvature(n: int, k: int, ws: Workspace, n_edges: int, pair_kind: int, pair_param: float,
               bonus_kind: int, alpha: float, beta: float) -> float:
    """Second derivatives in ``log pi`` at the point of the last :func:`context_objective` call.

    Fills ``ws.h_cc/h_cr/h_rr`` (weighted, per edge), ``ws.hb`` (bonus diagonal) and ``ws.u = G 1``;
    returns ``s = 1^T G 1``.
    """
    for j in range(n):
        ws.u[j] = 0.0
        ws.hb[j] = 0.0
    for e in range(n_edges):
        a = ws.edge_a[e]
        b = ws.edge_b[e]
        w = ws.edge_w[e]
        cc, cr, rr = pair_loss_hessian(pair_kind, ws.logp[a] - ws.lref[a], ws.logp[b] - ws.lref[b], beta, pair_param)
        ws.h_cc[e] = w * cc
        ws.h_cr[e] = w * cr
        ws.h_rr[e] = w * rr
        ws.u[a] += w * (cc + cr)
        ws.u[b] += w * (cr + rr)
    if bonus_kind != BONUS_NONE:
        for j in range(k):
            m = ws.mcount[j]
            if m > 0.0:
                h = m * bonus_loss_hessian(bonus_kind, ws.logp[j], ws.lref[j], alpha, beta, ws.bweight[j])
                ws.hb[j] = h
                ws.u[j] += h
    s = 0.0
    for j in range(n):
        s += ws.u[j]
    return s


@njit(cache=True)
def _hessian_vector(n: int, ws: Workspace, n_edges: int, s_total: float, s_curv: float, beta: float,
                    z: np.ndarray, out: np.ndarray) -> None:
    """``out = H z`` (full length ``n``; ``z`` must be 0 on the variables to exclude)."""
    for j in range(n):
        out[j] = ws.hb[j] * z[j]
    for e in range(n_edges):
        a = ws.edge_a[e]
        b = ws.edge_b[e]
        out[a] += ws.h_cc[e] * z[a] + ws.h_cr[e] * z[b]
        out[b] += ws.h_cr[e] * z[a] + ws.h_rr[e] * z[b]
    pz = 0.0
    uz = 0.0
    for j in range(n):
        pz += ws.p[j] * z[j]
        uz += ws.u[j] * z[j]
    inv2 = 1.0 / (beta * beta)
    for j in range(n):
        pj = ws.p[j]
        out[j] = (out[j] - pj * uz - ws.u[j] * pz + s_curv * pj * pz - s_total * (pj * z[j] - pj * pz)) * inv2
