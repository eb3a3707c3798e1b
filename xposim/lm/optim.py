"""Optimiser and gradient clipping for the numpy transformer (deterministic, in place).

``AdamW`` follows Loshchilov & Hutter (decoupled weight decay) exactly as ``torch.optim.AdamW``
(default ``amsgrad=False``, ``maximize=False``) does it, so a numpy run and a torch run with the
same gradients give the same parameters up to float rounding:

    p <- p * (1 - lr * weight_decay)                       (decoupled decay, first)
    m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
    p <- p - lr / (1 - b1^k) * m / (sqrt(v) / sqrt(1 - b2^k) + eps)     (step k = 1, 2, ...)

Weight-decay choice: by default EVERY parameter is decayed (what ``torch.optim.AdamW`` does when
handed ``model.parameters()``). Pass ``no_decay`` (a collection of parameter names, e.g.
:func:`no_decay_names` = LayerNorm gains/biases, linear biases and embeddings, the GPT-2 /
nanoGPT convention) to exempt some.
"""
from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np

__all__ = ["AdamW", "clip_grad_norm", "global_norm", "no_decay_names"]


def _check_number(name: str, value: float, low: float, high: float, low_open: bool = False, high_open: bool = True) -> float:
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_))
    if ok:
        value = float(value)
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lb = "(" if low_open else "["
        rb = ")" if high_open else "]"
        raise ValueError(f"{name} must be a number in {lb}{low}, {high}{rb}, got {value!r}")
    return value


def no_decay_names(params: dict[str, np.ndarray]) -> set[str]:
    """Names exempt from weight decay under the GPT-2 convention: every 1-D parameter
    (LayerNorm gains and biases, linear biases) and the token/position embeddings."""
    return {name for name, value in params.items() if value.ndim < 2 or name in ("tok_emb", "pos_emb")}


def global_norm(grads: dict[str, np.ndarray]) -> float:
    """``sqrt(sum over all tensors and entries of g^2)``, accumulated in float64."""
    total = 0.0
    for g in grads.values():
        flat = np.asarray(g, dtype=np.float64).ravel()
        total += float(flat @ flat)
    return math.sqrt(total)


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients in place so that their global norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: with ``n = global_norm(grads)`` every tensor is
    multiplied by ``min(1, max_norm / (n + 1e-6))``. Returns ``n`` (the norm before clipping).
    A non-finite norm raises ``ValueError`` (nothing is modified).
    """
    max_norm = _check_number("max_norm", max_norm, 0.0, math.inf, low_open=True)
    norm = global_norm(grads)
    if not math.isfinite(norm):
        raise ValueError(f"gradient norm is not finite ({norm}); refusing to clip")
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for g in grads.values():
            g *= g.dtype.type(coef)
    return norm


class AdamW:
    """Adam with decoupled weight decay, updating the arrays of ``params`` in place.

    ``params`` is the model's name -> array dict (``model.params``); :meth:`step` takes a grads
    dict with the same keys and shapes. Moments are kept in the parameters' dtype.
    """

    def __init__(
        self,
        params: dict[str, np.ndarray],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        no_decay: Collection[str] = (),
    ) -> None:
        self.lr = _check_number("lr", lr, 0.0, math.inf)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (_check_number("betas[0]", betas[0], 0.0, 1.0), _check_number("betas[1]", betas[1], 0.0, 1.0))
        self.eps = _check_number("eps", eps, 0.0, math.inf)
        self.weight_decay = _check_number("weight_decay", weight_decay, 0.0, math.inf)
        unknown = set(no_decay) - set(params)
        if unknown:
            raise ValueError(f"no_decay names unknown parameters: {sorted(unknown)}")
        self.params = params
        self.no_decay = frozenset(no_decay)
        self.m = {name: np.zeros_like(p) for name, p in params.items()}
        self.v = {name: np.zeros_like(p) for name, p in params.items()}
        self.step_count = 0

    def step(self, grads: dict[str, np.ndarray]) -> None:
        """One AdamW update of every parameter (formula in the module docstring)."""
        if set(grads) != set(self.params):
            raise ValueError(f"grads must have exactly the keys of params; differ in {sorted(set(grads) ^ set(self.params))}")
        self.step_count += 1
        k = self.step_count
        b1, b2 = self.betas
        bias1 = 1.0 - b1**k
        sqrt_bias2 = math.sqrt(1.0 - b2**k)
        for name, p in self.params.items():
            g = grads[name]
            if g.shape != p.shape:
                raise ValueError(f"grads[{name!r}] must have shape {p.shape}, got {g.shape}")
            dt = p.dtype.type
            if self.weight_decay and name not in self.no_decay:
                p *= dt(1.0 - self.lr * self.weight_decay)
            m, v = self.m[name], self.v[name]
            m *= dt(b1)
            m += dt(1.0 - b1) * g
            v *= dt(b2)
            v += dt(1.0 - b2) * (g * g)
            denom = np.sqrt(v)
            denom *= dt(1.0 / sqrt_bias2)
            denom += dt(self.eps)
            p -= dt(self.lr / bias1) * (m / denom)
