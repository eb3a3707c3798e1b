"""The previous round's search, kept for the next one (issue #11: "reuse the previous round's search").

A certified solve (:mod:`xposim.policies.tabular.certified`) ends with a set of **leaves**: boxes
``C_i`` of the variables with proven bounds ``b_i <= min {F(v) : v in C_i, max_j v_j = hi}``. Every
point of the face ``max v = hi`` lies in some leaf, or is covered by one of the exact reductions that
hold for every objective of the same *shape* (a variable with no data at ``hi``; a variable in no pair,
in which ``F`` is concave, at one end of its range). The frontier stores those leaves per context.

One round later the objective is ``F' = F + Delta`` with ``Delta`` the round's new terms: pair terms
with changed weights (``w'_e - w_e``) and changed bonus coefficients (``kappa'_j - kappa_j``, the
affine decomposition ``bonus = K0 + sum_j kappa_j log pi(j)`` of :func:`~xposim.policies.tabular.certified.bonus_decomposition`).
On a leaf's box

``min_C F' >= b_i + dK0 + sum_e dw_e min_C pairloss_e + sum_j min_C (dkappa_j log pi_j)``

and each minimum is exact and cheap: a DPO / IPO pair loss is convex in the margin, whose range over
the box is spanned by two corners; ``log pi_j`` is increasing in ``v_j`` and decreasing in every other
variable, so its extremes over a box are at two corners (``log Z`` at a corner from the leaf's stored
``log sum_k e^{x_k(u_k)}`` and ``log sum_k e^{x_k(l_k)}``). A leaf whose updated bound still clears the new
incumbent stays pruned without a relaxation; the others are searched again as nodes, and the search
ends with the new frontier.

A leaf that a node closed with its relaxation alone (no reduction, the node's box has its cover's
face points) also keeps that relaxation ``R`` at its point ``p``: its value, ``grad R``, ``log S`` and
``grad log S``. On the same box the relaxation of ``F'`` is ``R' = R + Delta~`` (``Delta`` with ``log Z``
replaced by the same secant ``log S``), whose value and gradient at ``p`` follow from the changed terms
alone, and the Frank–Wolfe bound ``R'(p) + min_box grad R'(p).(u - p)`` bounds ``F'`` on the box
(:func:`_linear_change_bound`). Near the incumbent, where the boxes are narrow, this bound follows the
objective's growth; the first one, on wide boxes. A leaf's bound is the larger of the two. The previous frontier is used only if the objective kept its shape: the
same variables, reference weights, ``beta``, kinds and bonus kinds, the same variable kinds, and the
old edges found (same responses) at the end of the new edge list (the store lists the most recent
first).

Storage is per *slot*: context ``x`` uses slot ``x % slots`` and owns it until another context's solve
takes it. ``frontier_bytes`` gives the memory.

When the kept search has fragmented (its leaves to search again outnumber the relaxations the last
search from the root took, or the last reusing search took more than that), the next solve searches
from the root again, which leaves a coarser frontier.
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit

from xposim._jit import internal_kernel
from xposim.losses.pair import pair_loss
from xposim.numerics import NEG_INF

Frontier = namedtuple(
    "Frontier",
    [
        "lo", "hi", "point",  # (slots, capacity, m) the leaves' boxes and last relaxation points
        "grad", "glog",  # (slots, capacity, m) grad R and grad log S at the point (linear leaves)
        "value", "log_s", "magnitude",  # (slots, capacity) R and log S there, |terms| (NaN value: no linear data)
        "bound",  # (slots, capacity) their proven lower bounds (on the face points of the box)
        "log_top", "log_bottom",  # (slots, capacity) log sum_k e^{x_k(u_k)}, log sum_k e^{x_k(l_k)}
        "meta",  # (slots, 8) int64: owner context (-1: none), size, n, n_edges, pair kind, bonus kind,
        #          relaxations of the last search from the root, relaxations of the last search
        "kind",  # (slots, m) int64 variable kinds of the search
        "kappa", "lw", "lref",  # (slots, m) bonus coefficients, log reference weights, loss reference
        "scalars",  # (slots, 5): K0, beta, pair parameter, lo, hi
        "edge_a", "edge_b",  # (slots, E) int64 the edges of the stored objective
        "edge_w",  # (slots, E)
        "changed",  # (E + m,) int64 scratch: edges and variables changed since
        "change",  # (E + m,) their weight / kappa differences
    ],
)
Frontier.__doc__ = """The leaves of the last certified search of each context slot (module docstring)."""

OWNER, SIZE, N_VARIABLES, N_EDGES, PAIR_KIND, BONUS_KIND, ROOT_NODES, LAST_NODES = range(8)
K0, BETA, PAIR_PARAM, LOWER, UPPER = range(5)


def new_frontier(slots: int, capacity: int, n_max: int, edge_capacity: int) -> Frontier:
    """Memory for ``slots`` contexts' frontiers of up to ``capacity`` leaves over ``n_max`` variables
    (:func:`frontier_bytes`). ``slots = 0``: no frontier (every search starts from the root)."""
    s = max(int(slots), 0)
    cap = max(int(capacity), 1)
    m = max(int(n_max), 1)
    e = max(int(edge_capacity), 1)
    meta = np.zeros((s, 8), dtype=np.int64)
    meta[:, OWNER] = -1
    return Frontier(
        lo=np.zeros((s, cap, m)), hi=np.zeros((s, cap, m)), point=np.zeros((s, cap, m)),
        grad=np.zeros((s, cap, m)), glog=np.zeros((s, cap, m)),
        value=np.zeros((s, cap)), log_s=np.zeros((s, cap)), magnitude=np.zeros((s, cap)), bound=np.zeros((s, cap)),
        log_top=np.zeros((s, cap)), log_bottom=np.zeros((s, cap)),
        meta=meta, kind=np.zeros((s, m), dtype=np.int64),
        kappa=np.zeros((s, m)), lw=np.zeros((s, m)), lref=np.zeros((s, m)), scalars=np.zeros((s, 5)),
        edge_a=np.zeros((s, e), dtype=np.int64), edge_b=np.zeros((s, e), dtype=np.int64), edge_w=np.zeros((s, e)),
        changed=np.zeros(e + m, dtype=np.int64), change=np.zeros(e + m),
    )


def frontier_bytes(slots: int, capacity: int, n_max: int, edge_capacity: int) -> int:
    """Bytes of :func:`new_frontier` with these sizes."""
    s, cap, m, e = max(int(slots), 0), max(int(capacity), 1), max(int(n_max), 1), max(int(edge_capacity), 1)
    return 8 * (s * (5 * cap * m + 6 * cap + 8 + 4 * m + 5 + 3 * e) + 2 * (e + m))


def no_frontier() -> Frontier:
    """A frontier with no slot (:func:`new_frontier` with ``slots = 0``)."""
    return new_frontier(0, 1, 1, 1)


@internal_kernel
def _log_sum_exp_corner(n: int, lw: np.ndarray, corner: np.ndarray, inv_beta: float) -> float:
    """``log sum_k e^{lw_k + corner_k / beta}``."""
    largest = NEG_INF
    for k in range(n):
        x = lw[k] + corner[k] * inv_beta
        if x > largest:
            largest = x
    total = 0.0
    for k in range(n):
        total += math.exp(lw[k] + corner[k] * inv_beta - largest)
    return largest + math.log(total)


@internal_kernel
def record_leaf(fr: Frontier, slot: int, size: int, n: int, lw: np.ndarray, lower: np.ndarray,
                upper: np.ndarray, point: np.ndarray, bound: float, beta: float) -> int:
    """Append the leaf ``[lower, upper]`` with ``bound`` (and ``point``, where its relaxation was last
    minimized: the next search's start) to ``slot``'s frontier; returns the new size (``-1``, sticky,
    once the capacity is exceeded; nothing is stored for ``slot < 0``)."""
    if slot < 0 or size < 0:
        return size
    if size >= fr.lo.shape[1]:
        return -1
    for j in range(n):
        fr.lo[slot, size, j] = lower[j]
        fr.hi[slot, size, j] = upper[j]
        fr.point[slot, size, j] = point[j]
    fr.bound[slot, size] = bound
    fr.value[slot, size] = math.nan
    inv_beta = 1.0 / beta
    fr.log_top[slot, size] = _log_sum_exp_corner(n, lw, upper, inv_beta)
    fr.log_bottom[slot, size] = _log_sum_exp_corner(n, lw, lower, inv_beta)
    return size + 1


@internal_kernel
def record_linear(fr: Frontier, slot: int, size: int, n: int, value: float, log_s: float, grad: np.ndarray,
                  glog: np.ndarray, magnitude: float) -> None:
    """Attach to leaf ``size - 1`` (just recorded) its relaxation's value ``R``, ``log S`` (not centred),
    ``grad R``, ``grad log S`` at its point and the magnitude of their terms: a leaf whose box is the
    relaxation's own box (no reduction), whose bound can then move by the relaxation's change too."""
    if slot < 0 or size <= 0:
        return
    leaf = size - 1
    fr.value[slot, leaf] = value
    fr.log_s[slot, leaf] = log_s
    fr.magnitude[slot, leaf] = magnitude
    for j in range(n):
        fr.grad[slot, leaf, j] = grad[j]
        fr.glog[slot, leaf, j] = glog[j]


@internal_kernel
def _frontier_changes(fr: Frontier, slot: int, owner: int, n: int, lw: np.ndarray, lref: np.ndarray,
                     kind: np.ndarray, kappa: np.ndarray, k0: float, edge_a: np.ndarray, edge_b: np.ndarray,
                     edge_w: np.ndarray, n_edges: int, pair_kind: int, pair_param: float, bonus_kind: int,
                     beta: float, lo: float, hi: float) -> tuple[bool, int, int, float]:
    """Whether ``slot`` holds ``owner``'s frontier for an objective of the same shape (module docstring);
    if so the changes ``F' - F``: edges ``fr.changed[:n_e]`` with weight differences ``fr.change[:n_e]``,
    variables ``fr.changed[n_e:n_e + n_v]`` with kappa differences, and ``dK0``. Returns
    ``(usable, n_e, n_v, dK0)``."""
    if slot < 0 or fr.meta[slot, OWNER] != owner or fr.meta[slot, SIZE] < 0:
        return False, 0, 0, 0.0
    if fr.meta[slot, LAST_NODES] > fr.meta[slot, ROOT_NODES]:  # fragmented: search from the root again
        return False, 0, 0, 0.0
    if (fr.meta[slot, N_VARIABLES] != n or fr.meta[slot, PAIR_KIND] != pair_kind
            or fr.meta[slot, BONUS_KIND] != bonus_kind):
        return False, 0, 0, 0.0
    if (fr.scalars[slot, BETA] != beta or fr.scalars[slot, PAIR_PARAM] != pair_param
            or fr.scalars[slot, LOWER] != lo or fr.scalars[slot, UPPER] != hi):
        return False, 0, 0, 0.0
    for j in range(n):
        if fr.kind[slot, j] != kind[j] or fr.lw[slot, j] != lw[j] or fr.lref[slot, j] != lref[j]:
            return False, 0, 0, 0.0
    n_old = fr.meta[slot, N_EDGES]
    shift = n_edges - n_old
    if shift < 0:
        return False, 0, 0, 0.0
    n_e = 0
    for e in range(n_edges):
        if e < shift:
            dw = edge_w[e]
        else:
            old = e - shift
            if fr.edge_a[slot, old] != edge_a[e] or fr.edge_b[slot, old] != edge_b[e]:
                return False, 0, 0, 0.0
            dw = edge_w[e] - fr.edge_w[slot, old]
        if dw != 0.0 and edge_a[e] != edge_b[e]:
            fr.changed[n_e] = e
            fr.change[n_e] = dw
            n_e += 1
    n_v = 0
    for j in range(n):
        dk = kappa[j] - fr.kappa[slot, j]
        if dk != 0.0:
            fr.changed[n_e + n_v] = j
            fr.change[n_e + n_v] = dk
            n_v += 1
    return True, n_e, n_v, k0 - fr.scalars[slot, K0]


@internal_kernel
def _log_policy_extreme(n: int, j: int, own: float, other_total: float, other_own: float, lw: np.ndarray,
                        other: np.ndarray, inv_beta: float) -> float:
    """``own - log(e^{own} + sum_{k != j} e^{x_k(other_k)})``: ``log pi_j`` at the corner where ``x_j = own``
    and every other variable sits at ``other`` (``other_total = log sum_k e^{x_k(other_k)}``, ``other_own =
    x_j(other_j)``). Uses the stored total unless ``j``'s own term dominates it (cancellation); then sums."""
    r = other_own - other_total  # <= 0: share of j's term in the total
    if r < -0.7:
        rest = other_total + math.log1p(-math.exp(r))
    else:
        largest = NEG_INF
        for k in range(n):
            if k != j:
                x = lw[k] + other[k] * inv_beta
                if x > largest:
                    largest = x
        if largest == NEG_INF:
            return 0.0
        total = 0.0
        for k in range(n):
            if k != j:
                total += math.exp(lw[k] + other[k] * inv_beta - largest)
        rest = largest + math.log(total)
    if own >= rest:
        return -math.log1p(math.exp(rest - own))
    return own - rest - math.log1p(math.exp(own - rest))


@internal_kernel
def _leaf_change_bound(fr: Frontier, slot: int, leaf: int, n: int, lw: np.ndarray, lref: np.ndarray,
                      edge_a: np.ndarray, edge_b: np.ndarray, n_e: int, n_v: int, dk0: float, pair_kind: int,
                      pair_param: float, beta: float) -> tuple[float, float]:
    """A lower bound of ``F' - F`` over leaf ``leaf``'s box (module docstring) and the sum of |terms| (for
    the rounding margin)."""
    inv_beta = 1.0 / beta
    lower = fr.lo[slot, leaf]
    upper = fr.hi[slot, leaf]
    total = dk0
    mag = abs(dk0)
    for i in range(n_e):
        e = fr.changed[i]
        dw = fr.change[i]
        a = edge_a[e]
        b = edge_b[e]
        base_a = lw[a] - lref[a]
        base_b = lw[b] - lref[b]
        # the margin's smallest and largest values over the box (the loss depends on it alone)
        low, d_low, _ = pair_loss(pair_kind, base_a + lower[a] * inv_beta, base_b + upper[b] * inv_beta, beta,
                                  pair_param)
        high, d_high, _ = pair_loss(pair_kind, base_a + upper[a] * inv_beta, base_b + lower[b] * inv_beta, beta,
                                    pair_param)
        if dw > 0.0:
            # convex in the margin: monotone on the range (one derivative sign) -> the smaller end; else >= 0
            if (d_low >= 0.0 and d_high >= 0.0) or (d_low <= 0.0 and d_high <= 0.0):
                extreme = low if low < high else high
            else:
                extreme = 0.0
        else:
            extreme = low if low > high else high
        term = dw * extreme
        total += term
        mag += abs(dw) * (abs(low) + abs(high) + 1.0)
    for i in range(n_v):
        j = fr.changed[n_e + i]
        dk = fr.change[n_e + i]
        x_low = lw[j] + lower[j] * inv_beta
        x_high = lw[j] + upper[j] * inv_beta
        if dk > 0.0:  # smallest log pi_j: v_j at its lower end, the others at their upper ends
            extreme = _log_policy_extreme(n, j, x_low, fr.log_top[slot, leaf], x_high, lw, upper, inv_beta)
        else:  # largest log pi_j
            extreme = _log_policy_extreme(n, j, x_high, fr.log_bottom[slot, leaf], x_low, lw, lower, inv_beta)
        total += dk * extreme
        mag += abs(dk) * (abs(extreme) + abs(x_low) + abs(x_high) + abs(fr.log_top[slot, leaf])
                          + abs(fr.log_bottom[slot, leaf]) + 1.0)
    return total, mag


@internal_kernel
def _linear_change_bound(fr: Frontier, slot: int, leaf: int, n: int, lw: np.ndarray, lref: np.ndarray,
                        edge_a: np.ndarray, edge_b: np.ndarray, n_e: int, n_v: int, dk0: float, pair_kind: int,
                        pair_param: float, beta: float) -> tuple[float, float]:
    """The leaf's bound from its relaxation moved to the new objective, before the rounding margin, and the
    magnitude for that margin (``(-inf, 0)`` for a leaf without a relaxation).

    On the leaf's box the secant relaxation of ``F' = F + Delta`` is ``R' = R + Delta~``, ``Delta~`` the
    change with ``log Z`` replaced by the same secant ``log S`` (``Delta~ = dK0 + sum_e dw_e l_e + sum_j dkappa_j
    x_j - (sum_j dkappa_j) log S``): its value and gradient at the stored point ``p`` follow from the
    changed terms alone, and ``R'`` is convex (``c' > 0``), so ``R'(p) + min_box grad R'(p).(u - p)`` (the
    Frank–Wolfe bound) bounds ``F'`` on the box. The stored value and gradient are moved to ``R'`` in place."""
    value = fr.value[slot, leaf]
    if math.isnan(value):
        return NEG_INF, 0.0
    inv_beta = 1.0 / beta
    point = fr.point[slot, leaf]
    grad = fr.grad[slot, leaf]
    change = dk0
    mag = fr.magnitude[slot, leaf] + abs(dk0)
    width = 0.0
    for j in range(n):
        w = fr.hi[slot, leaf, j] - fr.lo[slot, leaf, j]
        if w > width:
            width = w
    gmag = 0.0
    for i in range(n_e):
        e = fr.changed[i]
        dw = fr.change[i]
        a = edge_a[e]
        b = edge_b[e]
        loss, d_chosen, d_rejected = pair_loss(pair_kind, lw[a] - lref[a] + point[a] * inv_beta,
                                               lw[b] - lref[b] + point[b] * inv_beta, beta, pair_param)
        change += dw * loss
        mag += abs(dw * loss)
        grad[a] += dw * d_chosen * inv_beta
        grad[b] += dw * d_rejected * inv_beta
        gmag += abs(dw * d_chosen * inv_beta) + abs(dw * d_rejected * inv_beta)
    dc = 0.0
    for i in range(n_v):
        j = fr.changed[n_e + i]
        dk = fr.change[n_e + i]
        x = lw[j] + point[j] * inv_beta
        change += dk * x
        mag += abs(dk * x)
        grad[j] += dk * inv_beta
        gmag += abs(dk * inv_beta)
        dc += dk
    change -= dc * fr.log_s[slot, leaf]
    mag += abs(dc * fr.log_s[slot, leaf])
    for j in range(n):
        grad[j] -= dc * fr.glog[slot, leaf, j]
        gmag += abs(dc * fr.glog[slot, leaf, j])
    value += change
    mag += width * gmag
    fr.value[slot, leaf] = value
    fr.magnitude[slot, leaf] = mag
    fw = 0.0
    fw_mag = 0.0
    for j in range(n):
        low = grad[j] * (fr.lo[slot, leaf, j] - point[j])
        high = grad[j] * (fr.hi[slot, leaf, j] - point[j])
        m = low if low < high else high
        fw += m
        fw_mag += abs(m)
    return value + fw, mag + fw_mag


@internal_kernel
def store_shape(fr: Frontier, slot: int, owner: int, size: int, n: int, lw: np.ndarray, lref: np.ndarray,
                kind: np.ndarray, kappa: np.ndarray, k0: float, edge_a: np.ndarray, edge_b: np.ndarray,
                edge_w: np.ndarray, n_edges: int, pair_kind: int, pair_param: float, bonus_kind: int, beta: float,
                lo: float, hi: float, nodes: int, from_root: bool) -> None:
    """Close ``slot``'s frontier of ``size`` leaves (``-1``: overflowed, not kept) with the objective it bounds
    and the search's relaxation count (``from_root``: a search that did not start from a kept one)."""
    if slot < 0:
        return
    if from_root:
        fr.meta[slot, ROOT_NODES] = nodes
    fr.meta[slot, LAST_NODES] = nodes
    if size < 0 or n_edges > fr.edge_w.shape[1] or n > fr.lo.shape[2]:
        fr.meta[slot, OWNER] = -1
        return
    fr.meta[slot, OWNER] = owner
    fr.meta[slot, SIZE] = size
    fr.meta[slot, N_VARIABLES] = n
    fr.meta[slot, N_EDGES] = n_edges
    fr.meta[slot, PAIR_KIND] = pair_kind
    fr.meta[slot, BONUS_KIND] = bonus_kind
    for j in range(n):
        fr.kind[slot, j] = kind[j]
        fr.kappa[slot, j] = kappa[j]
        fr.lw[slot, j] = lw[j]
        fr.lref[slot, j] = lref[j]
    fr.scalars[slot, K0] = k0
    fr.scalars[slot, BETA] = beta
    fr.scalars[slot, PAIR_PARAM] = pair_param
    fr.scalars[slot, LOWER] = lo
    fr.scalars[slot, UPPER] = hi
    for e in range(n_edges):
        fr.edge_a[slot, e] = edge_a[e]
        fr.edge_b[slot, e] = edge_b[e]
        fr.edge_w[slot, e] = edge_w[e]


@njit(cache=True)
def forget(fr: Frontier) -> None:
    """Drop every slot's frontier (the next solve of each context searches from the root)."""
    for s in range(fr.meta.shape[0]):
        fr.meta[s, OWNER] = -1


# ------------------------------------------------------------------ entry points for tests and users
# (the search calls the internal kernels above; these wrappers are compiled only when called from Python)
@njit(cache=True)
def frontier_changes(fr: Frontier, slot: int, owner: int, n: int, lw: np.ndarray, lref: np.ndarray,
                     kind: np.ndarray, kappa: np.ndarray, k0: float, edge_a: np.ndarray, edge_b: np.ndarray,
                     edge_w: np.ndarray, n_edges: int, pair_kind: int, pair_param: float, bonus_kind: int,
                     beta: float, lo: float, hi: float) -> tuple[bool, int, int, float]:
    """:func:`_frontier_changes` (whether the kept search is usable, and the round's changes)."""
    return _frontier_changes(fr, slot, owner, n, lw, lref, kind, kappa, k0, edge_a, edge_b, edge_w, n_edges,
                             pair_kind, pair_param, bonus_kind, beta, lo, hi)


@njit(cache=True)
def leaf_change_bound(fr: Frontier, slot: int, leaf: int, n: int, lw: np.ndarray, lref: np.ndarray,
                      edge_a: np.ndarray, edge_b: np.ndarray, n_e: int, n_v: int, dk0: float, pair_kind: int,
                      pair_param: float, beta: float) -> tuple[float, float]:
    """:func:`_leaf_change_bound` (the least change on a leaf's box, term by term)."""
    return _leaf_change_bound(fr, slot, leaf, n, lw, lref, edge_a, edge_b, n_e, n_v, dk0, pair_kind, pair_param,
                              beta)


@njit(cache=True)
def linear_change_bound(fr: Frontier, slot: int, leaf: int, n: int, lw: np.ndarray, lref: np.ndarray,
                        edge_a: np.ndarray, edge_b: np.ndarray, n_e: int, n_v: int, dk0: float, pair_kind: int,
                        pair_param: float, beta: float) -> tuple[float, float]:
    """:func:`_linear_change_bound` (a kept relaxation moved to the new objective)."""
    return _linear_change_bound(fr, slot, leaf, n, lw, lref, edge_a, edge_b, n_e, n_v, dk0, pair_kind,
                                pair_param, beta)


__all__ = ["Frontier", "new_frontier", "no_frontier", "frontier_bytes", "forget"]
