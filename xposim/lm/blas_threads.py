"""Limit the BLAS thread pool of numpy's OpenBLAS while the tiny LM path runs.

The LM path multiplies small matrices (widths 16-64, a few hundred rows): there a multi-threaded
OpenBLAS spends its time synchronizing threads, and on a shared machine it can be an order of
magnitude slower than one thread (measured: ``xposim lm --quick`` 13.8 s with the default pool on
a loaded 2-core machine, 2.1 s with one thread; results identical). :func:`blas_threads` sets the
pool size of the OpenBLAS bundled with numpy through its C API for the duration of a ``with``
block and restores it afterwards. Best effort: when no such library or symbol is found it does
nothing (``threadpoolctl`` is not a dependency of xposim).
"""
from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["blas_threads"]

_SYMBOL_PAIRS = (
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
)
_cached: tuple | None = None


def _openblas_api():
    """``(set_num_threads, get_num_threads)`` of numpy's OpenBLAS, or ``None``."""
    global _cached
    if _cached is not None:
        return _cached or None
    import numpy as np

    candidates = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*"))
    candidates += glob.glob(os.path.join(os.path.dirname(np.__file__), ".dylibs", "*openblas*"))
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _SYMBOL_PAIRS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                setter, getter = getattr(lib, set_name), getattr(lib, get_name)
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.argtypes, getter.restype = [], ctypes.c_int
                _cached = (setter, getter)
                return _cached
    _cached = ()
    return None


@contextmanager
def blas_threads(n: int | None = 1) -> Iterator[None]:
    """Run the block with at most ``n`` OpenBLAS threads (``None``: leave the pool alone)."""
    api = _openblas_api() if n is not None else None
    if api is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (BLAS threads) must be an integer >= 1 or None, got {n!r}")
    setter, getter = api
    previous = int(getter())
    setter(n)
    try:
        yield
    finally:
        setter(previous)
