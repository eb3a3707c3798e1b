"""Plain vectorized numpy/scipy reference of the loss kernels in :mod:`xposim.losses`.

Same formulas (THEORY.md 4.1, 4.5), written independently with ``scipy.special.log_expit`` /
``expit`` and numpy broadcasting; used by tests and benchmarks only. Inputs broadcast; outputs are
float64 arrays. Notation: ``l = log pi - log pi_ref``, ``h = beta (l+ - l-)``.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit, log_expit


def _f(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _full(value, *like) -> np.ndarray:
    """``value`` broadcast to the common shape of ``value`` and ``like`` (a fresh float64 array)."""
    shape = np.broadcast(_f(value), *[_f(x) for x in like]).shape
    return np.broadcast_to(_f(value), shape).astype(np.float64)


# ------------------------------------------------------------------------------------ pair losses
def dpo_pair(l_chosen, l_rejected, beta):
    """``-log sigma(h)`` and derivatives ``-+beta sigma(-h)``."""
    h = _f(beta) * (_f(l_chosen) - _f(l_rejected))
    g = _f(beta) * expit(-h)
    return -log_expit(h), -g, g


def dpo_pair_hessian(l_chosen, l_rejected, beta):
    """``beta^2 sigma(h) sigma(-h) * [[1, -1], [-1, 1]]`` as ``(cc, cr, rr)``."""
    h = _f(beta) * (_f(l_chosen) - _f(l_rejected))
    c = _f(beta) ** 2 * expit(h) * expit(-h)
    return c, -c, c


def ipo_pair(l_chosen, l_rejected, tau_ipo):
    """``(l+ - l- - 1/(2 tau))^2`` and derivatives."""
    d = _f(l_chosen) - _f(l_rejected) - 1.0 / (2.0 * _f(tau_ipo))
    return d**2, 2.0 * d, -2.0 * d


def ipo_pair_hessian(l_chosen, l_rejected, tau_ipo):
    """Constant ``(2, -2, 2)``."""
    shape = np.broadcast(_f(l_chosen), _f(l_rejected), _f(tau_ipo)).shape
    return np.full(shape, 2.0), np.full(shape, -2.0), np.full(shape, 2.0)


def chipo_margin(l_chosen, l_rejected, beta):
    """``u = beta (e^{l+} + l+ - e^{l-} - l-)`` via ``log|u| = logaddexp(log beta + log|e^a - e^b|, log beta + log|a - b|)``."""
    a, b, beta = np.broadcast_arrays(_f(l_chosen), _f(l_rejected), _f(beta))
    gap = np.abs(a - b)
    with np.errstate(divide="ignore", over="ignore"):
        log_exp_gap = np.maximum(a, b) + np.log(-np.expm1(-gap))  # log|e^a - e^b|
        log_u = np.log(beta) + np.logaddexp(log_exp_gap, np.log(gap))
        return np.sign(a - b) * np.exp(log_u)


def _chipo_pieces(l_chosen, l_rejected, beta, r_max):
    u = chipo_margin(l_chosen, l_rejected, beta)
    free = np.abs(u) <= 2.0 * _f(r_max)
    return u, free


def chipo_pair(l_chosen, l_rejected, beta, r_max):
    """``-log sigma(clip(u, +-2 r_max))``; derivatives ``-+beta (1 + e^l) sigma(-u)`` unclipped, 0 clipped."""
    u, free = _chipo_pieces(l_chosen, l_rejected, beta, r_max)
    loss = -log_expit(np.clip(u, -2.0 * _f(r_max), 2.0 * _f(r_max)))
    with np.errstate(over="ignore"):
        log_scale = np.log(_f(beta)) + log_expit(-u)
        d_c = np.where(free, -np.exp(log_scale + np.logaddexp(0.0, _f(l_chosen))), 0.0)
        d_r = np.where(free, np.exp(log_scale + np.logaddexp(0.0, _f(l_rejected))), 0.0)
    return loss, d_c, d_r


def chipo_pair_hessian(l_chosen, l_rejected, beta, r_max):
    """``L'' grad u grad u^T + L' hess u`` with ``L(u) = softplus(-u)``; 0 where clipped."""
    u, free = _chipo_pieces(l_chosen, l_rejected, beta, r_max)
    a, b, beta = _f(l_chosen), _f(l_rejected), _f(beta)
    with np.errstate(over="ignore", invalid="ignore"):
        ss = expit(u) * expit(-u)
        u_c = beta * (1.0 + np.exp(a))
        u_r = -beta * (1.0 + np.exp(b))
        d_cc = ss * u_c**2 - expit(-u) * beta * np.exp(a)
        d_cr = ss * u_c * u_r
        d_rr = ss * u_r**2 + expit(-u) * beta * np.exp(b)
    return np.where(free, d_cc, 0.0), np.where(free, d_cr, 0.0), np.where(free, d_rr, 0.0)


