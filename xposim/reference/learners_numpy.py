"""Plain numpy + scipy reference of the tabular learners (tests and benchmarks only).

* :func:`tabular_objective` — the per-context objective of :mod:`xposim.policies.tabular` and its
  gradient, vectorized numpy with the numpy loss references of :mod:`xposim.reference.losses_numpy`.
* :func:`scipy_argmin` — the same objective minimized by ``scipy.optimize.minimize(L-BFGS-B)``
  with box bounds.
* :func:`reference_run` — the whole XPO / online-DPO round loop, written plainly: full
  ``(n_leaves,)`` parameter vectors per context (every leaf a variable), dense pair-count matrices,
  L-BFGS-B warm-started each round on the per-sample objective with ``pgtol = tolerance``.
  It consumes the run's uniforms exactly like the engine (same stream layout), so with the same
  seed it follows the same trajectory as long as the policies agree.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

from xposim.reference import losses_numpy as L

PAIR_NAMES = {0: "dpo", 1: "ipo", 2: "chipo"}
BONUS_NAMES = {0: "none", 1: "xpo", 2: "vpo", 3: "selm", 4: "popo", 5: "copo"}


def tabular_objective(values: np.ndarray, log_ref_weight: np.ndarray, chosen: np.ndarray, rejected: np.ndarray,
                      pair_weight: np.ndarray, bonus_count: np.ndarray, bonus_weight: np.ndarray,
                      loss_ref_logp: np.ndarray, pair: str, pair_param: float, bonus: str, alpha: float,
                      beta: float) -> tuple[float, np.ndarray]:
    """``F(v)`` and ``dF/dv`` of one context of the tabular class.

    ``values (n,)``: parameters (leaf values; an aggregate leaf is just a variable with zero counts);
    ``log_ref_weight (n,)``: log reference mass of each variable; edges ``chosen[e] > rejected[e]``
    with counts ``pair_weight[e]``; ``bonus_count/bonus_weight/loss_ref_logp (n,)``.
    ``log pi(j) = log_ref_weight_j + v_j/beta - logsumexp(...)``, ``l = log pi - loss_ref_logp``.
    """
    v = np.asarray(values, dtype=np.float64)
    z = log_ref_weight + v / beta
    logp = z - logsumexp(z)
    p = np.exp(logp)
    l = logp - loss_ref_logp
    d = np.zeros_like(v)
    value = 0.0
    if len(chosen):
        loss, dc, dr = L.pair_loss(pair, l[chosen], l[rejected], beta, pair_param)
        value += float(np.sum(pair_weight * loss))
        np.add.at(d, chosen, pair_weight * dc)
        np.add.at(d, rejected, pair_weight * dr)
    if bonus != "none":
        used = bonus_count > 0
        if np.any(used):
            loss, dl = L.bonus_loss(bonus, logp[used], loss_ref_logp[used], alpha, beta, bonus_weight[used])
            value += float(np.sum(bonus_count[used] * loss))
            d[used] += bonus_count[used] * dl
    grad = (d - p * d.sum()) / beta
    return value, grad


def scipy_argmin(start: np.ndarray, lower: float, upper: float, scale: float, tolerance: float = 1e-8,
                 **objective_args) -> tuple[np.ndarray, float]:
    """L-BFGS-B on ``F/scale`` over ``[lower, upper]^n`` from ``start``; returns ``(v, F)``."""

    def fun(v):
        value, grad = tabular_objective(v, **objective_args)
        return value / scale, grad / scale

    result = minimize(fun, np.asarray(start, dtype=np.float64), jac=True, method="L-BFGS-B",
                      bounds=[(lower, upper)] * len(start),
                      options={"ftol": 1e-15, "gtol": tolerance, "maxiter": 10_000,
                               "maxcor": 20})
    value, _ = tabular_objective(result.x, **objective_args)
    return result.x, value


def _search(cdf: np.ndarray, u: float) -> int:
    i = int(np.searchsorted(cdf, u, side="right"))
    return min(i, len(cdf) - 1)


def reference_run(env, beta: float, rounds: int, uniforms: np.ndarray, alpha: float = 0.0,
                  learner: str = "xpo", tolerance: float = 1e-8, record_every: int = 1,
                  initial_value: float | None = None, round_seconds: list | None = None):
    """The XPO (``learner='xpo'``: pairs ``(pi^(t), pi_ref)``, bonus ``alpha log pi(tau~)``) or online DPO
    (``'online_dpo'``) loop on the tabular class with Bradley–Terry labels, plainly.

    ``uniforms``: ``(rounds, 5)`` (context, first, second, label, unused) — the engine's layout.
    Returns ``(values (nc, L), sampled (rounds, 3) [x, tau, tau~], J (rounds + 1,))`` with ``J[t]`` the
    value of ``pi^(t+1)`` recorded every ``record_every`` rounds (NaN otherwise). ``round_seconds``:
    if a list, the wall time of every round is appended to it (benchmarks).
    """
    import time
    logref = np.asarray(env.trajectory_ref_logprobs, dtype=np.float64)
    reward = np.asarray(env.trajectory_rewards, dtype=np.float64)
    n_contexts, n_leaves = logref.shape
    r_max = float(env.r_max)
    possible = logref > -np.inf
    start = r_max / 2.0 if initial_value is None else initial_value
    values = np.full((n_contexts, n_leaves), start)
    counts = np.zeros((n_contexts, n_leaves, n_leaves))
    bonus_counts = np.zeros((n_contexts, n_leaves))
    rho_cdf = np.cumsum(env.rho) / np.sum(env.rho)
    ref_cdf = np.cumsum(np.exp(logref), axis=1)
    ref_cdf /= ref_cdf[:, -1:]
    sampled = np.zeros((rounds, 3), dtype=np.int64)
    values_j = np.full(rounds + 1, np.nan)

    def policy(x):
        z = np.where(possible[x], logref[x] + values[x] / beta, -np.inf)
        return z - logsumexp(z)

    def kl_value():
        total = 0.0
        for x in range(n_contexts):
            lp = policy(x)
            p = np.exp(lp)
            ok = p > 0
            total += env.rho[x] * np.sum(p[ok] * (reward[x, ok] - beta * (lp[ok] - logref[x, ok])))
        return total

    # observed leaves in order of first appearance: the engine's inverse CDF visits them first,
    # then the unobserved leaves in index order
    observed = [[] for _ in range(n_contexts)]

    def draw_policy(x, u):
        seen = observed[x]
        rest = np.setdiff1d(np.arange(n_leaves), np.asarray(seen, dtype=np.int64))
        order = np.concatenate([np.asarray(seen, dtype=np.int64), rest])
        cdf = np.cumsum(np.exp(policy(x))[order])
        return int(order[_search(cdf / cdf[-1], u)])

    def observe(x, leaf):
        if leaf not in observed[x]:
            observed[x].append(leaf)

    values_j[0] = kl_value()
    for t in range(rounds):
        started = time.perf_counter()
        u = uniforms[t]
        x = _search(rho_cdf, u[0])
        tau = draw_policy(x, u[1])
        if learner == "xpo":
            other = _search(ref_cdf[x], u[2])
        else:
            other = draw_policy(x, u[2])
        observe(x, tau)
        observe(x, other)
        p_first = 1.0 / (1.0 + math.exp(-(reward[x, tau] - reward[x, other])))
        chosen, rejected = (tau, other) if u[3] < p_first else (other, tau)
        if chosen != rejected:
            counts[x, chosen, rejected] += 1.0
        if learner == "xpo":
            bonus_counts[x, other] += 1.0
        sampled[t] = (x, tau, other)
        idx = np.flatnonzero(possible[x])
        position = -np.ones(n_leaves, dtype=np.int64)
        position[idx] = np.arange(len(idx))
        a, b = np.nonzero(counts[x])
        weights = counts[x, a, b]
        scale = max(1.0, weights.sum() + bonus_counts[x].sum())
        args = dict(
            log_ref_weight=logref[x, idx], chosen=position[a], rejected=position[b], pair_weight=weights,
            bonus_count=bonus_counts[x, idx], bonus_weight=np.ones(len(idx)), loss_ref_logp=logref[x, idx],
            pair="dpo", pair_param=r_max, bonus="xpo" if learner == "xpo" else "none", alpha=alpha, beta=beta,
        )
        new, _ = scipy_argmin(values[x, idx], 0.0, r_max, scale, tolerance, **args)
        values[x, idx] = new
        if (t + 1) % record_every == 0:
            values_j[t + 1] = kl_value()
        if round_seconds is not None:
            round_seconds.append(time.perf_counter() - started)
    return values, sampled, values_j
