"""The log-linear reward-induced class and its per-round argmin (THEORY 3, "Log-linear").

Class: ``f_theta(tau) = <theta, phi(x, tau)>`` with ``||theta||_2 <= B`` and
``pi_theta(tau|x) = pi_ref(tau|x) exp(f_theta(tau)/beta) / Z_theta(x)``, so
``log pi_theta(tau|x) = log pi_ref(tau|x) + f_theta(tau)/beta - log Z_theta(x)`` and
``V_max <= 2 B max||phi||``. Realizable when ``r(tau) = <theta*, phi(tau)>`` with
``||theta*|| <= B`` (``theta = theta*`` gives ``pi*_beta``; default ``B = ||env.reward_parameter||``).

Objective (paper mode, every pair and bonus sample so far, all contexts share ``theta``)::

    F(theta) = sum_i W_i pair_loss(l(tau+_i), l(tau-_i)) + sum_j M_j bonus_loss(log pi_theta(y_j), log pi_ref_loss(y_j))
    l(tau)   = log pi_theta(tau|x) - log pi_ref_loss(tau|x)

evaluated with the kernels of :mod:`xposim.losses` (this module only chains derivatives). With
``d_tau = dF/d log pi(tau)`` (from the kernels), ``a_tau = phi(tau) - E_{pi_theta(.|x)}[phi]``,
``D_x = sum_tau d_tau`` and ``S`` the kernels' second derivatives in ``log pi``:

* ``grad F = (1/beta) sum_x sum_tau d_tau a_tau``;
* ``hess F = (1/beta^2) sum_x [ sum_{tau,tau'} S_{tau tau'} a_tau a_tau'^T - D_x Cov_{pi_theta(.|x)}(phi) ]``.

DPO/IPO pair terms have ``D_x = 0``: the DPO part is logistic regression on
``phi(tau+) - phi(tau-)`` (convex). The XPO bonus has ``D_x = alpha M_x > 0``: its curvature
``-D_x Cov(phi)/beta^2`` is negative semi-definite (minus a log-sum-exp) and the XPO objective
is non-convex. A pass costs ``O(n_contexts_with_data * n_leaves * d)`` for ``log Z``, the means
(and ``* d`` for the covariances) plus ``O(distinct pairs * d)``: flat in the number of rounds
once the distinct pairs saturate.

Argmin: projected Newton on the ball (documented choice). At ``theta`` (feasible) with gradient
``g`` and Hessian ``H``, the quadratic model ``m(y) = g^T (y - theta) + 1/2 (y - theta)^T H (y - theta)``
is minimized exactly over the ball ``||y|| <= B`` — a trust-region subproblem centred at the
origin, solved in the eigenbasis of ``H`` (``y(mu) = -(H + mu I)^{-1} (g - H theta)``, ``mu >= 0``
the ball's multiplier, ``H + mu I`` positive definite; Moré–Sorensen Newton on the secular
equation, :func:`ball_model_minimizer`). Its stationarity condition is the KKT system, so near a
local minimum (interior, or on the sphere with ``H + mu* I`` positive definite) these are
Newton steps: quadratic convergence. The full step is accepted when ``F`` decreases by at
least ``1e-4`` times the model's predicted decrease (trust-region ratio test; on the sphere the
chord ``theta -> y`` is not a descent direction of ``F`` itself, so no line search along it).
Otherwise (far from a minimum, ``H`` indefinite, or the hard case) the convexified model
``H + shift I`` (smallest shift giving eigenvalues ``>= 1e-10 max|lambda|``) is minimized over
the ball instead; its direction always descends, and Armijo backtracking along the segment
``theta -> y`` keeps every iterate feasible (the ball is convex). Stop when the per-sample projected
gradient ``max_j |theta_j - P[theta - g/N]_j| <= tolerance`` (:class:`SolverSettings`,
``N`` = number of loss terms). Directions along which ``F`` is exactly flat (e.g. a constant
feature coordinate, which only shifts ``log Z``) are never moved: the warm start selects among
the minimizers. ``SolverSettings.restarts`` extra cold starts, uniform in the ball, one pool per
run; the lowest objective wins (ties to the warm start) and disagreements are counted. The
clipped chiPO loss is not differentiable at its clip; a minimizer on the kink can stall the
iteration (counted as a failure).

Iterate view: every leaf is a slot (slot ``s`` = leaf ``s``) with log weight
``log pi_ref + f_theta/beta``; solving rewrites all of them (``O(n_contexts n_leaves d)``) and marks
every context changed (the class is not context-separable). The token-level policy for
:func:`xposim.exact.evaluate` is :meth:`LogLinearClass.token_policy` (soft backup of ``f_theta``).
"""
from __future__ import annotations

