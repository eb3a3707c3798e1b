"""Plain numpy + scipy reference for the log-linear class (THEORY 3): objective, argmin, XPO loop.

* :func:`loglinear_objective_numpy` — ``F(theta)`` and its gradient, vectorized over pairs with the
  reference losses of :mod:`xposim.reference.losses_numpy` (no numba, no shared code with
  :mod:`xposim.policies.loglinear` beyond the data layout
  :class:`~xposim.policies.leaf_data.LeafData`).
* :func:`solve_loglinear_scipy` — ``argmin_{||theta|| <= B} F`` with ``scipy.optimize.minimize``
  (SLSQP or trust-constr, the ball as an inequality constraint).
* :func:`reference_xpo_loop` — XPO (Algorithm 1) with the log-linear class written as a plain
  Python loop, one warm-started scipy solve per round: the baseline of
  ``benchmarks/bench_learners_classes.py``.
"""
from __future__ import annotations

import time

import numpy as np
from scipy.optimize import NonlinearConstraint, minimize
from scipy.special import logsumexp

from xposim.losses.kinds import BONUS_NAMES, BONUS_NONE, BONUS_XPO, PAIR_DPO, PAIR_NAMES
from xposim.policies.leaf_data import LeafData, LossParameters, make_leaf_data
from xposim.reference import losses_numpy
from xposim.seeding import make_rng


def _leaf_logprobs(theta, features, leaf_logref, beta, contexts):
    """``log pi_theta(tau|x)`` ``(m, L)`` and ``E_pi[phi]`` ``(m, d)`` for the listed contexts."""
    phi = features[contexts]
    with np.errstate(invalid="ignore"):
        logw = leaf_logref[contexts] + phi @ theta / beta
    logp = logw - logsumexp(logw, axis=1, keepdims=True)
    prob = np.exp(logp)
    mean = np.einsum("ml,mld->md", prob, phi)
    return logp, mean


def loglinear_objective_numpy(theta, features, leaf_logref, data: LeafData, loss: LossParameters):
    """``(F(theta), grad F(theta))`` of the log-linear objective (see :mod:`xposim.policies.loglinear`).

    ``grad F = sum_terms dloss/dlog pi(tau) * (phi(tau) - E_pi[phi]) / beta``.
    """
    theta = np.asarray(theta, dtype=np.float64)
    beta = loss.beta
    contexts = np.asarray(data.contexts)
    logp, mean = _leaf_logprobs(theta, features, leaf_logref, beta, contexts)
    pair_ctx = np.repeat(np.arange(contexts.size), np.diff(data.pair_ptr))
    bonus_ctx = np.repeat(np.arange(contexts.size), np.diff(data.bonus_ptr))
    grad = np.zeros_like(theta)
    value = 0.0
    if pair_ctx.size:
        c, r, w = data.pair_chosen, data.pair_rejected, data.pair_weight
        l_c = logp[pair_ctx, c] - data.pair_chosen_ref
        l_r = logp[pair_ctx, r] - data.pair_rejected_ref
        term, d_c, d_r = losses_numpy.pair_loss(PAIR_NAMES[loss.pair_kind], l_c, l_r, beta, loss.pair_param)
        value += float(np.sum(w * term))
        x = contexts[pair_ctx]
        grad_c = (features[x, c] - mean[pair_ctx]) / beta
        grad_r = (features[x, r] - mean[pair_ctx]) / beta
        grad += ((w * d_c)[:, None] * grad_c + (w * d_r)[:, None] * grad_r).sum(axis=0)
    if bonus_ctx.size and loss.bonus_kind != BONUS_NONE:
        y, m = data.bonus_leaf, data.bonus_count
        lp = logp[bonus_ctx, y]
        term, d_y = losses_numpy.bonus_loss(BONUS_NAMES[loss.bonus_kind], lp, data.bonus_ref, loss.alpha, beta,
                                            data.bonus_weight)
        value += float(np.sum(m * term))
        x = contexts[bonus_ctx]
        grad += ((m * d_y)[:, None] * (features[x, y] - mean[bonus_ctx]) / beta).sum(axis=0)
    return value, grad


def ball_projected_gradient_numpy(theta, grad, n_terms, radius) -> float:
    """``max_i |theta_i - P[theta - grad/N]_i|`` (the stopping rule of :class:`SolverSettings`)."""
    v = theta - grad / n_terms
    norm = np.linalg.norm(v)
    if norm > radius:
        v = v * (radius / norm)
    return float(np.max(np.abs(theta - v)))


