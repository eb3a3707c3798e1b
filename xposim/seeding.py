"""The one seeding entry point of xposim.

Every random stream comes from a :class:`numpy.random.SeedSequence`. A run with root seed ``s``
and ``n`` repetitions uses ``SeedSequence(s).spawn(n)``; child ``i`` drives repetition ``i``
whatever process or worker executes it, so results are identical bit for bit for any number
of workers (the Gymnasium / NumPy recommended practice).
"""
from __future__ import annotations

import numpy as np

SeedLike = int | np.random.SeedSequence | None


def as_seed_sequence(seed: SeedLike) -> np.random.SeedSequence:
    """Turn ``seed`` (a non-negative int, a ``SeedSequence`` or ``None``) into a ``SeedSequence``."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if seed is None:
        return np.random.SeedSequence()
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or a numpy SeedSequence, got {seed!r}")
    return np.random.SeedSequence(int(seed))


def make_rng(seed: SeedLike) -> np.random.Generator:
    """A ``numpy.random.Generator`` (PCG64) driven by :func:`as_seed_sequence` of ``seed``."""
    return np.random.default_rng(as_seed_sequence(seed))


def spawn_seeds(seed: SeedLike, n: int) -> list[np.random.SeedSequence]:
    """``n`` independent child sequences of the root ``seed``; child ``i`` is stable for every ``n' > i``."""
    if int(n) != n or n < 0:
        raise ValueError(f"number of seeds must be a non-negative integer, got {n!r}")
    return as_seed_sequence(seed).spawn(int(n))


def child_seed(seed: SeedLike, index: int) -> np.random.SeedSequence:
    """Child ``index`` of the root ``seed``: the same sequence as ``spawn_seeds(seed, n)[index]``
    for every ``n > index`` (for a ``SeedSequence`` root: as its first ``spawn``, before it has spawned
    any child), built in O(1) (no list of ``index + 1`` children)."""
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"seed index must be a non-negative integer, got {index!r}")
    root = as_seed_sequence(seed)
    return np.random.SeedSequence(root.entropy, spawn_key=tuple(root.spawn_key) + (int(index),),
                                  pool_size=root.pool_size)