import math
from collections import namedtuple
from typing import Any

import numpy as np
from numba import njit

from xposim._jit import internal_kernel
from xposim import exact
from xposim.envs.token_mdp import TokenMDP
from xposim.losses.bonus import bonus_loss, bonus_loss_hessian
from xposim.losses.kinds import BONUS_NONE
from xposim.losses.pair import pair_loss, pair_loss_hessian
from xposim.numerics import NEG_INF
from xposim.policies.arrays import EnvArrays
from xposim.policies.base import check_optional_bound, PolicyClass
from xposim.policies.view import IterateView, view_normalize
from xposim.policies.leaf_data import (
    LeafData,
    LossParameters,
    all_leaves_view,
    batch_leaf_data,
    check_all_leaf_slots,
    expand_uniforms,
    gather_problem_data,
    loss_parameters,
    refuse_champion_starts,
    number_of_terms,
)
from xposim.validation import check_positive
from xposim.policies.solving import (
    ARMIJO,
    COUNTER_SOLVES,
    OBJECTIVE_NOISE,
    STATUS_CONVERGED,
    STATUS_LINE_SEARCH,
    STATUS_MAX_ITERATIONS,
    SolverSettings,
    draw_restart_uniforms,
    improves_on,
    may_be_nonconvex,
    record_certificate,
    record_solve,
    values_disagree,
)

#: Relative floor of the eigenvalues of the convexified Newton model (``floor = EIGEN_FLOOR * max|lambda|``).
EIGEN_FLOOR = 1e-10
#: Backtracking halvings before a line search is declared failed.
MAX_BACKTRACKS = 60

LogLinearWork = namedtuple(
    "LogLinearWork",
    [
        "scaled",  # (L,) <theta, phi>/beta of one context
        "logw",  # (L,) log pi_ref + scaled
        "mean",  # (d,) E_pi[phi] of one context
        "coef",  # (L,) dF/dlog pi per leaf of one context
        "curv",  # (L, d) sum_tau' S_{tau tau'} a_tau' per leaf of one context
        "touched",  # (L,) int64 list of leaves with coef / curv entries
        "mark",  # (L,) bool
        "grad",  # (d,)
        "hess",  # (d, d)
        "target",  # (d,) minimizer of the model over the ball
        "trial",  # (d,)
        "best",  # (d,) best start of a multi-start solve
        "warm",  # (d,) the warm start
        "avec",  # (d,) phi(tau) - E[phi]
        "vvec",  # (d,) curvature row of one leaf
    ],
)
LogLinearWork.__doc__ = """Scratch arrays of the log-linear objective and solver."""


def new_loglinear_work(n_leaves: int, dim: int) -> LogLinearWork:
    """Scratch arrays for ``n_leaves`` leaves per context and ``dim`` features."""
    return LogLinearWork(
        scaled=np.zeros(n_leaves), logw=np.zeros(n_leaves), mean=np.zeros(dim),
        coef=np.zeros(n_leaves), curv=np.zeros((n_leaves, dim)), touched=np.zeros(n_leaves, dtype=np.int64),
        mark=np.zeros(n_leaves, dtype=np.bool_), grad=np.zeros(dim), hess=np.zeros((dim, dim)),
        target=np.zeros(dim), trial=np.zeros(dim), best=np.zeros(dim), warm=np.zeros(dim),
        avec=np.zeros(dim), vvec=np.zeros(dim),
    )


# ============================================================================ objective
@njit(cache=True)
def loglinear_context_logits(theta: np.ndarray, features: np.ndarray, leaf_logref: np.ndarray, beta: float,
                             x: int, out_scaled: np.ndarray, out_logw: np.ndarray) -> float:
    """``out_scaled[tau] = <theta, phi(x, tau)>/beta``, ``out_logw = log pi_ref + out_scaled``; returns ``log Z_theta(x)``."""
    n_leaves, dim = features.shape[1], features.shape[2]
    largest = NEG_INF
    for tau in range(n_leaves):
        f = 0.0
        for i in range(dim):
            f += theta[i] * features[x, tau, i]
        out_scaled[tau] = f / beta
        w = leaf_logref[x, tau] + out_scaled[tau]
        out_logw[tau] = w
        if w > largest:
            largest = w
    if largest == NEG_INF:
        return NEG_INF
    total = 0.0
    for tau in range(n_leaves):
        if out_logw[tau] > NEG_INF:
            total += math.exp(out_logw[tau] - largest)
    return largest + math.log(total)