# ----------------------------------------------------------------------------------------- bonuses
def xpo_bonus(logp, alpha):
    """``alpha log pi``; derivative ``alpha``."""
    return _f(alpha) * _f(logp), _full(alpha, logp)


def vpo_bonus(logp, alpha, beta):
    """``alpha beta log pi``; derivative ``alpha beta``."""
    c = _f(alpha) * _f(beta)
    return c * _f(logp), _full(c, logp)


def selm_bonus(logp, logp_ref, alpha, beta):
    """``alpha beta (log pi - log pi_ref)``; derivative ``alpha beta``."""
    c = _f(alpha) * _f(beta)
    return c * (_f(logp) - _f(logp_ref)), _full(c, logp, logp_ref)


def popo_bonus(logp, logp_ref, alpha, beta):
    """``alpha (sigma(beta l) - 1/2) / beta``; derivative ``alpha sigma(beta l) sigma(-beta l)``."""
    x = _f(beta) * (_f(logp) - _f(logp_ref))
    return _f(alpha) * (expit(x) - 0.5) / _f(beta), _f(alpha) * expit(x) * expit(-x)


def popo_bonus_hessian(logp, logp_ref, alpha, beta):
    """``alpha beta sigma(x) sigma(-x) (1 - 2 sigma(x))``, ``x = beta l``."""
    x = _f(beta) * (_f(logp) - _f(logp_ref))
    return _f(alpha) * _f(beta) * expit(x) * expit(-x) * (1.0 - 2.0 * expit(x))


def copo_bonus(logp, alpha, weight):
    """``-alpha w log pi``; derivative ``-alpha w``."""
    c = -_f(alpha) * _f(weight)
    return c * _f(logp), _full(c, logp)


# -------------------------------------------------------------------------------- by-name dispatch
def pair_loss(name: str, l_chosen, l_rejected, beta, param):
    """``(loss, d_chosen, d_rejected)`` of pair loss ``name``; ``param`` = tau_ipo (ipo) / r_max (chipo)."""
    if name == "dpo":
        return dpo_pair(l_chosen, l_rejected, beta)
    if name == "ipo":
        return ipo_pair(l_chosen, l_rejected, param)
    if name == "chipo":
        return chipo_pair(l_chosen, l_rejected, beta, param)
    raise ValueError(f"name must be one of ['chipo', 'dpo', 'ipo'], got {name!r}")


def pair_loss_hessian(name: str, l_chosen, l_rejected, beta, param):
    """``(d2_cc, d2_cr, d2_rr)`` of pair loss ``name``."""
    if name == "dpo":
        return dpo_pair_hessian(l_chosen, l_rejected, beta)
    if name == "ipo":
        return ipo_pair_hessian(l_chosen, l_rejected, param)
    if name == "chipo":
        return chipo_pair_hessian(l_chosen, l_rejected, beta, param)
    raise ValueError(f"name must be one of ['chipo', 'dpo', 'ipo'], got {name!r}")


def bonus_loss(name: str, logp, logp_ref, alpha, beta, weight):
    """``(loss, d_logp)`` of bonus ``name``."""
    if name == "none":
        return _full(0.0, logp, logp_ref), _full(0.0, logp, logp_ref)
    if name == "xpo":
        return xpo_bonus(logp, alpha)
    if name == "vpo":
        return vpo_bonus(logp, alpha, beta)
    if name == "selm":
        return selm_bonus(logp, logp_ref, alpha, beta)
    if name == "popo":
        return popo_bonus(logp, logp_ref, alpha, beta)
    if name == "copo":
        return copo_bonus(logp, alpha, weight)
    raise ValueError(f"name must be one of ['copo', 'none', 'popo', 'selm', 'vpo', 'xpo'], got {name!r}")


def bonus_loss_hessian(name: str, logp, logp_ref, alpha, beta, weight):
    """``d2/dlogp^2`` of bonus ``name`` (0 except POPO)."""
    if name == "popo":
        return popo_bonus_hessian(logp, logp_ref, alpha, beta)
    if name in ("none", "xpo", "vpo", "selm", "copo"):
        return _full(0.0, logp, logp_ref)
    raise ValueError(f"name must be one of ['copo', 'none', 'popo', 'selm', 'vpo', 'xpo'], got {name!r}")
