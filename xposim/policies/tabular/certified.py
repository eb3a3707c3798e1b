"""A certified global minimizer of the tabular class's per-context objective (issue #11, part 1).

The per-context objective of :mod:`xposim.policies.tabular` (variables ``v = (f_0..f_{k-1}, g)``
in the box ``[lo, hi]^n``, evaluated by ``context_objective``) is non-convex for the optimistic
bonuses (THEORY 3). :func:`certified_minimize` returns the best point it finds together with a
*proven* lower bound on ``min_box F`` and a status:

* ``CERTIFIED``: ``value - lower_bound <= relative_gap * max(1, |value|)``;
* ``NODE_LIMIT``: the branch-and-bound ran out of nodes (or the convex certificate missed the gap);
  the lower bound is still valid, the gap is ``value - lower_bound``;
* ``UNSUPPORTED``: an objective kind this module cannot bound (chiPO pair loss, POPO bonus); the
  point is the best local solution found and ``lower_bound = -inf``.

Structure used (each fact has a test in ``tests/test_certified.py``)
--------------------------------------------------------------------
With ``x_j = lw_j + v_j / beta`` and ``log Z = logsumexp(x)``:

* the DPO / IPO pair terms depend on ``l_a - l_b = (lw_a - lref_a) - (lw_b - lref_b) + (v_a - v_b)/beta``
  only, and are convex in it: their sum ``P(v)`` is convex;
* the bonuses XPO, VPO, SELM and COPO are affine in ``log pi(j) = x_j - log Z``:
  ``m_j bonus_j = m_j b0_j + kappa_j (x_j - log Z)`` with ``kappa_j = m_j d bonus / d log pi``
  (``alpha``, ``alpha beta``, ``alpha beta``, ``-alpha w_j`` times the count), so
  ``F = P(v) + sum_j kappa_j x_j + K0 - c log Z(v)``, ``c = sum_j kappa_j``;
* ``F(v + t 1) = F(v)`` (``P`` sees differences, ``sum kappa_j x_j`` and ``c log Z`` both move by ``c t / beta``),
  so some minimizer has ``max_j v_j = hi`` (the "face" of the box).

``c <= 0`` (no bonus, ``alpha = 0``, COPO): ``F`` is convex. The local solution of
``projected_newton`` is certified by the Frank–Wolfe bound ``F(v) + min_{u in box} grad F(v).(u - v)``.

``c > 0`` (XPO, VPO, SELM): the only non-convex part is ``-c log Z``. Spatial branch-and-bound over
boxes ``[l, u]`` with the **secant relaxation**: each ``e^{x_j}`` is convex in ``v_j``, so on
``[l_j, u_j]`` it lies below its secant ``s_j(v_j)``; ``S(v) = sum_j s_j(v_j) >= Z(v)`` is affine and
``R(v) = P(v) + sum kappa_j x_j + K0 - c log S(v)`` is a convex under-estimator of ``F`` on the box
(``-log`` of a positive affine function is convex), exact at the box's vertices. Why this bound
(and not alphaBB or the Gibbs form): its error ``c log(S/Z)`` is weighted by each leaf's share of
``Z``, so coordinates whose ``e^{x_j}`` is negligible (a low arm: the plateaus of issue #11)
contribute nothing and need no branching, whereas alphaBB's error ``alpha (v-l)(u-v)`` with
``alpha ~ c / beta^2`` is uniform and huge for small ``beta``; it is exact at vertices, where the
XPO minimizers often sit (KKT corners are certified at finite depth); the relaxation is a smooth
convex problem with a dense Hessian ``grad^2 P + c g g^T`` (``g = grad log S``) that a few
projected Newton steps solve. The Gibbs form ``log Z = max_q q.x + H(q)`` leads to a bilinear
``q.v`` term whose McCormick relaxation is weaker. Scales: ``e^{x_j}`` spans ``e^{300}``
(``R_max / beta``), so ``log s_j`` is evaluated as ``(x_{u,j} - x_c) + log(t + (1 - t) e^{-w_j/beta})``,
``t = (v_j - l_j)/w_j``, with ``x_c = max_j x_{u,j}`` (centred), ``log S`` by a log-sum-exp.

Node lower bounds are proven: the relaxation is minimized approximately (projected Newton, dense
Cholesky of ``grad^2 P + c g g^T``) to a point ``v_r`` and the node's bound is the Frank–Wolfe bound
of the convex ``R`` at ``v_r``, ``R(v_r) + sum_j min(dR_j (l_j - v_rj), dR_j (u_j - v_rj))``, never
``R(v_r)`` itself; a child's bound is the max of its own and its parent's. Rounding: every bound is
lowered by ``16 (n + n_edges + 8) eps M``, ``eps = 2^-52``, ``M`` the sum of the absolute values of
the terms summed to get ``R`` and the Frank–Wolfe products plus the box's largest width times the
sum of the absolute values of the gradient terms: a computed sum of ``m`` terms is within about
``m eps`` times the sum of their absolute values of the exact one, each term carries a few ulps, and
the Frank–Wolfe products inherit the gradient's error times a width. The factor 16 covers these
and the rounding of ``F`` itself (``context_objective`` sums terms bounded by the same ``M``).

Exact reductions (each keeps at least one global minimizer inside the search):
* a variable in no pair and with no bonus count (e.g. ``g``) enters only through ``-c log Z``,
  strictly decreasing in it: fixed at ``hi``;
* a variable in no pair but with a bonus count: ``F`` is concave in it (linear plus ``-c log Z``), so
  the minimum over a box is at ``l_j`` or ``u_j``: it is branched into the two endpoints;
* face rule: a node none of whose upper bounds is ``hi`` holds no point of the face ``max v = hi``:
  dropped; a node where only variable ``i`` can reach ``hi``: ``l_i = hi``;
* reduced-cost tightening: with ``g = grad R(v_r)`` and ``T = incumbent - prune_gap``, every point of
  the node with ``F < T`` has ``u_j <= l_j + (T - bound)/g_j`` (``g_j > 0``) or
  ``u_j >= u_j - (T - bound)/|g_j|`` (``g_j < 0``), by convexity of ``R``; the node is cut accordingly
  (the cut parts count as pruned at ``T``) and re-solved if a width shrank by 30%.

Monotone variables: a variable whose partial derivative has one sign on the whole node box
(:func:`_monotone_fix`, from the ranges of ``l'`` and of ``pi_j`` over the box) is fixed at the end
that every minimizer of the box uses, and the node is re-solved: minimizers at vertices (arms at 0
or at ``R_max`` with one-signed gradients, the common XPO case) stop costing branches in those
variables.

Convex nodes: where ``F`` itself is proven convex on a node's box (:func:`_convex_on_box`: a lower
bound of the pair terms' Hessian minus an upper bound of the bonus's ``c / beta^2 (diag(pi) - pi pi^T)``,
both Laplacians, PSD by a Cholesky test with a margin), the node is solved exactly: projected Newton
on ``F`` in the box and the Frank–Wolfe bound of ``F``, valid by convexity and tight at the box's
minimum. Near a non-degenerate minimizer the secant relaxation's error shrinks only like the box's
width squared (``c w^2 / (8 beta^2)``), so without this rule the search bisects until that error is
below the ``1e-9`` gap; with it, the box closes as soon as the data's curvature dominates the
bonus's. Measured by rebuilding the last round of an XPO run on ``random_token_mdp(1, 2, 2, seed=123)``
(beta 0.25, alpha ``beta / sqrt(T)``) and solving it with :func:`solve_round_objective` (as
``tests/test_certified_argmin.py`` rebuilds rounds): 334 nodes without this rule and 26 with it after
16,384 rounds; ``tests/test_certified.py`` checks a data-rich round closes in at most 40. Per-round
cost against the local solver: ``benchmarks/bench_learners.py --sections 6``.

Search: best-first on the node bounds (binary heap, ties by creation order; nothing random, so the
same inputs give the same bits). Branching variable: the largest relaxation gap
``c (s_j(v_rj) - e^{x_j(v_r)}) / S(v_r)``; split by bisection if the interval is wider than
``_WIDE = 2`` e-folds (``width / beta``), else at the relaxation point clipped to the middle 80%.
Max-split: when every variable that can reach ``hi`` is more than ``_FAR = 5`` e-folds below it at
the relaxation point (the relaxation sits on a shifted copy of a good point, off the face), the
node is split into one child per such variable ``i``, with ``v_i = hi`` (a cover of the node's face
points; each child has a fixed variable, so no shift direction). Incumbents: the warm start
(polished); the champion vertices (one variable at ``hi``, the others at ``lo``), the best one then
improved by flipping single variables between ``lo`` and ``hi`` while ``F`` decreases (minimizers
with several variables at ``hi``) and polished; every node's relaxation point (shifted and clipped
into the box, polished when it improves the incumbent). Pruning:
``bound >= incumbent - prune_gap``, ``prune_gap = relative_gap max(1, |incumbent|) / 2``. Tried and
dropped (more nodes on the audit-style problems): a pinned secant form
``log Z = x_r + log(1 + sum_j e^{x_j - x_r})``, and fixing the gauge ``v_r = hi`` globally (the other
variables then range over ``[lo, 2 hi - lo]``, twice as wide).

Reusing the previous search (:func:`certified_minimize_reusing`, the simulator's default): the
search's leaves are kept per context (:mod:`xposim.policies.tabular.frontier`) with bounds that hold on
the face points of their boxes; the next round's objective is the old one plus a few terms, whose
least value on each box is exact and cheap, so each leaf's bound moves by it and only the leaves
that fall below the new incumbent are searched again, as nodes (from their last relaxation point).
A leaf closed by its relaxation alone keeps it, and its bound also moves as that relaxation does
(a Frank–Wolfe bound at the kept point of the relaxation plus the round's terms).
Every reduction keeps face points on the face for this to hold: a variable that can reach ``hi`` is
not fixed at its lower end by the monotone rule (that case did not change the node counts of XPO
runs with 4 and 16 arms). No champion vertices are tried then (the kept leaves cover them). When the
kept search has fragmented (more leaves to search again than the last search from the root took
relaxations) the solve searches from the root.

Budget and memory: ``max_nodes`` relaxations (re-solves after tightening count); all memory is
preallocated by :func:`new_certificate_workspace` (``O(max_nodes n_max + n_max^2)`` floats).
Measured (``benchmarks/bench_certified.py``): audit-style problems with up to 16 arms certify in
well under the default budget; with 64 arms and many interior values (small ``alpha``, ``beta <= 0.1``
or many values near ``hi``) the budget can run out: the status says so and the bound stays valid.
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit

from xposim._jit import internal_kernel
from xposim.losses.bonus import bonus_loss
from xposim.losses.kinds import (
    BONUS_COPO,
    BONUS_NONE,
    BONUS_SELM,
    BONUS_VPO,
    BONUS_XPO,
    PAIR_DPO,
    PAIR_IPO,
)
from xposim.losses.pair import pair_loss, pair_loss_hessian
from xposim.numerics import NEG_INF
from xposim.policies.tabular.newton import cholesky_substitute, projected_newton, shifted_cholesky
from xposim.policies.tabular.frontier import (
    ROOT_NODES,
    SIZE,
    Frontier,
    _frontier_changes,
    _leaf_change_bound,
    _linear_change_bound,
    no_frontier,
    record_leaf,
    record_linear,
    store_shape,
)
from xposim.policies.tabular.objective import context_objective
from xposim.policies.tabular.state import Workspace
#: ``value - lower_bound <= relative_gap * max(1, |value|)``: the point is a certified global minimizer.
CERTIFIED = 0
#: The node budget ran out (or the convex certificate missed the gap); ``lower_bound`` is still valid.
NODE_LIMIT = 1
#: The objective kind has no bound here (chiPO pair loss, POPO bonus); ``lower_bound = -inf``.
UNSUPPORTED = 2
STATUS_NAMES = {CERTIFIED: "certified", NODE_LIMIT: "node_limit", UNSUPPORTED: "unsupported"}

#: an interval wider than this many e-folds (``width / beta``) is bisected, a narrower one split at the
#: relaxation point clipped to its middle ``1 - 2 _CLIP``
_WIDE = 2.0
_CLIP = 0.1
#: max-split a node whose relaxation point has every variable that can reach ``hi`` more than this many
#: e-folds (``_FAR * beta``) below it
_FAR = 5.0
#: float64 unit roundoff
_EPS = 2.0**-52
#: variable kinds
_CONTINUOUS = 0
_ENDPOINT = 1  # concave in this variable: branched into its two endpoints
_TOP = 2  # fixed at hi

CertificateWorkspace = namedtuple(
    "CertificateWorkspace",
    [
        "node_lo", "node_hi", "node_point",  # (capacity, n_max) box and relaxation point of each node
        "cover_lo", "cover_hi",  # (capacity, n_max) the part of the face the node answers for (frontier)
        "node_bound", "node_split", "node_floor",  # (capacity,) proven lower bound, split point, cut floor
        "node_branch", "node_seq", "heap", "free_slots",  # (capacity,) int64
        "box_lo", "box_hi",  # (n_max,) the current box
        "top", "width", "log_inv_rho", "slope_factor", "lsec",  # (n_max,) secant data of the box
        "point", "trial", "grad", "glog", "direction", "step", "kappa", "polish", "best", "saved",  # (n_max,)
        "free_index", "position", "kind", "degree", "pending",  # (n_max,) int64
        "hessian", "factor",  # (n_max, n_max)
        "last_relaxation",  # (3,) R, its magnitude and log S (not centred) at the last relaxation point
        "no_frontier",  # an empty Frontier (certified_minimize keeps no search between calls)
    ],
)
CertificateWorkspace.__doc__ = """Preallocated memory of :func:`certified_minimize` (:func:`new_certificate_workspace`)."""


def new_certificate_workspace(n_max: int, max_nodes: int) -> CertificateWorkspace:
    """Memory for problems with up to ``n_max`` variables and a budget of ``max_nodes`` relaxations.

    ``5 (max_nodes + 2) n_max + 2 n_max^2`` floats (two boxes and a point per node, dense Hessians).
    """
    n = max(int(n_max), 1)
    cap = max(int(max_nodes), 1) + 2
    f = lambda size: np.zeros(size)  # noqa: E731
    i = lambda size: np.zeros(size, dtype=np.int64)  # noqa: E731
    return CertificateWorkspace(
        node_lo=np.zeros((cap, n)), node_hi=np.zeros((cap, n)), node_point=np.zeros((cap, n)),
        cover_lo=np.zeros((cap, n)), cover_hi=np.zeros((cap, n)),
        node_bound=f(cap), node_split=f(cap), node_floor=f(cap),
        node_branch=i(cap), node_seq=i(cap), heap=i(cap), free_slots=i(cap),
        box_lo=f(n), box_hi=f(n),
        top=f(n), width=f(n), log_inv_rho=f(n), slope_factor=f(n), lsec=f(n),
        point=f(n), trial=f(n), grad=f(n), glog=f(n), direction=f(n), step=f(n), kappa=f(n), polish=f(n),
        best=f(n), saved=f(n),
        free_index=i(n), position=i(n), kind=i(n), degree=i(n), pending=i(cap + n + 2),
        hessian=np.zeros((n, n)), factor=np.zeros((n, n)),
        last_relaxation=f(3),
        no_frontier=no_frontier(),
    )


# =============================================================================== objective pieces
@njit(cache=True)
def supported_kinds(pair_kind: int, bonus_kind: int) -> bool:
    """True if :func:`certified_minimize` can bound this objective (DPO/IPO pairs; bonus none/XPO/VPO/SELM/COPO)."""
    if pair_kind != PAIR_DPO and pair_kind != PAIR_IPO:
        return False
    return (bonus_kind == BONUS_NONE or bonus_kind == BONUS_XPO or bonus_kind == BONUS_VPO
            or bonus_kind == BONUS_SELM or bonus_kind == BONUS_COPO)


@njit(cache=True)
def bonus_decomposition(n: int, k: int, ws: Workspace, bb: CertificateWorkspace, n_edges: int, bonus_kind: int,
                        alpha: float, beta: float) -> tuple[float, float]:
    """``kappa_j`` (into ``bb.kappa``) and the pair degree of each variable (``bb.degree``); returns ``(c, K0)``.

    For a bonus affine in ``log pi`` (XPO, VPO, SELM, COPO): ``sum_j m_j bonus_j = K0 + sum_j kappa_j log pi(j)``
    and ``c = sum_j kappa_j``. (Meaningless for POPO, which is not affine: callers check
    :func:`supported_kinds` first.)
    """
    c = 0.0
    k0 = 0.0
    for j in range(n):
        bb.kappa[j] = 0.0
        bb.degree[j] = 0
    for e in range(n_edges):
        if ws.edge_w[e] != 0.0 and ws.edge_a[e] != ws.edge_b[e]:
            bb.degree[ws.edge_a[e]] += 1
            bb.degree[ws.edge_b[e]] += 1
    if bonus_kind != BONUS_NONE:
        for j in range(k):
            m = ws.mcount[j]
            if m > 0.0:
                loss0, d = bonus_loss(bonus_kind, 0.0, ws.lref[j], alpha, beta, ws.bweight[j])
                bb.kappa[j] = m * d
                k0 += m * loss0
                c += m * d
    return c, k0


@internal_kernel
def _pair_part(v: np.ndarray, ws: Workspace, bb: CertificateWorkspace, n_edges: int, pair_kind: int,
               pair_param: float, beta: float, with_grad: bool) -> tuple[float, float, float]:
    """``P(v)`` (pair losses in difference form), the sum of |terms| and (with ``with_grad``, which adds
    ``dP/dv`` to ``bb.grad``) the sum of |gradient terms|."""
    inv_beta = 1.0 / beta
    value = 0.0
    mag = 0.0
    gmag = 0.0
    for e in range(n_edges):
        a = ws.edge_a[e]
        b = ws.edge_b[e]
        w = ws.edge_w[e]
        la = (ws.lw[a] - ws.lref[a]) + v[a] * inv_beta
        lb = (ws.lw[b] - ws.lref[b]) + v[b] * inv_beta
        loss, d_c, d_r = pair_loss(pair_kind, la, lb, beta, pair_param)
        value += w * loss
        mag += abs(w * loss)
        if with_grad:
            bb.grad[a] += w * d_c * inv_beta
            bb.grad[b] += w * d_r * inv_beta
            gmag += abs(w * d_c * inv_beta) + abs(w * d_r * inv_beta)
    return value, mag, gmag


@njit(cache=True)
def decomposed_value(n: int, v: np.ndarray, ws: Workspace, bb: CertificateWorkspace, n_edges: int, pair_kind: int,
                     pair_param: float, beta: float, c: float, k0: float, reach: float) -> tuple[float, float]:
    """``F(v) = P(v) + sum_j kappa_j (x_j - x_c) + K0 - c (log Z - x_c)``, gradient in ``bb.grad``; returns ``(F, M)``.

    Needs :func:`bonus_decomposition` first (``x_c = max_j x_j``). ``M`` is the sum of |terms| plus
    ``reach`` times the sum of |gradient terms| (``reach`` = the box's largest width): the magnitude
    for :func:`rounding_margin` of a Frank–Wolfe bound built from this value and gradient.
    """
    inv_beta = 1.0 / beta
    xc = NEG_INF
    for j in range(n):
        x = ws.lw[j] + v[j] * inv_beta
        if x > xc:
            xc = x
    total = 0.0
    for j in range(n):
        total += math.exp(ws.lw[j] + v[j] * inv_beta - xc)
    log_z = math.log(total)  # log Z - x_c
    gmag = 0.0
    for j in range(n):
        share = math.exp(ws.lw[j] + v[j] * inv_beta - xc - log_z)
        bb.grad[j] = (bb.kappa[j] - c * share) * inv_beta
        gmag += (abs(bb.kappa[j]) + abs(c * share)) * inv_beta
    value, mag, pair_gmag = _pairs_and_linear_part(n, v, ws, bb, n_edges, pair_kind, pair_param, beta,
                                                   np.bool_(True), c, k0, xc, log_z)
    return value, mag + reach * (gmag + pair_gmag)


@internal_kernel
def _pairs_and_linear_part(n: int, v: np.ndarray, ws: Workspace, bb: CertificateWorkspace, n_edges: int,
                           pair_kind: int, pair_param: float, beta: float, with_grad: bool, c: float, k0: float,
                           xc: float, log_part: float) -> tuple[float, float, float]:
    """``P(v) + sum_j kappa_j (x_j - x_c) + K0 - c log_part`` (``log_part``: ``log Z - x_c`` for ``F``,
    ``log S - x_c`` for its relaxation), with the sum of |terms| and the pairs' sum of |gradient terms|
    (:func:`_pair_part`; with ``with_grad`` the pairs' gradient is added to ``bb.grad``)."""
    inv_beta = 1.0 / beta
    value, mag, pair_gmag = _pair_part(v, ws, bb, n_edges, pair_kind, pair_param, beta, with_grad)
    for j in range(n):
        term = bb.kappa[j] * (ws.lw[j] + v[j] * inv_beta - xc)
        value += term
        mag += abs(term)
    value += k0 - c * log_part
    mag += abs(k0) + abs(c * log_part)
    return value, mag, pair_gmag


# =============================================================================== the relaxation
@njit(cache=True)
def log_secant(top: float, width: float, log_inv_rho: float, lower: float, y: float) -> float:
    """``log s(y)``, ``s`` the secant of ``e^{base + y/beta}`` over ``[lower, lower + width]``.

    ``top = base + (lower + width) / beta``,
    ``log_inv_rho = width / beta``: ``s = e^{top} (t + (1 - t) e^{-width/beta})``, ``t = (y - lower)/width``
    clipped to ``[0, 1]``, evaluated as a log-sum-exp (no underflow whatever ``width / beta``).
    """
    if width <= 0.0:
        return top
    t = (y - lower) / width
    if t <= 0.0:
        return top - log_inv_rho
    if t >= 1.0:
        return top
    a = math.log(t)
    b = math.log1p(-t) - log_inv_rho
    if a >= b:
        return top + a + math.log1p(math.exp(b - a))
    return top + b + math.log1p(math.exp(a - b))


@internal_kernel
def _prepare_box(n: int, ws: Workspace, bb: CertificateWorkspace, beta: float) -> float:
    """Secant data of the box ``bb.box_lo/box_hi``: term ``j`` is ``e^{x_j - x_c}``, ``x_c = max_j x_j(hi_j)``
    (centred), its secant taken over ``[l_j, u_j]``, ``width_j = u_j - l_j``; returns ``x_c``."""
    inv_beta = 1.0 / beta
    xc = NEG_INF
    for j in range(n):
        x = ws.lw[j] + bb.box_hi[j] * inv_beta
        if x > xc:
            xc = x
    for j in range(n):
        w = bb.box_hi[j] - bb.box_lo[j]
        bb.width[j] = w
        bb.top[j] = ws.lw[j] - xc + bb.box_hi[j] * inv_beta
        if w > 0.0:
            bb.log_inv_rho[j] = w * inv_beta
            bb.slope_factor[j] = -math.expm1(-w * inv_beta) / w
        else:
            bb.log_inv_rho[j] = 0.0
            bb.slope_factor[j] = 0.0
    return xc


@internal_kernel
def _relaxation(n: int, v: np.ndarray, ws: Workspace, bb: CertificateWorkspace, n_edges: int, pair_kind: int,
                pair_param: float, beta: float, c: float, k0: float, xc: float,
                with_grad: bool, exact: bool = False) -> tuple[float, float, float, float]:
    """``R(v) = P + sum_j kappa_j (x_j - x_c) + K0 - c (log S - x_c)`` on the prepared box; ``bb.lsec`` = centred
    log secants. With ``with_grad``: ``bb.grad = dR/dv`` and ``bb.glog = d log S / dv``. Returns
    ``(R, M, log S - x_c, G)``, ``M`` the sum of |terms| (plus, with ``with_grad``, the box's largest
    width times ``G``, the sum of |gradient terms|: the magnitude for :func:`rounding_margin`).
    ``exact``: the objective ``F`` itself (``e^{x_j}`` in place of its secant, so ``S = Z`` and
    ``bb.glog = d log Z / dv = pi / beta``), for boxes where ``F`` is convex (:func:`_convex_on_box`).
    """
    inv_beta = 1.0 / beta
    largest = NEG_INF
    for j in range(n):
        if exact:
            s = bb.top[j] - (bb.box_hi[j] - v[j]) * inv_beta  # x_j - x_c
        else:
            s = log_secant(bb.top[j], bb.width[j], bb.log_inv_rho[j], bb.box_lo[j], v[j])
        bb.lsec[j] = s
        if s > largest:
            largest = s
    total = 0.0
    for j in range(n):
        total += math.exp(bb.lsec[j] - largest)
    log_s = largest + math.log(total)
    gmag = 0.0
    reach = 0.0
    if with_grad:
        for j in range(n):
            if exact:
                g = math.exp(bb.lsec[j] - log_s) * inv_beta
            else:
                g = math.exp(bb.top[j] - log_s) * bb.slope_factor[j]
            bb.glog[j] = g
            bb.grad[j] = bb.kappa[j] * inv_beta - c * g
            gmag += abs(bb.kappa[j] * inv_beta) + abs(c * g)
            if bb.width[j] > reach:
                reach = bb.width[j]
    value, mag, pair_gmag = _pairs_and_linear_part(n, v, ws, bb, n_edges, pair_kind, pair_param, beta, with_grad,
                                                   c, k0, xc, log_s)
    return value, mag + reach * (gmag + pair_gmag), log_s, gmag + pair_gmag


@njit(cache=True)
def frank_wolfe(n: int, v: np.ndarray, grad: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[float, float]:
    """``min_{u in [lower, upper]} grad.(u - v)`` (``<= 0``) and the sum of |products| (for the rounding margin)."""
    total = 0.0
    mag = 0.0
    for j in range(n):
        a = grad[j] * (lower[j] - v[j])
        b = grad[j] * (upper[j] - v[j])
        m = a if a < b else b
        total += m
        mag += abs(m)
    return total, mag


@njit(cache=True)
def rounding_margin(n: int, n_edges: int, magnitude: float) -> float:
    """Safety margin subtracted from every computed bound: ``16 (n + n_edges + 8) eps M`` (module docstring).

    ``M`` must bound the sum of the absolute values of every term of the bound's value and of every
    gradient term times the box's width (the Frank–Wolfe products inherit the gradient's rounding).
    """
    return 16.0 * (n + n_edges + 8) * _EPS * magnitude


@internal_kernel
def _newton_direction(nf: int, ws: Workspace, bb: CertificateWorkspace, n_edges: int, pair_kind: int,
                      pair_param: float, beta: float, c: float, v: np.ndarray, exact: bool = False) -> None:
    """``direction_F = -(H_FF + tau I)^{-1} grad_F``, ``H = grad^2 P + c g g^T`` (PSD, ``g = grad log S``), by Cholesky.

    ``exact``: the Hessian of ``F``, ``grad^2 P + c g g^T - (c / beta) diag(g)`` (``g = pi / beta``; PSD on
    the boxes where :func:`_convex_on_box` holds).

    ``bb.free_index[0..nf-1]`` are the free variables, ``bb.position`` maps variable -> free position (-1).
    ``tau = 1e-12 max diag`` (raised if a pivot is not positive).
    """
    h = bb.hessian
    inv2 = 1.0 / (beta * beta)
    inv_beta = 1.0 / beta
    for i in range(nf):
        gi = c * bb.glog[bb.free_index[i]]
        for m in range(nf):
            h[i, m] = gi * bb.glog[bb.free_index[m]]
        if exact:
            h[i, i] -= c * bb.glog[bb.free_index[i]] * inv_beta
    for e in range(n_edges):
        a = ws.edge_a[e]
        b = ws.edge_b[e]
        ia = bb.position[a]
        ib = bb.position[b]
        if ia < 0 and ib < 0:
            continue
        w = ws.edge_w[e] * inv2
        la = (ws.lw[a] - ws.lref[a]) + v[a] * inv_beta
        lb = (ws.lw[b] - ws.lref[b]) + v[b] * inv_beta
        cc, cr, rr = pair_loss_hessian(pair_kind, la, lb, beta, pair_param)
        if ia >= 0:
            h[ia, ia] += w * cc
            if ib >= 0:
                h[ia, ib] += w * cr
                h[ib, ia] += w * cr
        if ib >= 0:
            h[ib, ib] += w * rr
    max_diag = 0.0
    for i in range(nf):
        if h[i, i] > max_diag:
            max_diag = h[i, i]
    tau = 1e-12 * max_diag + 1e-300
    low = bb.factor
    for _attempt in range(12):
        if shifted_cholesky(h, nf, 0.0, tau, low):
            break
        tau = 1e3 * tau + 1e-9 * max_diag
    y = bb.step
    for i in range(nf):
        y[i] = -bb.grad[bb.free_index[i]]
    cholesky_substitute(low, nf, y)
    for i in range(nf):
        bb.direction[bb.free_index[i]] = y[i]


@internal_kernel
def _clip_point(n: int, bb: CertificateWorkspace) -> None:
    for j in range(n):
        t = bb.point[j]
        if t < bb.box_lo[j]:
            t = bb.box_lo[j]
        elif t > bb.box_hi[j]:
            t = bb.box_hi[j]
        bb.point[j] = t


@internal_kernel
def _solve_relaxation(n: int, ws: Workspace, bb: CertificateWorkspace, n_edges: int, pair_kind: int,
                      pair_param: float, beta: float, c: float, k0: float, scale: float, incumbent: float,
                      prune_gap: float, max_steps: int, exact: bool = False) -> tuple[float, float, float]:
    """Minimize ``R`` over the box ``bb.box_lo/box_hi`` from ``bb.point`` (in place), projected Newton.

    Stops when the Frank–Wolfe gap is small (``<= prune_gap / 10``, or ``<= 10%`` of how far the
    relaxation is below the incumbent: precision a node that will be branched anyway does not need),
    when the node is prunable, or when no step is accepted. Returns ``(lower bound, log S - x_c, gerr)``:
    the Frank–Wolfe bound at the final point minus the rounding margin, valid whatever the accuracy,
    and a bound on the rounding error of each gradient component (for :func:`tighten_box`).
    ``bb.grad``, ``bb.glog`` and the secant data describe the final ``bb.point``. ``exact``: minimize
    ``F`` itself (its bound is valid only where ``F`` is convex on the box: :func:`_convex_on_box`).
    """
    xc = _prepare_box(n, ws, bb, beta)
    _clip_point(n, bb)
    with_grad = np.bool_(True)  # np.bool_, np.int64: run-time values, not literals (one specialization each)
    without_grad = np.bool_(False)
    value, mag, log_s, gmag = _relaxation(n, bb.point, ws, bb, n_edges, pair_kind, pair_param, beta, c, k0, xc,
                                          with_grad, exact)
    fw, fw_mag = frank_wolfe(n, bb.point, bb.grad, bb.box_lo, bb.box_hi)
    for _it in range(max_steps):
        if value + fw >= incumbent - prune_gap:
            break
        if -fw <= 0.1 * prune_gap or (incumbent < math.inf and -fw <= 0.1 * (incumbent - value)):
            break
        pg = 0.0
        for j in range(n):
            t = bb.point[j] - bb.grad[j] / scale
            if t < bb.box_lo[j]:
                t = bb.box_lo[j]
            elif t > bb.box_hi[j]:
                t = bb.box_hi[j]
            if abs(t - bb.point[j]) > pg:
                pg = abs(t - bb.point[j])
        nf = np.int64(0)
        for j in range(n):
            w = bb.box_hi[j] - bb.box_lo[j]
            eps = 1e-3 * w if 1e-3 * w < pg else pg
            g = bb.grad[j]
            vj = bb.point[j]
            if w <= 0.0:
                bb.position[j] = -1
                bb.direction[j] = 0.0
            elif vj <= bb.box_lo[j] + eps and g > 0.0:
                bb.position[j] = -1
                bb.direction[j] = bb.box_lo[j] - vj
            elif vj >= bb.box_hi[j] - eps and g < 0.0:
                bb.position[j] = -1
                bb.direction[j] = bb.box_hi[j] - vj
            else:
                bb.position[j] = nf
                bb.free_index[nf] = j
                nf += 1
        if nf > 0:
            _newton_direction(nf, ws, bb, n_edges, pair_kind, pair_param, beta, c, bb.point, exact)
        step = 1.0
        accepted = False
        slack = 1e-13 * (1.0 + abs(value))
        for _ in range(60):
            decrease = 0.0
            for j in range(n):
                t = bb.point[j] + step * bb.direction[j]
                if t < bb.box_lo[j]:
                    t = bb.box_lo[j]
                elif t > bb.box_hi[j]:
                    t = bb.box_hi[j]
                bb.trial[j] = t
                decrease += bb.grad[j] * (t - bb.point[j])
            trial_value, _, _, _ = _relaxation(n, bb.trial, ws, bb, n_edges, pair_kind, pair_param, beta, c, k0,
                                               xc, without_grad, exact)
            if decrease < 0.0 and trial_value <= value + 1e-4 * decrease + slack:
                accepted = True
                break
            step *= 0.5
        if not accepted:
            break
        for j in range(n):
            bb.point[j] = bb.trial[j]
        value, mag, log_s, gmag = _relaxation(n, bb.point, ws, bb, n_edges, pair_kind, pair_param, beta, c, k0,
                                              xc, with_grad, exact)
        fw, fw_mag = frank_wolfe(n, bb.point, bb.grad, bb.box_lo, bb.box_hi)
    bound = value + fw - rounding_margin(n, n_edges, mag + fw_mag)
    bb.last_relaxation[0] = value
    bb.last_relaxation[1] = mag
    bb.last_relaxation[2] = log_s + xc
    return bound, log_s, rounding_margin(n, n_edges, gmag)


@internal_kernel
def _monotone_fix(n: int, ws: Workspace, bb: CertificateWorkspace, n_edges: int, pair_kind: int, pair_param: float,
                  beta: float, c: float, hi: float) -> bool:
    """Fix each variable whose partial derivative has one sign on the whole box (box data prepared by
    :func:`_prepare_box`): ``dF/dv_j > 0`` everywhere puts every minimizer of the box at ``v_j = l_j``
    (moving ``v_j`` down never raises ``F``, whatever the other variables), ``< 0`` at ``u_j``.

    ``dF/dv_j = sum_pairs w l'(d) (+-1/beta) + kappa_j / beta - c pi_j / beta``: ``l'`` is increasing in ``d``
    (convex DPO / IPO pair terms), so its range over the box is spanned by the ends of ``d``'s range;
    ``pi_j`` lies between ``check pi_j`` and ``hat pi_j`` (its minimum and maximum over the box, centred, with
    the denominators widened by their rounding). A sign counts only beyond ``16 (n + n_edges + 8) eps``
    times the terms' magnitude. Returns whether a variable was fixed.

    A variable that can reach ``hi`` is not fixed at its lower end: that move can take a point of the
    face ``max v = hi`` off it, and the frontier's leaves answer for the face points of their boxes
    (:mod:`xposim.policies.tabular.frontier`). (Measured on XPO runs with 4 and 16 arms: the search's
    node counts are the same with and without that case.)
    """
    inv_beta = 1.0 / beta
    total_low = 0.0
    total_up = 0.0
    for j in range(n):
        total_low += math.exp(bb.top[j] - bb.width[j] * inv_beta)
        total_up += math.exp(bb.top[j])
    for j in range(n):
        up = math.exp(bb.top[j])
        down = math.exp(bb.top[j] - bb.width[j] * inv_beta)
        rest = total_low - down - 4.0 * (n + 1) * _EPS * total_low
        if rest < 0.0:
            rest = 0.0
        hat = up / (up + rest) if up > 0.0 else 0.0
        rest = total_up - up + 4.0 * (n + 1) * _EPS * total_up
        check = down / (down + rest) if down > 0.0 else 0.0
        bb.glog[j] = (bb.kappa[j] - c * hat) * inv_beta  # lower end of dF/dv_j
        bb.step[j] = (bb.kappa[j] - c * check) * inv_beta  # upper end
        bb.direction[j] = (abs(bb.kappa[j]) + c) * inv_beta  # magnitude
    for e in range(n_edges):
        a = ws.edge_a[e]
        b = ws.edge_b[e]
        w = ws.edge_w[e]
        if w == 0.0 or a == b:
            continue
        base_a = ws.lw[a] - ws.lref[a]
        base_b = ws.lw[b] - ws.lref[b]
        _, dc0, dr0 = pair_loss(pair_kind, base_a + bb.box_lo[a] * inv_beta, base_b + bb.box_hi[b] * inv_beta, beta,
                                pair_param)
        _, dc1, dr1 = pair_loss(pair_kind, base_a + bb.box_hi[a] * inv_beta, base_b + bb.box_lo[b] * inv_beta, beta,
                                pair_param)
        q = w * inv_beta
        bb.glog[a] += q * (dc0 if dc0 < dc1 else dc1)
        bb.step[a] += q * (dc0 if dc0 > dc1 else dc1)
        bb.glog[b] += q * (dr0 if dr0 < dr1 else dr1)
        bb.step[b] += q * (dr0 if dr0 > dr1 else dr1)
        m = q * (abs(dc0) + abs(dc1) + abs(dr0) + abs(dr1))
        bb.direction[a] += m
        bb.direction[b] += m
    fixed = False
    for j in range(n):
        if bb.box_hi[j] <= bb.box_lo[j]:
            continue
        margin = rounding_margin(n, n_edges, bb.direction[j])
        if bb.glog[j] > margin and bb.box_hi[j] < hi:
            bb.box_hi[j] = bb.box_lo[j]
            fixed = True
        elif bb.step[j] < -margin:
            bb.box_lo[j] = bb.box_hi[j]
            fixed = True
    return fixed


@internal_kernel
def _convex_on_box(n: int, ws: Workspace, bb: CertificateWorkspace, n_edges: int, pair_kind: int, pair_param: float,
                   beta: float, c: float) -> bool:
    """Whether ``F`` is proven convex on the box ``bb.box_lo/box_hi`` (secant data prepared by :func:`_prepare_box`).

    ``grad^2 F(v) = grad^2 P(v) - (c / beta^2) (diag(pi) - pi pi^T)`` for every ``v``. Lower bound of the first
    term in the PSD order: each DPO / IPO pair term is ``l''(d) (e_a - e_b)(e_a - e_b)^T / beta^2`` with ``l''``
    unimodal in ``d`` (DPO) or constant (IPO), so its minimum over the box's range of ``d`` is at an
    end. Upper bound of the second: ``diag(pi) - pi pi^T`` is the Laplacian of the complete graph with
    weights ``pi_a pi_b``, at most ``hat pi_a hat pi_b`` (``hat pi_j = max_box pi_j``, centred, with a
    lower bound on the denominator that absorbs the cancellation), and Laplacians grow with their
    weights. So ``grad^2 F ⪰ M`` on the box and ``F`` is convex there if ``M`` is PSD on the free
    variables (width > 0; with none fixed, on ``1^⊥``: ``M 1 = 0``, tested as ``M + s 1 1^T``). The test is
    a Cholesky factorization of ``M - delta I``, ``delta = 1e-9`` times the magnitude of ``M``'s entries
    (far above their rounding). On such a box the node's bound is the Frank–Wolfe bound of ``F`` itself,
    tight at ``F``'s minimum: nodes near a non-degenerate minimizer close without branching further.
    """
    inv_beta = 1.0 / beta
    h = bb.hessian
    nf = 0
    for j in range(n):
        if bb.width[j] > 0.0:
            bb.position[j] = nf
            bb.free_index[nf] = j
            nf += 1
        else:
            bb.position[j] = -1
    if nf == 0:
        return True
    for i in range(nf):
        for m in range(nf):
            h[i, m] = 0.0
    # hat pi_j / e^{0}: terms centred at x_c (bb.top[j] = x_j(u_j) - x_c <= 0)
    total_low = 0.0
    for j in range(n):
        total_low += math.exp(bb.top[j] - bb.width[j] * inv_beta)
    sum_hat = 0.0
    for j in range(n):
        up = math.exp(bb.top[j])
        rest = total_low - math.exp(bb.top[j] - bb.width[j] * inv_beta) - 4.0 * (n + 1) * _EPS * total_low
        if rest < 0.0:
            rest = 0.0
        share = up / (up + rest) if up > 0.0 else 0.0
        bb.trial[j] = share if share < 1.0 else 1.0
        sum_hat += bb.trial[j]
    weight = c * inv_beta * inv_beta
    magnitude = 0.0
    for i in range(nf):
        a = bb.free_index[i]
        h[i, i] -= weight * bb.trial[a] * (sum_hat - bb.trial[a])
        magnitude += weight * bb.trial[a] * sum_hat
        for m in range(nf):
            if m != i:
                h[i, m] += weight * bb.trial[a] * bb.trial[bb.free_index[m]]
    inv2 = inv_beta * inv_beta
    for e in range(n_edges):
        a = ws.edge_a[e]
        b = ws.edge_b[e]
        w = ws.edge_w[e]
        if w == 0.0 or a == b:
            continue
        ia = bb.position[a]
        ib = bb.position[b]
        if ia < 0 and ib < 0:
            continue
        base_a = ws.lw[a] - ws.lref[a]
        base_b = ws.lw[b] - ws.lref[b]
        low = math.inf
        for end in range(2):
            la = base_a + (bb.box_lo[a] if end == 0 else bb.box_hi[a]) * inv_beta
            lb = base_b + (bb.box_hi[b] if end == 0 else bb.box_lo[b]) * inv_beta
            cc, cr, rr = pair_loss_hessian(pair_kind, la, lb, beta, pair_param)
            m = cc if cc < rr else rr
            if -cr < m:
                m = -cr
            if m < low:
                low = m
        if not low > 0.0:
            continue
        q = w * low * inv2
        magnitude += 2.0 * q
        if ia >= 0:
            h[ia, ia] += q
        if ib >= 0:
            h[ib, ib] += q
        if ia >= 0 and ib >= 0:
            h[ia, ib] -= q
            h[ib, ia] -= q
    shift = 0.0
    if nf == n:  # nothing fixed: M 1 = 0, test M on 1^⊥
        for i in range(nf):
            if h[i, i] > shift:
                shift = h[i, i]
        shift += magnitude
    delta = 1e-9 * magnitude + 1e-300
    return shifted_cholesky(h, nf, shift, -delta, bb.factor)


@internal_kernel
def _choose_branch(n: int, ws: Workspace, bb: CertificateWorkspace, beta: float, c: float,
                   log_s: float) -> tuple[int, float]:
    """Branching variable and split point at the relaxation point ``bb.point`` (module docstring).

    Largest relaxation gap ``c (s_j - e^{x_j}) / S``; if every gap is 0 (a vertex): the largest
    possible secant error ``c e^{x_j(u_j)} (1 - e^{-w_j/beta}) / S``. Split at the point clipped to
    the middle 80% (continuous variables) or into the two endpoints (``_ENDPOINT``: split = NaN).
    """
    inv_beta = 1.0 / beta
    best = -1
    best_gap = 0.0
    for j in range(n):
        if bb.width[j] <= 0.0:
            continue
        lsec = log_secant(bb.top[j], bb.width[j], bb.log_inv_rho[j], bb.box_lo[j], bb.point[j])
        xrel = bb.top[j] - (bb.box_hi[j] - bb.point[j]) * inv_beta  # x_j - x_c
        gap = c * (math.exp(lsec - log_s) - math.exp(xrel - log_s))
        if gap > best_gap:
            best_gap = gap
            best = j
    if best < 0:
        best_score = -1.0
        for j in range(n):
            if bb.width[j] <= 0.0:
                continue
            score = math.exp(bb.top[j] - log_s) * (-math.expm1(-bb.log_inv_rho[j])) + 1e-300 * bb.width[j]
            if score > best_score:
                best_score = score
                best = j
    if best < 0:
        return -1, 0.0
    if bb.kind[best] == _ENDPOINT:
        return best, math.nan
    lo = bb.box_lo[best]
    w = bb.width[best]
    if w * inv_beta > _WIDE:
        return best, lo + 0.5 * w
    s = bb.point[best]
    if s < lo + _CLIP * w:
        s = lo + _CLIP * w
    elif s > lo + (1.0 - _CLIP) * w:
        s = lo + (1.0 - _CLIP) * w
    return best, s


@njit(cache=True)
def tighten_box(n: int, bb: CertificateWorkspace, bound: float, threshold: float, gerr: float) -> int:
    """Reduced-cost bound tightening of the box ``bb.box_lo/box_hi`` (in place).

    ``R`` is convex, so ``F(u) >= R(u) >= bound - fw_j + g_j (u_j - v_j)`` for every ``u`` in the box
    (``g = grad R(v)`` at the relaxation point ``v``, ``fw_j = min(g_j (l_j - v_j), g_j (u_j - v_j))``,
    ``bound = R(v) + sum_j fw_j - margin``): a point with ``F(u) < threshold`` has
    ``u_j <= l_j + (threshold - bound) / g_j`` if ``g_j > 0`` and ``u_j >= u_j - (threshold - bound) / |g_j|``
    if ``g_j < 0`` (``|g_j|`` lowered by ``gerr``, its rounding bound; the reach widened by a relative
    ``1e-10``). ``bb.grad`` must be ``grad R`` at the point that gave ``bound`` (as
    :func:`box_relaxation` leaves it). Returns 0 if nothing was cut, 1 if something was, 2 if some
    width shrank by 30% or more.
    """
    room = threshold - bound
    change = 0
    for j in range(n):
        w = bb.box_hi[j] - bb.box_lo[j]
        if w <= 0.0:
            continue
        g = bb.grad[j]
        size = abs(g) - gerr  # the exact gradient component is at least this large, with g's sign
        if size <= 0.0:
            continue
        reach = room / size
        reach = reach * (1.0 + 1e-10) + 1e-13 * w
        if reach < w:
            if g > 0.0:
                bb.box_hi[j] = bb.box_lo[j] + reach
            else:
                bb.box_lo[j] = bb.box_hi[j] - reach
            if reach < 0.7 * w:
                change = 2
            elif change == 0:
                change = 1
    return change


# =============================================================================== heap of open nodes
@internal_kernel
def _before(bb: CertificateWorkspace, a: int, b: int) -> bool:
    if bb.node_bound[a] < bb.node_bound[b]:
        return True
    if bb.node_bound[a] > bb.node_bound[b]:
        return False
    return bb.node_seq[a] < bb.node_seq[b]


@internal_kernel
def _heap_push(bb: CertificateWorkspace, size: int, slot: int) -> int:
    heap = bb.heap
    i = size
    heap[i] = slot
    while i > 0:
        parent = (i - 1) // 2
        if _before(bb, heap[i], heap[parent]):
            tmp = heap[i]
            heap[i] = heap[parent]
            heap[parent] = tmp
            i = parent
        else:
            break
    return size + 1


@internal_kernel
def _heap_pop(bb: CertificateWorkspace, size: int) -> int:
    """Remove the top of the heap (the caller read it at ``bb.heap[0]``); returns the new size."""
    heap = bb.heap
    size -= 1
    heap[0] = heap[size]
    i = 0
    while True:
        left = 2 * i + 1
        right = left + 1
        smallest = i
        if left < size and _before(bb, heap[left], heap[smallest]):
            smallest = left
        if right < size and _before(bb, heap[right], heap[smallest]):
            smallest = right
        if smallest == i:
            break
        tmp = heap[i]
        heap[i] = heap[smallest]
        heap[smallest] = tmp
        i = smallest
    return size


# =============================================================================== incumbents
@internal_kernel
def _incumbent_candidate(n: int, k: int, candidate: np.ndarray, polish: bool, ws: Workspace,
                         bb: CertificateWorkspace, n_edges: int, pair_kind: int, pair_param: float, bonus_kind: int,
                         alpha: float, beta: float, lo: float, hi: float, scale: float, tolerance: float,
                         max_iterations: int, dense_limit: int, incumbent: float) -> float:
    """Offer ``candidate`` (and, if ``polish``, its projected-Newton local minimum) as incumbent (``bb.best``)."""
    value, _ = context_objective(n, k, candidate, ws, n_edges, pair_kind, pair_param, bonus_kind, alpha, beta)
    if value < incumbent:
        incumbent = value
        for j in range(n):
            bb.best[j] = candidate[j]
    if polish:
        for j in range(n):
            bb.polish[j] = candidate[j]
        value, _, _ = projected_newton(n, k, bb.polish, ws, n_edges, pair_kind, pair_param, bonus_kind, alpha, beta,
                                       lo, hi, scale, tolerance, max_iterations, dense_limit)
        if value < incumbent:
            incumbent = value
            for j in range(n):
                bb.best[j] = bb.polish[j]
    return incumbent


@internal_kernel
def _face_rule(n: int, lower: np.ndarray, upper: np.ndarray, hi: float) -> int:
    """Face reduction of a box (in place): -1 if no upper bound is ``hi`` (no point of the face
    ``max v = hi``: drop it); if only variable ``i`` can reach ``hi``, ``lower_i = hi`` and 1; else 0."""
    count = 0
    last = -1
    for j in range(n):
        if upper[j] >= hi:
            count += 1
            last = j
            if count > 1:
                return 0
    if count == 0:
        return -1
    if lower[last] < hi:
        lower[last] = hi
        return 1
    return 0


# =============================================================================== test hooks
@njit(cache=True)
def box_relaxation(n: int, ws: Workspace, bb: CertificateWorkspace, n_edges: int, pair_kind: int, pair_param: float,
                   beta: float, c: float, k0: float, scale: float, lower: np.ndarray, upper: np.ndarray,
                   start: np.ndarray, max_steps: int) -> tuple[float, float, float]:
    """The secant relaxation of the box ``[lower, upper]`` minimized from ``start`` by at most ``max_steps``
    projected Newton steps (to full accuracy: no incumbent); returns ``(R, bound, gerr)`` at the final
    point (left in ``bb.point``, ``dR/dv`` in ``bb.grad``, the box in ``bb.box_lo/box_hi``): ``R``
    there, the node bound of :func:`certified_minimize` (Frank–Wolfe, rounding margin included) and
    the rounding bound of the gradient's components (for :func:`tighten_box`). ``max_steps = 0``: at
    ``start`` (clipped to the box). Needs :func:`bonus_decomposition` first."""
    for j in range(n):
        bb.box_lo[j] = lower[j]
        bb.box_hi[j] = upper[j]
        bb.point[j] = start[j]
    bound, _, gerr = _solve_relaxation(n, ws, bb, n_edges, pair_kind, pair_param, beta, c, k0, scale, math.inf,
                                       0.0, max_steps, np.bool_(False))
    xc = _prepare_box(n, ws, bb, beta)
    value, _, _, _ = _relaxation(n, bb.point, ws, bb, n_edges, pair_kind, pair_param, beta, c, k0, xc,
                                 np.bool_(True), np.bool_(False))
    return value, bound, gerr


@njit(cache=True)
def box_is_convex(n: int, ws: Workspace, bb: CertificateWorkspace, n_edges: int, pair_kind: int, pair_param: float,
                  beta: float, c: float, lower: np.ndarray, upper: np.ndarray) -> bool:
    """Whether the branch-and-bound's convexity test (:func:`_convex_on_box`) proves ``F`` convex on
    ``[lower, upper]``. Needs :func:`bonus_decomposition` first."""
    for j in range(n):
        bb.box_lo[j] = lower[j]
        bb.box_hi[j] = upper[j]
    _prepare_box(n, ws, bb, beta)
    return _convex_on_box(n, ws, bb, n_edges, pair_kind, pair_param, beta, c)


@njit(cache=True)
def box_monotone_fix(n: int, ws: Workspace, bb: CertificateWorkspace, n_edges: int, pair_kind: int,
                     pair_param: float, beta: float, c: float, lower: np.ndarray, upper: np.ndarray,
                     hi: float) -> bool:
    """The branch-and-bound's monotonicity reduction (:func:`_monotone_fix`) of ``[lower, upper]``, in place:
    a variable whose derivative has one sign on the box is fixed at its end (never one that can reach
    ``hi`` at its lower end). Returns whether one was. Needs :func:`bonus_decomposition` first."""
    for j in range(n):
        bb.box_lo[j] = lower[j]
        bb.box_hi[j] = upper[j]
    _prepare_box(n, ws, bb, beta)
    fixed = _monotone_fix(n, ws, bb, n_edges, pair_kind, pair_param, beta, c, hi)
    for j in range(n):
        lower[j] = bb.box_lo[j]
        upper[j] = bb.box_hi[j]
    return fixed


# =============================================================================== the solver
def certified_minimize(n: int, k: int, v: np.ndarray, ws: Workspace, bb: CertificateWorkspace, n_edges: int,
                       pair_kind: int, pair_param: float, bonus_kind: int, alpha: float, beta: float, lo: float,
                       hi: float, scale: float, tolerance: float, max_iterations: int, dense_limit: int,
                       relative_gap: float, max_nodes: int) -> tuple[float, float, int, int]:
    """Global minimum of the context objective over ``[lo, hi]^n`` with a proven lower bound (module docstring).

    ``v`` (in place): on entry an incumbent (warm start or local solution), on exit the best point
    found. ``ws`` holds the loaded context (as for ``context_objective``); ``bb`` from
    :func:`new_certificate_workspace` with ``n_max >= n`` and ``max_nodes`` within its capacity.
    ``scale``, ``tolerance``, ``max_iterations``, ``dense_limit`` are passed to ``projected_newton``
    (local polish). Returns ``(value, lower_bound, status, nodes)``, ``status`` one of
    :data:`CERTIFIED`, :data:`NODE_LIMIT`, :data:`UNSUPPORTED`; ``nodes`` = relaxations solved.
    Every call searches from the root (:func:`certified_minimize_reusing` keeps the search for the next).
    A Python function: it calls the compiled :func:`certified_minimize_reusing` with no frontier (one
    compiled entry for both).
    """
    return certified_minimize_reusing(n, k, v, ws, bb, n_edges, pair_kind, pair_param, bonus_kind, alpha, beta, lo,
                                      hi, scale, tolerance, max_iterations, dense_limit, relative_gap, max_nodes,
                                      bb.no_frontier, -1, -1)


@njit(cache=True)
def certified_minimize_reusing(n: int, k: int, v: np.ndarray, ws: Workspace, bb: CertificateWorkspace, n_edges: int,
                               pair_kind: int, pair_param: float, bonus_kind: int, alpha: float, beta: float,
                               lo: float, hi: float, scale: float, tolerance: float, max_iterations: int,
                               dense_limit: int, relative_gap: float, max_nodes: int, frontier: Frontier, slot: int,
                               owner: int) -> tuple[float, float, int, int]:
    """:func:`certified_minimize` that starts from ``frontier``'s slot ``slot`` when it holds ``owner``'s last
    search of an objective of the same shape, and leaves this search there
    (:mod:`xposim.policies.tabular.frontier`)."""
    return certified_search(n, k, v, ws, bb, n_edges, pair_kind, pair_param, bonus_kind, alpha, beta, lo, hi, scale,
                            tolerance, max_iterations, dense_limit, relative_gap, max_nodes, frontier, slot, owner)


@internal_kernel
def _face_reachable(n: int, upper: np.ndarray, hi: float) -> bool:
    """Whether the box with these upper ends holds a point of the face ``max v = hi``."""
    for j in range(n):
        if upper[j] >= hi:
            return True
    return False


@internal_kernel
def _box_is_cover(n: int, bb: CertificateWorkspace, node: int, hi: float) -> bool:
    """Whether the box ``bb.box_lo/box_hi`` has the same face points as node ``node``'s cover: equal, but for
    ``l_i = hi`` where ``i`` is the only variable of the cover that can reach ``hi`` (the face rule)."""
    reach = 0
    for j in range(n):
        if bb.cover_hi[node, j] >= hi:
            reach += 1
    for j in range(n):
        if bb.box_hi[j] != bb.cover_hi[node, j]:
            return False
        if bb.box_lo[j] != bb.cover_lo[node, j] and not (reach == 1 and bb.box_lo[j] == hi
                                                          and bb.cover_hi[node, j] >= hi):
            return False
    return True


@internal_kernel
def certified_search(n: int, k: int, v: np.ndarray, ws: Workspace, bb: CertificateWorkspace, n_edges: int,
                     pair_kind: int, pair_param: float, bonus_kind: int, alpha: float, beta: float, lo: float,
                     hi: float, scale: float, tolerance: float, max_iterations: int, dense_limit: int,
                     relative_gap: float, max_nodes: int, fr: Frontier, slot: int,
                     owner: int) -> tuple[float, float, int, int]:
    """The branch-and-bound of :func:`certified_minimize`, from the root or from ``fr``'s slot ``slot``.

    Frontier bookkeeping (``slot >= 0``): every node carries, beside its working box (reduced by the
    face rule, the monotone fixes and the reduced-cost cuts), its **cover**: the box its parent's split
    gave it (or a kept leaf's box). Its leaf is recorded with the cover and ``min(bound, floor)``,
    ``floor`` the smallest cut threshold on its path: each point of the cover on the face is either
    cut (``F >= floor``) or moved by the reductions, without leaving the face, into the working box
    (``F >= bound``). Tried and dropped (XPO on 16 arms, 1,000 rounds): recording the working box with
    its own bound and the rest of the cover apart (the rest, at the cut threshold, is searched again
    every round: 8x the relaxations), and cutting with headroom above the threshold (1.6-2x).
    """
    if n > bb.box_lo.shape[0] or max_nodes > bb.node_bound.shape[0] - 2:
        raise ValueError("certified_minimize: bb is too small (n_max < n or max_nodes above its capacity)")
    if slot >= 0 and (slot >= fr.meta.shape[0] or n > fr.lo.shape[2]):
        raise ValueError("certified_minimize_reusing: slot out of range or n above the frontier's n_max")
    for j in range(n):
        if v[j] < lo:
            v[j] = lo
        elif v[j] > hi:
            v[j] = hi
    # np.bool_, np.int64: run-time values, not literals (one compiled specialization per callee)
    polish, no_polish = np.bool_(True), np.bool_(False)  # _incumbent_candidate: polish the point
    exact_f, relaxation_only = np.bool_(True), np.bool_(False)  # minimize F itself / its relaxation
    gradient, no_gradient = np.bool_(True), np.bool_(False)  # _relaxation: with its gradient
    relaxation_steps = np.int64(30)
    incumbent = math.inf
    if not supported_kinds(pair_kind, bonus_kind):
        # no bound: the best local solution from the warm start and the champion vertices
        for champion in range(-1, n):
            for j in range(n):
                if champion < 0:
                    bb.point[j] = v[j]
                else:
                    bb.point[j] = hi if j == champion else lo
            incumbent = _incumbent_candidate(n, k, bb.point, polish, ws, bb, n_edges, pair_kind, pair_param,
                                             bonus_kind, alpha, beta, lo, hi, scale, tolerance, max_iterations,
                                             dense_limit, incumbent)
        for j in range(n):
            v[j] = bb.best[j]
        return incumbent, NEG_INF, UNSUPPORTED, 0
    c, k0 = bonus_decomposition(n, k, ws, bb, n_edges, bonus_kind, alpha, beta)
    if not c > 0.0:
        # convex objective: the local solution with its Frank–Wolfe certificate
        for j in range(n):
            bb.box_lo[j] = lo
            bb.box_hi[j] = hi
        bound = NEG_INF
        value = math.inf
        polish_tolerance = tolerance
        for _attempt in range(3):
            value, _, _ = projected_newton(n, k, v, ws, n_edges, pair_kind, pair_param, bonus_kind, alpha, beta, lo,
                                           hi, scale, polish_tolerance, max_iterations, dense_limit)
            own, mag = decomposed_value(n, v, ws, bb, n_edges, pair_kind, pair_param, beta, c, k0, hi - lo)
            fw, fw_mag = frank_wolfe(n, v, bb.grad, bb.box_lo, bb.box_hi)
            candidate = own + fw - rounding_margin(n, n_edges, mag + fw_mag)
            if candidate > bound:
                bound = candidate
            if value - bound <= relative_gap * max(1.0, abs(value)):
                return value, bound, CERTIFIED, 0
            polish_tolerance *= 1e-4
        return value, bound, NODE_LIMIT, 0

    # ---------------------------------------------------------------- non-convex: branch and bound
    for j in range(n):
        if bb.degree[j] == 0:
            bb.kind[j] = _TOP if bb.kappa[j] == 0.0 else _ENDPOINT
        else:
            bb.kind[j] = _CONTINUOUS
    # the previous search of this context, if the objective kept its shape (frontier module docstring)
    usable, n_changed_edges, n_changed_vars, dk0 = _frontier_changes(
        fr, slot, owner, n, ws.lw, ws.lref, bb.kind, bb.kappa, k0, ws.edge_a, ws.edge_b, ws.edge_w, n_edges,
        pair_kind, pair_param, bonus_kind, beta, lo, hi)
    if not usable:
        # champion vertices (one variable at hi, the others at lo; no-data ones at hi): the best one
        champion_value = math.inf
        champion_best = -1
        for champion in range(-1, n):
            if champion >= 0 and bb.kind[champion] == _TOP:
                continue
            for j in range(n):
                bb.point[j] = hi if (j == champion or bb.kind[j] == _TOP) else lo
            value, _ = context_objective(n, k, bb.point, ws, n_edges, pair_kind, pair_param, bonus_kind, alpha,
                                         beta)
            if value < champion_value:
                champion_value = value
                champion_best = champion
        # vertex search from the best champion (in bb.trial): flip one variable between lo and hi while that
        # lowers F (minimizers with several variables at hi: issue #11's "two arms at R_max")
        for j in range(n):
            bb.trial[j] = hi if (j == champion_best or bb.kind[j] == _TOP) else lo
        for _sweep in range(n):
            flip = -1
            for candidate in range(n):
                if bb.kind[candidate] == _TOP:
                    continue
                for j in range(n):
                    bb.point[j] = bb.trial[j]
                bb.point[candidate] = lo if bb.trial[candidate] == hi else hi
                value, _ = context_objective(n, k, bb.point, ws, n_edges, pair_kind, pair_param, bonus_kind, alpha,
                                             beta)
                if value < champion_value:
                    champion_value = value
                    flip = candidate
            if flip < 0:
                break
            bb.trial[flip] = lo if bb.trial[flip] == hi else hi
    # incumbents: the warm start (no-data variables raised to hi) and the best vertex, polished
    for start in range(1 if usable else 2):
        for j in range(n):
            if start == 0:
                bb.point[j] = hi if bb.kind[j] == _TOP else v[j]
            else:
                bb.point[j] = bb.trial[j]
        incumbent = _incumbent_candidate(n, k, bb.point, no_polish if usable else polish, ws, bb, n_edges,
                                         pair_kind, pair_param, bonus_kind, alpha, beta, lo, hi, scale, tolerance,
                                         max_iterations, dense_limit, incumbent)
    prune_gap = 0.5 * relative_gap * max(1.0, abs(incumbent))

    capacity = bb.node_bound.shape[0]
    for s in range(capacity):
        bb.free_slots[s] = capacity - 1 - s
    n_free = capacity
    heap_size = np.int64(0)
    sequence = 0
    nodes = 0
    pruned_min = math.inf  # smallest bound of the parts of the box discarded so far
    n_pending = 0
    size = np.int64(0) if slot >= 0 else np.int64(-1)  # leaves recorded in the frontier's slot (-1: none)
    if usable:
        # F' = F + Delta: each leaf's bound moves by a lower bound of Delta on its box; the leaves that no
        # longer clear the incumbent are searched again
        threshold = incumbent - prune_gap
        old_size = fr.meta[slot, SIZE]
        failing = 0
        for leaf in range(old_size):
            delta, mag = _leaf_change_bound(fr, slot, leaf, n, ws.lw, ws.lref, ws.edge_a, ws.edge_b,
                                           n_changed_edges, n_changed_vars, dk0, pair_kind, pair_param, beta)
            old = fr.bound[slot, leaf]
            moved = old + delta - rounding_margin(n, n_changed_edges + n_changed_vars, mag + abs(old) + abs(delta))
            linear, linear_mag = _linear_change_bound(fr, slot, leaf, n, ws.lw, ws.lref, ws.edge_a, ws.edge_b,
                                                      n_changed_edges, n_changed_vars, dk0, pair_kind, pair_param,
                                                      beta)
            linear -= rounding_margin(n, n_edges, linear_mag)
            fr.bound[slot, leaf] = moved if moved > linear else linear
            if fr.bound[slot, leaf] < threshold:
                failing += 1
        # (fragmented: more leaves to search again than the last search from the root took relaxations)
        usable = (2 * failing <= max_nodes and failing + n + 2 < capacity
                  and failing <= fr.meta[slot, ROOT_NODES])
        if usable:
            for leaf in range(old_size):
                bound = fr.bound[slot, leaf]
                if bound >= threshold:
                    # still pruned: kept (compacted in place: size <= leaf)
                    if size != leaf:
                        for j in range(n):
                            fr.lo[slot, size, j] = fr.lo[slot, leaf, j]
                            fr.hi[slot, size, j] = fr.hi[slot, leaf, j]
                            fr.point[slot, size, j] = fr.point[slot, leaf, j]
                            fr.grad[slot, size, j] = fr.grad[slot, leaf, j]
                            fr.glog[slot, size, j] = fr.glog[slot, leaf, j]
                        fr.bound[slot, size] = bound
                        fr.value[slot, size] = fr.value[slot, leaf]
                        fr.log_s[slot, size] = fr.log_s[slot, leaf]
                        fr.magnitude[slot, size] = fr.magnitude[slot, leaf]
                        fr.log_top[slot, size] = fr.log_top[slot, leaf]
                        fr.log_bottom[slot, size] = fr.log_bottom[slot, leaf]
                    size += 1
                    if bound < pruned_min:
                        pruned_min = bound
                    continue
                n_free -= 1
                node = bb.free_slots[n_free]
                for j in range(n):
                    low = fr.lo[slot, leaf, j]
                    up = fr.hi[slot, leaf, j]
                    bb.node_lo[node, j] = low
                    bb.node_hi[node, j] = up
                    bb.cover_lo[node, j] = low
                    bb.cover_hi[node, j] = up
                    t = fr.point[slot, leaf, j]  # where its relaxation was last minimized
                    bb.node_point[node, j] = low if t < low else (up if t > up else t)
                bb.node_bound[node] = bound
                bb.node_floor[node] = math.inf
                if _face_rule(n, bb.node_lo[node], bb.node_hi[node], hi) < 0:
                    bb.free_slots[n_free] = node  # no point of the face
                    n_free += 1
                    continue
                bb.pending[n_pending] = node
                n_pending += 1
    if not usable:
        n_free -= 1
        root = bb.free_slots[n_free]
        for j in range(n):
            bb.node_lo[root, j] = hi if bb.kind[j] == _TOP else lo
            bb.node_hi[root, j] = hi
            bb.cover_lo[root, j] = bb.node_lo[root, j]
            bb.cover_hi[root, j] = hi
            bb.node_point[root, j] = bb.best[j]
        bb.node_bound[root] = NEG_INF
        bb.node_floor[root] = math.inf
        _face_rule(n, bb.node_lo[root], bb.node_hi[root], hi)
        bb.pending[0] = root
        n_pending = 1
    while True:
        # ------------------------------------------------ evaluate the new nodes (their box and start are set)
        for which in range(n_pending):
            slot_n = bb.pending[which]
            for j in range(n):
                bb.box_lo[j] = bb.node_lo[slot_n, j]
                bb.box_hi[j] = bb.node_hi[slot_n, j]
                bb.point[j] = bb.node_point[slot_n, j]
            bound = bb.node_bound[slot_n]  # the parent's bound is valid on the child
            floor = bb.node_floor[slot_n]
            alive = True
            pristine = True  # no reduction and the bound is the relaxation's own: the leaf keeps it
            log_s = 0.0
            for rounds in range(3):
                own, log_s, gerr = _solve_relaxation(n, ws, bb, n_edges, pair_kind, pair_param, beta, c, k0,
                                                     scale, incumbent, prune_gap, relaxation_steps, relaxation_only)
                nodes += 1
                if own > bound:
                    bound = own
                # incumbent from the relaxation point (polished if it improves)
                value, _ = context_objective(n, k, bb.point, ws, n_edges, pair_kind, pair_param, bonus_kind, alpha,
                                             beta)
                if value < incumbent:
                    # polished only if it improves by more than the pruning gap (else the polish buys nothing)
                    incumbent = _incumbent_candidate(n, k, bb.point, polish if value < incumbent - prune_gap
                                                     else no_polish, ws, bb, n_edges, pair_kind, pair_param,
                                                     bonus_kind, alpha, beta, lo, hi, scale, tolerance,
                                                     max_iterations, dense_limit, incumbent)
                    prune_gap = 0.5 * relative_gap * max(1.0, abs(incumbent))
                # variables with a one-signed derivative on the box sit at one end: fixed, then re-solved
                if (rounds < 2 and bound < incumbent - prune_gap and nodes + 1 + (n_pending - which - 1) <= max_nodes
                        and _monotone_fix(n, ws, bb, n_edges, pair_kind, pair_param, beta, c, hi)):
                    pristine = False
                    face = _face_rule(n, bb.box_lo, bb.box_hi, hi)
                    if face < 0:
                        alive = False
                        break
                    continue
                # F convex on this box: its own minimum on the box, with the Frank–Wolfe bound of F (tight)
                if (bound < incumbent - prune_gap and nodes + 1 + (n_pending - which - 1) <= max_nodes
                        and _convex_on_box(n, ws, bb, n_edges, pair_kind, pair_param, beta, c)):
                    pristine = False
                    for j in range(n):
                        bb.saved[j] = bb.point[j]
                    exact_bound, _, _ = _solve_relaxation(n, ws, bb, n_edges, pair_kind, pair_param, beta, c, k0,
                                                          scale, math.inf, prune_gap, relaxation_steps, exact_f)
                    nodes += 1
                    if exact_bound > bound:
                        bound = exact_bound
                    incumbent = _incumbent_candidate(n, k, bb.point, no_polish, ws, bb, n_edges, pair_kind, pair_param,
                                                     bonus_kind, alpha, beta, lo, hi, scale, tolerance,
                                                     max_iterations, dense_limit, incumbent)
                    prune_gap = 0.5 * relative_gap * max(1.0, abs(incumbent))
                    if bound >= incumbent - prune_gap:
                        break
                    # not closed (the solve stopped early): back to the relaxation, whose data the
                    # tightening and the branching rule read
                    for j in range(n):
                        bb.point[j] = bb.saved[j]
                    xc = _prepare_box(n, ws, bb, beta)
                    _, _, log_s, _ = _relaxation(n, bb.point, ws, bb, n_edges, pair_kind, pair_param, beta, c, k0,
                                                 xc, gradient, relaxation_only)
                # (a re-solve must leave one relaxation of the budget to each sibling still to evaluate)
                if bound >= incumbent - prune_gap or rounds == 2 or nodes + 1 + (n_pending - which - 1) > max_nodes:
                    break
                # grad R at bb.point is current: cut the box where F >= incumbent - prune_gap; the parts cut
                # off are discarded with the bound incumbent - prune_gap
                threshold = incumbent - prune_gap
                change = tighten_box(n, bb, own, threshold, gerr)
                if change > 0:
                    pristine = False
                    if threshold < pruned_min:
                        pruned_min = threshold
                    if threshold < floor:
                        floor = threshold
                    face = _face_rule(n, bb.box_lo, bb.box_hi, hi)
                    if face < 0:
                        alive = False
                        break
                    if face > 0:
                        change = 2
                if change == 1:
                    # small cut: no new relaxation, but consistent secant data for the branching rule
                    xc = _prepare_box(n, ws, bb, beta)
                    _clip_point(n, bb)
                    _, _, log_s, _ = _relaxation(n, bb.point, ws, bb, n_edges, pair_kind, pair_param, beta, c, k0,
                                                 xc, no_gradient, relaxation_only)
                if change < 2:
                    break
            branch = -1
            split = 0.0
            if alive and bound < incumbent - prune_gap:
                branch, split = _choose_branch(n, ws, bb, beta, c, log_s)
            if branch >= 0:
                # max-split when the relaxation point is far below the face max v = hi
                far = True
                for j in range(n):
                    if bb.box_hi[j] >= hi and bb.point[j] > hi - _FAR * beta:
                        far = False
                if far:
                    split = math.inf
            for j in range(n):
                bb.node_lo[slot_n, j] = bb.box_lo[j]
                bb.node_hi[slot_n, j] = bb.box_hi[j]
                bb.node_point[slot_n, j] = bb.point[j]
            bb.node_bound[slot_n] = bound
            bb.node_floor[slot_n] = floor
            bb.node_branch[slot_n] = branch
            bb.node_split[slot_n] = split
            bb.node_seq[slot_n] = sequence
            sequence += 1
            if bound >= incumbent - prune_gap or branch < 0:
                if alive and bound < pruned_min:
                    pruned_min = bound
                if pristine and own >= bound and _box_is_cover(n, bb, slot_n, hi):
                    # the relaxation's box has the cover's face points: the leaf is that box, with the
                    # relaxation at its point (the next round moves it: linear_change_bound)
                    size = record_leaf(fr, slot, size, n, ws.lw, bb.box_lo, bb.box_hi, bb.point, own, beta)
                    record_linear(fr, slot, size, n, bb.last_relaxation[0], bb.last_relaxation[2], bb.grad, bb.glog,
                                  bb.last_relaxation[1])
                else:
                    size = record_leaf(fr, slot, size, n, ws.lw, bb.cover_lo[slot_n], bb.cover_hi[slot_n],
                                       bb.point, min(bound, floor), beta)
                bb.free_slots[n_free] = slot_n
                n_free += 1
            else:
                heap_size = _heap_push(bb, heap_size, slot_n)
        n_pending = 0
        # ------------------------------------------------ the next node to expand (best bound first)
        while heap_size > 0 and bb.node_bound[bb.heap[0]] >= incumbent - prune_gap:
            top = bb.heap[0]  # prunable against the improved incumbent
            if bb.node_bound[top] < pruned_min:
                pruned_min = bb.node_bound[top]
            size = record_leaf(fr, slot, size, n, ws.lw, bb.cover_lo[top], bb.cover_hi[top], bb.node_point[top],
                               min(bb.node_bound[top], bb.node_floor[top]), beta)
            heap_size = _heap_pop(bb, heap_size)
            bb.free_slots[n_free] = top
            n_free += 1
        if heap_size == 0:
            break
        parent = bb.heap[0]
        branch = bb.node_branch[parent]
        split = bb.node_split[parent]
        n_children = 2
        if split == math.inf:
            n_children = 0
            for j in range(n):
                if bb.node_hi[parent, j] >= hi and bb.node_lo[parent, j] < hi:
                    n_children += 1
        if nodes + n_children > max_nodes or n_free < n_children:
            break
        heap_size = _heap_pop(bb, heap_size)
        parent_floor = bb.node_floor[parent]
        if split == math.inf and slot >= 0:
            # face points of the cover whose top variable the cuts took below hi (F >= floor there)
            for i in range(n):
                if bb.cover_hi[parent, i] >= hi and bb.cover_lo[parent, i] < hi and bb.node_hi[parent, i] < hi:
                    for q in range(n):
                        bb.trial[q] = bb.cover_lo[parent, q]
                    bb.trial[i] = hi
                    size = record_leaf(fr, slot, size, n, ws.lw, bb.trial, bb.cover_hi[parent],
                                       bb.node_point[parent], parent_floor, beta)
        side = 0
        for j in range(n if split == math.inf else 2):
            if split == math.inf and not (bb.node_hi[parent, j] >= hi and bb.node_lo[parent, j] < hi):
                continue
            n_free -= 1
            child = bb.free_slots[n_free]
            for q in range(n):
                bb.node_lo[child, q] = bb.node_lo[parent, q]
                bb.node_hi[child, q] = bb.node_hi[parent, q]
                bb.node_point[child, q] = bb.node_point[parent, q]
                bb.cover_lo[child, q] = bb.cover_lo[parent, q]
                bb.cover_hi[child, q] = bb.cover_hi[parent, q]
            if split == math.inf:  # max-split: child j has v_j = hi (the children cover the face)
                bb.node_lo[child, j] = hi
                bb.cover_lo[child, j] = hi
            elif math.isnan(split):  # endpoint branching (F concave in the variable: its ends)
                if side == 0:
                    bb.node_hi[child, branch] = bb.node_lo[parent, branch]
                    bb.cover_hi[child, branch] = bb.node_lo[parent, branch]
                else:
                    bb.node_lo[child, branch] = bb.node_hi[parent, branch]
                    bb.cover_lo[child, branch] = bb.node_hi[parent, branch]
            elif side == 0:
                bb.node_hi[child, branch] = split
                bb.cover_hi[child, branch] = split
            else:
                bb.node_lo[child, branch] = split
                bb.cover_lo[child, branch] = split
            side += 1
            bb.node_bound[child] = bb.node_bound[parent]
            bb.node_floor[child] = parent_floor
            if _face_rule(n, bb.node_lo[child], bb.node_hi[child], hi) < 0:
                # holds no point of the face max v = hi; its cover's face points were cut (F >= floor)
                if slot >= 0 and _face_reachable(n, bb.cover_hi[child], hi):
                    size = record_leaf(fr, slot, size, n, ws.lw, bb.cover_lo[child], bb.cover_hi[child],
                                       bb.node_point[child], parent_floor, beta)
                bb.free_slots[n_free] = child
                n_free += 1
                continue
            bb.pending[n_pending] = child
            n_pending += 1
        bb.free_slots[n_free] = parent
        n_free += 1
    lower_bound = pruned_min
    for i in range(heap_size):
        node = bb.heap[i]
        if bb.node_bound[node] < lower_bound:
            lower_bound = bb.node_bound[node]
        size = record_leaf(fr, slot, size, n, ws.lw, bb.cover_lo[node], bb.cover_hi[node], bb.node_point[node],
                           min(bb.node_bound[node], bb.node_floor[node]), beta)
    store_shape(fr, slot, owner, size, n, ws.lw, ws.lref, bb.kind, bb.kappa, k0, ws.edge_a, ws.edge_b, ws.edge_w,
                n_edges, pair_kind, pair_param, bonus_kind, beta, lo, hi, nodes, not usable)
    for j in range(n):
        v[j] = bb.best[j]
    status = CERTIFIED if incumbent - lower_bound <= relative_gap * max(1.0, abs(incumbent)) else NODE_LIMIT
    return incumbent, lower_bound, status, nodes
