"""Bradley–Terry maximum likelihood on pair-count sufficient statistics, by warm-started Newton.

**Sufficient statistics.** A learner's data are labelled pairs ``(x, i, j)``; the log-likelihood
depends on them only through, per distinct unordered pair ``{i < j}`` of a context, the number
of comparisons ``n`` and the number ``w`` that ``i`` won. :class:`PairTable` stores these counts
(an open-addressing hash table from ``(x, i, j)`` to a row, per block a linked list of its rows)
over *items*, the distinct ``(x, leaf)`` that appear in the data (per block a linked list too).
Since ``s_p = <theta, phi_a - phi_b> = r(a) - r(b)``, a pass over the data costs
``O(items * d + pairs)`` (the rewards of the items, then one scalar per pair) and the Hessian
``O(pairs * d + items * d^2)`` (``Phi^T (Laplacian Phi)``), however often pairs repeat.

**Objective** (one block, ``z_p = phi(x_p, i_p) - phi(x_p, j_p)``, ``s_p = <theta, z_p>``)::

    F(theta) = sum_p [ n_p softplus(s_p) - w_p s_p ] + (lambda / 2) ||theta||^2

the negative log-likelihood of ``P(i beats j) = sigma(r(i) - r(j))`` plus a ridge; strictly
convex, so its minimizer (the MLE) is unique.

**Solver** (:func:`newton_block`): Newton's method from the previous round's ``theta`` (warm
start). Its first step uses a *predicted* gradient, the previous solve's residual taken as 0 plus
the terms of the comparisons added since (no pass over the data); every later step uses the
exact gradient, and only an exact step can end the solve. The Newton matrix is kept as a Cholesky factor ``C`` of
``H = lambda I + sum_p n_p sigma'(s_p) z_p z_p^T``: every new comparison adds its term by a
rank-one update of ``C`` at the curvature of the current ``theta`` (``O(d^2)``), and ``C`` is
refactored from scratch at the current iterate (a *refresh*) when an iteration contracts the step
by less than ``SLOW_CONTRACTION`` or needed a line search. Steps are damped by a backtracking
(Armijo) line search when the Newton decrement ``g^T H^{-1} g`` exceeds ``1e-4``. The solve stops
when ``max |step| <= tolerance``, or when the observed contraction predicts the next step below
it (the step is applied either way): whatever ``C``'s age, the fixed point is ``grad F = 0``, the
exact MLE.
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit

from xposim._jit import internal_kernel
from xposim.learners.reward_models.linalg import (
    arm_dot,
    cholesky_into,
    cholesky_rank_one_update,
    cholesky_solve,
    z_axpy,
    z_dot,
    z_into,
)
from xposim.numerics import sigmoid, softplus

#: Newton decrement above which a step is damped by the line search (below it full steps are taken).
LINE_SEARCH_DECREMENT = 1e-4
#: Armijo constant and the largest number of step halvings of the line search.
ARMIJO = 1e-4
MAX_HALVINGS = 60
#: A refresh is triggered when a step is larger than this fraction of the previous one. Measured on
#: linear_bandit(16, 1024) (passive, CoLSTIM; per-round cost at t = 10^4): 0.05 left the rank-one-updated
#: matrix contracting at ~0.03 (3-4 passes over the data per round), 0.002 gives ~2 passes and a refresh
#: every few rounds early, rarely later (25-30% cheaper rounds at t = 10^4).
SLOW_CONTRACTION = 0.002

PairTable = namedtuple(
    "PairTable",
    [
        "pair_a",  # (P,) int64 item of the smaller leaf of row p
        "pair_b",  # (P,) int64 item of the larger leaf
        "pair_n",  # (P,) float64 comparisons of the pair
        "pair_w",  # (P,) float64 wins of the smaller leaf
        "pair_next",  # (P,) int64 next row of the same block, -1 at the end
        "block_head",  # (n_blocks,) int64 first row of the block, -1 if empty
        "block_tail",  # (n_blocks,) int64 last row of the block
        "item_x",  # (I,) int64 context of item k
        "item_leaf",  # (I,) int64 leaf of item k
        "item_next",  # (I,) int64 next item of the same block, -1 at the end
        "item_head",  # (n_blocks,) int64
        "item_tail",  # (n_blocks,) int64
        "item_of",  # (nc, L) int64 item of (x, leaf), -1 if none
        "item_value",  # (I,) scratch: <theta, phi> of the items
        "item_coef",  # (I,) scratch: per-item gradient / Laplacian coefficients
        "item_rows",  # (I, d) scratch of the dense Hessian (one-hot: (1, 1))
        "keys",  # (S,) int64 hash slots: key (x L + i) L + j, -1 empty
        "rows",  # (S,) int64 row of the key in the slot
        "counts",  # (2,) int64 rows used, items used
    ],
)
PairTable.__doc__ = """Pair-count sufficient statistics of the Bradley–Terry MLE (module docstring)."""


def _next_prime(n: int) -> int:
    candidate = max(3, n) | 1
    while any(candidate % k == 0 for k in range(3, int(candidate ** 0.5) + 1, 2)):
        candidate += 2
    return candidate


def new_pair_table(capacity: int, n_blocks: int, n_contexts: int, n_leaves: int, d: int, onehot: bool) -> PairTable:
    """An empty table for up to ``capacity`` distinct pairs (hash slots: a prime ``>= 2 capacity``)."""
    capacity = max(1, int(capacity))
    items = max(1, min(2 * capacity, n_contexts * n_leaves))
    slots = _next_prime(2 * capacity + 1)
    return PairTable(
        pair_a=np.zeros(capacity, dtype=np.int64), pair_b=np.zeros(capacity, dtype=np.int64),
        pair_n=np.zeros(capacity), pair_w=np.zeros(capacity), pair_next=np.full(capacity, -1, dtype=np.int64),
        block_head=np.full(n_blocks, -1, dtype=np.int64), block_tail=np.full(n_blocks, -1, dtype=np.int64),
        item_x=np.zeros(items, dtype=np.int64), item_leaf=np.zeros(items, dtype=np.int64),
        item_next=np.full(items, -1, dtype=np.int64), item_head=np.full(n_blocks, -1, dtype=np.int64),
        item_tail=np.full(n_blocks, -1, dtype=np.int64), item_of=np.full((n_contexts, n_leaves), -1, dtype=np.int64),
        item_value=np.zeros(items), item_coef=np.zeros(items),
        item_rows=np.zeros((1, 1)) if onehot else np.zeros((items, d)),
        keys=np.full(slots, -1, dtype=np.int64), rows=np.full(slots, -1, dtype=np.int64),
        counts=np.zeros(2, dtype=np.int64),
    )


def table_bytes(capacity: int, n_blocks: int, n_contexts: int, n_leaves: int, d: int, onehot: bool) -> int:
    """Bytes of :func:`new_pair_table` (for memory checks)."""
    capacity = max(1, capacity)
    items = max(1, min(2 * capacity, n_contexts * n_leaves))
    return 8 * (5 * capacity + 2 * (2 * capacity + 3) + 5 * items + (0 if onehot else items * d)
                + n_contexts * n_leaves + 4 * n_blocks + 2)


@internal_kernel
def _append(head: np.ndarray, tail: np.ndarray, next_of: np.ndarray, block: int, element: int) -> None:
    """Append ``element`` to the singly linked list of ``block`` (``head``/``tail`` per block, -1 = none)."""
    next_of[element] = -1
    last = tail[block]
    if last < 0:
        head[block] = element
    else:
        next_of[last] = element
    tail[block] = element


@internal_kernel
def _item(table: PairTable, block: int, x: int, leaf: int) -> int:
    item = table.item_of[x, leaf]
    if item >= 0:
        return item
    item = table.counts[1]
    table.counts[1] = item + 1
    table.item_of[x, leaf] = item
    table.item_x[item] = x
    table.item_leaf[item] = leaf
    _append(table.item_head, table.item_tail, table.item_next, block, item)
    return item


@njit(cache=True)
def table_add(table: PairTable, block: int, x: int, i: int, j: int, first_wins: bool) -> int:
    """Count one comparison of leaves ``i != j`` of context ``x`` (``first_wins``: ``i`` won).

    Stored under the ordered pair ``(min, max)``; ``pair_w`` counts the wins of the smaller leaf.
    Returns the row. ``ValueError`` if the table is full (its capacity is the number of distinct
    pairs the run can produce, so this means a caller error).
    """
    lo = i if i < j else j
    hi = j if i < j else i
    lo_wins = first_wins if i == lo else not first_wins
    n_leaves = table.item_of.shape[1]
    key = (x * n_leaves + lo) * n_leaves + hi
    size = table.keys.shape[0]
    slot = key % size
    while True:
        stored = table.keys[slot]
        if stored == key:
            row = table.rows[slot]
            break
        if stored < 0:
            row = table.counts[0]
            if row >= table.pair_a.shape[0]:
                raise ValueError("pair table is full (capacity below the number of distinct pairs)")
            table.keys[slot] = key
            table.rows[slot] = row
            table.counts[0] = row + 1
            table.pair_a[row] = _item(table, block, x, lo)
            table.pair_b[row] = _item(table, block, x, hi)
            table.pair_n[row] = 0.0
            table.pair_w[row] = 0.0
            _append(table.block_head, table.block_tail, table.pair_next, block, row)
            break
        slot += 1
        if slot == size:
            slot = 0
    table.pair_n[row] += 1.0
    if lo_wins:
        table.pair_w[row] += 1.0
    return row


@internal_kernel
def _item_values(table: PairTable, block: int, theta: np.ndarray, features: np.ndarray, onehot: bool) -> None:
    """``item_value[k] = <theta, phi(item k)>`` for the items of the block."""
    k = table.item_head[block]
    while k >= 0:
        table.item_value[k] = arm_dot(features, onehot, table.item_x[k], table.item_leaf[k], theta)
        k = table.item_next[k]


@internal_kernel
def _gradient(table: PairTable, block: int, theta: np.ndarray, features: np.ndarray, onehot: bool, ridge: float,
              gradient: np.ndarray) -> None:
    """``gradient = grad F(theta)`` of the block: per-item coefficients, then ``sum_k coef_k phi_k``."""
    _item_values(table, block, theta, features, onehot)
    k = table.item_head[block]
    while k >= 0:
        table.item_coef[k] = 0.0
        k = table.item_next[k]
    p = table.block_head[block]
    while p >= 0:
        a = table.pair_a[p]
        b = table.pair_b[p]
        c = table.pair_n[p] * sigmoid(table.item_value[a] - table.item_value[b]) - table.pair_w[p]
        table.item_coef[a] += c
        table.item_coef[b] -= c
        p = table.pair_next[p]
    d = theta.shape[0]
    for e in range(d):
        gradient[e] = ridge * theta[e]
    k = table.item_head[block]
    while k >= 0:
        c = table.item_coef[k]
        if onehot:
            gradient[table.item_leaf[k]] += c
        else:
            x = table.item_x[k]
            leaf = table.item_leaf[k]
            for e in range(d):
                gradient[e] += c * features[x, leaf, e]
        k = table.item_next[k]


@njit(cache=True)
def objective(table: PairTable, block: int, theta: np.ndarray, features: np.ndarray, onehot: bool,
              ridge: float) -> float:
    """``F(theta)`` of the block (module docstring)."""
    _item_values(table, block, theta, features, onehot)
    total = 0.0
    for e in range(theta.shape[0]):
        total += theta[e] * theta[e]
    total *= 0.5 * ridge
    p = table.block_head[block]
    while p >= 0:
        s = table.item_value[table.pair_a[p]] - table.item_value[table.pair_b[p]]
        total += table.pair_n[p] * softplus(s) - table.pair_w[p] * s
        p = table.pair_next[p]
    return total


@njit(cache=True)
def gradient(table: PairTable, block: int, theta: np.ndarray, features: np.ndarray, onehot: bool, ridge: float,
             out: np.ndarray) -> None:
    """``out = grad F(theta)`` of the block (module docstring)."""
    _gradient(table, block, theta, features, onehot, ridge, out)


@njit(cache=True)
def hessian_into(table: PairTable, block: int, theta: np.ndarray, features: np.ndarray, onehot: bool, ridge: float,
                 out: np.ndarray) -> None:
    """``out = lambda I + sum_p n_p sigma'(s_p) z_p z_p^T`` at ``theta``: one-hot four entries per pair;
    dense ``Phi^T (L Phi)`` with the weighted Laplacian ``L`` of the comparison graph on the items."""
    d = theta.shape[0]
    _item_values(table, block, theta, features, onehot)
    for a in range(d):
        for b in range(d):
            out[a, b] = 0.0
        out[a, a] = ridge
    if not onehot:
        k = table.item_head[block]
        while k >= 0:
            for e in range(d):
                table.item_rows[k, e] = 0.0
            k = table.item_next[k]
    p = table.block_head[block]
    while p >= 0:
        a = table.pair_a[p]
        b = table.pair_b[p]
        s = table.item_value[a] - table.item_value[b]
        weight = table.pair_n[p] * sigmoid(s) * sigmoid(-s)
        if onehot:
            i = table.item_leaf[a]
            j = table.item_leaf[b]
            out[i, i] += weight
            out[j, j] += weight
            out[i, j] -= weight
            out[j, i] -= weight
        else:
            x = table.item_x[a]
            i = table.item_leaf[a]
            j = table.item_leaf[b]
            for e in range(d):
                diff = weight * (features[x, i, e] - features[x, j, e])
                table.item_rows[a, e] += diff
                table.item_rows[b, e] -= diff
        p = table.pair_next[p]
    if not onehot:
        k = table.item_head[block]
        while k >= 0:
            x = table.item_x[k]
            leaf = table.item_leaf[k]
            for e in range(d):
                fe = features[x, leaf, e]
                for f in range(e + 1):
                    out[e, f] += fe * table.item_rows[k, f]
            k = table.item_next[k]
        for e in range(d):
            for f in range(e):
                out[f, e] = out[e, f]


@njit(cache=True)
def add_curvature(factor: np.ndarray, theta: np.ndarray, features: np.ndarray, onehot: bool, x: int, i: int, j: int,
                  v: np.ndarray) -> None:
    """Add one comparison of ``(i, j)`` to the Newton matrix: ``C <- chol(C C^T + sigma'(s) z z^T)`` at
    ``s = <theta, z>`` (``v``: scratch ``(d,)``)."""
    s = z_dot(features, onehot, x, i, j, theta)
    z_into(features, onehot, x, i, j, math.sqrt(sigmoid(s) * sigmoid(-s)), v)
    cholesky_rank_one_update(factor, v)


@njit(cache=True)
def add_gradient(gradient: np.ndarray, theta: np.ndarray, features: np.ndarray, onehot: bool, x: int, i: int, j: int,
                 first_wins: bool) -> None:
    """``gradient +=`` the term of one comparison of ``(i, j)`` at ``theta``:
    ``(sigma(s) - 1[i won]) z`` with ``z = phi(x, i) - phi(x, j)``, ``s = <theta, z>``."""
    s = z_dot(features, onehot, x, i, j, theta)
    c = sigmoid(s) - (1.0 if first_wins else 0.0)
    z_axpy(features, onehot, x, i, j, c, gradient)


@internal_kernel
def _max_abs(v: np.ndarray) -> float:
    m = 0.0
    for a in range(v.shape[0]):
        if abs(v[a]) > m:
            m = abs(v[a])
    return m


@njit(cache=True)
def refresh_factor(table: PairTable, block: int, theta: np.ndarray, factor: np.ndarray, features: np.ndarray,
                   onehot: bool, ridge: float, hessian: np.ndarray) -> bool:
    """Refactor the Newton matrix at ``theta`` (the exact Hessian); ``False`` if Cholesky failed."""
    hessian_into(table, block, theta, features, onehot, ridge, hessian)
    return cholesky_into(hessian, factor)


@njit(cache=True)
def newton_block(table: PairTable, block: int, theta: np.ndarray, factor: np.ndarray, features: np.ndarray,
                 onehot: bool, ridge: float, tolerance: float, max_iterations: int, work: np.ndarray,
                 hessian: np.ndarray, predicted: bool) -> tuple[bool, int, int]:
    """Minimize ``F`` of ``block`` from ``theta`` (in place) with the Newton factor ``factor`` (in place).

    ``work``: scratch ``(4, d)``; ``hessian``: scratch ``(d, d)``. ``predicted``: ``work[0]`` already
    holds a prediction of the gradient at ``theta`` (the previous solve's residual taken as 0 plus
    the terms of the comparisons added since, :func:`add_gradient`): the first step uses it and
    every later one the exact gradient (a pass over the data), and only an exact step can stop the
    solve. Returns ``(converged, iterations, refreshes)``; not converged means ``max_iterations``
    steps were taken without reaching the tolerance (``theta`` is then the last iterate).
    """
    g = work[0]
    step = work[1]
    trial = work[2]
    d = theta.shape[0]
    exact = not predicted
    if exact:
        _gradient(table, block, theta, features, onehot, ridge, g)
    previous = math.inf
    iterations = 0
    refreshes = 0
    must_refresh = False
    while True:
        cholesky_solve(factor, g, step)
        norm = _max_abs(step)
        if not exact:  # the predicted step: take it, then continue from the exact gradient
            for a in range(d):
                theta[a] -= step[a]
            _gradient(table, block, theta, features, onehot, ridge, g)
            exact = True
            continue
        if norm > tolerance and (must_refresh or (iterations > 0 and norm > SLOW_CONTRACTION * previous)):
            if refresh_factor(table, block, theta, factor, features, onehot, ridge, hessian):
                refreshes += 1
                cholesky_solve(factor, g, step)
                norm = _max_abs(step)
            must_refresh = False
        # stop at a step below the tolerance, or one whose successor the contraction so far puts below it
        if norm <= tolerance or (iterations > 0 and norm * norm <= tolerance * previous):
            for a in range(d):
                theta[a] -= step[a]
            return True, iterations, refreshes
        if iterations >= max_iterations:
            return False, iterations, refreshes
        decrement = 0.0
        for a in range(d):
            decrement += g[a] * step[a]
        size = 1.0
        if decrement > LINE_SEARCH_DECREMENT:
            start = objective(table, block, theta, features, onehot, ridge)
            for _ in range(MAX_HALVINGS):
                for a in range(d):
                    trial[a] = theta[a] - size * step[a]
                if objective(table, block, trial, features, onehot, ridge) <= start - ARMIJO * size * decrement:
                    break
                size *= 0.5
            must_refresh = size < 1.0
        for a in range(d):
            theta[a] -= size * step[a]
        _gradient(table, block, theta, features, onehot, ridge, g)
        previous = norm
        iterations += 1


__all__ = ["PairTable", "new_pair_table", "table_add", "objective", "gradient", "hessian_into", "add_curvature",
           "refresh_factor", "newton_block", "table_bytes", "add_gradient"]
