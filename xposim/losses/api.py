"""Python-level API of the loss kernels (for non-jitted callers such as the LM path) and ``LossSpec``.

The functions here validate their inputs (ValueError naming the argument and the allowed range),
flatten the arrays, call the numba batch kernels of :mod:`xposim.losses.batch` and reshape the
derivatives back to the input shape. Everything is float64.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from xposim.losses.batch import bonus_loss_batch, bonus_loss_hessian_batch, pair_loss_batch, pair_loss_hessian_batch
from xposim.losses.kinds import (
    BONUS_COPO,
    BONUS_NAMES,
    BONUS_POPO,
    BONUS_SELM,
    PAIR_CHIPO,
    PAIR_IPO,
    PAIR_NAMES,
    bonus_kind,
    pair_kind,
)

#: The parameter name carried by ``param`` of each pair kind.
_PAIR_PARAM_NAME = {PAIR_IPO: "tau_ipo", PAIR_CHIPO: "r_max"}
#: Bonus kinds that read ``logp_ref``.
_BONUS_USES_REF = (BONUS_SELM, BONUS_POPO)


def _check_scalar(name: str, value: Any, *, strictly_positive: bool) -> float:
    bound = "> 0" if strictly_positive else ">= 0"
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite real number {bound}, got {value!r}") from None
    if not math.isfinite(x) or x < 0.0 or (strictly_positive and x == 0.0):
        raise ValueError(f"{name} must be a finite real number {bound}, got {value!r}")
    return x


def _as_finite_array(name: str, value: Any) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of finite real numbers") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values (log-probabilities of possible responses)")
    return arr


def _as_weights(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    if value is None:
        return np.ones(shape, dtype=np.float64)
    arr = _as_finite_array(name, value)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape} (that of the loss inputs), got {arr.shape}")
    if np.any(arr < 0.0):
        raise ValueError(f"{name} must be >= 0 (multiplicities), got a minimum of {arr.min()!r}")
    return arr


def _flat(arr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(arr, dtype=np.float64).reshape(-1)


def _pair_setup(name: str | int, l_chosen: Any, l_rejected: Any, beta: float, weights: Any,
                params: dict[str, Any]) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, float, float]:
    kind = pair_kind(name)
    beta_f = _check_scalar("beta", beta, strictly_positive=True)
    allowed = _PAIR_PARAM_NAME.get(kind)
    extra = set(params) - ({allowed} if allowed else set())
    if extra:
        raise ValueError(
            f"unexpected parameter(s) {sorted(extra)} for pair loss {PAIR_NAMES[kind]!r}; "
            f"allowed: {[allowed] if allowed else []}"
        )
    param = 0.0
    if allowed is not None:
        if params.get(allowed) is None:
            raise ValueError(f"{allowed} (finite, > 0) is required for pair loss {PAIR_NAMES[kind]!r}")
        param = _check_scalar(allowed, params[allowed], strictly_positive=True)
    lc = _as_finite_array("l_chosen", l_chosen)
    lr = _as_finite_array("l_rejected", l_rejected)
    if lr.shape != lc.shape:
        raise ValueError(f"l_rejected must have the shape of l_chosen {lc.shape}, got {lr.shape}")
    w = _as_weights("weights", weights, lc.shape)
    return kind, lc, lr, w, beta_f, param


def pair_loss_and_grad(name: str | int, l_chosen: Any, l_rejected: Any, beta: float,
                       weights: Any = None, **params: float) -> tuple[float, np.ndarray, np.ndarray]:
    """Weighted sum of pair losses and its gradient w.r.t. every log-ratio.

    ``name``: ``"dpo"``, ``"ipo"`` (requires ``tau_ipo=``) or ``"chipo"`` (requires ``r_max=``).
    ``l_chosen``, ``l_rejected``: same-shape arrays of sequence log-ratios ``log pi - log pi_ref``.
    ``weights``: same-shape non-negative multiplicities (default 1).
    Returns ``(sum_i w_i loss_i, w * d loss/d l_chosen, w * d loss/d l_rejected)``; the arrays have
    the input shape. Raises ValueError if a result overflows float64 (astronomical log-ratios).
    """
    kind, lc, lr, w, beta_f, param = _pair_setup(name, l_chosen, l_rejected, beta, weights, params)
    d_chosen = np.empty(lc.size, dtype=np.float64)
    d_rejected = np.empty(lc.size, dtype=np.float64)
    total = pair_loss_batch(kind, _flat(lc), _flat(lr), _flat(w), beta_f, param, d_chosen, d_rejected)
    if not (math.isfinite(total) and np.all(np.isfinite(d_chosen)) and np.all(np.isfinite(d_rejected))):
        raise ValueError(
            f"pair loss {PAIR_NAMES[kind]!r} overflowed float64: l_chosen / l_rejected are too large in "
            f"magnitude for beta={beta_f!r} (the exact loss or derivative exceeds 1.8e308)"
        )
    return float(total), d_chosen.reshape(lc.shape), d_rejected.reshape(lc.shape)


def pair_loss_hessian_arrays(name: str | int, l_chosen: Any, l_rejected: Any, beta: float,
                             weights: Any = None, **params: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-element weighted second derivatives ``(w d2/dl_c^2, w d2/dl_c dl_r, w d2/dl_r^2)``.

    Arguments as in :func:`pair_loss_and_grad`.
    """
    kind, lc, lr, w, beta_f, param = _pair_setup(name, l_chosen, l_rejected, beta, weights, params)
    out = [np.empty(lc.size, dtype=np.float64) for _ in range(3)]
    pair_loss_hessian_batch(kind, _flat(lc), _flat(lr), _flat(w), beta_f, param, out[0], out[1], out[2])
    if not all(np.all(np.isfinite(o)) for o in out):
        raise ValueError(
            f"pair loss {PAIR_NAMES[kind]!r} curvature overflowed float64: l_chosen / l_rejected too large"
        )
    return out[0].reshape(lc.shape), out[1].reshape(lc.shape), out[2].reshape(lc.shape)


