"""The numba decorator of xposim's internal kernels.

Kernels that Python code calls (the package's drivers, the tests, a user) use
``numba.njit(cache=True)``. :data:`internal_kernel` is the same, compiled without the CPython and
C-function wrappers, for a helper that only other kernels call: the wrappers of a function are
linked into every kernel above it and optimized again at each level, so dropping them where nobody
calls from Python cuts compile time (numbers in ``docs/architecture.md``). Calling an internal
kernel from Python is not supported (numba builds no entry point for it).

With ``NUMBA_DISABLE_JIT=1`` it returns the plain Python function.
"""
from __future__ import annotations

from numba import njit

internal_kernel = njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)

__all__ = ["internal_kernel"]