def solve_loglinear_scipy(theta0, features, leaf_logref, data: LeafData, loss: LossParameters, radius: float,
                          method: str = "SLSQP", tolerance: float = 1e-8, max_iterations: int = 1000):
    """``argmin_{||theta|| <= radius} F(theta)`` by ``scipy.optimize.minimize`` from ``theta0``.

    ``method="SLSQP"`` (``ftol=1e-15``) or ``"trust-constr"`` (``gtol = tolerance``). Returns
    ``(theta, F(theta), projected gradient)``; the projected gradient uses ``N`` = number of terms.
    """
    n_terms = float(np.sum(data.pair_weight) + np.sum(data.bonus_count))

    def fun(t):
        return loglinear_objective_numpy(t, features, leaf_logref, data, loss)

    if method == "SLSQP":
        constraint = {"type": "ineq", "fun": lambda t: radius * radius - t @ t, "jac": lambda t: -2.0 * t}
        result = minimize(fun, np.asarray(theta0, dtype=np.float64), jac=True, method="SLSQP",
                          constraints=[constraint], options={"ftol": 1e-15, "maxiter": max_iterations})
    elif method == "trust-constr":
        constraint = NonlinearConstraint(lambda t: t @ t, -np.inf, radius * radius, jac=lambda t: 2.0 * t[None, :])
        result = minimize(fun, np.asarray(theta0, dtype=np.float64), jac=True, method="trust-constr",
                          constraints=[constraint],
                          options={"gtol": tolerance, "xtol": 1e-14, "maxiter": max_iterations})
    else:
        raise ValueError(f"method must be 'SLSQP' or 'trust-constr', got {method!r}")
    theta = np.asarray(result.x, dtype=np.float64)
    norm = np.linalg.norm(theta)
    if norm > radius:
        theta = theta * (radius / norm)
    value, grad = fun(theta)
    return theta, value, ball_projected_gradient_numpy(theta, grad, max(n_terms, 1.0), radius)


def reference_xpo_loop(env, beta: float, alpha: float, rounds: int, seed, radius: float,
                       tolerance: float = 1e-8, method: str = "SLSQP", solve=None, after_round=None):
    """XPO (Algorithm 1) with the log-linear class as a plain numpy + scipy loop.

    Round ``t``: ``x ~ rho``; ``tau ~ pi_theta(.|x)``; ``tau~ ~ pi_ref(.|x)``; Bradley–Terry label;
    pair counts and bonus counts (on ``tau~``) are kept in dicts; ``theta`` = warm-started
    :func:`solve_loglinear_scipy` over all data, or ``solve(theta, data, loss) -> (theta, value)``
    when given. ``after_round(t, theta, value, data, loss)`` (``t`` from 1) runs after each round,
    outside the timing. Returns ``(theta, seconds_per_round (rounds,))``. Its random stream differs
    from the engine's (same algorithm, not the same draws).
    """
    rng = make_rng(seed)
    features = np.ascontiguousarray(env.features, dtype=np.float64)
    leaf_logref = np.ascontiguousarray(env.trajectory_ref_logprobs, dtype=np.float64)
    rewards = np.asarray(env.trajectory_rewards)
    rho = np.asarray(env.rho)
    ref_prob = np.exp(leaf_logref)
    pairs: dict[tuple[int, int, int], float] = {}
    bonus: dict[tuple[int, int], float] = {}
    theta = np.zeros(features.shape[2])
    loss = LossParameters(PAIR_DPO, 0.0, BONUS_XPO, float(alpha), float(beta))
    seconds = np.empty(rounds)
    for t in range(rounds):
        start = time.perf_counter()
        x = int(rng.choice(rho.size, p=rho))
        logw = leaf_logref[x] + features[x] @ theta / beta
        policy = np.exp(logw - logsumexp(logw))
        tau = int(rng.choice(policy.size, p=policy / policy.sum()))
        tau_ref = int(rng.choice(policy.size, p=ref_prob[x] / ref_prob[x].sum()))
        first_wins = rng.random() < 1.0 / (1.0 + np.exp(-(rewards[x, tau] - rewards[x, tau_ref])))
        chosen, rejected = (tau, tau_ref) if first_wins else (tau_ref, tau)
        if chosen != rejected:
            pairs[(x, chosen, rejected)] = pairs.get((x, chosen, rejected), 0.0) + 1.0
        bonus[(x, tau_ref)] = bonus.get((x, tau_ref), 0.0) + 1.0
        keys = list(pairs)
        bkeys = list(bonus)
        data = make_leaf_data(
            leaf_logref, sorted({k[0] for k in keys} | {k[0] for k in bkeys}),
            [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [pairs[k] for k in keys],
            [k[0] for k in bkeys], [k[1] for k in bkeys], [bonus[k] for k in bkeys],
        )
        if solve is None:
            theta, value, _ = solve_loglinear_scipy(theta, features, leaf_logref, data, loss, radius, method=method,
                                                    tolerance=tolerance)
        else:
            theta, value = solve(theta, data, loss)
        seconds[t] = time.perf_counter() - start
        if after_round is not None:
            after_round(t + 1, theta, value, data, loss)
    return theta, seconds
