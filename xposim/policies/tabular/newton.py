"""The per-context argmin of the tabular class: projected Newton with box constraints.

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
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from xposim._jit import internal_kernel
from xposim.losses.kinds import PAIR_CHIPO
from xposim.losses.pair import chipo_margin, pair_loss
from xposim.policies.tabular.objective import _curvature, _hessian_vector, context_objective
from xposim.policies.tabular.state import Workspace


@internal_kernel
def shifted_cholesky(h: np.ndarray, nf: int, constant_shift: float, diagonal_shift: float, low: np.ndarray) -> bool:
    """Lower Cholesky factor ``low`` of ``M = h + constant_shift 1 1^T + diagonal_shift I`` on the leading
    ``nf x nf`` block (``h`` symmetric; only its lower triangle is read; ``low``'s strict upper triangle
    is not written). ``False`` (``low`` undefined) if a pivot is not positive: ``M`` is not
    numerically positive definite."""
    for m in range(nf):
        total = h[m, m] + constant_shift + diagonal_shift
        for q in range(m):
            total -= low[m, q] * low[m, q]
        if not total > 0.0:
            return False
        pivot = math.sqrt(total)
        low[m, m] = pivot
        for i in range(m + 1, nf):
            entry = h[i, m] + constant_shift
            for q in range(m):
                entry -= low[i, q] * low[m, q]
            low[i, m] = entry / pivot
    return True


@internal_kernel
def forward_substitute(low: np.ndarray, nf: int, y: np.ndarray) -> None:
    """``y <- L^{-1} y`` on the first ``nf`` entries, ``L`` the lower triangle of ``low``."""
    for i in range(nf):
        total = y[i]
        for m in range(i):
            total -= low[i, m] * y[m]
        y[i] = total / low[i, i]


@internal_kernel
def backward_substitute(low: np.ndarray, nf: int, y: np.ndarray) -> None:
    """``y <- L^{-T} y`` on the first ``nf`` entries, ``L`` the lower triangle of ``low``."""
    for i in range(nf - 1, -1, -1):
        total = y[i]
        for m in range(i + 1, nf):
            total -= low[m, i] * y[m]
        y[i] = total / low[i, i]


@internal_kernel
def cholesky_substitute(low: np.ndarray, nf: int, y: np.ndarray) -> None:
    """``y <- (L L^T)^{-1} y`` on the first ``nf`` entries, ``L`` the lower triangle of ``low`` (forward
    then backward substitution; the right-hand side is in ``y`` on entry)."""
    forward_substitute(low, nf, y)
    backward_substitute(low, nf, y)


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
        y[i] = -ws.grad[ws.free_index[i]]
    cholesky_substitute(hmat, nf, y)
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
def projected_gradient_norm(n: int, v: np.ndarray, grad: np.ndarray, scale: float, lo: float, hi: float) -> float:
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
        pg = projected_gradient_norm(n, v, ws.grad, scale, lo, hi)
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
            if trial <= value + slack and projected_gradient_norm(n, ws.v_try, ws.grad, scale, lo, hi) <= 0.5 * pg:
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
            pg = projected_gradient_norm(n, v, ws.grad, scale, lo, hi)
            return value, pg <= tolerance, iteration + 1
    pg = projected_gradient_norm(n, v, ws.grad, scale, lo, hi)
    return value, pg <= tolerance, max_iterations


@internal_kernel
def _kink_gradient(n: int, grad: np.ndarray, base: np.ndarray, theta: np.ndarray, kinks: np.ndarray,
                   coef_c: np.ndarray, coef_r: np.ndarray, n_kinks: int, skip: int, ws: Workspace,
                   inv_beta: float) -> None:
    """``grad = base + sum_{m != skip} (theta_m - 1) * (kink m's gradient)``: the gradient with kink ``m``'s
    pair derivative scaled by ``theta_m`` (a convex combination of the two one-sided derivatives)."""
    for j in range(n):
        grad[j] = base[j]
    for m in range(n_kinks):
        if m == skip:
            continue
        dt = theta[m] - 1.0
        em = kinks[m]
        tot = coef_c[m] + coef_r[m]
        for j in range(n):
            grad[j] -= dt * ws.p[j] * tot * inv_beta
        grad[ws.edge_a[em]] += dt * coef_c[m] * inv_beta
        grad[ws.edge_b[em]] += dt * coef_r[m] * inv_beta


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
            _kink_gradient(n, grad, base, theta, kinks, coef_c, coef_r, n_kinks, i, ws, inv_beta)
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
    _kink_gradient(n, grad, base, theta, kinks, coef_c, coef_r, n_kinks, np.int64(-1), ws, inv_beta)
    return projected_gradient_norm(n, v, grad, scale, lo, hi) <= tolerance