@internal_kernel
def _context_mean(features: np.ndarray, x: int, logw: np.ndarray, log_z: float, out_mean: np.ndarray) -> float:
    """``E_{pi_theta(.|x)}[phi]`` (weights renormalized, so rounding of ``log Z`` does not bias it); returns the mass."""
    n_leaves, dim = features.shape[1], features.shape[2]
    for i in range(dim):
        out_mean[i] = 0.0
    mass = 0.0
    for tau in range(n_leaves):
        if logw[tau] == NEG_INF:
            continue
        p = math.exp(logw[tau] - log_z)
        mass += p
        for i in range(dim):
            out_mean[i] += p * features[x, tau, i]
    for i in range(dim):
        out_mean[i] /= mass
    return mass


@internal_kernel
def _touch(work: LogLinearWork, n_touched: int, leaf: int, dim: int) -> int:
    if not work.mark[leaf]:
        work.mark[leaf] = True
        work.touched[n_touched] = leaf
        work.coef[leaf] = 0.0
        for i in range(dim):
            work.curv[leaf, i] = 0.0
        return n_touched + 1
    return n_touched


@njit(cache=True)
def loglinear_objective(theta: np.ndarray, features: np.ndarray, leaf_logref: np.ndarray, data: LeafData,
                        loss: LossParameters, order: int, work: LogLinearWork) -> float:
    """``F(theta)`` (module docstring); ``order >= 1`` writes ``work.grad``, ``order >= 2`` ``work.hess``.

    Contexts and terms come from ``data`` (:class:`~xposim.policies.leaf_data.LeafData`); entries
    with zero weight are skipped. ``l(tau) = log pi_theta(tau) - log pi_ref_loss(tau)``.
    """
    dim = theta.shape[0]
    beta = loss.beta
    if order >= 1:
        for i in range(dim):
            work.grad[i] = 0.0
    if order >= 2:
        for i in range(dim):
            for j in range(dim):
                work.hess[i, j] = 0.0
    value = 0.0
    for k in range(data.contexts.shape[0]):
        x = data.contexts[k]
        log_z = loglinear_context_logits(theta, features, leaf_logref, beta, x, work.scaled, work.logw)
        mass = 1.0
        if order >= 1:
            mass = _context_mean(features, x, work.logw, log_z, work.mean)
        n_touched = 0
        for e in range(data.pair_ptr[k], data.pair_ptr[k + 1]):
            w = data.pair_weight[e]
            if w == 0.0:
                continue
            c = data.pair_chosen[e]
            r = data.pair_rejected[e]
            l_c = work.logw[c] - log_z - data.pair_chosen_ref[e]
            l_r = work.logw[r] - log_z - data.pair_rejected_ref[e]
            term, d_c, d_r = pair_loss(loss.pair_kind, l_c, l_r, beta, loss.pair_param)
            value += w * term
            if order >= 1:
                n_touched = _touch(work, n_touched, c, dim)
                n_touched = _touch(work, n_touched, r, dim)
                work.coef[c] += w * d_c
                work.coef[r] += w * d_r
            if order >= 2:
                h_cc, h_cr, h_rr = pair_loss_hessian(loss.pair_kind, l_c, l_r, beta, loss.pair_param)
                for i in range(dim):
                    a_c = features[x, c, i] - work.mean[i]
                    a_r = features[x, r, i] - work.mean[i]
                    work.curv[c, i] += w * (h_cc * a_c + h_cr * a_r)
                    work.curv[r, i] += w * (h_cr * a_c + h_rr * a_r)
        if loss.bonus_kind != BONUS_NONE:
            for j in range(data.bonus_ptr[k], data.bonus_ptr[k + 1]):
                m = data.bonus_count[j]
                if m == 0.0:
                    continue
                y = data.bonus_leaf[j]
                logp = work.logw[y] - log_z
                term, d_y = bonus_loss(loss.bonus_kind, logp, data.bonus_ref[j], loss.alpha, beta,
                                       data.bonus_weight[j])
                value += m * term
                if order >= 1:
                    n_touched = _touch(work, n_touched, y, dim)
                    work.coef[y] += m * d_y
                if order >= 2:
                    h_yy = bonus_loss_hessian(loss.bonus_kind, logp, data.bonus_ref[j], loss.alpha, beta,
                                              data.bonus_weight[j])
                    if h_yy != 0.0:
                        for i in range(dim):
                            work.curv[y, i] += m * h_yy * (features[x, y, i] - work.mean[i])
        if order >= 1:
            total = 0.0
            for q in range(n_touched):
                tau = work.touched[q]
                d_tau = work.coef[tau]
                total += d_tau
                for i in range(dim):
                    work.grad[i] += d_tau * (features[x, tau, i] - work.mean[i]) / beta
            if order >= 2:
                # hess += (1/beta^2) sum_tau a_tau (curv_tau - D_x p_tau a_tau)^T over every leaf:
                # curv = 0 off the data leaves and sum_tau p_tau a_tau a_tau^T = Cov(phi). The sum is
                # symmetric (S is): one pass, upper triangle only.
                inv_b2 = 1.0 / (beta * beta)
                n_leaves = features.shape[1]
                for tau in range(n_leaves):
                    p = math.exp(work.logw[tau] - log_z) / mass if work.logw[tau] > NEG_INF else 0.0
                    if not work.mark[tau] and (p == 0.0 or total == 0.0):
                        continue  # contributes nothing
                    scale = total * p
                    for i in range(dim):
                        a_i = features[x, tau, i] - work.mean[i]
                        work.avec[i] = a_i
                        work.vvec[i] = (work.curv[tau, i] if work.mark[tau] else 0.0) - scale * a_i
                    for i in range(dim):
                        a_i = work.avec[i] * inv_b2
                        for j in range(i, dim):
                            work.hess[i, j] += a_i * work.vvec[j]
            for q in range(n_touched):
                work.mark[work.touched[q]] = False
    if order >= 2:
        for i in range(dim):
            for j in range(i + 1, dim):
                work.hess[j, i] = work.hess[i, j]
    return value


