"""Numbering of states and trajectories of a full ``A``-ary tree of depth ``H``.

One convention, used everywhere in xposim (environments, solver, learners, LM path):

* Per context, the *states* are the prefixes ``(a_1..a_h)`` with ``0 <= h < H``, numbered
  breadth-first with children in token order. The prefix ``(a_1..a_h)`` has index
  ``level_start(h) + sum_i a_i A^(h-i)`` with ``level_start(h) = (A^h - 1) / (A - 1)``.
  The root (empty prefix, the prompt itself) is state 0 and there are
  ``n_states = (A^H - 1) / (A - 1)`` states.
* Taking token ``a`` in state ``s`` leads to node ``A*s + 1 + a`` (heap numbering). When that
  number is ``>= n_states`` the node is a *leaf* (a complete response) with leaf index
  ``A*s + 1 + a - n_states``.
* A *trajectory* (leaf) ``(a_1..a_H)`` is numbered by the base-``A`` integer
  ``sum_i a_i A^(H-i)``; leaves ``0..A^H - 1`` are in lexicographic token order.
* The states of depth ``h`` occupy the contiguous block
  ``[level_start(h), level_start(h+1))``, so an array of shape ``(..., n_states, A)`` restricted to
  depth ``h`` reshapes to ``(..., A^h, A)`` and its children block (depth ``h+1``, or the leaves
  when ``h = H-1``) reshapes to the same shape. The exact solver does one pass per level.

The contextual bandit is ``H = 1``: one state (the prompt) and ``A`` leaves (the arms).
"""
from __future__ import annotations

import numpy as np

#: Largest number of ``(context, state, token)`` entries a tree may have before enumeration is
#: refused (one float64 array of this size is 800 MB).
MAX_TREE_ENTRIES = 100_000_000


def _check_shape_args(vocab_size: int, horizon: int) -> None:
    if int(vocab_size) != vocab_size or vocab_size < 2:
        raise ValueError(f"vocab_size must be an integer >= 2, got {vocab_size!r}")
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")


def n_states(vocab_size: int, horizon: int) -> int:
    """Number of internal states ``(A^H - 1)/(A - 1)`` (prefixes of length ``0..H-1``)."""
    _check_shape_args(vocab_size, horizon)
    return (vocab_size**horizon - 1) // (vocab_size - 1)


def n_leaves(vocab_size: int, horizon: int) -> int:
    """Number of trajectories (leaves) ``A^H``."""
    _check_shape_args(vocab_size, horizon)
    return vocab_size**horizon


def level_start(vocab_size: int, depth: int) -> int:
    """Index of the first state of depth ``depth``: ``(A^depth - 1)/(A - 1)``."""
    return (vocab_size**depth - 1) // (vocab_size - 1)


def check_enumerable(n_contexts: int, vocab_size: int, horizon: int, limit: int = MAX_TREE_ENTRIES) -> None:
    """Raise ``ValueError`` if the tree is too large to hold as ``(n_contexts, n_states, A)`` arrays."""
    _check_shape_args(vocab_size, horizon)
    entries = n_contexts * n_states(vocab_size, horizon) * vocab_size
    if entries > limit:
        raise ValueError(
            f"tree too large to enumerate: n_contexts={n_contexts}, vocab_size={vocab_size}, "
            f"horizon={horizon} needs {entries:,} (context, state, token) entries "
            f"({n_leaves(vocab_size, horizon):,} leaves per context); the limit is {limit:,}"
        )


def state_index(prefix, vocab_size: int) -> int:
    """Index of the state reached after the token prefix ``(a_1..a_h)`` (``h < H``)."""
    h = len(prefix)
    index = level_start(vocab_size, h)
    offset = 0
    for a in prefix:
        if not 0 <= int(a) < vocab_size:
            raise ValueError(f"token {a!r} in prefix is outside [0, {vocab_size})")
        offset = offset * vocab_size + int(a)
    return index + offset


def state_prefix(index: int, vocab_size: int) -> tuple[int, ...]:
    """Inverse of :func:`state_index`: the token prefix of state ``index``."""
    if index < 0:
        raise ValueError(f"state index must be >= 0, got {index}")
    depth = 0
    while level_start(vocab_size, depth + 1) <= index:
        depth += 1
    offset = index - level_start(vocab_size, depth)
    return tuple(int(t) for t in np.unravel_index(offset, (vocab_size,) * depth)) if depth else ()


def leaf_index(tokens, vocab_size: int) -> int:
    """Index of the trajectory ``(a_1..a_H)``: the base-``A`` integer of its tokens."""
    index = 0
    for a in tokens:
        if not 0 <= int(a) < vocab_size:
            raise ValueError(f"token {a!r} is outside [0, {vocab_size})")
        index = index * vocab_size + int(a)
    return index


def leaf_tokens(vocab_size: int, horizon: int) -> np.ndarray:
    """All trajectories as an ``(A^H, H)`` int array, row ``k`` being leaf ``k``."""
    k = np.arange(n_leaves(vocab_size, horizon), dtype=np.int64)
    powers = vocab_size ** np.arange(horizon - 1, -1, -1, dtype=np.int64)
    return (k[:, None] // powers[None, :]) % vocab_size


def leaf_path_states(vocab_size: int, horizon: int) -> np.ndarray:
    """``(A^H, H)`` int array: the state visited at each depth along every trajectory.

    Row ``k``, column ``h`` is the index of the prefix ``(a_1..a_h)`` of leaf ``k``; with
    :func:`leaf_tokens` this gathers per-token quantities along every trajectory at once.
    """
    tokens = leaf_tokens(vocab_size, horizon)
    out = np.empty_like(tokens)
    offset = np.zeros(tokens.shape[0], dtype=np.int64)
    for h in range(horizon):
        out[:, h] = level_start(vocab_size, h) + offset
        offset = offset * vocab_size + tokens[:, h]
    return out
