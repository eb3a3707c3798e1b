"""The two numba decorators of xposim's kernels.

* :data:`kernel` — ``njit(cache=True)``: a kernel that Python code (the package's drivers, the
  tests, a user) calls directly.
* :data:`internal_kernel` — the same, compiled without the CPython and C-function wrappers: a
  helper that only other kernels call. The wrappers of a function are linked into every kernel
  above it and optimized again at each level, so dropping them where nobody calls from Python
  cuts compile time (measured in the issue note of the hardening change). Calling an internal
  kernel from Python is not supported (numba has no entry point for it).

With ``NUMBA_DISABLE_JIT=1`` both return the plain Python function.
"""
from __future__ import annotations

from numba import njit

kernel = njit(cache=True)
internal_kernel = njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)

__all__ = ["kernel", "internal_kernel"]