# ============================================================================ the ball
@njit(cache=True)
def project_onto_ball(v: np.ndarray, radius: float) -> None:
    """``v <- v * min(1, radius/||v||)`` in place (Euclidean projection on the ball)."""
    norm = 0.0
    for i in range(v.shape[0]):
        norm += v[i] * v[i]
    norm = math.sqrt(norm)
    if norm > radius:
        s = radius / norm
        for i in range(v.shape[0]):
            v[i] *= s


@njit(cache=True)
def ball_projected_gradient(theta: np.ndarray, grad: np.ndarray, n_terms: float, radius: float) -> float:
    """``max_i |theta_i - P[theta - grad/N]_i|``, ``P`` the projection on ``||.|| <= radius`` (the stopping rule)."""
    dim = theta.shape[0]
    scale = 1.0 / n_terms if n_terms > 0.0 else 1.0
    norm = 0.0
    for i in range(dim):
        v = theta[i] - scale * grad[i]
        norm += v * v
    norm = math.sqrt(norm)
    shrink = radius / norm if norm > radius else 1.0
    worst = 0.0
    for i in range(dim):
        gap = abs(theta[i] - shrink * (theta[i] - scale * grad[i]))
        if gap > worst:
            worst = gap
    return worst


@njit(cache=True)
def ball_model_minimizer(theta: np.ndarray, grad: np.ndarray, eigenvalues: np.ndarray, eigenvectors: np.ndarray,
                         radius: float, exact: bool, out: np.ndarray) -> tuple[bool, float]:
    """Minimizer ``y`` over ``||y|| <= radius`` of the model ``g^T (y - theta) + 1/2 (y - theta)^T M (y - theta)``.

    ``H = Q diag(lambda) Q^T`` (``eigenvalues`` ascending, ``eigenvectors`` ``Q``), ``floor = EIGEN_FLOOR max|lambda|``
    (1 if ``H = 0``). Stationarity: ``y(mu) = -(M + mu I)^{-1} (g - M theta)`` with the multiplier
    ``mu >= 0`` of the ball, ``mu = 0`` if ``y`` is inside, else the root of
    ``1/||y(mu)|| = 1/radius`` (Moré–Sorensen Newton, monotone from the left), then ``y`` is rescaled
    onto the sphere.

    * ``exact=True``: ``M = H`` and ``mu >= max(0, floor - lambda_min)`` (the trust-region subproblem
      of the exact model; its steps are Newton steps for the KKT system). Returns ``(False, mu)``
      in the "hard case" (no root above that bound), leaving ``out`` undefined.
    * ``exact=False``: ``M = H + shift I`` with the smallest ``shift >= 0`` making ``M``'s eigenvalues
      ``>= floor`` (convexified model; ``y - theta`` is then always a descent direction).

    Returns ``(True, mu)`` with ``y`` in ``out``.
    """
    dim = theta.shape[0]
    top = 0.0
    for i in range(dim):
        if abs(eigenvalues[i]) > top:
            top = abs(eigenvalues[i])
    floor = EIGEN_FLOOR * top if top > 0.0 else 1.0
    lowest = eigenvalues[0]
    shift = 0.0
    mu_min = 0.0
    if lowest < floor:
        if exact:
            mu_min = floor - lowest
        else:
            shift = floor - lowest
    modified = np.empty(dim)
    c_hat = np.empty(dim)
    for i in range(dim):
        modified[i] = eigenvalues[i] + shift
        g_i = 0.0
        t_i = 0.0
        for j in range(dim):
            g_i += eigenvectors[j, i] * grad[j]
            t_i += eigenvectors[j, i] * theta[j]
        c_hat[i] = g_i - modified[i] * t_i
    mu = mu_min
    norm2 = 0.0
    for i in range(dim):
        yi = c_hat[i] / (modified[i] + mu)
        norm2 += yi * yi
    if norm2 > radius * radius:
        for _ in range(200):
            norm2 = 0.0
            cube = 0.0
            for i in range(dim):
                denom = modified[i] + mu
                yi = c_hat[i] / denom
                norm2 += yi * yi
                cube += yi * yi / denom
            norm = math.sqrt(norm2)
            if abs(norm - radius) <= 1e-13 * radius:
                break
            # phi(mu) = 1/||y|| - 1/radius, phi'(mu) = cube / ||y||^3
            step = (1.0 / norm - 1.0 / radius) * norm2 * norm / cube
            mu_new = mu - step
            if mu_new <= mu:  # rounding: no further progress possible
                break
            mu = mu_new
    elif mu_min > 0.0:
        return False, mu  # hard case: the exact model's minimizer needs an eigenvector component
    y_hat = np.empty(dim)
    for i in range(dim):
        y_hat[i] = -c_hat[i] / (modified[i] + mu)
    for j in range(dim):
        s = 0.0
        for i in range(dim):
            s += eigenvectors[j, i] * y_hat[i]
        out[j] = s
    project_onto_ball(out, radius)
    return True, mu


