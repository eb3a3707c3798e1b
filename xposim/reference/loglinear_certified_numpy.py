"""A certified global argmin for the log-linear class, in numpy + scipy (issue #11 item 4; no kernel yet).

The round objective of the log-linear class (:mod:`xposim.policies.loglinear`) over the ball
``||theta|| <= B``, with ``u_x(tau) = <theta, phi(x, tau)>/beta`` and ``log pi_theta(tau|x) =
log pi_ref(tau|x) + u_x(tau) - log Z_x(theta)``, splits for DPO / IPO pairs and a bonus affine in
``log pi`` (XPO, VPO, SELM, COPO: ``bonus(log p) = A_j + kappa_j log p``) into::

    F(theta) = P(theta) + sum_j m_j (A_j + kappa_j (log pi_ref(y_j) + u(y_j)))  -  sum_x c_x log Z_x(theta)
    c_x = sum_{j in x} m_j kappa_j

``P`` (the pair losses) depends on ``theta`` only through the margins ``u(tau+) - u(tau-)`` (``log Z``
cancels inside a context), so it is convex; the middle sum is affine; ``-c_x log Z_x`` is convex where
``c_x <= 0`` and concave where ``c_x > 0`` (XPO's optimism: the only non-convex part).

**Relaxation on a box** ``[lo, hi]`` of ``theta``. Each ``u_x(tau)`` ranges over ``[m_tau, M_tau]``
(interval arithmetic: ``sum_i min/max(phi_i lo_i, phi_i hi_i) / beta``), where ``e^u`` lies below its
chord ``s_tau(u)``. So ``Z_x <= S_x(theta) = sum_tau pi_ref(tau|x) s_tau(u_x(tau))``, affine in
``theta`` and positive on the box, and ``R = P + affine - sum_{c_x > 0} c_x log S_x - sum_{c_x <= 0} c_x
log Z_x`` is convex and ``R <= F`` on the box.

**Node bound.** ``R`` is minimized over box ∩ ball by SLSQP (any point of the box will do: the bound
below is valid wherever it is taken). At that point ``t`` with gradient ``g``, convexity gives, for
every ``s`` of box ∩ ball, ``R(s) >= R(t) + g.(s - t)``, and the linear minimum over box ∩ ball is
bounded below by its Lagrangian dual ``max_{mu >= 0} sum_i min_{s_i in [lo_i, hi_i]} (g_i s_i + mu s_i^2)
- mu B^2`` (every ``mu >= 0`` gives a valid bound; the dual is concave in ``mu`` and is maximized by a
bracketing search). The node bound is ``R(t) - g.t + dual``, lowered by a rounding margin. A box that
misses the ball (``sum_i dist(0, [lo_i, hi_i])^2 > B^2``) is pruned.

**Flat directions.** A direction that shifts every logit of a context alike (a constant feature)
leaves ``F`` unchanged but loosens the secants; the search runs in the span of ``phi(x, tau) -
phi(x, tau_0)`` (:func:`logit_span`), where ``F`` and the ball are the same problem, and maps back.

**Search.** Best-first over boxes from ``[-B, B]^d``; the incumbent is the best ``F`` at feasible points
(the warm start, each node's relaxation point pulled into the ball, and an SLSQP polish of ``F`` from
the best of them); a box is split at the middle of the coordinate whose interval moves the logits the
most (``(hi_i - lo_i) max_tau |phi_i(tau)|``). The search ends when the lowest open bound is within
``relative_gap * max(1, |F*|)`` of the incumbent (status ``CERTIFIED``), or at ``max_nodes`` (status
``NODE_LIMIT``, the lower bound then the lowest open bound).

Tractable for small ``d`` (the boxes near a minimizer on the sphere grow like ``(1/width)^(d-1)``);
the kernel of the learners' loop remains the local solver of :mod:`xposim.policies.loglinear`, so runs
on the log-linear class are reported uncertified. This module lets a test (or a user, on a round they
rebuild with :func:`xposim.policies.leaf_data.make_leaf_data`) certify one round.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

from xposim.losses.kinds import BONUS_NAMES, BONUS_NONE, PAIR_DPO, PAIR_IPO, PAIR_NAMES
from xposim.policies.leaf_data import LeafData, LossParameters
from xposim.reference import losses_numpy
from xposim.reference.loglinear_scipy import loglinear_objective_numpy, solve_loglinear_scipy

CERTIFIED, NODE_LIMIT, UNSUPPORTED = 0, 1, 2
#: Bonus kinds affine in ``log pi`` (the decomposition above holds).
AFFINE_BONUS_KINDS = ("none", "xpo", "vpo", "selm", "copo")
_EPS = 2.0**-52


@dataclass(frozen=True)
class LogLinearCertificate:
    """The result of :func:`certified_minimize_loglinear`."""

    theta: np.ndarray  #: the best feasible point found (``||theta|| <= B``)
    value: float  #: ``F(theta)``
    lower: float  #: a proven lower bound of ``min_{||theta|| <= B} F`` (``-inf`` when unsupported)
    status: int  #: ``CERTIFIED``, ``NODE_LIMIT`` or ``UNSUPPORTED``
    nodes: int  #: boxes bounded

    @property
    def gap(self) -> float:
        """``value - lower`` (``inf`` when unsupported)."""
        return self.value - self.lower


def supported(loss: LossParameters) -> bool:
    """Whether the decomposition of the module docstring holds (DPO / IPO pairs, affine bonus)."""
    return loss.pair_kind in (PAIR_DPO, PAIR_IPO) and BONUS_NAMES[loss.bonus_kind] in AFFINE_BONUS_KINDS


class _Parts:
    """The objective's pieces, precomputed once per round (module docstring)."""

    def __init__(self, features, leaf_logref, data: LeafData, loss: LossParameters):
        self.features = np.asarray(features, dtype=np.float64)
        self.leaf_logref = np.asarray(leaf_logref, dtype=np.float64)
        self.data, self.loss, self.beta = data, loss, float(loss.beta)
        contexts = np.asarray(data.contexts, dtype=np.int64)
        self.contexts = contexts
        pair_ctx = np.repeat(np.arange(contexts.size), np.diff(data.pair_ptr))
        x = contexts[pair_ctx]
        c, r = np.asarray(data.pair_chosen), np.asarray(data.pair_rejected)
        # margin l_c - l_r = (phi_c - phi_r).theta / beta + offset
        self.pair_direction = (self.features[x, c] - self.features[x, r]) / self.beta
        self.pair_offset = (self.leaf_logref[x, c] - np.asarray(data.pair_chosen_ref)) - (
            self.leaf_logref[x, r] - np.asarray(data.pair_rejected_ref))
        self.pair_weight = np.asarray(data.pair_weight, dtype=np.float64)
        bonus_ctx = np.repeat(np.arange(contexts.size), np.diff(data.bonus_ptr))
        self.affine_value, self.affine_grad = 0.0, np.zeros(self.features.shape[2])
        self.coefficient = np.zeros(contexts.size)  # c_x per listed context
        if loss.bonus_kind != BONUS_NONE and bonus_ctx.size:
            y, m = np.asarray(data.bonus_leaf), np.asarray(data.bonus_count, dtype=np.float64)
            a0, kappa = losses_numpy.bonus_loss(BONUS_NAMES[loss.bonus_kind], np.zeros(y.size),
                                                np.asarray(data.bonus_ref), loss.alpha, self.beta,
                                                np.asarray(data.bonus_weight))
            xb = contexts[bonus_ctx]
            self.affine_value = float(np.sum(m * (a0 + kappa * self.leaf_logref[xb, y])))
            self.affine_grad = np.sum((m * kappa)[:, None] * self.features[xb, y], axis=0) / self.beta
            np.add.at(self.coefficient, bonus_ctx, m * kappa)
        self.phi_scale = np.max(np.abs(self.features), axis=(0, 1))

    def pairs(self, theta):
        if not self.pair_weight.size:
            return 0.0, np.zeros_like(theta), 0.0
        margin = self.pair_direction @ theta + self.pair_offset
        term, d_c, _ = losses_numpy.pair_loss(PAIR_NAMES[self.loss.pair_kind], margin, np.zeros_like(margin), self.beta, self.loss.pair_param)
        value = float(np.sum(self.pair_weight * term))
        return value, (self.pair_weight * d_c) @ self.pair_direction, float(np.sum(self.pair_weight * np.abs(term)))

    def log_z(self, theta, k):
        """``log Z_x(theta)`` and its gradient for the ``k``-th listed context."""
        x = self.contexts[k]
        w = self.leaf_logref[x] + self.features[x] @ theta / self.beta
        log_z = float(logsumexp(w))
        return log_z, np.exp(w - log_z) @ self.features[x] / self.beta

    def log_secant(self, theta, k, lo, hi):
        """``log S_x(theta)`` on the box ``[lo, hi]`` and its gradient (module docstring)."""
        x = self.contexts[k]
        phi = self.features[x] / self.beta
        u_low = np.sum(np.minimum(phi * lo, phi * hi), axis=1)
        u_high = np.sum(np.maximum(phi * lo, phi * hi), axis=1)
        width = u_high - u_low
        live = self.leaf_logref[x] > -np.inf
        ref = self.leaf_logref[x, live]
        u_low, u_high, width, phi = u_low[live], u_high[live], width[live], phi[live]
        u = phi @ theta
        wide = width > 0.0
        safe = np.where(wide, width, 1.0)
        fraction = np.where(wide, np.clip((u - u_low) / safe, 0.0, 1.0), 0.0)
        with np.errstate(divide="ignore"):
            # in logs throughout: s(u) = e^m (1 - f) + e^M f, slope (e^M - e^m)/w = e^M (1 - e^-w)/w
            log_chord = np.logaddexp(ref + u_low + np.log1p(-fraction), ref + u_high + np.log(fraction))
            log_slope = np.where(wide, ref + u_high + np.log(-np.expm1(-safe)) - np.log(safe), ref + u_low)
        log_s = float(logsumexp(log_chord))
        inside = wide & (u - u_low >= 0.0) & (u - u_low <= width)
        with np.errstate(over="ignore"):  # a slope beyond float64 is inf (the caller splits that box)
            grad = np.where(inside, np.exp(log_slope - log_s), 0.0) @ phi
        return log_s, grad

    def relaxation(self, theta, lo, hi):
        """``(R(theta), grad R, magnitude)`` on the box (module docstring)."""
        value, grad, magnitude = self.pairs(theta)
        value += self.affine_value + float(self.affine_grad @ theta)
        grad = grad + self.affine_grad
        magnitude += abs(self.affine_value) + float(np.abs(self.affine_grad) @ np.abs(theta))
        for k, c in enumerate(self.coefficient):
            if c == 0.0:
                continue
            log_s, g = self.log_secant(theta, k, lo, hi) if c > 0 else self.log_z(theta, k)
            value -= c * log_s
            grad = grad - c * g
            magnitude += abs(c * log_s)
        return value, grad, magnitude

    def objective(self, theta):
        return loglinear_objective_numpy(theta, self.features, self.leaf_logref, self.data, self.loss)

    def margin(self, magnitude):
        terms = self.pair_weight.size + self.coefficient.size + self.features.shape[1] + 8
        return 64.0 * terms * _EPS * magnitude


