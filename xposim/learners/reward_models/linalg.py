"""Dense linear algebra of the reward-model learners: plain numba loops, float64.

A *block* is one parameter vector of the Bradley–Terry reward model: the single ``theta`` in R^d
of a linear model ``r(x, tau) = <theta, phi(x, tau)>`` (one block for all contexts), or one
reward per leaf of a context in the one-hot (tabular) case (one block per context, ``d = L``).
Every matrix here is a ``(d, d)`` array of one block.

A preference pair ``(i, j)`` of context ``x`` enters the model only through its difference
vector ``z = phi(x, i) - phi(x, j)``; the ``z_*`` helpers compute with ``z`` without forming it
(one-hot: ``z = e_i - e_j``, two entries).

Numpy references: :mod:`xposim.reference.reward_models_numpy` (tests check agreement).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from xposim._jit import internal_kernel
from xposim.policies.tabular.newton import backward_substitute, forward_substitute, shifted_cholesky


# ----------------------------------------------------------------------------- pair vectors
@internal_kernel
def dot4(a: np.ndarray, b: np.ndarray) -> float:
    """``<a, b>`` over ``len(b)`` entries with four interleaved partial sums, added as
    ``(s0 + s1) + (s2 + s3)``: a fixed order (the same bits with numba on or off) that lets the
    four chains overlap."""
    d = b.shape[0]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    k = 0
    while k + 4 <= d:
        s0 += a[k] * b[k]
        s1 += a[k + 1] * b[k + 1]
        s2 += a[k + 2] * b[k + 2]
        s3 += a[k + 3] * b[k + 3]
        k += 4
    while k < d:
        s0 += a[k] * b[k]
        k += 1
    return (s0 + s1) + (s2 + s3)


@internal_kernel
def arm_dot(features: np.ndarray, onehot: bool, x: int, i: int, v: np.ndarray) -> float:
    """``<phi(x, i), v>`` (one-hot: ``v[i]``), by :func:`dot4`."""
    if onehot:
        return v[i]
    return dot4(features[x, i], v)


@internal_kernel
def z_dot(features: np.ndarray, onehot: bool, x: int, i: int, j: int, v: np.ndarray) -> float:
    """``<phi(x, i) - phi(x, j), v>``."""
    if onehot:
        return v[i] - v[j]
    s = 0.0
    for k in range(v.shape[0]):
        s += (features[x, i, k] - features[x, j, k]) * v[k]
    return s


@internal_kernel
def z_axpy(features: np.ndarray, onehot: bool, x: int, i: int, j: int, c: float, out: np.ndarray) -> None:
    """``out += c (phi(x, i) - phi(x, j))``."""
    if onehot:
        out[i] += c
        out[j] -= c
        return
    for k in range(out.shape[0]):
        out[k] += c * (features[x, i, k] - features[x, j, k])


@internal_kernel
def z_into(features: np.ndarray, onehot: bool, x: int, i: int, j: int, scale: float, out: np.ndarray) -> None:
    """``out = scale (phi(x, i) - phi(x, j))``."""
    for k in range(out.shape[0]):
        out[k] = 0.0
    z_axpy(features, onehot, x, i, j, scale, out)


@internal_kernel
def matrix_times_z(matrix: np.ndarray, features: np.ndarray, onehot: bool, x: int, i: int, j: int,
                   out: np.ndarray) -> None:
    """``out = M z`` for a symmetric ``M`` (one-hot: column ``i`` minus column ``j``)."""
    d = matrix.shape[0]
    if onehot:
        for a in range(d):
            out[a] = matrix[a, i] - matrix[a, j]
        return
    for a in range(d):
        s = 0.0
        for k in range(d):
            s += matrix[a, k] * (features[x, i, k] - features[x, j, k])
        out[a] = s


# ----------------------------------------------------------------------------- Sherman–Morrison
@njit(cache=True)
def sherman_morrison_pair(inverse: np.ndarray, features: np.ndarray, onehot: bool, x: int, i: int, j: int,
                          weight: float, u: np.ndarray) -> float:
    """Rank-one update of an inverse design matrix: ``inverse <- (V + weight z z^T)^{-1}``.

    ``inverse = V^{-1}`` (symmetric positive definite, ``(d, d)``), ``z = phi(x, i) - phi(x, j)``,
    ``weight >= 0``. Sherman–Morrison: with ``u = V^{-1} z`` and ``q = z^T u``,
    ``(V + w z z^T)^{-1} = V^{-1} - (w / (1 + w q)) u u^T`` (``O(d^2)``; the upper triangle is
    mirrored from the lower one, so the result is exactly symmetric). On return ``u`` holds
    ``V_old^{-1} z``; returns ``c = w / (1 + w q)``, so that ``||y||^2`` in the new inverse is the old
    one minus ``c <u, y>^2`` (how the callers refresh cached quadratic forms).
    """
    d = inverse.shape[0]
    matrix_times_z(inverse, features, onehot, x, i, j, u)
    quadratic = z_dot(features, onehot, x, i, j, u)
    c = weight / (1.0 + weight * quadratic)
    for a in range(d):
        cu = c * u[a]
        for b in range(a + 1):
            value = inverse[a, b] - cu * u[b]
            inverse[a, b] = value
            inverse[b, a] = value
    return c


# ----------------------------------------------------------------------------- Cholesky
@njit(cache=True)
def cholesky_into(matrix: np.ndarray, out: np.ndarray) -> bool:
    """Lower Cholesky factor ``out`` of a symmetric ``matrix`` (``matrix = out out^T``); the strict
    upper triangle of ``out`` is zeroed. Returns ``False`` (``out`` undefined) if a pivot is not
    positive (the matrix is not numerically positive definite). ``O(d^3 / 3)``."""
    d = matrix.shape[0]
    if not shifted_cholesky(matrix, d, 0.0, 0.0, out):
        return False
    for j in range(d):
        for i in range(j):
            out[i, j] = 0.0
    return True


@njit(cache=True)
def cholesky_rank_one_update(factor: np.ndarray, v: np.ndarray) -> None:
    """``factor <- chol(factor factor^T + v v^T)`` in ``O(d^2)`` (Givens-style update; ``v`` is
    overwritten). Leading zeros of ``v`` are skipped exactly (they leave their columns unchanged)."""
    d = factor.shape[0]
    for k in range(d):
        vk = v[k]
        if vk == 0.0:
            continue
        fkk = factor[k, k]
        r = math.sqrt(fkk * fkk + vk * vk)
        cos = r / fkk
        sin = vk / fkk
        factor[k, k] = r
        for i in range(k + 1, d):
            value = (factor[i, k] + sin * v[i]) / cos
            factor[i, k] = value
            v[i] = cos * v[i] - sin * value


@njit(cache=True)
def forward_solve(factor: np.ndarray, rhs: np.ndarray, out: np.ndarray) -> None:
    """``out = L^{-1} rhs`` for the lower triangular ``L = factor`` (``out`` may be ``rhs``)."""
    for i in range(factor.shape[0]):  # (a no-op when out is rhs)
        out[i] = rhs[i]
    forward_substitute(factor, factor.shape[0], out)


@njit(cache=True)
def backward_solve(factor: np.ndarray, rhs: np.ndarray, out: np.ndarray) -> None:
    """``out = L^{-T} rhs`` for the lower triangular ``L = factor`` (``out`` may be ``rhs``)."""
    for i in range(factor.shape[0]):  # (a no-op when out is rhs)
        out[i] = rhs[i]
    backward_substitute(factor, factor.shape[0], out)


@njit(cache=True)
def cholesky_solve(factor: np.ndarray, rhs: np.ndarray, out: np.ndarray) -> None:
    """``out = (L L^T)^{-1} rhs`` by a forward and a backward substitution (``O(d^2)``)."""
    forward_solve(factor, rhs, out)
    backward_solve(factor, out, out)


@njit(cache=True)
def box_muller_into(uniforms: np.ndarray, out: np.ndarray) -> None:
    """Standard normals from uniforms in ``[0, 1)``, two per pair ``(u1, u2)``:
    ``sqrt(-2 log(1 - u1)) (cos 2 pi u2, sin 2 pi u2)``; ``out`` has at most ``len(uniforms)`` entries."""
    n = out.shape[0]
    for k in range(0, n, 2):
        radius = math.sqrt(-2.0 * math.log(1.0 - uniforms[k]))
        angle = 2.0 * math.pi * uniforms[k + 1]
        out[k] = radius * math.cos(angle)
        if k + 1 < n:
            out[k + 1] = radius * math.sin(angle)


__all__ = [
    "sherman_morrison_pair",
    "cholesky_into",
    "cholesky_rank_one_update",
    "forward_solve",
    "backward_solve",
    "cholesky_solve",
    "box_muller_into",
]