@internal_kernel
def _model_change(theta: np.ndarray, grad: np.ndarray, hess: np.ndarray, target: np.ndarray) -> float:
    """``g^T d + 1/2 d^T H d`` with ``d = target - theta`` (change of the quadratic model)."""
    dim = theta.shape[0]
    linear = 0.0
    quadratic = 0.0
    for i in range(dim):
        d_i = target[i] - theta[i]
        linear += grad[i] * d_i
        row = 0.0
        for j in range(dim):
            row += hess[i, j] * (target[j] - theta[j])
        quadratic += d_i * row
    return linear + 0.5 * quadratic


@internal_kernel
def _model_slope(theta: np.ndarray, grad: np.ndarray, target: np.ndarray) -> float:
    slope = 0.0
    for i in range(theta.shape[0]):
        slope += grad[i] * (target[i] - theta[i])
    return slope


@njit(cache=True)
def loglinear_projected_newton(theta: np.ndarray, features: np.ndarray, leaf_logref: np.ndarray, data: LeafData,
                               loss: LossParameters, radius: float, n_terms: float, tolerance: float,
                               max_iterations: int, work: LogLinearWork) -> tuple[float, int, int]:
    """Minimize ``F`` over the ball from ``theta`` (in place; module docstring). Returns ``(F, status, iterations)``.

    ``status``: ``STATUS_CONVERGED`` (per-sample projected gradient ``<= tolerance``),
    ``STATUS_MAX_ITERATIONS`` or ``STATUS_LINE_SEARCH`` (no decrease found along the direction).
    """
    dim = theta.shape[0]
    project_onto_ball(theta, radius)
    value = loglinear_objective(theta, features, leaf_logref, data, loss, 1, work)
    iterations = 0
    while True:
        if ball_projected_gradient(theta, work.grad, n_terms, radius) <= tolerance:
            return value, STATUS_CONVERGED, iterations
        if iterations >= max_iterations:
            return value, STATUS_MAX_ITERATIONS, iterations
        loglinear_objective(theta, features, leaf_logref, data, loss, 2, work)  # the Hessian, only when needed
        eigenvalues, eigenvectors = np.linalg.eigh(work.hess)
        noise = OBJECTIVE_NOISE * (abs(value) + 1.0)
        # 1) the exact trust-region model's minimizer over the ball (Newton-KKT step), accepted
        #    when F decreases by a fraction of the model's predicted decrease (trust-region ratio test)
        ok, _ = ball_model_minimizer(theta, work.grad, eigenvalues, eigenvectors, radius, True, work.target)
        accepted = False
        if ok:
            # the predicted decrease is >= 0 in exact arithmetic; near a KKT point on the sphere it is
            # swamped by rounding (g is large and radial, the step tiny), hence max(., 0) and the noise
            predicted = -_model_change(theta, work.grad, work.hess, work.target)
            if predicted > -noise:
                for i in range(dim):
                    work.trial[i] = work.target[i]
                trial_value = loglinear_objective(work.trial, features, leaf_logref, data, loss, 0, work)
                accepted = trial_value <= value - ARMIJO * max(predicted, 0.0) + noise
        if not accepted:
            # 2) the convexified model's minimizer (always a descent direction) with Armijo backtracking
            ball_model_minimizer(theta, work.grad, eigenvalues, eigenvectors, radius, False, work.target)
            slope = _model_slope(theta, work.grad, work.target)
            if slope >= 0.0 and slope <= noise:
                slope = 0.0  # rounding-level slope (see above): let the noise-tolerant test decide
            elif not slope < 0.0:
                # rounding made the model step useless: a projected gradient step
                top = 0.0
                for i in range(dim):
                    top = max(top, abs(work.hess[i, i]))
                scale = 1.0 / top if top > 0.0 else 1.0 / n_terms
                for i in range(dim):
                    work.target[i] = theta[i] - scale * work.grad[i]
                project_onto_ball(work.target, radius)
                slope = _model_slope(theta, work.grad, work.target)
                if not slope < 0.0:
                    return value, STATUS_LINE_SEARCH, iterations
            step = 1.0
            for _ in range(MAX_BACKTRACKS):
                for i in range(dim):
                    work.trial[i] = theta[i] + step * (work.target[i] - theta[i])
                trial_value = loglinear_objective(work.trial, features, leaf_logref, data, loss, 0, work)
                if trial_value <= value + ARMIJO * step * slope + noise:
                    accepted = True
                    break
                step *= 0.5
        if not accepted:
            return value, STATUS_LINE_SEARCH, iterations
        for i in range(dim):
            theta[i] = work.trial[i]
        iterations += 1
        value = loglinear_objective(theta, features, leaf_logref, data, loss, 1, work)


