"""The pair store: sufficient statistics of the preference data.

:class:`PairStore` holds the sufficient statistics of the preference data: per context, the
distinct ordered pairs ``(chosen slot, rejected slot)`` with their counts (``W[x, i, j]`` stored
sparsely: a hash index plus one linked list of edges per context). Pairs of a leaf with itself
are never stored: every pair loss of xposim is constant with zero gradient on them.
Per-slot bonus counts and appearance counts live in the engine state.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

from xposim.policies.segment_tree import tree_size


PairStore = namedtuple(
    "PairStore",
    [
        "hash_keys",  # (H,) int64 key (x*L + chosen)*L + rejected, -1 empty
        "hash_edges",  # (H,) int64 edge id of the key
        "edge_context",  # (E,) int64
        "edge_chosen",  # (E,) int64 chosen slot
        "edge_rejected",  # (E,) int64 rejected slot
        "edge_weight",  # (E,) float64 count
        "edge_next",  # (E,) int64 next edge of the same context, -1 ends
        "context_head",  # (nc,) int64 first edge of the context, -1 none
        "context_edges",  # (nc,) int64 number of distinct edges of the context
        "n_edges",  # (1,) int64
        "n_leaves",  # (1,) int64 L (key base)
    ],
)
PairStore.__doc__ = """Sparse pair counts ``W[x, chosen, rejected]`` (module docstring)."""


def new_store(n_contexts: int, n_leaves: int, capacity: int) -> PairStore:
    """An empty :class:`PairStore` holding up to ``capacity`` distinct pairs (all contexts)."""
    capacity = max(int(capacity), 1)
    hash_size = tree_size(2 * capacity + 1)
    return PairStore(
        hash_keys=np.full(hash_size, -1, dtype=np.int64),
        hash_edges=np.full(hash_size, -1, dtype=np.int64),
        edge_context=np.zeros(capacity, dtype=np.int64),
        edge_chosen=np.zeros(capacity, dtype=np.int64),
        edge_rejected=np.zeros(capacity, dtype=np.int64),
        edge_weight=np.zeros(capacity),
        edge_next=np.full(capacity, -1, dtype=np.int64),
        context_head=np.full(n_contexts, -1, dtype=np.int64),
        context_edges=np.zeros(n_contexts, dtype=np.int64),
        n_edges=np.zeros(1, dtype=np.int64),
        n_leaves=np.array([n_leaves], dtype=np.int64),
    )


@njit(cache=True)
def store_add_pair(store: PairStore, x: int, chosen: int, rejected: int, weight: float) -> int:
    """Add ``weight`` to the count of the ordered pair ``(chosen, rejected)`` of context ``x`` (slots).

    Returns the edge id, or -1 for a self-pair (not stored: constant loss, zero gradient) or when
    the store is full (the caller sized it for every pair of the run, so this is a bug).
    """
    if chosen == rejected:
        return -1
    n = store.n_leaves[0]
    key = (x * n + chosen) * n + rejected
    mask = store.hash_keys.shape[0] - 1
    h = (key ^ (key >> 16)) & mask
    while True:
        k = store.hash_keys[h]
        if k == key:
            edge = store.hash_edges[h]
            store.edge_weight[edge] += weight
            return edge
        if k == -1:
            break
        h = (h + 1) & mask
    edge = store.n_edges[0]
    if edge >= store.edge_weight.shape[0]:
        return -1
    store.hash_keys[h] = key
    store.hash_edges[h] = edge
    store.edge_context[edge] = x
    store.edge_chosen[edge] = chosen
    store.edge_rejected[edge] = rejected
    store.edge_weight[edge] = weight
    store.edge_next[edge] = store.context_head[x]
    store.context_head[x] = edge
    store.context_edges[x] += 1
    store.n_edges[0] = edge + 1
    return edge


@njit(cache=True)
def store_gather(store: PairStore, x: int, out_chosen: np.ndarray, out_rejected: np.ndarray,
                 out_weight: np.ndarray) -> int:
    """Copy the edges of context ``x`` (most recent first) into the ``out_*`` arrays; returns their number."""
    edge = store.context_head[x]
    i = 0
    while edge >= 0:
        out_chosen[i] = store.edge_chosen[edge]
        out_rejected[i] = store.edge_rejected[edge]
        out_weight[i] = store.edge_weight[edge]
        i += 1
        edge = store.edge_next[edge]
    return i
