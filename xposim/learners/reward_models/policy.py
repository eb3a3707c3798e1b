"""The output policy of a reward-model learner, exactly: ``pi_hat ∝ pi_ref exp(r_hat / beta)``.

Per context (trajectory level) ``log pi_hat(tau|x) = log pi_ref(tau|x) + r_hat(x, tau)/beta - log Z(x)``,
the KL-regularized optimum of ``J_beta`` for the reward ``r_hat`` (THEORY 3). Its exact value is
``J_x = E_pi_hat[r] - beta KL(pi_hat || pi_ref)`` with
``beta KL = E_pi_hat[r_hat] - beta log Z(x)``, computed centred on the largest log weight (no
overflow at any ``beta``; ``KL`` clipped at 0 against rounding).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from xposim.numerics import NEG_INF


@njit(cache=True)
def context_policy(logref: np.ndarray, reward: np.ndarray, values: np.ndarray, beta: float,
                   prob: np.ndarray) -> tuple[float, float, float]:
    """``pi_f(.|x) ∝ pi_ref(.|x) exp(f / beta)`` of one context into ``prob (L,)``; returns
    ``(J_beta, E[r], KL)`` of it (``logref, reward, values = f``: ``(L,)`` rows of the context)."""
    n = logref.shape[0]
    top = NEG_INF
    for k in range(n):
        if logref[k] > NEG_INF:
            w = logref[k] + values[k] / beta
            if w > top:
                top = w
    total = 0.0
    for k in range(n):
        if logref[k] == NEG_INF:
            prob[k] = 0.0
        else:
            e = math.exp(logref[k] + values[k] / beta - top)
            prob[k] = e
            total += e
    log_total = math.log(total)
    expected_reward = 0.0
    expected_value = 0.0
    for k in range(n):
        p = prob[k] / total
        prob[k] = p
        if p > 0.0:
            expected_reward += p * reward[k]
            expected_value += p * values[k]
    beta_kl = expected_value - beta * (top + log_total)
    kl = beta_kl / beta
    if kl < 0.0:
        kl = 0.0
        beta_kl = 0.0
    return expected_reward - beta_kl, expected_reward, kl


@njit(cache=True)
def mixture_value(logref: np.ndarray, reward: np.ndarray, weights: np.ndarray, scale: float, beta: float) -> float:
    """``J_beta`` on one context of the distribution ``weights * scale`` (``weights (L,)`` unnormalized
    sums of probabilities, ``scale = 1 / count``): the average iterate."""
    expected_reward = 0.0
    kl = 0.0
    for k in range(logref.shape[0]):
        m = weights[k] * scale
        if m <= 0.0:
            continue
        expected_reward += m * reward[k]
        if logref[k] == NEG_INF:
            kl = math.inf
        else:
            kl += m * (math.log(m) - logref[k])
    if kl < 0.0:
        kl = 0.0
    return expected_reward - beta * kl


__all__ = ["context_policy", "mixture_value"]