@njit(cache=True)
def loglinear_multistart(theta: np.ndarray, features: np.ndarray, leaf_logref: np.ndarray, data: LeafData,
                         loss: LossParameters, radius: float, n_terms: float, tolerance: float, max_iterations: int,
                         starts: np.ndarray, disagreement_tolerance: float,
                         work: LogLinearWork) -> tuple[float, int, int, bool, bool]:
    """:func:`loglinear_projected_newton` from the warm start ``theta`` and from every row of ``starts``.

    The lowest objective wins; a start replaces the incumbent only if lower by more than
    ``disagreement_tolerance * max(1, |F|)`` (ties go to the warm start). Returns
    ``(F, status of the winner, total iterations, disagreement, improved)``: ``disagreement`` if two
    starts ended with objectives further apart than that tolerance, ``improved`` if a restart beat
    the warm start. ``theta`` gets the winner.
    """
    dim = theta.shape[0]
    for i in range(dim):
        work.warm[i] = theta[i]
    value, status, iterations = loglinear_projected_newton(theta, features, leaf_logref, data, loss, radius,
                                                           n_terms, tolerance, max_iterations, work)
    if starts.shape[0] == 0:
        return value, status, iterations, False, False
    for i in range(dim):
        work.best[i] = theta[i]
    best_value = value
    best_status = status
    lowest = value
    highest = value
    for r in range(starts.shape[0]):
        for i in range(dim):
            theta[i] = starts[r, i]
        value_r, status_r, iterations_r = loglinear_projected_newton(theta, features, leaf_logref, data, loss,
                                                                     radius, n_terms, tolerance, max_iterations,
                                                                     work)
        iterations += iterations_r
        lowest = min(lowest, value_r)
        highest = max(highest, value_r)
        if improves_on(value_r, best_value, disagreement_tolerance):
            best_value = value_r
            best_status = status_r
            for i in range(dim):
                work.best[i] = theta[i]
    for i in range(dim):
        theta[i] = work.best[i]
    disagreement = values_disagree(highest, lowest, lowest, disagreement_tolerance)
    return best_value, best_status, iterations, disagreement, best_value < value


