"""The tabular reward-induced class ``Pi_F`` and its per-round argmin (THEORY 3): exact for convex
objectives (DPO, IPO); for the non-convex bonus objectives (XPO, ...) the local minimum reached
from the warm start, or the lowest over the champion starts too (see "Non-convexity" below).

Class: ``F = [0, R_max]^{trajectories}``, ``log pi_f(tau|x) = log pi_ref(tau|x) + f(tau)/beta - log Z_f(x)``.
Realizable (``f = r`` gives ``pi*_beta``) with ``V_max <= R_max``.

Parameters actually carried (per context ``x``): one value ``f`` per *observed* leaf (a slot of the
:class:`~xposim.policies.base.IterateView`) and ONE shared value ``g`` (``rest_value``) for every
unobserved leaf: unobserved leaves enter the objective only through ``log Z_f(x)``, where they act
as one aggregate leaf of reference mass ``P_U(x)``, so at any minimizer they can share a value.
The cost of a round therefore depends on the observed leaves only, never on ``n_leaves``.
Closed form of ``g`` (used as a test): the objective depends on ``g`` only through
``log Z`` with derivative ``-(p_U/beta) S``, ``S = sum of d(objective)/d(log pi)``
over the bonus terms (pair terms of DPO/IPO cancel in ``S``). For XPO/VPO/SELM/POPO bonuses
``S > 0``: ``g = R_max`` (optimism: the unseen leaves get the largest value); for COPO ``S < 0``:
``g = 0``; with ``alpha = 0`` the objective does not depend on ``g`` and it keeps its value.

Objective of context ``x`` (paper mode, every pair and bonus sample of ``x`` so far)::

    F(f) = sum_{(i,j)} W_ij pair_loss(l_i, l_j) + sum_i M_i bonus_loss(log pi_f(i), log pi_ref_loss(i))
    l_i  = log pi_f(i) - log pi_ref_loss(i)

with the kernels of :mod:`xposim.losses` (``pi_ref_loss`` = the learner's loss reference: the
environment's ``pi_ref``, or the previous iterate for SELM). Contexts are separable.

Argmin: projected Newton with box constraints (Bertsekas 1982) on ``v = (f_slots, g)``:

* gradient ``dF/dv_j = (d_j - p_j S)/beta`` with ``d_j = dF/d log pi(j)``, ``p = pi_f``,
  ``S = sum_j d_j``; Hessian ``(G - p u^T - u p^T + s p p^T - S (diag p - p p^T)) / beta^2`` with
  ``G`` the Hessian in ``log pi`` (pair blocks from ``pair_loss_hessian`` — a weighted graph
  Laplacian for DPO/IPO — plus the bonus diagonal), ``u = G 1``, ``s = 1^T G 1``. The ``log Z``
  curvature ``-S (diag p - p p^T)/beta^2`` is NEGATIVE semi-definite for optimistic bonuses:
  the XPO objective is non-convex (THEORY 3).
* active set: variables within ``eps`` of a bound with the gradient pointing outward are sent to
  the bound; the free variables take a Newton step with a modified Cholesky factorization
  (``H + tau I``, ``tau`` raised until positive definite; ``<= dense_limit`` free variables) or
  truncated Jacobi-preconditioned CG (above; stops at negative curvature);
* Armijo backtracking along the projection arc; stop when the per-sample projected gradient
  ``max_j |v_j - P[v_j - grad_j / N]|`` is ``<= tolerance`` (``N`` = number of loss terms).

Selection among minimizers. ``f -> f + c`` (all leaves, ``g`` included) never changes ``pi_f``;
the Newton steps do not move along this direction. With no active bonus (``alpha = 0`` or no
bonus) and a margin pair loss (DPO, IPO) the objective depends only on differences inside each
connected component of the comparison graph, so each component can be shifted freely inside
the box: the argmin is a set. Rule: among the minimizers, the one whose component means are
closest to the warm start (previous round's values), i.e. each component is shifted by
``clip(mean(v_warm - v), lo - min v, hi - max v)``; leaves in no pair (and ``g``) keep their
values. Initial values: ``f = R_max / 2`` everywhere (``pi_f = pi_ref``).

Non-convexity. With an optimistic bonus the ``-S log Z`` part is concave, and the minimum reached
from the warm start need not be global: under the XPO bonus a response that once looked good can
keep ``f = R_max`` beside the best one although its labels are coin flips.
``benchmarks/diagnose_local_minima.py`` re-solves a round's objective from many starts and reports
how often and by how much the solver's point lies above the lowest value found.
``SolverSettings.champion_starts`` adds one start per variable (that slot, or ``g``, at ``R_max``,
every other variable at 0: the vertices the bonus's rich-get-richer pull heads for) and
``SolverSettings.restarts`` extra starts uniform in the box (one pool per run); the lowest
objective wins, ties to the warm start; solves whose starts disagree are counted. With champion
starts a solve costs ``O(slots)`` Newton solves instead of one, and the derivative-cache shortcut
is skipped.
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit

from xposim._jit import internal_kernel
from xposim.envs.token_mdp import TokenMDP
from xposim.losses.bonus import bonus_loss, bonus_loss_hessian
from xposim.losses.kinds import BONUS_NONE, PAIR_CHIPO, PAIR_DPO, PAIR_IPO
from xposim.losses.pair import chipo_margin, pair_loss, pair_loss_hessian
from xposim.policies.base import (
    COUNTER_DISAGREEMENTS,
    COUNTER_FAILURES,
    COUNTER_IMPROVED,
    COUNTER_NEWTON_ITERATIONS,
    COUNTER_SOLVES,
    N_COUNTERS,
    NEG_INF,
    SolveProblem,
    new_view,
    TABULAR_CODE,
    EnvArrays,
    IterateView,
    PolicyClass,
    SolverSettings,
    store_gather,
    view_normalize,
)

TabularState = namedtuple(
    "TabularState",
    [
        "values",  # (nc, L) f of each slot
        "rest_value",  # (nc,) g shared by the unobserved leaves
        "known",  # (nc,) int64 slots whose value is initialized
        "lower",  # float 0
        "upper",  # float R_max
        "restart_pool",  # (restarts, L + 1) uniforms
        "tolerance",
        "max_iterations",
        "disagreement_tolerance",
        "dense_limit",
        "beta",
        "cache_d",  # (nc, L) dF/d log pi of each slot at the current values (the derivative cache)
        "cache_value",  # (nc,) F at the current values
        "cache_scale",  # (nc,) number of loss terms N
        "cache_alpha",  # (nc,) alpha of the cached objective
        "cache_count",  # (nc, L) bonus counts in the cached objective
        "cache_weight",  # (nc, L) bonus weights in the cached objective
        "cache_valid",  # (nc,) bool
        "champion_starts",  # bool: one extra start per variable (SolverSettings.champion_starts)
    ],
)
TabularState.__doc__ = """Parameters of the tabular class (module docstring) and its solver settings."""

Workspace = namedtuple(
    "Workspace",
    [
        "edge_a", "edge_b", "edge_w",  # (E,) gathered edges of one context
        "h_cc", "h_cr", "h_rr",  # (E,) weighted pair second derivatives
        "lw", "v", "v0", "v_best", "v_try", "lref", "mcount", "bweight",  # (L + 1,)
        "logp", "p", "d", "grad", "u", "hb", "direction", "free_index", "position",
        "cg_r", "cg_z", "cg_p", "cg_q", "cg_x", "full",  # (L + 1,)
        "component",  # (L + 1,) int64 union-find parents
        "hessian",  # (dense_limit, dense_limit)
        "scratch",  # (L + 1,)
    ],
)


def new_workspace(n_leaves: int, edge_capacity: int, dense_limit: int) -> Workspace:
    """Scratch memory of the solver: ``O(n_leaves + edges + dense_limit^2)`` floats."""
    n = n_leaves + 1
    e = max(int(edge_capacity), 1)
    f = lambda size: np.zeros(size)  # noqa: E731
    return Workspace(
        edge_a=np.zeros(e, dtype=np.int64), edge_b=np.zeros(e, dtype=np.int64), edge_w=f(e),
        h_cc=f(e), h_cr=f(e), h_rr=f(e),
        lw=f(n), v=f(n), v0=f(n), v_best=f(n), v_try=f(n), lref=f(n), mcount=f(n), bweight=f(n),
        logp=f(n), p=f(n), d=f(n), grad=f(n), u=f(n), hb=f(n), direction=f(n),
        free_index=np.zeros(n, dtype=np.int64), position=np.zeros(n, dtype=np.int64),
        cg_r=f(n), cg_z=f(n), cg_p=f(n), cg_q=f(n), cg_x=f(n), full=f(n),
        component=np.zeros(n, dtype=np.int64),
        hessian=np.zeros((dense_limit, dense_limit)),
        scratch=f(n),
    )


# =============================================================================== objective
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
    largest = NEG_INF
    for j in range(n):
        z = ws.lw[j] + v[j] * inv_beta
        ws.logp[j] = z
        if z > largest:
            largest = z
    total = 0.0
    for j in range(n):
        total += math.exp(ws.logp[j] - largest)
    log_partition = largest + math.log(total)
    for j in range(n):
        ws.logp[j] -= log_partition
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
def _objective_value(n: int, k: int, v: np.ndarray, ws: Workspace, n_edges: int, pair_kind: int,
                     pair_param: float, bonus_kind: int, alpha: float, beta: float) -> float:
    """``F(v)`` only (uses ``ws.scratch`` for log-probabilities; leaves ``ws.grad`` untouched)."""
    inv_beta = 1.0 / beta
    largest = NEG_INF
    lp = ws.scratch
    for j in range(n):
        z = ws.lw[j] + v[j] * inv_beta
        lp[j] = z
        if z > largest:
            largest = z
    total = 0.0
    for j in range(n):
        total += math.exp(lp[j] - largest)
    log_partition = largest + math.log(total)
    for j in range(n):
        lp[j] -= log_partition
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


@njit(cache=True)
def _dense_newton_direction(nf: int, ws: Workspace, n_edges: int, s_total: float, s_curv: float,
                            beta: float) -> int:
    """Newton direction on the free variables by modified Cholesky of ``H_FF + tau I``.

    ``ws.free_index[0..nf-1]`` are the free variables, ``ws.position`` maps variable -> free
    position (-1 if active). Writes ``ws.direction`` on the free variables. ``tau`` is
    ``1e-10 max|diag|`` (the global shift is a null direction), then ``1e-6 max|diag|``, then the
    Gershgorin bound (``H + tau I`` diagonally dominant) until the factorization has pivots
    ``> 1e-12 max|diag|``. Returns 0 if even ``tau = 1e4 max|diag|`` fails, 1 if ``H_FF`` was
    factorized with ``tau <= 1e-8 max|diag|`` (positive semi-definite up to rounding), 2 if ``tau``
    had to be larger (not positive definite: the caller then tries long steps).
    """
    hmat = ws.hessian
    inv2 = 1.0 / (beta * beta)
    for i in range(nf):
        for j in range(nf):
            hmat[i, j] = 0.0
    for e in range(n_edges):
        ia = ws.position[ws.edge_a[e]]
        ib = ws.position[ws.edge_b[e]]
        if ia >= 0:
            hmat[ia, ia] += ws.h_cc[e]
            if ib >= 0:
                hmat[ia, ib] += ws.h_cr[e]
                hmat[ib, ia] += ws.h_cr[e]
        if ib >= 0:
            hmat[ib, ib] += ws.h_rr[e]
    for i in range(nf):
        vi = ws.free_index[i]
        hmat[i, i] += ws.hb[vi]
    for i in range(nf):
        vi = ws.free_index[i]
        pi = ws.p[vi]
        ui = ws.u[vi]
        for j in range(i, nf):
            vj = ws.free_index[j]
            pj = ws.p[vj]
            value = hmat[i, j] - pi * ws.u[vj] - ui * pj + s_curv * pi * pj + s_total * pi * pj
            if i == j:
                value -= s_total * pi
            value *= inv2
            hmat[i, j] = value
            hmat[j, i] = value
    max_diag = 0.0
    for i in range(nf):
        if abs(hmat[i, i]) > max_diag:
            max_diag = abs(hmat[i, i])
    if max_diag == 0.0:
        max_diag = 1.0
    # keep the assembled matrix in the lower triangle + diag copy (scratch) to retry with larger tau
    diag = ws.scratch
    for i in range(nf):
        diag[i] = hmat[i, i]
    # the global shift (all variables together) is always a null direction of H when every variable is
    # free: start with a negligible tau so that the first factorization does not break down on it
    tau = 1e-10 * max_diag
    ok = False
    for attempt in range(3):
        ok = True
        # factorize in place (lower triangle) ; the strictly upper triangle keeps the original matrix
        for j in range(nf):
            total = diag[j] + tau
            for m in range(j):
                total -= hmat[j, m] * hmat[j, m]
            if not (total > 1e-12 * max_diag):
                ok = False
                break
            pivot = math.sqrt(total)
            hmat[j, j] = pivot
            for i in range(j + 1, nf):
                total = hmat[j, i]  # original (upper) entry H[i, j]
                for m in range(j):
                    total -= hmat[i, m] * hmat[j, m]
                hmat[i, j] = total / pivot
        if ok:
            break
        if attempt == 0:
            tau = 1e-6 * max_diag
        else:
            # Gershgorin: H + tau I is diagonally dominant, hence positive definite
            bound = 0.0
            for i in range(nf):
                row = -diag[i]
                for j in range(nf):
                    if j != i:
                        row += abs(hmat[min(i, j), max(i, j)])
                if row > bound:
                    bound = row
            tau = bound + 1e-6 * max_diag
    if not ok:
        return 0
    # solve L y = -g_F, then L^T d = y
    y = ws.cg_x
    for i in range(nf):
        total = -ws.grad[ws.free_index[i]]
        for m in range(i):
            total -= hmat[i, m] * y[m]
        y[i] = total / hmat[i, i]
    for i in range(nf - 1, -1, -1):
        total = y[i]
        for m in range(i + 1, nf):
            total -= hmat[m, i] * y[m]
        y[i] = total / hmat[i, i]
    for i in range(nf):
        ws.direction[ws.free_index[i]] = y[i]
    return 1 if tau <= 1e-6 * max_diag else 2


@internal_kernel
def _cg_newton_direction(n: int, nf: int, ws: Workspace, n_edges: int, s_total: float, s_curv: float,
                         beta: float, forcing: float) -> bool:
    """Truncated Jacobi-preconditioned CG for ``H_FF d = -g_F``; returns True if it met negative curvature."""
    inv2 = 1.0 / (beta * beta)
    x_vec = ws.cg_x
    r = ws.cg_r
    zv = ws.cg_z
    pv = ws.cg_p
    q = ws.cg_q
    full = ws.full
    for j in range(n):
        x_vec[j] = 0.0
        r[j] = 0.0
        pv[j] = 0.0
        full[j] = 0.0
    precond = ws.scratch
    r_norm0 = 0.0
    for i in range(nf):
        vi = ws.free_index[i]
        # diagonal of H (G_jj from edges needs a pass; approximate by the full formula below)
        precond[vi] = 0.0
        r[vi] = -ws.grad[vi]
        r_norm0 += r[vi] * r[vi]
    for e in range(n_edges):
        precond[ws.edge_a[e]] += ws.h_cc[e]
        precond[ws.edge_b[e]] += ws.h_rr[e]
    for i in range(nf):
        vi = ws.free_index[i]
        pj = ws.p[vi]
        dj = (precond[vi] + ws.hb[vi] - 2.0 * pj * ws.u[vi] + s_curv * pj * pj - s_total * (pj - pj * pj)) * inv2
        precond[vi] = abs(dj) if abs(dj) > 1e-300 else 1.0
    r_norm0 = math.sqrt(r_norm0)
    if r_norm0 == 0.0:
        for i in range(nf):
            ws.direction[ws.free_index[i]] = 0.0
        return False
    rz = 0.0
    for i in range(nf):
        vi = ws.free_index[i]
        zv[vi] = r[vi] / precond[vi]
        pv[vi] = zv[vi]
        rz += r[vi] * zv[vi]
    negative = False
    for it in range(2 * nf + 10):
        for j in range(n):
            full[j] = 0.0
        for i in range(nf):
            vi = ws.free_index[i]
            full[vi] = pv[vi]
        _hessian_vector(n, ws, n_edges, s_total, s_curv, beta, full, q)
        curvature = 0.0
        for i in range(nf):
            vi = ws.free_index[i]
            curvature += pv[vi] * q[vi]
        if curvature <= 0.0:
            negative = True
            if it == 0:
                for i in range(nf):
                    vi = ws.free_index[i]
                    x_vec[vi] = zv[vi]  # preconditioned steepest descent
            break
        step = rz / curvature
        r_norm = 0.0
        for i in range(nf):
            vi = ws.free_index[i]
            x_vec[vi] += step * pv[vi]
            r[vi] -= step * q[vi]
            r_norm += r[vi] * r[vi]
        if math.sqrt(r_norm) <= forcing * r_norm0:
            break
        rz_new = 0.0
        for i in range(nf):
            vi = ws.free_index[i]
            zv[vi] = r[vi] / precond[vi]
            rz_new += r[vi] * zv[vi]
        ratio = rz_new / rz
        rz = rz_new
        for i in range(nf):
            vi = ws.free_index[i]
            pv[vi] = zv[vi] + ratio * pv[vi]
    for i in range(nf):
        vi = ws.free_index[i]
        ws.direction[vi] = x_vec[vi]
    return negative


@internal_kernel
def _projected_gradient_norm(n: int, v: np.ndarray, grad: np.ndarray, scale: float, lo: float, hi: float) -> float:
    worst = 0.0
    for j in range(n):
        target = v[j] - grad[j] / scale
        if target < lo:
            target = lo
        elif target > hi:
            target = hi
        gap = abs(v[j] - target)
        if gap > worst:
            worst = gap
    return worst


@njit(cache=True)
def projected_newton(n: int, k: int, v: np.ndarray, ws: Workspace, n_edges: int, pair_kind: int,
                     pair_param: float, bonus_kind: int, alpha: float, beta: float, lo: float, hi: float,
                     scale: float, tolerance: float, max_iterations: int, dense_limit: int) -> tuple[float, bool, int]:
    """Minimize the context objective over the box ``[lo, hi]^n`` from ``v`` (in place).

    Returns ``(F, converged, iterations)``. See the module docstring for the method.
    """
    value, s_total = context_objective(n, k, v, ws, n_edges, pair_kind, pair_param, bonus_kind, alpha, beta)
    eps0 = 1e-3 * (hi - lo)
    for iteration in range(max_iterations):
        pg = _projected_gradient_norm(n, v, ws.grad, scale, lo, hi)
        if pg <= tolerance:
            return value, True, iteration
        eps = eps0 if pg > eps0 else pg
        nf = np.int64(0)  # not a literal 0: one compiled specialization of the callees
        for j in range(n):
            g = ws.grad[j]
            at_lower = v[j] <= lo + eps and g > 0.0
            at_upper = v[j] >= hi - eps and g < 0.0
            if at_lower or at_upper:
                ws.position[j] = -1
                ws.direction[j] = (lo if at_lower else hi) - v[j]
            else:
                ws.position[j] = nf
                ws.free_index[nf] = j
                nf += 1
        step = 1.0
        status = 0
        if nf > 0:
            s_curv = _curvature(n, k, ws, n_edges, pair_kind, pair_param, bonus_kind, alpha, beta)
        for _refine in range(4):
            if nf == 0:
                break
            status = 0
            if nf <= dense_limit:
                status = _dense_newton_direction(nf, ws, n_edges, s_total, s_curv, beta)
            if status == 0:
                forcing = math.sqrt(pg) if pg < 0.01 else 0.1
                status = 2 if _cg_newton_direction(n, nf, ws, n_edges, s_total, s_curv, beta, forcing) else 1
            if status == 2:
                break
            # active-set refinement: a free variable sitting on a bound whose Newton component points
            # out of the box is fixed on that bound and the direction recomputed (avoids zig-zag)
            moved = 0
            for i in range(nf):
                vi = ws.free_index[i]
                dj = ws.direction[vi]
                if (v[vi] <= lo + eps and dj < 0.0) or (v[vi] >= hi - eps and dj > 0.0):
                    moved += 1
            if moved == 0:
                break
            new_nf = np.int64(0)
            for i in range(nf):
                vi = ws.free_index[i]
                dj = ws.direction[vi]
                if v[vi] <= lo + eps and dj < 0.0:
                    ws.position[vi] = -1
                    ws.direction[vi] = lo - v[vi]
                elif v[vi] >= hi - eps and dj > 0.0:
                    ws.position[vi] = -1
                    ws.direction[vi] = hi - v[vi]
                else:
                    ws.position[vi] = new_nf
                    ws.free_index[new_nf] = vi
                    new_nf += 1
            nf = new_nf
        if nf > 0:
            # guarantee descent on the free part (modified Newton directions are, CG ones too)
            slope = 0.0
            for i in range(nf):
                vi = ws.free_index[i]
                slope += ws.grad[vi] * ws.direction[vi]
            if not slope < 0.0:
                status = 2
                for i in range(nf):
                    vi = ws.free_index[i]
                    ws.direction[vi] = -ws.grad[vi] / scale
            if status == 2:
                # not a local quadratic model (negative curvature): start the backtracking at the
                # last breakpoint of the projection arc, where every free variable sits on a bound
                for i in range(nf):
                    vi = ws.free_index[i]
                    dj = ws.direction[vi]
                    if dj > 0.0:
                        reach = (hi - v[vi]) / dj
                    elif dj < 0.0:
                        reach = (lo - v[vi]) / dj
                    else:
                        reach = 0.0
                    if reach > step:
                        step = reach
        # Armijo backtracking along the projection arc; the objective AND its gradient are evaluated
        # at each trial (the gradient is free given the loss kernels), the old gradient kept in ws.full
        for j in range(n):
            ws.full[j] = ws.grad[j]
        accepted = False
        slack = 1e-12 * max(1.0, abs(value))
        trial = value
        s_trial = s_total
        for _ in range(60):
            decrease = 0.0
            for j in range(n):
                t = v[j] + step * ws.direction[j]
                if t < lo:
                    t = lo
                elif t > hi:
                    t = hi
                ws.v_try[j] = t
                decrease += ws.full[j] * (t - v[j])
            trial, s_trial = context_objective(n, k, ws.v_try, ws, n_edges, pair_kind, pair_param, bonus_kind,
                                               alpha, beta)
            if trial <= value + 1e-4 * decrease + slack:
                accepted = True
                break
            # flat region behind a kink (chiPO's clip): no decrease is possible, but the step is
            # accepted if it does not increase the objective and halves the projected gradient
            if trial <= value + slack and _projected_gradient_norm(n, ws.v_try, ws.grad, scale, lo, hi) <= 0.5 * pg:
                accepted = True
                break
            step *= 0.5
        if not accepted:
            # restore the state of the current point
            value, s_total = context_objective(n, k, v, ws, n_edges, pair_kind, pair_param, bonus_kind, alpha, beta)
            return value, False, iteration + 1
        moved = 0.0
        for j in range(n):
            moved = max(moved, abs(ws.v_try[j] - v[j]))
            v[j] = ws.v_try[j]
        value = trial
        s_total = s_trial
        if moved == 0.0:
            pg = _projected_gradient_norm(n, v, ws.grad, scale, lo, hi)
            return value, pg <= tolerance, iteration + 1
    pg = _projected_gradient_norm(n, v, ws.grad, scale, lo, hi)
    return value, pg <= tolerance, max_iterations


@internal_kernel
def kink_stationary(n: int, k: int, v: np.ndarray, ws: Workspace, n_edges: int, pair_kind: int, pair_param: float,
                    bonus_kind: int, alpha: float, beta: float, lo: float, hi: float, scale: float,
                    tolerance: float) -> bool:
    """Stationarity certificate at kinks of chiPO's clipped loss (where Newton steps stall).

    At ``|u| = 2 R_max`` the clipped pair loss is not differentiable; its Clarke subdifferential
    scales the edge's gradient by any ``theta in [0, 1]``. The point is certified stationary if
    some ``theta`` per kink edge (relative distance ``<= 1e-6`` to the clip) brings the
    per-sample projected gradient below ``tolerance`` (coordinate descent on ``theta``, the free
    variables' squared gradient). ``ws.grad`` must hold the gradient with every kink edge
    unclipped (as the kernel returns it), i.e. the last :func:`context_objective` at ``v``.
    """
    if pair_kind != PAIR_CHIPO:
        return False
    inv_beta = 1.0 / beta
    base = ws.cg_r
    for j in range(n):
        base[j] = ws.grad[j]
    # kink edges and their gradient vectors in v-space: (d_c e_a + d_r e_b - p (d_c + d_r)) / beta
    kinks = ws.component  # reuse: indices of kink edges
    coef_c = ws.cg_z
    coef_r = ws.cg_p
    n_kinks = 0
    for e in range(n_edges):
        a = ws.edge_a[e]
        b = ws.edge_b[e]
        la = ws.logp[a] - ws.lref[a]
        lb = ws.logp[b] - ws.lref[b]
        u = chipo_margin(la, lb, beta)
        if abs(abs(u) - 2.0 * pair_param) <= 1e-6 * 2.0 * pair_param and n_kinks < kinks.shape[0]:
            if abs(u) > 2.0 * pair_param:
                # clipped side (the kernel's gradient has theta = 0 here): take the unclipped derivative
                # at the nearest point of the kink by moving l_chosen towards l_rejected
                step = 1e-9 * (1.0 + abs(la))
                for _ in range(40):
                    la = la - step if u > 0.0 else la + step
                    u = chipo_margin(la, lb, beta)
                    if abs(u) <= 2.0 * pair_param:
                        break
                    step *= 2.0
                if abs(u) > 2.0 * pair_param:
                    continue
                _, d_c, d_r = pair_loss(pair_kind, la, lb, beta, pair_param)
                # base must hold the gradient with this edge unclipped (theta = 1): add its contribution
                for j in range(n):
                    base[j] -= ws.edge_w[e] * (ws.p[j] * (d_c + d_r)) * inv_beta
                base[a] += ws.edge_w[e] * d_c * inv_beta
                base[b] += ws.edge_w[e] * d_r * inv_beta
            else:
                _, d_c, d_r = pair_loss(pair_kind, la, lb, beta, pair_param)
            kinks[n_kinks] = e
            coef_c[n_kinks] = ws.edge_w[e] * d_c
            coef_r[n_kinks] = ws.edge_w[e] * d_r
            n_kinks += 1
    if n_kinks == 0:
        return False
    theta = ws.cg_q
    for i in range(n_kinks):
        theta[i] = 1.0
    grad = ws.cg_x
    for _sweep in range(50):
        for i in range(n_kinks):
            e = kinks[i]
            a = ws.edge_a[e]
            b = ws.edge_b[e]
            # current combined gradient
            for j in range(n):
                grad[j] = base[j]
            for m in range(n_kinks):
                if m == i:
                    continue
                dt = theta[m] - 1.0
                em = kinks[m]
                tot = coef_c[m] + coef_r[m]
                for j in range(n):
                    grad[j] -= dt * ws.p[j] * tot * inv_beta
                grad[ws.edge_a[em]] += dt * coef_c[m] * inv_beta
                grad[ws.edge_b[em]] += dt * coef_r[m] * inv_beta
            # direction of edge i and the gradient at theta_i = 1 along it; least squares in theta_i
            tot = coef_c[i] + coef_r[i]
            num = 0.0
            den = 0.0
            for j in range(n):
                gj = -ws.p[j] * tot * inv_beta
                if j == a:
                    gj += coef_c[i] * inv_beta
                if j == b:
                    gj += coef_r[i] * inv_beta
                free = not ((v[j] <= lo and grad[j] > 0.0) or (v[j] >= hi and grad[j] < 0.0))
                if free:
                    # grad(theta_i) = grad_at_1 + (theta_i - 1) gj
                    num += grad[j] * gj
                    den += gj * gj
            t = 1.0 - num / den if den > 0.0 else theta[i]
            theta[i] = 0.0 if t < 0.0 else (1.0 if t > 1.0 else t)
    for j in range(n):
        grad[j] = base[j]
    for m in range(n_kinks):
        dt = theta[m] - 1.0
        em = kinks[m]
        tot = coef_c[m] + coef_r[m]
        for j in range(n):
            grad[j] -= dt * ws.p[j] * tot * inv_beta
        grad[ws.edge_a[em]] += dt * coef_c[m] * inv_beta
        grad[ws.edge_b[em]] += dt * coef_r[m] * inv_beta
    return _projected_gradient_norm(n, v, grad, scale, lo, hi) <= tolerance


@internal_kernel
def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True)
def recenter_components(n: int, v: np.ndarray, v_warm: np.ndarray, ws: Workspace, n_edges: int,
                        lo: float, hi: float) -> None:
    """Selection rule for shift-invariant objectives (module docstring).

    Each connected component ``C`` of the comparison graph is shifted by
    ``clip(mean_C(v_warm - v), lo - min_C v, hi - max_C v)``: the minimizer closest to the warm
    start among ``{v + delta 1_C}`` (all have the same objective when it depends on differences only).
    """
    parent = ws.component
    for j in range(n):
        parent[j] = j
    for e in range(n_edges):
        ra = _find(parent, ws.edge_a[e])
        rb = _find(parent, ws.edge_b[e])
        if ra != rb:
            if ra < rb:
                parent[rb] = ra
            else:
                parent[ra] = rb
    # per root: sum of (warm - v), count, min v, max v  (scratch arrays reused)
    total = ws.cg_r
    count = ws.cg_z
    low = ws.cg_p
    high = ws.cg_q
    for j in range(n):
        total[j] = 0.0
        count[j] = 0.0
        low[j] = math.inf
        high[j] = -math.inf
    for j in range(n):
        root = _find(parent, j)
        total[root] += v_warm[j] - v[j]
        count[root] += 1.0
        if v[j] < low[root]:
            low[root] = v[j]
        if v[j] > high[root]:
            high[root] = v[j]
    for j in range(n):
        if parent[j] == j:
            shift = total[j] / count[j]
            if shift < lo - low[j]:
                shift = lo - low[j]
            if shift > hi - high[j]:
                shift = hi - high[j]
            total[j] = shift
    for j in range(n):
        root = _find(parent, j)
        t = v[j] + total[root]
        if t < lo:
            t = lo
        elif t > hi:
            t = hi
        v[j] = t


# =============================================================================== per-context solve
@internal_kernel
def _load_context(state: TabularState, view: IterateView, problem: SolveProblem, ws: Workspace, x: int) -> tuple[int, int, int, float]:
    """Gather context ``x`` into the workspace; returns ``(n, k, n_edges, N)`` (``N`` = number of loss terms)."""
    k = view.n_slots[x]
    # initialize the values of slots appended by the engine since the last solve
    for s in range(state.known[x], k):
        state.values[x, s] = state.rest_value[x]
    state.known[x] = k
    n_edges = store_gather(problem.store, x, ws.edge_a, ws.edge_b, ws.edge_w)
    scale = 0.0
    for e in range(n_edges):
        scale += ws.edge_w[e]
    for s in range(k):
        ws.v[s] = state.values[x, s]
        ws.lref[s] = problem.loss_ref_logp[x, s]
        ws.mcount[s] = problem.bonus_count[x, s]
        ws.bweight[s] = problem.bonus_weight[x, s]
        scale += problem.bonus_count[x, s]
    n = k
    rest_root = view.rest_tree[x, 1]
    if rest_root > NEG_INF:
        ws.lw[k] = rest_root
        ws.v[k] = state.rest_value[x]
        ws.lref[k] = 0.0
        ws.mcount[k] = 0.0
        ws.bweight[k] = 0.0
        n = k + 1
    return n, k, n_edges, scale


@internal_kernel
def _store_context(state: TabularState, view: IterateView, leaf_logref: np.ndarray, x: int, n: int, k: int,
                   v: np.ndarray, beta: float) -> bool:
    """Write ``v`` back into the class state and the view; True if any value changed."""
    changed = False
    for s in range(k):
        if state.values[x, s] != v[s]:
            changed = True
        state.values[x, s] = v[s]
        view.slot_logw[x, s] = leaf_logref[x, view.slot_leaf[x, s]] + v[s] / beta
    if n > k:
        if state.rest_value[x] != v[k]:
            changed = True
        state.rest_value[x] = v[k]
    view.rest_logscale[x] = state.rest_value[x] / beta
    view_normalize(view, x)
    return changed


@internal_kernel
def _bonus_term(kind: int, logp: float, logp_ref: float, alpha: float, beta: float, count: float,
                weight: float) -> tuple[float, float]:
    """``count * bonus_loss`` and its derivative in ``log pi`` (0 for a zero count)."""
    if count == 0.0 or kind == BONUS_NONE:
        return 0.0, 0.0
    loss, d_logp = bonus_loss(kind, logp, logp_ref, alpha, beta, weight)
    return count * loss, count * d_logp


@internal_kernel
def _bonus_delta(state: TabularState, problem: SolveProblem, ws: Workspace, x: int, s: int) -> float:
    """Move slot ``s``'s bonus term from the cached (count, weight) to the current one; returns the value change."""
    new_count = problem.bonus_count[x, s]
    new_weight = problem.bonus_weight[x, s]
    old_count = state.cache_count[x, s]
    old_weight = state.cache_weight[x, s]
    if new_count == old_count and (new_weight == old_weight or new_count == 0.0):
        return 0.0
    new_value, new_d = _bonus_term(problem.bonus_kind, ws.logp[s], ws.lref[s], problem.alpha, problem.beta,
                                   new_count, new_weight)
    old_value, old_d = _bonus_term(problem.bonus_kind, ws.logp[s], ws.lref[s], problem.alpha, problem.beta,
                                   old_count, old_weight)
    ws.d[s] += new_d - old_d
    state.cache_count[x, s] = new_count
    state.cache_weight[x, s] = new_weight
    return new_value - old_value


@internal_kernel
def _try_incremental(state: TabularState, view: IterateView, leaf_logref: np.ndarray, problem: SolveProblem,
                     ws: Workspace, x: int) -> bool:
    """Derivative cache: if the round's new terms leave the warm start optimal, update the cache and return True.

    Valid only when the objective changed by the round's new terms alone (same alpha, no reference
    drift, cache filled at the current values). Cost ``O(n_slots + B)`` instead of ``O(edges)``.
    """
    if not state.cache_valid[x] or problem.reference_drift or problem.n_batch == 0:
        return False
    if problem.alpha != state.cache_alpha[x]:
        return False
    k = view.n_slots[x]
    beta = problem.beta
    n = k
    for s in range(k):
        ws.v[s] = state.values[x, s]
        ws.lw[s] = leaf_logref[x, view.slot_leaf[x, s]]
        ws.lref[s] = problem.loss_ref_logp[x, s]
        ws.d[s] = state.cache_d[x, s]
    if view.rest_tree[x, 1] > NEG_INF:
        ws.v[k] = state.rest_value[x]
        ws.lw[k] = view.rest_tree[x, 1]
        ws.lref[k] = 0.0
        ws.d[k] = 0.0
        n = k + 1
    largest = NEG_INF
    for j in range(n):
        z = ws.lw[j] + ws.v[j] / beta
        ws.logp[j] = z
        if z > largest:
            largest = z
    total = 0.0
    for j in range(n):
        total += math.exp(ws.logp[j] - largest)
    log_partition = largest + math.log(total)
    for j in range(n):
        ws.logp[j] -= log_partition
        ws.p[j] = math.exp(ws.logp[j])
    value = state.cache_value[x]
    scale = state.cache_scale[x]
    for b in range(problem.n_batch):
        if problem.batch_context[b] != x:
            continue
        c = problem.batch_chosen[b]
        r = problem.batch_rejected[b]
        if c != r:
            loss, d_chosen, d_rejected = pair_loss(problem.pair_kind, ws.logp[c] - ws.lref[c], ws.logp[r] - ws.lref[r],
                                                   beta, problem.pair_param)
            value += loss
            ws.d[c] += d_chosen
            ws.d[r] += d_rejected
            scale += 1.0
        if problem.bonus_kind != BONUS_NONE:
            for s in (c, r, problem.batch_bonus[b]):
                if s >= 0:
                    before = state.cache_count[x, s]
                    value += _bonus_delta(state, problem, ws, x, s)
                    scale += state.cache_count[x, s] - before
    s_total = 0.0
    for j in range(n):
        s_total += ws.d[j]
    for j in range(n):
        ws.grad[j] = (ws.d[j] - ws.p[j] * s_total) / beta
    # whatever the outcome, the cache now describes the current values with the new data
    for s in range(k):
        state.cache_d[x, s] = ws.d[s]
    state.cache_value[x] = value
    state.cache_scale[x] = scale
    pg = _projected_gradient_norm(n, ws.v, ws.grad, max(scale, 1.0), state.lower, state.upper)
    return pg <= state.tolerance


@internal_kernel
def _fill_cache(state: TabularState, problem: SolveProblem, ws: Workspace, x: int, k: int, value: float,
                scale: float) -> None:
    """Record ``ws.d`` (at the final values) and the objective as the context's derivative cache."""
    for s in range(k):
        state.cache_d[x, s] = ws.d[s]
        state.cache_count[x, s] = problem.bonus_count[x, s]
        state.cache_weight[x, s] = problem.bonus_weight[x, s]
    state.cache_value[x] = value
    state.cache_scale[x] = scale
    state.cache_alpha[x] = problem.alpha
    state.cache_valid[x] = True


@internal_kernel
def _bonus_active(problem: SolveProblem, x: int, k: int) -> bool:
    """True if context ``x``'s objective has a bonus term (a bonus kind, ``alpha > 0`` and a sample)."""
    if problem.bonus_kind == BONUS_NONE or problem.alpha <= 0.0:
        return False
    for s in range(k):
        if problem.bonus_count[x, s] > 0.0:
            return True
    return False


@internal_kernel
def tabular_solve_context(state: TabularState, view: IterateView, leaf_logref: np.ndarray,
                          problem: SolveProblem, ws: Workspace, x: int) -> None:
    """Paper-mode argmin of context ``x`` (module docstring); updates state, view, ``problem.changed``."""
    k_known = state.known[x]
    for s in range(k_known, view.n_slots[x]):
        state.values[x, s] = state.rest_value[x]
        state.cache_d[x, s] = 0.0
        state.cache_count[x, s] = 0.0
        state.cache_weight[x, s] = 1.0
    state.known[x] = view.n_slots[x]
    champions = state.champion_starts and _bonus_active(problem, x, view.n_slots[x])
    # the warm start (previous iterate): the derivative cache can certify it without a solve
    incremental = _try_incremental(state, view, leaf_logref, problem, ws, x)
    if incremental and not champions:
        problem.counters[COUNTER_SOLVES] += 1
        return
    bonus_active = champions or _bonus_active(problem, x, view.n_slots[x])
    n, k, n_edges, scale = _load_context(state, view, problem, ws, x)
    for s in range(k):
        ws.lw[s] = leaf_logref[x, view.slot_leaf[x, s]]
    beta = problem.beta
    lo = state.lower
    hi = state.upper
    for j in range(n):
        ws.v0[j] = ws.v[j]
    if incremental:
        value = state.cache_value[x]
        converged = True
    else:
        value, converged, iterations = projected_newton(
            n, k, ws.v, ws, n_edges, problem.pair_kind, problem.pair_param, problem.bonus_kind, problem.alpha,
            beta, lo, hi, max(scale, 1.0), state.tolerance, state.max_iterations, state.dense_limit,
        )
        problem.counters[COUNTER_NEWTON_ITERATIONS] += iterations
        if not converged:
            converged = kink_stationary(n, k, ws.v, ws, n_edges, problem.pair_kind, problem.pair_param,
                                        problem.bonus_kind, problem.alpha, beta, lo, hi, max(scale, 1.0),
                                        state.tolerance)
    problem.counters[COUNTER_SOLVES] += 1
    # non-convex objectives: champion starts (variable j at the top, the others at the bottom), then
    # the random restarts; the lowest objective wins, ties to the warm start
    n_restarts = state.restart_pool.shape[0]
    searched = bonus_active and (champions or n_restarts > 0)
    if searched:
        best_value = value
        best_converged = converged
        for j in range(n):
            ws.v_best[j] = ws.v[j]
        disagreement = False
        n_leaves = state.restart_pool.shape[1] - 1
        first = -n if champions else 0
        for r in range(first, n_restarts):
            if r < 0:
                champion = -r - 1
                for j in range(n):
                    ws.v[j] = hi if j == champion else lo
            else:
                for s in range(k):
                    ws.v[s] = lo + (hi - lo) * state.restart_pool[r, view.slot_leaf[x, s]]
                if n > k:
                    ws.v[k] = lo + (hi - lo) * state.restart_pool[r, n_leaves]
            value_r, converged_r, iterations_r = projected_newton(
                n, k, ws.v, ws, n_edges, problem.pair_kind, problem.pair_param, problem.bonus_kind,
                problem.alpha, beta, lo, hi, max(scale, 1.0), state.tolerance, state.max_iterations,
                state.dense_limit,
            )
            problem.counters[COUNTER_NEWTON_ITERATIONS] += iterations_r
            if abs(value_r - value) > state.disagreement_tolerance * max(1.0, abs(value)):
                disagreement = True
            if value_r < best_value - state.disagreement_tolerance * max(1.0, abs(best_value)):
                best_value = value_r
                best_converged = converged_r
                for j in range(n):
                    ws.v_best[j] = ws.v[j]
        for j in range(n):
            ws.v[j] = ws.v_best[j]
        if best_value < value:
            problem.counters[COUNTER_IMPROVED] += 1
        converged = best_converged
        if disagreement:
            problem.counters[COUNTER_DISAGREEMENTS] += 1
    if not converged:
        problem.counters[COUNTER_FAILURES] += 1
    if not bonus_active and (problem.pair_kind == PAIR_DPO or problem.pair_kind == PAIR_IPO):
        # (the objective and dF/dlog pi only depend on differences inside components: cache stays valid)
        recenter_components(n, ws.v, ws.v0, ws, n_edges, lo, hi)
    elif searched:
        value, _ = context_objective(n, k, ws.v, ws, n_edges, problem.pair_kind, problem.pair_param,
                                     problem.bonus_kind, problem.alpha, beta)
    _fill_cache(state, problem, ws, x, k, value, scale)
    if _store_context(state, view, leaf_logref, x, n, k, ws.v, beta):
        problem.changed[x] = True


@njit(cache=True)
def tabular_solve(state: TabularState, view: IterateView, leaf_logref: np.ndarray, problem: SolveProblem,
                  ws: Workspace, contexts: np.ndarray) -> None:
    """:func:`tabular_solve_context` on every context flagged in ``contexts``."""
    for x in range(contexts.shape[0]):
        if contexts[x]:
            tabular_solve_context(state, view, leaf_logref, problem, ws, x)


@njit(cache=True)
def tabular_gradient_step(state: TabularState, view: IterateView, leaf_logref: np.ndarray, problem: SolveProblem,
                          ws: Workspace, batch_context: np.ndarray, batch_chosen: np.ndarray,
                          batch_rejected: np.ndarray, batch_bonus: np.ndarray, batch_bonus_weight: np.ndarray,
                          n_batch: int, learning_rate: float) -> None:
    """trl mode: ``f <- P[f - learning_rate * grad(mean fresh-batch loss)]`` on the batch's contexts.

    The batch loss is ``(1/B) sum_b [pair_loss(l(chosen_b), l(rejected_b)) + bonus(y_b)]`` (the mean over
    the batch, as trl's trainers do); slots ``-1`` in ``batch_bonus`` mean no bonus response.
    Every context of the batch is updated with the gradient of the whole batch loss
    (including ``g`` through ``log Z``). Parameters are projected back on ``[0, R_max]``.
    """
    n_contexts = view.n_slots.shape[0]
    for x in range(n_contexts):
        present = False
        for b in range(n_batch):
            if batch_context[b] == x:
                present = True
        if not present:
            continue
        k = view.n_slots[x]
        for s in range(state.known[x], k):
            state.values[x, s] = state.rest_value[x]
        state.known[x] = k
        n_edges = np.int64(0)  # not a literal 0 (one specialization of context_objective)
        for b in range(n_batch):
            if batch_context[b] == x and batch_chosen[b] != batch_rejected[b]:
                ws.edge_a[n_edges] = batch_chosen[b]
                ws.edge_b[n_edges] = batch_rejected[b]
                ws.edge_w[n_edges] = 1.0 / n_batch
                n_edges += 1
        for s in range(k):
            ws.v[s] = state.values[x, s]
            ws.lw[s] = leaf_logref[x, view.slot_leaf[x, s]]
            ws.lref[s] = problem.loss_ref_logp[x, s]
            ws.mcount[s] = 0.0
            ws.bweight[s] = 0.0
        for b in range(n_batch):
            if batch_context[b] == x and batch_bonus[b] >= 0:
                ws.mcount[batch_bonus[b]] += 1.0 / n_batch
                ws.bweight[batch_bonus[b]] = batch_bonus_weight[b]
        n = k
        if view.rest_tree[x, 1] > NEG_INF:
            ws.lw[k] = view.rest_tree[x, 1]
            ws.v[k] = state.rest_value[x]
            ws.lref[k] = 0.0
            ws.mcount[k] = 0.0
            ws.bweight[k] = 0.0
            n = k + 1
        context_objective(n, k, ws.v, ws, n_edges, problem.pair_kind, problem.pair_param, problem.bonus_kind,
                          problem.alpha, problem.beta)
        for j in range(n):
            t = ws.v[j] - learning_rate * ws.grad[j]
            if t < state.lower:
                t = state.lower
            elif t > state.upper:
                t = state.upper
            ws.v[j] = t
        problem.counters[COUNTER_SOLVES] += 1
        state.cache_valid[x] = False
        if _store_context(state, view, leaf_logref, x, n, k, ws.v, problem.beta):
            problem.changed[x] = True


# =============================================================================== the class
class TabularClass(PolicyClass):
    """Tabular reward-induced class ``{pi_f : f in [0, R_max]^{leaves}}`` (module docstring).

    Parameters
    ----------
    initial_value : the initial ``f`` of every leaf (``pi^(1) = pi_ref`` for any constant);
        ``None`` means ``R_max / 2``. Matters only through the selection rule for
        ``alpha = 0`` (leaves never compared keep it).
    """

    name = "tabular"
    builtin_code = TABULAR_CODE
    is_context_separable = True
    supports_gradient_steps = True

    def __init__(self, initial_value: float | None = None) -> None:
        if initial_value is not None:
            if isinstance(initial_value, bool) or not isinstance(initial_value, (int, float)) or not math.isfinite(initial_value):
                raise ValueError(f"initial_value must be a finite real number in [0, R_max] or None, got {initial_value!r}")
        self.initial_value = initial_value

    def validate(self, env: TokenMDP) -> None:
        if not isinstance(env, TokenMDP):
            raise ValueError(f"env must be an xposim.envs.TokenMDP, got {type(env).__name__}")
        if self.initial_value is not None and not 0.0 <= self.initial_value <= env.r_max:
            raise ValueError(
                f"initial_value must lie in [0, r_max] = [0, {env.r_max}], got {self.initial_value!r}"
            )

    def create_state(self, env: TokenMDP, arrays: EnvArrays, beta: float, settings: SolverSettings,
                     restart_pool: np.ndarray | None = None) -> TabularState:
        self.validate(env)
        n_contexts, n_leaves = arrays.leaf_logref.shape
        start = env.r_max / 2.0 if self.initial_value is None else float(self.initial_value)
        if restart_pool is None:
            restart_pool = np.zeros((settings.restarts, n_leaves + 1))
        if restart_pool.shape != (settings.restarts, n_leaves + 1):
            raise ValueError(
                f"restart_pool must have shape (restarts, n_leaves + 1) = ({settings.restarts}, {n_leaves + 1}), "
                f"got {restart_pool.shape}"
            )
        return TabularState(
            values=np.full((n_contexts, n_leaves), start),
            rest_value=np.full(n_contexts, start),
            known=np.zeros(n_contexts, dtype=np.int64),
            lower=0.0,
            upper=float(env.r_max),
            restart_pool=np.ascontiguousarray(restart_pool, dtype=np.float64),
            tolerance=float(settings.tolerance),
            max_iterations=int(settings.max_iterations),
            disagreement_tolerance=float(settings.disagreement_tolerance),
            dense_limit=int(settings.dense_limit),
            beta=float(beta),
            cache_d=np.zeros((n_contexts, n_leaves)),
            cache_value=np.zeros(n_contexts),
            cache_scale=np.zeros(n_contexts),
            cache_alpha=np.zeros(n_contexts),
            cache_count=np.zeros((n_contexts, n_leaves)),
            cache_weight=np.ones((n_contexts, n_leaves)),
            cache_valid=np.zeros(n_contexts, dtype=np.bool_),
            champion_starts=bool(settings.champion_starts),
        )

    def initial_view(self, arrays: EnvArrays, state: TabularState) -> IterateView:
        view = new_view(arrays)
        # every leaf starts at the same value g: pi^(1) = pi_ref; weights are log pi_ref + g / beta
        view.rest_logscale[:] = state.rest_value / state.beta
        for x in range(view.n_slots.shape[0]):
            view_normalize(view, x)
        return view

    def solve(self, problem: SolveProblem, state: TabularState, view: IterateView, contexts: np.ndarray,
              workspace: Workspace | None = None, leaf_logref: np.ndarray | None = None) -> None:
        if workspace is None or leaf_logref is None:
            raise ValueError("TabularClass.solve needs workspace= and leaf_logref= (the engine passes them)")
        tabular_solve(state, view, leaf_logref, problem, workspace, contexts)

    def describe(self) -> dict:
        return {"policy_class": self.name, "initial_value": self.initial_value}