def ball_box_dual(grad, lo, hi, radius) -> float:
    """A lower bound of ``min {grad.s : s in [lo, hi], ||s|| <= radius}``: the Lagrangian dual
    ``max_{mu >= 0} sum_i min_{s_i in [lo_i, hi_i]} (grad_i s_i + mu s_i^2) - mu radius^2``
    (each ``mu >= 0`` is valid; the maximum, found by a bracketing search on the concave dual, is
    the minimum itself when the box meets the ball's interior)."""

    def dual(mu):
        if mu <= 0.0:
            return float(np.sum(np.minimum(grad * lo, grad * hi)))
        s = np.clip(-grad / (2.0 * mu), lo, hi)
        return float(np.sum(grad * s + mu * s * s) - mu * radius * radius)

    best = dual(0.0)
    scale = max(float(np.max(np.abs(grad))) / max(radius, 1e-300), 1e-300)
    grid = scale * np.logspace(-8, 8, 65)
    values = np.array([dual(mu) for mu in grid])
    i = int(np.argmax(values))
    best = max(best, float(values[i]))
    low, high = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(80):  # golden section on the concave dual inside the bracket
        a = high - golden * (high - low)
        b = low + golden * (high - low)
        da, db = dual(a), dual(b)
        best = max(best, da, db)
        if da < db:
            low = a
        else:
            high = b
    return best