@njit(cache=True)
def loglinear_write_view(theta: np.ndarray, features: np.ndarray, leaf_logref: np.ndarray, beta: float,
                         view: IterateView, changed: np.ndarray, work: LogLinearWork) -> None:
    """Slot log weights ``log pi_ref + <theta, phi>/beta`` of every slot of every context; marks all changed."""
    for x in range(view.n_slots.shape[0]):
        loglinear_context_logits(theta, features, leaf_logref, beta, x, work.scaled, work.logw)
        for s in range(view.n_slots[x]):
            view.slot_logw[x, s] = work.logw[view.slot_leaf[x, s]]
        view_normalize(view, x)
        changed[x] = True


@njit(cache=True)
def loglinear_gradient_step(theta: np.ndarray, features: np.ndarray, leaf_logref: np.ndarray, data: LeafData,
                            loss: LossParameters, radius: float, learning_rate: float,
                            work: LogLinearWork) -> float:
    """trl mode: ``theta <- P_ball[theta - learning_rate * grad F_batch(theta)]``; returns ``F_batch`` before the step.

    ``data`` holds the fresh batch with weights ``1/B`` (the batch mean, as trl's trainers use).
    """
    value = loglinear_objective(theta, features, leaf_logref, data, loss, 1, work)
    for i in range(theta.shape[0]):
        theta[i] -= learning_rate * work.grad[i]
    project_onto_ball(theta, radius)
    return value


# ============================================================================ the class
LogLinearState = namedtuple(
    "LogLinearState",
    [
        "theta",  # (d,) current parameter
        "features",  # (nc, L, d)
        "leaf_logref",  # (nc, L)
        "radius",  # float B
        "beta",  # float
        "starts",  # (restarts, d) restart points, uniform in the ball
        "work",  # LogLinearWork
        "settings",  # SolverSettings
    ],
)
LogLinearState.__doc__ = """Mutable parameters and scratch of the log-linear class."""


def uniform_ball_points(uniforms: np.ndarray, radius: float) -> np.ndarray:
    """Points uniform in the ball of ``R^d`` from rows of ``d + 1`` uniforms in ``(0, 1)``.

    Direction: normalized standard normals (inverse normal CDF of the first ``d`` uniforms);
    radius ``radius * u_{d+1}^{1/d}``.
    """
    from scipy.special import ndtri

    uniforms = np.asarray(uniforms, dtype=np.float64)
    n, dim = uniforms.shape[0], uniforms.shape[1] - 1
    tiny = np.finfo(float).tiny
    gauss = ndtri(np.clip(uniforms[:, :dim], tiny, 1.0 - 2.0**-53))
    norms = np.linalg.norm(gauss, axis=1, keepdims=True)
    norms[norms == 0.0] = 1.0
    r = radius * np.clip(uniforms[:, dim:], 0.0, 1.0) ** (1.0 / dim)
    return np.ascontiguousarray((gauss / norms * r).reshape(n, dim))


