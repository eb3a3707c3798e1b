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

import math

import numpy as np

from xposim.resources import available_memory, check_memory, format_bytes

#: An explicit cap on ``(context, state, token)`` entries that callers may pass as
#: ``check_enumerable(..., limit=MAX_TREE_ENTRIES)`` (one float64 array of this size is 800 MB).
#: The default check is by memory: :func:`check_enumerable` compares the bytes a request needs
#: with the memory the machine has available.
MAX_TREE_ENTRIES = 100_000_000

#: Peak memory of building a :class:`~xposim.envs.TokenMDP` (library functions included), in
#: units of one per-token float64 array ``n_contexts * n_states * A * 8`` bytes. Measured with
#: tracemalloc: 3.5 to 4.3 for ``random_token_mdp`` and ``needle`` on A = 2..4 (it was 18 to 56
#: before building stopped gathering along ``(n_leaves, H)`` index arrays; checked by
#: ``tests/test_envs.py::test_building_costs_a_small_multiple_of_one_array``); 5 leaves room.
BUILD_PER_TOKEN_ARRAYS = 5

#: Requests below this many bytes skip the memory check (reading ``/proc/meminfo`` costs more).
SMALL_REQUEST_BYTES = 16 << 20

#: Sizes with more decimal digits than this are described by their logarithm only (no exact integer).
_EXACT_DIGITS = 15


def _check_shape_args(vocab_size: int, horizon: int) -> None:
    if isinstance(vocab_size, (bool, np.bool_)) or int(vocab_size) != vocab_size or vocab_size < 2:
        raise ValueError(f"vocab_size must be an integer >= 2, got {vocab_size!r}")
    if isinstance(horizon, (bool, np.bool_)) or int(horizon) != horizon or horizon < 1:
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


def log10_entries(n_contexts: int, vocab_size: int, horizon: int) -> float:
    """``log10(n_contexts * n_states * A)`` without forming ``A^H`` (safe for any horizon)."""
    _check_shape_args(vocab_size, horizon)
    a, h = int(vocab_size), int(horizon)
    # n_states * A = A (A^H - 1)/(A - 1); log10 of it, for large H ~ (H+1) log10 A - log10(A - 1)
    if h * math.log10(a) < _EXACT_DIGITS:
        return math.log10(int(n_contexts) * n_states(a, h) * a)
    return math.log10(int(n_contexts)) + (h + 1) * math.log10(a) - math.log10(a - 1)


def describe_count(base: int, exponent: int) -> str:
    """``base^exponent`` for a message: ``'1,024'`` when small, else ``'2^20000 (about 1e6020)'``.

    Never forms a huge integer, so it cannot hit Python's limit on integer-to-string conversion.
    """
    digits = exponent * math.log10(base)
    if digits < _EXACT_DIGITS:
        return f"{base**exponent:,}"
    mantissa_log, power = math.modf(digits)
    return f"{base}^{exponent} (about {10**mantissa_log:.2g}e{int(power)})"


def check_enumerable(
    n_contexts: int,
    vocab_size: int,
    horizon: int,
    limit: int | None = None,
    *,
    per_token_arrays: float = BUILD_PER_TOKEN_ARRAYS,
    extra_bytes: int = 0,
    what: str = "building the tree",
) -> None:
    """Raise ``ValueError`` if the tree's arrays do not fit in the memory available.

    The estimate is ``per_token_arrays`` float64 arrays of ``n_contexts * n_states * A`` entries
    plus ``extra_bytes`` (default: the peak of building a ``TokenMDP``,
    :data:`BUILD_PER_TOKEN_ARRAYS`); it is compared with the available memory
    (:func:`xposim.resources.check_memory`: ``MemAvailable`` of ``/proc/meminfo``, capped by
    ``XPOSIM_MEMORY_LIMIT``), and the message states both numbers and the tree size (as
    ``2^20000 (about 1e6020)`` for trees beyond 15 digits). With ``limit`` given, more than
    ``limit`` entries are refused as well. Costs ``O(1)``: nothing of the tree's size is formed.
    """
    _check_shape_args(vocab_size, horizon)
    if isinstance(n_contexts, (bool, np.bool_)) or int(n_contexts) != n_contexts or n_contexts < 1:
        raise ValueError(f"n_contexts must be an integer >= 1, got {n_contexts!r}")
    a, h, c = int(vocab_size), int(horizon), int(n_contexts)
    digits = log10_entries(c, a, h)
    exact = digits < _EXACT_DIGITS
    entries = c * n_states(a, h) * a if exact else None
    size = (
        f"n_contexts={c}, vocab_size={a}, horizon={h}: {describe_count(a, h)} leaves per context, "
        + (f"{entries:,}" if exact else f"about 1e{digits:.0f}")
        + " (context, state, token) entries"
    )
    if limit is not None and (not exact or entries > limit):
        raise ValueError(f"tree too large to enumerate: {size}; the limit is {int(limit):,} entries")
    hint = "use a smaller vocab_size, horizon or n_contexts (the tree has A^H leaves per context)"
    if not exact:  # beyond any machine: say so without forming the number
        available = format_bytes(available_memory())
        raise ValueError(
            f"{what} ({size}) needs about 1e{digits + math.log10(8 * per_token_arrays):.0f} bytes of memory, "
            f"more than this machine can give ({available} available); {hint}"
        )
    needed = int(per_token_arrays * entries * 8) + int(extra_bytes)
    if needed <= SMALL_REQUEST_BYTES:
        return
    check_memory(needed, f"{what} ({size}, {per_token_arrays:g} per-token float64 arrays)", hint)


def path_sums(per_token: np.ndarray) -> np.ndarray:
    """``sum_h x(s_h, a_h)`` along every trajectory of a per-token array ``(n_contexts, n_states, A, ...)``.

    Returns ``(n_contexts, n_leaves, ...)`` (trailing axes, e.g. per-token features, are kept). Forward over the levels: the prefix sums of depth ``h+1``
    are those of depth ``h`` (one per state of depth ``h``) plus that state's block, so memory is
    the output plus one temporary of at most the output's size (never ``(n_leaves, H)`` index
    arrays). ``-inf`` entries propagate; the sum runs from the root down (``((x_1 + x_2) + x_3)...``).
    """
    n_contexts, states, vocab_size = per_token.shape[:3]
    rest = per_token.shape[3:]
    horizon = 1
    while level_start(vocab_size, horizon) < states:
        horizon += 1
    out = np.empty((n_contexts, vocab_size**horizon) + rest)
    out[:, :vocab_size] = per_token[:, 0]
    for h in range(1, horizon):
        width = vocab_size**h
        block = per_token[:, level_start(vocab_size, h) : level_start(vocab_size, h + 1)]
        out[:, : width * vocab_size] = (out[:, :width, None] + block).reshape((n_contexts, width * vocab_size) + rest)
    return out


def leaf_tokens_of(leaf: int, vocab_size: int, horizon: int) -> tuple[int, ...]:
    """Tokens ``(a_1..a_H)`` of one leaf (the base-``A`` digits of its index)."""
    tokens = []
    for _ in range(horizon):
        leaf, a = divmod(int(leaf), vocab_size)
        tokens.append(a)
    return tuple(reversed(tokens))


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