def _misses_ball(lo, hi, radius) -> bool:
    nearest = np.where(lo > 0, lo, np.where(hi < 0, hi, 0.0))
    return float(nearest @ nearest) > radius * radius * (1.0 + 1e-12)


def _into_ball(theta, radius):
    norm = float(np.linalg.norm(theta))
    return theta * (radius / norm) if norm > radius else theta


def _node_bound(parts: _Parts, lo, hi, radius, start):
    """``(bound, point)``: the proven bound of ``F`` on box ∩ ball, and the relaxation's minimizer there."""
    scale = max(1.0, float(np.sum(parts.pair_weight) + np.sum(np.abs(parts.coefficient))))
    x0 = np.clip(start, lo, hi)

    def fun(t):
        value, grad, _ = parts.relaxation(t, lo, hi)
        return value / scale, np.nan_to_num(grad / scale)  # SLSQP gets the largest float for an overflow

    constraint = {"type": "ineq", "fun": lambda t: radius * radius - t @ t, "jac": lambda t: -2.0 * t}
    result = minimize(fun, x0, jac=True, method="SLSQP", bounds=list(zip(lo, hi)), constraints=[constraint],
                      options={"ftol": 1e-15, "maxiter": 500})
    point = np.clip(np.asarray(result.x, dtype=np.float64), lo, hi)
    if not np.all(np.isfinite(point)):
        point = x0
    value, grad, magnitude = parts.relaxation(point, lo, hi)
    if not (math.isfinite(value) and np.all(np.isfinite(grad))):
        # a secant's slope beyond float64 (a box thousands of e-folds wide): no bound yet, split it
        return -math.inf, point
    linear = ball_box_dual(grad, lo, hi, radius) - float(grad @ point)
    bound = value + linear - parts.margin(magnitude + abs(linear) + float(np.abs(grad) @ np.abs(point)))
    return bound, point