def _bonus_setup(name: str | int, logp: Any, logp_ref: Any, alpha: float, beta: float, weights: Any,
                 params: dict[str, Any]) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float]:
    kind = bonus_kind(name)
    alpha_f = _check_scalar("alpha", alpha, strictly_positive=False)
    beta_f = _check_scalar("beta", beta, strictly_positive=True)
    allowed = {"bonus_weights"} if kind == BONUS_COPO else set()
    extra = set(params) - allowed
    if extra:
        raise ValueError(
            f"unexpected parameter(s) {sorted(extra)} for bonus {BONUS_NAMES[kind]!r}; allowed: {sorted(allowed)}"
        )
    lp = _as_finite_array("logp", logp)
    if logp_ref is None:
        if kind in _BONUS_USES_REF:
            raise ValueError(f"logp_ref (finite array of the shape of logp) is required for bonus {BONUS_NAMES[kind]!r}")
        lref = np.zeros(lp.shape, dtype=np.float64)
    else:
        lref = _as_finite_array("logp_ref", logp_ref)
        if lref.shape != lp.shape:
            raise ValueError(f"logp_ref must have the shape of logp {lp.shape}, got {lref.shape}")
    w = _as_weights("weights", weights, lp.shape)
    if kind == BONUS_COPO:
        if params.get("bonus_weights") is None:
            raise ValueError("bonus_weights (COPO's w = sg[c/sqrt(N(x,y))], finite, >= 0) is required for bonus 'copo'")
        bw = _as_weights("bonus_weights", params["bonus_weights"], lp.shape)
    else:
        bw = np.zeros(lp.shape, dtype=np.float64)
    return kind, lp, lref, w, bw, alpha_f, beta_f


def bonus_loss_and_grad(name: str | int, logp: Any, logp_ref: Any, alpha: float, beta: float,
                        weights: Any = None, **params: Any) -> tuple[float, np.ndarray]:
    """Weighted sum of bonus terms and its gradient w.r.t. every ``log pi(y)``.

    ``name``: ``"none"``, ``"xpo"``, ``"vpo"``, ``"selm"``, ``"popo"`` or ``"copo"`` (requires
    ``bonus_weights=``, COPO's per-sample ``w >= 0``). ``logp``, ``logp_ref``: same-shape arrays of
    ``log pi(y)`` and ``log pi_ref(y)``; ``logp_ref`` may be ``None`` for bonuses that do not read
    it (none, xpo, vpo, copo). ``weights``: non-negative multiplicities (default 1).
    Returns ``(sum_i w_i bonus_i, w * d bonus/d logp)`` with the input shape.
    """
    kind, lp, lref, w, bw, alpha_f, beta_f = _bonus_setup(name, logp, logp_ref, alpha, beta, weights, params)
    d_logp = np.empty(lp.size, dtype=np.float64)
    total = bonus_loss_batch(kind, _flat(lp), _flat(lref), _flat(w), _flat(bw), alpha_f, beta_f, d_logp)
    if not (math.isfinite(total) and np.all(np.isfinite(d_logp))):
        raise ValueError(f"bonus {BONUS_NAMES[kind]!r} overflowed float64: alpha, beta or logp too large")
    return float(total), d_logp.reshape(lp.shape)


def bonus_loss_hessian_arrays(name: str | int, logp: Any, logp_ref: Any, alpha: float, beta: float,
                              weights: Any = None, **params: Any) -> np.ndarray:
    """Per-element weighted ``w * d2 bonus/d logp^2`` (non-zero only for POPO); arguments as in
    :func:`bonus_loss_and_grad`."""
    kind, lp, lref, w, bw, alpha_f, beta_f = _bonus_setup(name, logp, logp_ref, alpha, beta, weights, params)
    out = np.empty(lp.size, dtype=np.float64)
    bonus_loss_hessian_batch(kind, _flat(lp), _flat(lref), _flat(w), _flat(bw), alpha_f, beta_f, out)
    return out.reshape(lp.shape)


