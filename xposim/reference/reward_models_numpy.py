"""Plain numpy + scipy reference of the reward-model learners (tests only).

* the Bradley–Terry MLE by ``scipy.optimize.minimize`` (:func:`mle_scipy`) and its objective;
* the inverse design matrix by ``numpy.linalg.inv`` (:func:`design_inverse`);
* ``pi_hat`` and its exact ``J_beta`` (:func:`policy_numpy`);
* each query rule on dense arrays (:func:`maxinp_numpy`, :func:`colstim_numpy`,
  :func:`thompson_ee_numpy`, :func:`thompson_bai_numpy`);
* :func:`reference_run` — the round loop of the passive, MaxInP and CoLSTIM learners written
  plainly (design matrix summed and inverted, MLE by scipy each round), consuming the run's
  uniforms like :mod:`xposim.learners.reward_models.loop` (same layout), so with the same seed it
  follows the same trajectory as long as no argmax is a near-tie.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit, logsumexp

from xposim.oracles import oracle_from_code


def pair_vectors(features: np.ndarray | None, n_leaves: int, x: np.ndarray, i: np.ndarray,
                 j: np.ndarray) -> np.ndarray:
    """``z = phi(x, i) - phi(x, j)`` rows (``features`` None: one-hot ``e_i - e_j`` of length ``n_leaves``)."""
    if features is None:
        z = np.zeros((len(x), n_leaves))
        z[np.arange(len(x)), i] += 1.0
        z[np.arange(len(x)), j] -= 1.0
        return z
    return features[x, i] - features[x, j]


def objective_numpy(theta: np.ndarray, z: np.ndarray, n: np.ndarray, w: np.ndarray,
                    ridge: float) -> tuple[float, np.ndarray, np.ndarray]:
    """``(F, grad F, Hessian)`` of ``sum n softplus(s) - w s + (ridge/2)||theta||^2``, ``s = z theta``."""
    s = z @ theta
    value = float(np.sum(-n * log_expit(-s) - w * s) + 0.5 * ridge * theta @ theta)
    grad = z.T @ (n * expit(s) - w) + ridge * theta
    hess = (z * (n * expit(s) * expit(-s))[:, None]).T @ z + ridge * np.eye(len(theta))
    return value, grad, hess


def mle_scipy(z: np.ndarray, n: np.ndarray, w: np.ndarray, ridge: float, theta0=None) -> np.ndarray:
    """The penalized MLE by ``scipy.optimize.minimize(method='trust-exact')`` to ``gtol = 1e-13``."""
    d = z.shape[1]
    x0 = np.zeros(d) if theta0 is None else np.asarray(theta0, dtype=np.float64)
    result = minimize(lambda t: objective_numpy(t, z, n, w, ridge)[0], x0,
                      jac=lambda t: objective_numpy(t, z, n, w, ridge)[1],
                      hess=lambda t: objective_numpy(t, z, n, w, ridge)[2],
                      method="trust-exact", options={"gtol": 1e-13, "maxiter": 1000})
    return result.x


def design_inverse(z: np.ndarray, ridge: float, d: int) -> np.ndarray:
    """``(ridge I + sum z z^T)^{-1}`` by ``numpy.linalg.inv`` (every row of ``z`` one query)."""
    return np.linalg.inv(ridge * np.eye(d) + z.T @ z)


def policy_numpy(logref: np.ndarray, reward: np.ndarray, values: np.ndarray,
                 beta: float) -> tuple[np.ndarray, float, float, float]:
    """``(pi, J, E r, KL)`` of ``pi ∝ exp(logref + values / beta)`` on one context."""
    logw = np.where(logref > -np.inf, logref + values / beta, -np.inf)
    logp = logw - logsumexp(logw)
    p = np.exp(logp)
    support = p > 0
    kl = float(np.sum(p[support] * (logp[support] - logref[support])))
    r = float(p @ reward)
    return p, r - beta * max(kl, 0.0), r, max(kl, 0.0)


def maxinp_numpy(arms: np.ndarray, rhat: np.ndarray, phi: np.ndarray, inverse: np.ndarray,
                 radius: float) -> tuple[int, int]:
    """MaxInP on leaves ``arms`` with features ``phi (L, d)``: survivors, then the widest pair (first on ties)."""
    diff = phi[arms][:, None, :] - phi[arms][None, :, :]
    dist = np.sqrt(np.maximum(np.einsum("abk,kl,abl->ab", diff, inverse, diff), 0.0))
    margin = rhat[arms][:, None] - rhat[arms][None, :] + radius * dist
    keep = np.all(margin >= -1e-12, axis=1)
    kept = np.flatnonzero(keep)
    best, pair = -1.0, (arms[kept[0]], arms[kept[0]])
    for a_pos, a in enumerate(kept):
        for b in kept[a_pos + 1:]:
            if dist[a, b] ** 2 > best:
                best, pair = dist[a, b] ** 2, (arms[a], arms[b])
    return int(pair[0]), int(pair[1])


def gumbel_numpy(u: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(u > 0, -np.log(-np.log(np.where(u > 0, u, 0.5))), -np.inf)


def colstim_numpy(arms: np.ndarray, rhat: np.ndarray, phi: np.ndarray, inverse: np.ndarray, width: float,
                  threshold: float, uniforms: np.ndarray) -> tuple[int, int]:
    """CoLSTIM: perturbed-utility first arm, optimistic challenger second (first on ties)."""
    eps = np.clip(gumbel_numpy(uniforms[arms]), -threshold, threshold)
    q = np.einsum("ak,kl,al->a", phi[arms], inverse, phi[arms])
    first = arms[int(np.argmax(rhat[arms] + eps * np.sqrt(np.maximum(q, 0.0))))]
    diff = phi[arms] - phi[first]
    dist = np.sqrt(np.maximum(np.einsum("ak,kl,al->a", diff, inverse, diff), 0.0))
    return int(first), int(arms[int(np.argmax(rhat[arms] + width * dist))])


def box_muller_numpy(uniforms: np.ndarray, n: int) -> np.ndarray:
    u1, u2 = uniforms[0::2], uniforms[1::2]
    radius = np.sqrt(-2.0 * np.log(1.0 - u1))
    out = np.empty(2 * len(u1))
    out[0::2] = radius * np.cos(2 * np.pi * u2)
    out[1::2] = radius * np.sin(2 * np.pi * u2)
    return out[:n]


def _sample(theta, factor, scale, normals):
    return theta + scale * np.linalg.solve(factor.T, normals)


def thompson_ee_numpy(arms, phi, theta, factor, scale, samples, uniforms) -> tuple[int, int]:
    """Explore–exploit Thompson sampling with posterior ``N(theta, scale^2 (C C^T)^{-1})``."""
    d = len(theta)
    normals = box_muller_numpy(uniforms, samples * d)
    picks = [int(arms[np.argmax(phi[arms] @ _sample(theta, factor, scale, normals[s * d:(s + 1) * d]))])
             for s in range(samples)]
    for other in picks[1:]:
        if other != picks[0]:
            return picks[0], other
    return picks[0], picks[0]


def thompson_bai_numpy(arms, phi, theta, factor, scale, uniforms) -> tuple[int, int]:
    """Best-arm-identification Thompson sampling: sampled argmax, then the most uncertain challenger."""
    d = len(theta)
    first = int(arms[np.argmax(phi[arms] @ _sample(theta, factor, scale, box_muller_numpy(uniforms, d)))])
    cov = np.linalg.inv(factor @ factor.T)
    diff = phi[arms] - phi[first]
    var = np.einsum("ak,kl,al->a", diff, cov, diff)
    var[arms == first] = -1.0
    return first, int(arms[int(np.argmax(var))])


def reference_run(env, rule: str, beta: float, rounds: int, uniforms: np.ndarray, ridge: float = 1.0,
                  kappa: float = 1.0, delta: float = 0.05, radius_scale: float = 1.0, width: float = 1.0,
                  threshold: float = 1.0, oracle_code: int = 0, oracle_param: float = 1.0) -> dict:
    """The passive / MaxInP / CoLSTIM round loop in numpy (batch size 1, linear features only).

    ``uniforms``: ``(rounds, 5 + extras)`` as the jitted loop draws them. Returns per round the
    pairs, ``J(pi_hat^(t+1))`` and the final ``theta``.
    """
    oracle = oracle_from_code(oracle_code, oracle_param)
    features = np.asarray(env.features, dtype=np.float64)
    nc, n_leaves, d = features.shape
    logref = env.trajectory_ref_logprobs
    reward = env.trajectory_rewards
    rho_cdf = np.cumsum(env.rho) / np.sum(env.rho)
    ref_cdf = np.cumsum(np.exp(logref), axis=1)
    ref_cdf /= ref_cdf[:, -1:]
    theta = np.zeros(d)
    zs, counts, wins, queries = [], [], [], []
    pairs, values, policies = [], [], []
    for t in range(rounds):
        u = uniforms[t]
        x = int(np.searchsorted(rho_cdf, u[0], side="right"))
        arms = np.flatnonzero(logref[x] > -np.inf)
        rhat = features[x] @ theta
        inverse = design_inverse(np.array(queries).reshape(-1, d), ridge, d)
        if rule == "passive":
            i = int(np.searchsorted(ref_cdf[x], u[1], side="right"))
            j = int(np.searchsorted(ref_cdf[x], u[2], side="right"))
        elif rule == "maxinp":
            n = len(queries)
            radius = radius_scale / kappa * math.sqrt(0.5 * d * math.log(1 + 2 * n / d) + math.log(1 / delta))
            i, j = maxinp_numpy(arms, rhat, features[x], inverse, radius)
        elif rule == "colstim":
            i, j = colstim_numpy(arms, rhat, features[x], inverse, width, threshold, u[5:])
        else:
            raise ValueError(f"rule must be 'passive', 'maxinp' or 'colstim', got {rule!r}")
        first_wins = bool(u[3] < oracle.preference_probability(reward[x, i], reward[x, j]))
        pairs.append((x, i, j))
        if i != j:
            lo, hi = min(i, j), max(i, j)
            zs.append(features[x, lo] - features[x, hi])
            counts.append(1.0)
            wins.append(1.0 if (first_wins == (i == lo)) else 0.0)
            queries.append(features[x, i] - features[x, j])
            theta = mle_scipy(np.array(zs), np.array(counts), np.array(wins), ridge, theta)
        total = 0.0
        probs = np.empty((nc, n_leaves))
        for c in range(nc):
            probs[c], value, _, _ = policy_numpy(logref[c], reward[c], features[c] @ theta, beta)
            total += env.rho[c] * value
        values.append(total)
        policies.append(probs)
    return {"pairs": pairs, "values": np.array(values), "policies": policies, "theta": theta}