def logit_span(features, leaf_logref, contexts) -> np.ndarray:
    """An orthonormal basis ``(d, r)`` of the span of ``phi(x, tau) - phi(x, tau_0)`` over the live leaves
    of ``contexts``: the directions of ``theta`` that change some ``log pi_theta`` (``r = 0``: none)."""
    dim = features.shape[2]
    rows = [features[x, leaf_logref[x] > -np.inf] for x in contexts]
    rows = [f[1:] - f[0] for f in rows if f.shape[0] > 1]
    if not rows:
        return np.zeros((dim, 0))
    _, singular, vt = np.linalg.svd(np.concatenate(rows), full_matrices=False)
    rank = int(np.sum(singular > 1e-12 * singular[0])) if singular.size and singular[0] > 0 else 0
    return vt[:rank].T


def certified_minimize_loglinear(features, leaf_logref, data: LeafData, loss: LossParameters, radius: float,
                                 warm=None, relative_gap: float = 1e-9, max_nodes: int = 20000) -> LogLinearCertificate:
    """``argmin_{||theta|| <= radius} F(theta)`` with a proven lower bound (module docstring).

    ``features (n_contexts, n_leaves, d)``, ``leaf_logref (n_contexts, n_leaves)`` = ``log pi_ref``, the
    round's ``data`` and ``loss`` as for :func:`xposim.reference.loglinear_scipy.loglinear_objective_numpy`;
    ``warm`` a start (default: the origin). Unsupported losses (chiPO pairs, POPO's bounded bonus) get
    an SLSQP local minimum with ``lower = -inf`` and status ``UNSUPPORTED``.
    """
    if not radius > 0 or not math.isfinite(radius):
        raise ValueError(f"radius must be a finite number > 0, got {radius!r}")
    if not 0 < relative_gap < 1:
        raise ValueError(f"relative_gap must be in (0, 1), got {relative_gap!r}")
    if max_nodes < 1:
        raise ValueError(f"max_nodes must be >= 1, got {max_nodes!r}")
    features = np.asarray(features, dtype=np.float64)
    leaf_logref = np.asarray(leaf_logref, dtype=np.float64)
    dim = features.shape[2]
    warm = np.zeros(dim) if warm is None else _into_ball(np.asarray(warm, dtype=np.float64), radius)
    # F is flat along directions that shift every logit of a context alike (a constant feature): search
    # the orthogonal complement only, F(theta) = F(basis basis^T theta) and ||basis^T theta|| <= ||theta||
    basis = logit_span(features, leaf_logref, np.asarray(data.contexts, dtype=np.int64))
    if basis.shape[1] < dim:
        reduced = certified_minimize_loglinear(features @ basis, leaf_logref, data, loss, radius, basis.T @ warm,
                                               relative_gap, max_nodes)
        return LogLinearCertificate(basis @ reduced.theta, reduced.value, reduced.lower, reduced.status,
                                    reduced.nodes)
    if dim == 0:  # no direction changes the policy: F is constant
        value = float(loglinear_objective_numpy(np.zeros(0), features, leaf_logref, data, loss)[0])
        return LogLinearCertificate(np.zeros(0), value, value if supported(loss) else -math.inf,
                                    CERTIFIED if supported(loss) else UNSUPPORTED, 0)
    parts = _Parts(features, leaf_logref, data, loss)
    best_theta, best_value, _ = solve_loglinear_scipy(warm, parts.features, parts.leaf_logref, data, loss, radius)
    warm_value, _ = parts.objective(warm)
    if warm_value < best_value:
        best_theta, best_value = warm, warm_value
    if not supported(loss):
        return LogLinearCertificate(best_theta, float(best_value), -math.inf, UNSUPPORTED, 0)

    def threshold():
        return best_value - relative_gap * max(1.0, abs(best_value))

    lo, hi = np.full(dim, -float(radius)), np.full(dim, float(radius))
    bound, point = _node_bound(parts, lo, hi, radius, best_theta)
    heap = [(bound, 0, lo, hi, point)]
    counter, nodes = 1, 1
    floor = math.inf  # the lowest bound of the boxes closed so far
    polished = False
    while heap and heap[0][0] < threshold() and nodes < max_nodes:
        bound, _, lo, hi, point = heapq.heappop(heap)
        # incumbents: the relaxation's point pulled into the ball, then one polish of F from the best
        candidate = _into_ball(point, radius)
        value, _ = parts.objective(candidate)
        if value < best_value:
            best_theta, best_value, polished = candidate, value, False
        if not polished:
            theta, value, _ = solve_loglinear_scipy(best_theta, parts.features, parts.leaf_logref, data, loss, radius)
            polished = True
            if value < best_value:
                best_theta, best_value = theta, value
        # split the coordinate that moves the logits most, at its middle
        i = int(np.argmax((hi - lo) * np.maximum(parts.phi_scale, 1e-300)))
        left_hi, right_lo = hi.copy(), lo.copy()
        left_hi[i] = right_lo[i] = 0.5 * (lo[i] + hi[i])
        for child_lo, child_hi in ((lo, left_hi), (right_lo, hi)):
            if _misses_ball(child_lo, child_hi, radius):
                continue  # box ∩ ball is empty: nothing to bound
            child_bound, child_point = _node_bound(parts, child_lo, child_hi, radius, point)
            nodes += 1
            child_bound = max(child_bound, bound)  # the child's box lies in its parent's
            if child_bound < threshold():
                heapq.heappush(heap, (child_bound, counter, child_lo, child_hi, child_point))
                counter += 1
            else:
                floor = min(floor, child_bound)
    open_bound = min((entry[0] for entry in heap), default=math.inf)
    lower = min(floor, open_bound, best_value)
    status = CERTIFIED if best_value - lower <= relative_gap * max(1.0, abs(best_value)) else NODE_LIMIT
    return LogLinearCertificate(best_theta, float(best_value), float(lower), status, nodes)
