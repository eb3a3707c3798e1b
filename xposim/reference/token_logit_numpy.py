"""Plain numpy + scipy reference for the token-logit class (THEORY 3): objective, gradient, argmin.

The reference works on the full logit array of one context ``z (n_states, A)``: the trajectory
log-probabilities of every leaf come from :func:`xposim.reference.exact_numpy`-style level-wise
numpy (here: gathering ``log_softmax(z)`` along :func:`xposim.envs.tree.leaf_path_states`), the
losses from :mod:`xposim.reference.losses_numpy`, and the gradient from the explicit Jacobian
``d log pi(tau)/dz(s, a) = sum_h [s_h = s] ([a_h = a] - pi(a|s))``. It shares no code with
:mod:`xposim.policies.token_logit` beyond the data layout :class:`~xposim.policies.leaf_data.LeafData`.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from xposim.envs import tree
from xposim.losses.kinds import BONUS_NAMES, BONUS_NONE, PAIR_NAMES
from xposim.policies.leaf_data import LeafData, LossParameters
from xposim.reference import losses_numpy


def _log_softmax(z: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    masked = np.where(allowed, z, -np.inf)
    top = masked.max(axis=-1, keepdims=True)
    return masked - (top + np.log(np.exp(masked - top).sum(axis=-1, keepdims=True)))


def token_logit_objective_numpy(z: np.ndarray, allowed: np.ndarray, horizon: int, data: LeafData, k: int,
                                loss: LossParameters) -> tuple[float, np.ndarray]:
    """``(F(z), dF/dz)`` for the ``k``-th context of ``data``; ``z``, ``allowed`` are ``(n_states, A)``."""
    n_states, vocab = z.shape
    paths = tree.leaf_path_states(vocab, horizon)
    tokens = tree.leaf_tokens(vocab, horizon)
    log_pi = _log_softmax(z, allowed)
    pi = np.exp(log_pi)
    leaf_logp = log_pi[paths, tokens].sum(axis=1)
    beta = loss.beta
    coef = np.zeros(paths.shape[0])
    value = 0.0
    sl = slice(data.pair_ptr[k], data.pair_ptr[k + 1])
    c, r, w = data.pair_chosen[sl], data.pair_rejected[sl], data.pair_weight[sl]
    if c.size:
        term, d_c, d_r = losses_numpy.pair_loss(PAIR_NAMES[loss.pair_kind], leaf_logp[c] - data.pair_chosen_ref[sl],
                                                leaf_logp[r] - data.pair_rejected_ref[sl], beta, loss.pair_param)
        value += float(np.sum(w * term))
        np.add.at(coef, c, w * d_c)
        np.add.at(coef, r, w * d_r)
    sb = slice(data.bonus_ptr[k], data.bonus_ptr[k + 1])
    y, m = data.bonus_leaf[sb], data.bonus_count[sb]
    if y.size and loss.bonus_kind != BONUS_NONE:
        term, d_y = losses_numpy.bonus_loss(BONUS_NAMES[loss.bonus_kind], leaf_logp[y], data.bonus_ref[sb], loss.alpha,
                                            beta, data.bonus_weight[sb])
        value += float(np.sum(m * term))
        np.add.at(coef, y, m * d_y)
    # explicit Jacobian, leaf by leaf
    grad = np.zeros_like(z)
    for leaf in np.flatnonzero(coef):
        jac = np.zeros_like(z)
        for h in range(horizon):
            s = paths[leaf, h]
            jac[s] -= pi[s]
            jac[s, tokens[leaf, h]] += 1.0
        grad += coef[leaf] * jac
    grad[~allowed] = 0.0
    return value, grad


def box_projected_gradient_numpy(z, grad, allowed, n_terms, bound) -> float:
    """``max |z - clip(z - grad/N)|`` over the allowed logits."""
    gap = np.abs(z - np.clip(z - grad / n_terms, -bound, bound))
    return float(gap[allowed].max()) if np.any(allowed) else 0.0


def solve_token_logit_scipy(z0: np.ndarray, allowed: np.ndarray, horizon: int, data: LeafData, k: int,
                            loss: LossParameters, bound: float, max_iterations: int = 20000):
    """``argmin_{|z| <= bound} F(z)`` by scipy's L-BFGS-B from ``z0`` (all logits of the context).

    Returns ``(z, F(z), per-sample projected gradient)``. Disallowed logits are fixed at 0.
    """
    shape = z0.shape
    free = allowed.reshape(-1)
    n_terms = float(np.sum(data.pair_weight[data.pair_ptr[k]:data.pair_ptr[k + 1]])
                    + (np.sum(data.bonus_count[data.bonus_ptr[k]:data.bonus_ptr[k + 1]])
                       if loss.bonus_kind != BONUS_NONE else 0.0))

    def unpack(v):
        z = np.zeros(shape).reshape(-1)
        z[free] = v
        return z.reshape(shape)

    def fun(v):
        value, grad = token_logit_objective_numpy(unpack(v), allowed, horizon, data, k, loss)
        return value, grad.reshape(-1)[free]

    start = np.clip(np.asarray(z0, dtype=np.float64).reshape(-1)[free], -bound, bound)
    result = minimize(fun, start, jac=True, method="L-BFGS-B", bounds=[(-bound, bound)] * int(free.sum()),
                      options={"maxiter": max_iterations, "maxfun": 4 * max_iterations, "ftol": 1e-16,
                               "gtol": 1e-12, "maxcor": 30})
    z = unpack(result.x)
    value, grad = token_logit_objective_numpy(z, allowed, horizon, data, k, loss)
    return z, value, box_projected_gradient_numpy(z, grad, allowed, max(n_terms, 1.0), bound)
