"""The query rules: which pair ``(i, j)`` of leaves of context ``x`` a reward-model learner asks about.

Every rule reads the fitted reward ``rhat[x, leaf] = <theta_hat, phi(x, leaf)>`` and searches the
context's *arms* (the leaves with ``pi_ref > 0``, ``arms[:n_arms]``). Ties go to the first arm
in leaf order. Widths are norms in a ``(d, d)`` matrix of the context's block:

* ``inverse`` = ``V^{-1}``, the inverse design matrix ``(lambda I + sum z z^T)^{-1}`` over every
  query so far (MaxInP, CoLSTIM, pessimism); ``qdiag[leaf] = ||phi(x, leaf)||^2_{V^{-1}}``;
* ``factor`` = ``C``, the Cholesky factor of the Newton matrix ``H`` (the Laplace posterior's
  precision; Thompson sampling draws ``theta ~ N(theta_hat, s^2 H^{-1})`` as
  ``theta_hat + s C^{-T} xi``).

Numpy references: :mod:`xposim.reference.reward_models_numpy`.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from xposim._jit import internal_kernel
from xposim.learners.reward_models.linalg import (
    arm_dot,
    backward_solve,
    box_muller_into,
    cholesky_into,
    dot4,
    forward_solve,
    z_into,
)
from xposim.numerics import NEG_INF

RULE_PASSIVE = 0
RULE_MAXINP = 1
RULE_COLSTIM = 2
RULE_THOMPSON_EE = 3
RULE_THOMPSON_BAI = 4
RULE_PESSIMISTIC = 5


@internal_kernel
def _cross(inverse: np.ndarray, features: np.ndarray, onehot: bool, x: int, a_leaf: int, b_leaf: int,
           y: np.ndarray) -> float:
    """``phi_a^T V^{-1} phi_b`` with ``y = V^{-1} phi_a`` precomputed (dense) or read from ``V^{-1}`` (one-hot)."""
    if onehot:
        return inverse[a_leaf, b_leaf]
    return arm_dot(features, onehot, x, b_leaf, y)


@internal_kernel
def _apply(inverse: np.ndarray, features: np.ndarray, x: int, leaf: int, out: np.ndarray) -> None:
    """``out = V^{-1} phi(x, leaf)`` (dense features)."""
    d = inverse.shape[0]
    for a in range(d):
        s = 0.0
        for k in range(d):
            s += inverse[a, k] * features[x, leaf, k]
        out[a] = s


@njit(cache=True)
def maxinp_radius(d: int, queries: int, kappa: float, delta: float, scale: float) -> float:
    """MaxInP's confidence radius ``scale / kappa * sqrt((d / 2) log(1 + 2 n / d) + log(1 / delta))`` after
    ``n = queries`` comparisons (Saha 2021, from Li, Lu & Zhou 2017, Thm 1)."""
    return scale / kappa * math.sqrt(0.5 * d * math.log(1.0 + 2.0 * queries / d) + math.log(1.0 / delta))


#: Dense MaxInP keeps the Gram matrix of the arms' whitened features when ``K^2`` is at most this
#: (32 MiB); above it distances are recomputed in each of the two passes.
GRAM_LIMIT = 1 << 22


@njit(cache=True)
def whiten_arms(x: int, arms: np.ndarray, n_arms: int, inverse: np.ndarray, features: np.ndarray,
                factor: np.ndarray, y: np.ndarray) -> bool:
    """``y[a] = W^T phi(x, arms[a])`` with ``V^{-1} = W W^T`` (``factor``: scratch ``(d, d)`` for ``W``), so
    that ``||phi_a - phi_b||_{V^{-1}} = ||y_a - y_b||``. ``False`` if ``V^{-1}`` is not numerically positive definite."""
    if not cholesky_into(inverse, factor):
        return False
    d = inverse.shape[0]
    for a in range(n_arms):
        leaf = arms[a]
        for e in range(d):
            s = 0.0
            for k in range(e, d):
                s += factor[k, e] * features[x, leaf, k]
            y[a, e] = s
    return True


@njit(cache=True)
def gram_into(y: np.ndarray, n: int, gram: np.ndarray) -> None:
    """``gram[a, b] = <y_a, y_b>`` for ``a, b < n`` (each entry computed once, mirrored; four partial sums)."""
    for a in range(n):
        for b in range(a + 1):
            value = dot4(y[a], y[b])
            gram[a, b] = value
            gram[b, a] = value


@internal_kernel
def _distance2(a: int, b: int, i: int, j: int, onehot: bool, inverse: np.ndarray, use_gram: bool,
               gram: np.ndarray, y: np.ndarray, diag: np.ndarray) -> float:
    """``||phi_i - phi_j||^2_{V^{-1}}`` of arms at positions ``a, b`` (leaves ``i, j``), clipped at 0."""
    if onehot:
        value = diag[a] + diag[b] - 2.0 * inverse[i, j]
    elif use_gram:
        value = diag[a] + diag[b] - 2.0 * gram[a, b]
    else:
        value = 0.0
        for k in range(y.shape[1]):
            diff = y[a, k] - y[b, k]
            value += diff * diff
    return value if value > 0.0 else 0.0


@njit(cache=True)
def select_maxinp(x: int, arms: np.ndarray, n_arms: int, rhat: np.ndarray, inverse: np.ndarray,
                  features: np.ndarray, onehot: bool, radius: float, candidate: np.ndarray, y: np.ndarray,
                  gram: np.ndarray, factor: np.ndarray, scratch: np.ndarray) -> tuple[int, int]:
    """MaxInP (Saha 2021): keep the arms ``i`` not ruled out,
    ``rhat_i - rhat_j + radius ||phi_i - phi_j||_{V^{-1}} >= 0`` for every ``j``; query the pair of kept
    arms with the largest ``||phi_i - phi_j||_{V^{-1}}`` (a single kept arm is paired with itself).

    ``rhat``: ``(L,)`` row of the context; ``candidate``: scratch ``(L,)`` bool; ``scratch``: ``(2, L)``.
    Dense features: ``y`` scratch ``(L, d)`` (whitened features, :func:`whiten_arms`), ``factor``
    scratch ``(d, d)``, ``gram`` scratch ``(L, L)`` (or ``(1, 1)``: distances recomputed). One-hot:
    distances read from ``V^{-1}``; ``y``, ``gram``, ``factor`` unused. ``O(K^2 d)`` for ``K`` arms
    (one-hot ``O(K^2)``); under the paper's radius every arm stays a candidate for long, so both
    passes visit all ``K^2 / 2`` pairs.
    """
    use_gram = False
    if not onehot:
        whiten_arms(x, arms, n_arms, inverse, features, factor, y)
        use_gram = gram.shape[0] >= n_arms
        if use_gram:
            gram_into(y, n_arms, gram)
    values = scratch[0]
    diag = scratch[1]
    for a in range(n_arms):
        i = arms[a]
        values[a] = rhat[i]
        diag[a] = inverse[i, i] if onehot else (gram[a, a] if use_gram else 0.0)
    r2 = radius * radius
    # i is ruled out iff some j has rhat_j - rhat_i > radius ||phi_i - phi_j||; one loop per case, since a
    # generic distance with run-time flags inside the K^2 loop keeps it from being optimized (50x slower)
    for a in range(n_arms):
        i = arms[a]
        value = values[a]
        base = diag[a]
        ruled = False
        if onehot:
            for b in range(n_arms):
                diff = values[b] - value
                dist2 = base + diag[b] - 2.0 * inverse[i, arms[b]]
                dist2 = dist2 if dist2 > 0.0 else 0.0
                ruled = ruled | ((diff > 0.0) & (diff * diff > r2 * dist2))
        elif use_gram:
            for b in range(n_arms):
                diff = values[b] - value
                dist2 = base + diag[b] - 2.0 * gram[a, b]
                dist2 = dist2 if dist2 > 0.0 else 0.0
                ruled = ruled | ((diff > 0.0) & (diff * diff > r2 * dist2))
        else:
            for b in range(n_arms):
                diff = values[b] - value
                if diff > 0.0 and diff * diff > r2 * _distance2(a, b, i, arms[b], onehot, inverse, use_gram, gram, y,
                                                                diag):
                    ruled = True
                    break
        candidate[a] = not ruled
    best = -1.0
    first = -1
    second = -1
    for a in range(n_arms):
        if not candidate[a]:
            continue
        i = arms[a]
        if first < 0:
            first = i
            second = i
        base = diag[a]
        for b in range(a + 1, n_arms):
            if not candidate[b]:
                continue
            if onehot:
                dist2 = base + diag[b] - 2.0 * inverse[i, arms[b]]
            elif use_gram:
                dist2 = base + diag[b] - 2.0 * gram[a, b]
            else:
                dist2 = _distance2(a, b, i, arms[b], onehot, inverse, use_gram, gram, y, diag)
            dist2 = dist2 if dist2 > 0.0 else 0.0
            if dist2 > best:
                best = dist2
                first = i
                second = arms[b]
    return first, second


@internal_kernel
def _gumbel(u: float) -> float:
    """Standard Gumbel draw ``-log(-log u)`` (``u = 0`` gives ``-inf``)."""
    if u <= 0.0:
        return NEG_INF
    return -math.log(-math.log(u))


@njit(cache=True)
def select_colstim(x: int, arms: np.ndarray, n_arms: int, rhat: np.ndarray, qdiag: np.ndarray, inverse: np.ndarray,
                   features: np.ndarray, onehot: bool, width: float, threshold: float, uniforms: np.ndarray,
                   u: np.ndarray) -> tuple[int, int]:
    """CoLSTIM (Bengs, Saha & Hüllermeier 2022): first arm
    ``argmax_i rhat_i + clip(eps_i, -threshold, threshold) ||phi_i||_{V^{-1}}`` with ``eps_i`` standard
    Gumbel (the perturbation of the logistic link) drawn from ``uniforms[leaf]``; second arm the
    optimistic challenger ``argmax_j rhat_j + width ||phi_j - phi_i||_{V^{-1}}``. ``u``: scratch ``(d,)``."""
    first = arms[0]
    best = NEG_INF
    for a in range(n_arms):
        i = arms[a]
        eps = _gumbel(uniforms[i])
        if eps > threshold:
            eps = threshold
        if eps < -threshold:
            eps = -threshold
        q = qdiag[i] if qdiag[i] > 0.0 else 0.0
        score = rhat[i] + eps * math.sqrt(q)
        if score > best:
            best = score
            first = i
    if not onehot:
        _apply(inverse, features, x, first, u)
    second = first
    best = NEG_INF
    for b in range(n_arms):
        j = arms[b]
        dist2 = qdiag[first] + qdiag[j] - 2.0 * _cross(inverse, features, onehot, x, first, j, u)
        if dist2 < 0.0:
            dist2 = 0.0
        score = rhat[j] + width * math.sqrt(dist2)
        if score > best:
            best = score
            second = j
    return first, second


@internal_kernel
def _sample_argmax(x: int, arms: np.ndarray, n_arms: int, theta: np.ndarray, factor: np.ndarray,
                   features: np.ndarray, onehot: bool, scale: float, normals: np.ndarray,
                   sample: np.ndarray) -> int:
    """``argmax_i <theta~, phi_i>`` for ``theta~ = theta + scale C^{-T} normals`` (``sample``: scratch ``(d,)``)."""
    d = theta.shape[0]
    backward_solve(factor, normals, sample)
    for a in range(d):
        sample[a] = theta[a] + scale * sample[a]
    best = NEG_INF
    choice = arms[0]
    for a in range(n_arms):
        i = arms[a]
        value = arm_dot(features, onehot, x, i, sample)
        if value > best:
            best = value
            choice = i
    return choice


@njit(cache=True)
def select_thompson_ee(x: int, arms: np.ndarray, n_arms: int, theta: np.ndarray, factor: np.ndarray,
                       features: np.ndarray, onehot: bool, scale: float, samples: int, uniforms: np.ndarray,
                       normals: np.ndarray, sample: np.ndarray) -> tuple[int, int]:
    """SEA's explore–exploit Thompson sampling (Liu et al. 2024; oat's ``EnnEETS``): the first arm is
    the argmax of one posterior draw, the second the argmax of the first of the next
    ``samples - 1`` independent draws whose argmax differs (the first arm again if none does).

    ``uniforms``: ``2 ceil(samples d / 2)`` uniforms (the draws' normals, Box–Muller);
    ``normals``: scratch of ``samples * d``; ``sample``: scratch ``(d,)``.
    """
    d = theta.shape[0]
    box_muller_into(uniforms, normals)
    first = _sample_argmax(x, arms, n_arms, theta, factor, features, onehot, scale, normals[0:d], sample)
    for s in range(1, samples):
        other = _sample_argmax(x, arms, n_arms, theta, factor, features, onehot, scale,
                               normals[s * d:(s + 1) * d], sample)
        if other != first:
            return first, other
    return first, first


@njit(cache=True)
def select_thompson_bai(x: int, arms: np.ndarray, n_arms: int, theta: np.ndarray, factor: np.ndarray,
                        features: np.ndarray, onehot: bool, scale: float, uniforms: np.ndarray,
                        normals: np.ndarray, work: np.ndarray) -> tuple[int, int]:
    """SEA's best-arm-identification Thompson sampling (oat's ``EnnBAITS``): the first arm is the
    argmax of one posterior draw, the second the arm whose preference logit against it is the most
    uncertain, ``argmax_j Var[r_j - r_i] = ||C^{-1}(phi_j - phi_i)||^2`` (``O(K d^2)``).
    ``work``: scratch ``(3, d)``."""
    d = theta.shape[0]
    box_muller_into(uniforms, normals)
    first = _sample_argmax(x, arms, n_arms, theta, factor, features, onehot, scale, normals[0:d], work[0])
    second = first
    best = -1.0
    for b in range(n_arms):
        j = arms[b]
        if j == first:
            continue
        z_into(features, onehot, x, j, first, 1.0, work[1])
        forward_solve(factor, work[1], work[2])
        variance = 0.0
        for a in range(d):
            variance += work[2, a] * work[2, a]
        if variance > best:
            best = variance
            second = j
    return first, second


def extra_uniforms(rule: int, n_leaves: int, d: int, samples: int) -> int:
    """Uniforms a rule draws per pair beyond the five of every pair (context, two responses, label, spare)."""
    if rule == RULE_COLSTIM:
        return n_leaves
    if rule == RULE_THOMPSON_EE:
        return 2 * ((samples * d + 1) // 2)
    if rule == RULE_THOMPSON_BAI:
        return 2 * ((d + 1) // 2)
    return 0


__all__ = [
    "RULE_PASSIVE", "RULE_MAXINP", "RULE_COLSTIM", "RULE_THOMPSON_EE", "RULE_THOMPSON_BAI", "RULE_PESSIMISTIC",
    "maxinp_radius", "select_maxinp", "whiten_arms", "gram_into", "GRAM_LIMIT", "select_colstim", "select_thompson_ee", "select_thompson_bai",
    "extra_uniforms",
]
