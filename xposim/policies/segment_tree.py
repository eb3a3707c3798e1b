"""Log-domain segment trees over the leaves of a context (sampling and subtree masses in ``O(log L)``).

A tree of ``P`` leaves (a power of two) is an array of length ``2P``: node ``i`` has children
``2i`` and ``2i+1``, leaf ``j`` sits at ``P + j``; each node holds the log-sum-exp of its leaves,
``-inf`` for removed leaves and padding.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from xposim.numerics import NEG_INF, ONE_MINUS, logaddexp


def tree_size(n_leaves: int) -> int:
    """Number of segment-tree leaves ``P``: the smallest power of two ``>= n_leaves``."""
    size = 1
    while size < n_leaves:
        size *= 2
    return size


@njit(cache=True)
def tree_build(tree: np.ndarray, leaf_values: np.ndarray) -> None:
    """Fill the log-domain sum tree ``tree (2P,)`` (heap order, root 1) from ``leaf_values (L,)``."""
    size = tree.shape[0] // 2
    n = leaf_values.shape[0]
    tree[0] = NEG_INF
    for i in range(size):
        tree[size + i] = leaf_values[i] if i < n else NEG_INF
    for node in range(size - 1, 0, -1):
        tree[node] = logaddexp(tree[2 * node], tree[2 * node + 1])


@njit(cache=True)
def tree_remove(tree: np.ndarray, leaf: int) -> None:
    """Set ``leaf`` to ``-inf`` and recompute its ancestors from their children (no cancellation)."""
    size = tree.shape[0] // 2
    node = size + leaf
    tree[node] = NEG_INF
    node //= 2
    while node >= 1:
        tree[node] = logaddexp(tree[2 * node], tree[2 * node + 1])
        node //= 2


@njit(cache=True)
def tree_range(tree: np.ndarray, lo: int, hi: int) -> float:
    """``log sum_{lo <= i < hi} exp(leaf_i)`` in ``O(log P)``."""
    size = tree.shape[0] // 2
    result = NEG_INF
    left = lo + size
    right = hi + size
    while left < right:
        if left & 1:
            result = logaddexp(result, tree[left])
            left += 1
        if right & 1:
            right -= 1
            result = logaddexp(result, tree[right])
        left //= 2
        right //= 2
    return result


@njit(cache=True)
def tree_sample(tree: np.ndarray, u: float) -> int:
    """Inverse-CDF draw of a leaf with probability ``exp(leaf_i - root)`` from ``u in [0, 1)``.

    Descends from the root, rescaling ``u`` at each level; returns -1 if the tree is empty.
    """
    size = tree.shape[0] // 2
    if tree[1] == NEG_INF:
        return -1
    node = 1
    while node < size:
        left = tree[2 * node]
        right = tree[2 * node + 1]
        if right == NEG_INF:
            node = 2 * node
            continue
        if left == NEG_INF:
            node = 2 * node + 1
            continue
        p_left = math.exp(left - tree[node])
        if u < p_left:
            node = 2 * node
            u = u / p_left
        else:
            node = 2 * node + 1
            u = (u - p_left) / (1.0 - p_left) if p_left < 1.0 else 0.0
        if u >= 1.0:
            u = ONE_MINUS
        if u < 0.0:
            u = 0.0
    return node - size
