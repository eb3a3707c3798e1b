"""Plain-numpy reference implementations, used by tests and benchmarks to check the numba kernels.

They favour readability over speed and memory: vectorized per tree level, nothing clever.
"""
