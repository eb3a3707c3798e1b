"""Selection among minimizers: the component shift closest to the warm start.

Selection among minimizers. ``f -> f + c`` (all leaves, ``g`` included) never changes ``pi_f``;
the Newton steps do not move along this direction. With no active bonus (``alpha = 0`` or no
bonus) and a margin pair loss (DPO, IPO) the objective depends only on differences inside each
connected component of the comparison graph, so each component can be shifted freely inside
the box: the argmin is a set. Rule: among the minimizers, the one whose component means are
closest to the warm start (previous round's values), i.e. each component is shifted by
``clip(mean(v_warm - v), lo - min v, hi - max v)``; leaves in no pair (and ``g``) keep their
values. Initial values: ``f = R_max / 2`` everywhere (``pi_f = pi_ref``).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from xposim._jit import internal_kernel
from xposim.policies.tabular.state import Workspace


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