class LogLinearClass(PolicyClass):
    """Log-linear class ``{pi_theta ∝ pi_ref e^{<theta, phi>/beta} : ||theta|| <= B}`` (module docstring).

    Parameters
    ----------
    bound : the radius ``B`` (> 0). ``None``: ``||env.reward_parameter||`` (the smallest radius that is
        realizable on ``linear_bandit`` / ``linear_token_mdp``); an environment without
        ``reward_parameter`` then needs an explicit bound.
    """

    name = "loglinear"
    is_context_separable = False
    supports_gradient_steps = True

    def __init__(self, bound: float | None = None) -> None:
        self.bound = check_optional_bound(bound)

    # ---------------------------------------------------------------- setup
    def radius(self, env: TokenMDP) -> float:
        """The ball radius ``B`` used on ``env``."""
        if self.bound is not None:
            return self.bound
        if env.reward_parameter is None:
            raise ValueError(
                "bound must be given for an environment without reward_parameter "
                f"(env {env.name!r}); the default B = ||reward_parameter|| needs a linear instance"
            )
        norm = float(np.linalg.norm(env.reward_parameter))
        if norm <= 0.0:
            raise ValueError("bound must be given: env.reward_parameter is zero, so the default B would be 0")
        return norm

    def validate(self, env: TokenMDP) -> None:
        if not isinstance(env, TokenMDP):
            raise ValueError(f"env must be an xposim.envs.TokenMDP, got {type(env).__name__}")
        if env.features is None:
            raise ValueError(
                f"env must have trajectory features (env.features of shape (n_contexts, n_leaves, d)) "
                f"for the log-linear class; {env.name!r} has none"
            )
        self.radius(env)

    def create_state(self, env: TokenMDP, arrays: EnvArrays, beta: float, settings: SolverSettings,
                     rng: np.random.Generator | None = None) -> LogLinearState:
        """State with ``theta = 0`` (``pi^(1) = pi_ref``).

        Random starts: ``(settings.restarts, n_leaves + 1)`` uniforms drawn from ``rng``
        (:func:`~xposim.policies.solving.draw_restart_uniforms`); each row becomes ``d + 1`` uniforms (:func:`expand_uniforms`)
        and then a point uniform in the ball (:func:`uniform_ball_points`). ``rng = None`` is allowed
        only with ``settings.restarts == 0``.
        """
        self.validate(env)
        beta = check_positive(beta, "beta")
        features = np.ascontiguousarray(env.features, dtype=np.float64)
        dim = features.shape[2]
        radius = self.radius(env)
        starts = np.zeros((0, dim))
        refuse_champion_starts(settings)
        pool = draw_restart_uniforms(rng, settings, arrays.leaf_logref.shape[1])
        if settings.restarts:
            starts = uniform_ball_points(expand_uniforms(pool, dim + 1), radius)
        return LogLinearState(
            theta=np.zeros(dim),
            features=features,
            leaf_logref=np.ascontiguousarray(arrays.leaf_logref, dtype=np.float64),
            radius=radius,
            beta=float(beta),
            starts=starts,
            work=new_loglinear_work(features.shape[1], dim),
            settings=settings,
        )

    def initial_view(self, arrays: EnvArrays, state: LogLinearState) -> IterateView:
        """``pi_ref`` with every leaf as a slot (slot ``s`` = leaf ``s``)."""
        return all_leaves_view(arrays, state.leaf_logref)

    # ---------------------------------------------------------------- rounds
    def solve(self, problem: Any, state: LogLinearState, view: IterateView, contexts: np.ndarray,
              workspace: Any = None) -> None:
        """Paper mode: ``theta <- argmin F`` over all the data (every context with data; ``contexts`` only
        says which got new data — the class is not separable). Writes the view, sets ``problem.changed``
        and the ``problem.counters``."""
        check_all_leaf_slots(view, self.name)
        data = gather_problem_data(problem, view, None)
        loss = loss_parameters(problem)
        terms = number_of_terms(data)
        problem.counters[COUNTER_SOLVES] += 1
        if terms == 0.0:
            return
        bonus_active = loss.bonus_kind != BONUS_NONE and loss.alpha > 0.0 and data.bonus_leaf.shape[0] > 0
        starts = state.starts if bonus_active else state.starts[:0]
        s = state.settings
        _, status, iterations, disagreement, improved = loglinear_multistart(
            state.theta, state.features, state.leaf_logref, data, loss, state.radius, terms, s.tolerance,
            s.max_iterations, starts, s.disagreement_tolerance, state.work)
        record_solve(problem.counters, iterations, status == STATUS_CONVERGED, disagreement, improved)
        if may_be_nonconvex(loss.pair_kind, loss.bonus_kind, loss.alpha):  # a local method: no certificate
            record_certificate(problem.counters, problem.largest_gap, 0.0, -math.inf, False)
        loglinear_write_view(state.theta, state.features, state.leaf_logref, state.beta, view, problem.changed,
                             state.work)

    def gradient_step(self, problem: Any, state: LogLinearState, view: IterateView, batch: Any,
                      learning_rate: float | None = None, workspace: Any = None) -> None:
        """trl mode: one projected gradient step of the fresh batch's mean loss (see :func:`loglinear_gradient_step`)."""
        check_all_leaf_slots(view, self.name)
        data, lr = batch_leaf_data(problem, view, batch, learning_rate)
        loglinear_gradient_step(state.theta, state.features, state.leaf_logref, data, loss_parameters(problem),
                                state.radius, lr, state.work)
        problem.counters[COUNTER_SOLVES] += 1
        loglinear_write_view(state.theta, state.features, state.leaf_logref, state.beta, view, problem.changed,
                             state.work)

    # ---------------------------------------------------------------- outputs
    def leaf_values(self, state: LogLinearState) -> np.ndarray:
        """``f_theta(x, tau) = <theta, phi(x, tau)>``, ``(n_contexts, n_leaves)``."""
        return state.features @ state.theta

    def token_policy(self, env: TokenMDP, state: LogLinearState) -> np.ndarray:
        """Token-level ``pi_theta(a|s)`` ``(n_contexts, n_states, A)`` for :func:`xposim.exact.evaluate`."""
        return exact.policy_from_leaf_values(env, self.leaf_values(state), state.beta)[0]

    def describe(self) -> dict:
        return {"policy_class": self.name, "bound": self.bound}