# ------------------------------------------------------------------------------------- LossSpec
@dataclass(frozen=True)
class LossSpec:
    """The per-round objective of a learner: ``sum_pairs pair_loss + sum_bonus_samples bonus`` (THEORY 4.5).

    Names are normalized to lower case; ``pair_kind`` / ``bonus_kind`` / ``pair_param`` give what
    the jitted dispatchers :func:`xposim.losses.pair_loss` / :func:`xposim.losses.bonus_loss` take.
    """

    pair: str
    """Pair loss name: ``"dpo"`` (``-log sigma(h)``), ``"ipo"`` or ``"chipo"``."""
    bonus: str
    """Bonus name: ``"none"``, ``"xpo"``, ``"vpo"``, ``"selm"``, ``"popo"`` or ``"copo"``."""
    beta: float
    """KL coefficient ``beta > 0`` (finite); enters ``h = beta (l+ - l-)`` and the VPO/SELM/POPO bonuses."""
    alpha: float = 0.0
    """Bonus coefficient ``alpha >= 0``; must be 0 when ``bonus == "none"``. Its scale depends on the
    bonus (``alpha log pi`` for XPO vs ``alpha beta log pi`` for VPO/SELM vs ``alpha sigma/beta`` for POPO)."""
    tau_ipo: float | None = None
    """IPO regularization ``tau > 0`` (target margin ``1/(2 tau)``); required iff ``pair == "ipo"``."""
    r_max: float | None = None
    """chiPO clip: the margin is clipped to ``[-2 r_max, 2 r_max]``; required iff ``pair == "chipo"``."""

    def __post_init__(self) -> None:
        pair = PAIR_NAMES[pair_kind(self.pair)]
        bonus = BONUS_NAMES[bonus_kind(self.bonus)]
        object.__setattr__(self, "pair", pair)
        object.__setattr__(self, "bonus", bonus)
        object.__setattr__(self, "beta", _check_scalar("beta", self.beta, strictly_positive=True))
        object.__setattr__(self, "alpha", _check_scalar("alpha", self.alpha, strictly_positive=False))
        if bonus == "none" and self.alpha != 0.0:
            raise ValueError(f"alpha must be 0 when bonus is 'none', got {self.alpha!r}")
        for field, needed_by in (("tau_ipo", "ipo"), ("r_max", "chipo")):
            value = getattr(self, field)
            if pair == needed_by:
                if value is None:
                    raise ValueError(f"{field} (finite, > 0) is required for pair loss {needed_by!r}")
                object.__setattr__(self, field, _check_scalar(field, value, strictly_positive=True))
            elif value is not None:
                raise ValueError(f"{field} is only a parameter of pair loss {needed_by!r}, not of {pair!r}")

    @property
    def pair_kind(self) -> int:
        """``PAIR_*`` integer code of :attr:`pair`."""
        return pair_kind(self.pair)

    @property
    def bonus_kind(self) -> int:
        """``BONUS_*`` integer code of :attr:`bonus`."""
        return bonus_kind(self.bonus)

    @property
    def pair_param(self) -> float:
        """The ``param`` argument of the pair dispatchers: ``tau_ipo``, ``r_max`` or 0.0 (DPO)."""
        if self.pair == "ipo":
            return float(self.tau_ipo)  # type: ignore[arg-type]
        if self.pair == "chipo":
            return float(self.r_max)  # type: ignore[arg-type]
        return 0.0

    def pair_loss_and_grad(self, l_chosen: Any, l_rejected: Any,
                           weights: Any = None) -> tuple[float, np.ndarray, np.ndarray]:
        """:func:`pair_loss_and_grad` with this spec's pair loss and parameters."""
        params = {"ipo": {"tau_ipo": self.tau_ipo}, "chipo": {"r_max": self.r_max}}.get(self.pair, {})
        return pair_loss_and_grad(self.pair, l_chosen, l_rejected, self.beta, weights, **params)

    def bonus_loss_and_grad(self, logp: Any, logp_ref: Any, weights: Any = None,
                            bonus_weights: Any = None) -> tuple[float, np.ndarray]:
        """:func:`bonus_loss_and_grad` with this spec's bonus, ``alpha`` and ``beta``."""
        params = {"bonus_weights": bonus_weights} if self.bonus == "copo" else {}
        if self.bonus != "copo" and bonus_weights is not None:
            raise ValueError(f"bonus_weights is only used by bonus 'copo', not {self.bonus!r}")
        return bonus_loss_and_grad(self.bonus, logp, logp_ref, self.alpha, self.beta, weights, **params)
