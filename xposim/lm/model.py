"""A tiny decoder-only transformer in numpy with a hand-written backward pass.

Architecture (GPT-2 style, pre-LayerNorm)::

    x_0   = E_tok[tokens] + E_pos[0..T-1]                              (B, T, D)
    for each block l = 1..L:
        x  <- x + Attn_l(LN_1l(x))          causal multi-head self-attention
        x  <- x + W_out,l GELU(W_in,l LN_2l(x) + b_in,l) + b_out,l
    logits = LN_f(x) W_head                 W_head = E_tok^T when the embeddings are tied

* ``LN(x) = (x - mean(x)) / sqrt(var(x) + eps) * gain + bias`` over the model dimension
  (biased variance, as ``torch.nn.LayerNorm``).
* ``Attn(u) = concat_h softmax(q_h k_h^T / sqrt(d_head) + M) v_h  W_o + b_o`` with
  ``[q | k | v] = u W_qkv + b_qkv`` and the causal mask ``M[t, s] = -inf`` for ``s > t``.
* GELU is the tanh approximation of GPT-2 / ``torch.nn.functional.gelu(approximate="tanh")``:
  ``gelu(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``; its exact derivative (of the
  approximation) is used in the backward pass.

Every linear map stores its weight as ``(in, out)`` so that ``y = x @ W + b``.

State: :meth:`Transformer.forward` keeps the activations of its last call (``keep_cache=True``)
and :meth:`Transformer.backward` differentiates that call, so the usual loop is
``logp = model.sequence_logprobs(tokens, start); loss, dlogp = kernel(...);
grads = model.backward_sequence_logprobs(dlogp)``. Calls with ``keep_cache=False``
(:meth:`next_token_logprobs`, sampling, :meth:`decode_step`) leave that cache alone. A model is
not thread-safe.

Performance notes (profiled at d_model=64, 2 layers, B=64, T=16, float32; see
benchmarks/bench_lm.py): the matrix products run as 2-D BLAS GEMMs on the flattened
``(B*T, .)`` activations (they are at the core's peak); the per-head attention products are
batched ``np.matmul`` over ``(B, H)``. Attention scores are stored transposed (key, query) so
that the softmax reductions run over axis -2: numpy reduces a short last axis several times
slower. Row means and bias gradients are BLAS matrix-vector products for the same reason. What
remains is numpy's one-pass-per-operation cost of GELU and LayerNorm (about a third of a step).
numba does not pay for GELU (no vectorised ``tanh`` without SVML: 5 ms vs 0.3 ms for numpy); a
``fastmath`` numba LayerNorm would save under 10 % of a step, so the module is pure numpy.

This is the torch-free LM-scale reference path of xposim (THEORY section 4.4: trl's XPO
trainer samples at temperature 0.9 and scores at temperature 1, see :mod:`xposim.lm.sampling`).
float32 by default; float64 for gradient checks.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from os import PathLike
from typing import Any

import numpy as np

from xposim.seeding import SeedLike, make_rng

_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715
_DTYPES = ("float32", "float64")

__all__ = [
    "TransformerConfig",
    "Transformer",
    "DecodeState",
    "log_softmax",
    "cross_entropy",
    "gelu_tanh",
    "layer_norm",
]


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransformerConfig:
    """Shape and numerics of a :class:`Transformer`."""

    vocab_size: int
    """Number of token ids ``V``; tokens are integers in ``[0, V)``."""
    max_len: int
    """Number of learned positions; sequences may have length ``1..max_len``."""
    d_model: int = 64
    """Width ``D`` of the residual stream; must be divisible by ``n_heads``."""
    n_heads: int = 2
    """Number of attention heads ``H``; each has width ``D / H``."""
    n_layers: int = 2
    """Number of pre-LN transformer blocks ``L`` (``0`` gives an embedding + head bigram model)."""
    d_mlp: int | None = None
    """Hidden width of the MLP; ``None`` means ``4 * d_model``."""
    tie_embeddings: bool = True
    """If true the output head is ``E_tok^T`` (weight tying); otherwise a separate ``(D, V)`` matrix."""
    dtype: str = "float32"
    """Floating dtype of parameters and activations: ``"float32"`` (default) or ``"float64"``."""
    layer_norm_eps: float = 1e-5
    """The ``eps`` added to the variance inside every LayerNorm."""
    init_std: float = 0.02
    """Standard deviation of the normal initialisation of embeddings and weights (GPT-2 scheme:
    the two residual output projections of each block use ``init_std / sqrt(2 n_layers)``;
    biases start at 0, LayerNorm gains at 1)."""

    def __post_init__(self) -> None:
        def _int_at_least(name: str, value: Any, low: int) -> None:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

        _int_at_least("vocab_size", self.vocab_size, 2)
        _int_at_least("max_len", self.max_len, 1)
        _int_at_least("d_model", self.d_model, 1)
        _int_at_least("n_heads", self.n_heads, 1)
        _int_at_least("n_layers", self.n_layers, 0)
        if self.d_mlp is None:
            object.__setattr__(self, "d_mlp", 4 * int(self.d_model))
        _int_at_least("d_mlp", self.d_mlp, 1)
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model must be divisible by n_heads, got d_model={self.d_model}, n_heads={self.n_heads}"
            )
        if not isinstance(self.tie_embeddings, (bool, np.bool_)):
            raise ValueError(f"tie_embeddings must be a bool, got {self.tie_embeddings!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {self.dtype!r}")
        if not (isinstance(self.layer_norm_eps, (int, float)) and 0.0 < self.layer_norm_eps < 1.0):
            raise ValueError(f"layer_norm_eps must be in (0, 1), got {self.layer_norm_eps!r}")
        if not (isinstance(self.init_std, (int, float)) and 0.0 < self.init_std < math.inf):
            raise ValueError(f"init_std must be a positive finite number, got {self.init_std!r}")

    @property
    def d_head(self) -> int:
        """Width of one attention head, ``d_model // n_heads``."""
        return self.d_model // self.n_heads

    def to_json(self) -> str:
        """The config as a JSON object (the format stored by :meth:`Transformer.save`)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TransformerConfig":
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(text))


# --------------------------------------------------------------------------------------------
# elementwise building blocks (forward returns what the backward needs)
# --------------------------------------------------------------------------------------------
def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Stable ``log softmax``: ``z - max(z) - log sum exp(z - max(z))`` along ``axis``.

    Finite for any finite input (no overflow); ``-inf`` entries stay ``-inf`` as long as one
    entry per slice is finite.
    """
    z = np.asarray(logits)
    shifted = z - np.max(z, axis=axis, keepdims=True)
    shifted -= np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
    return shifted


def _row_mean(x: np.ndarray) -> np.ndarray:
    """``x.mean(axis=-1, keepdims=True)`` of a 2-D array as one BLAS matrix-vector product
    (numpy's reduction over a short last axis is several times slower)."""
    return (x @ np.full(x.shape[-1], 1.0 / x.shape[-1], dtype=x.dtype))[:, None]


def _column_sum(x: np.ndarray) -> np.ndarray:
    """``x.sum(axis=0)`` of a 2-D array as one BLAS matrix-vector product (bias gradients)."""
    return np.ones(x.shape[0], dtype=x.dtype) @ x


def layer_norm(x: np.ndarray, gain: np.ndarray, bias: np.ndarray, eps: float):
    """LayerNorm over the last axis of a 2-D ``x``; returns ``(y, xhat, rstd)``.

    ``y = xhat * gain + bias``, ``xhat = (x - mean) * rstd``, ``rstd = 1 / sqrt(var + eps)``
    (biased variance, as ``torch.nn.LayerNorm``).
    """
    xhat = x - _row_mean(x)
    var = np.einsum("nd,nd->n", xhat, xhat)[:, None]
    var *= 1.0 / x.shape[-1]
    var += eps
    rstd = np.sqrt(var, out=var)
    np.reciprocal(rstd, out=rstd)
    xhat *= rstd
    y = xhat * gain
    y += bias
    return y, xhat, rstd


def _layer_norm_backward(dy: np.ndarray, xhat: np.ndarray, rstd: np.ndarray, gain: np.ndarray):
    """Backward of :func:`layer_norm`: ``(dx, dgain, dbias)``.

    ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))`` with ``g = dy * gain``.
    """
    dgain = np.einsum("nd,nd->d", dy, xhat)
    dbias = _column_sum(dy)
    g = dy * gain
    mean_gx = np.einsum("nd,nd->n", g, xhat)[:, None]
    mean_gx *= 1.0 / dy.shape[-1]
    g -= _row_mean(g)
    g -= xhat * mean_gx
    g *= rstd
    return g, dgain, dbias


def gelu_tanh(x: np.ndarray):
    """GELU, tanh approximation; returns ``(y, s)`` with ``s = (1 + t)/2`` for the backward.

    ``y = x (1 + t)/2`` with ``t = tanh(c (x + a x^3))``, ``c = sqrt(2/pi)``, ``a = 0.044715``
    (GPT-2; torch ``gelu(approximate="tanh")``).
    """
    s = x * x
    s *= _GELU_A * _GELU_C
    s += _GELU_C
    s *= x
    np.tanh(s, out=s)
    s *= 0.5
    s += 0.5
    return x * s, s


def _gelu_tanh_backward(dy: np.ndarray, x: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``dy * gelu'(x)`` from the forward's ``y`` and ``s = (1 + t)/2``.

    ``gelu'(x) = (1 + t)/2 + x/2 (1 - t^2) c (1 + 3 a x^2) = s + 2 y (1 - s) (c + 3 a c x^2)``
    since ``x/2 (1 - t^2) = y (1 - t) = 2 y (1 - s)``.
    """
    d = x * x
    d *= 6.0 * _GELU_A * _GELU_C
    d += 2.0 * _GELU_C
    d *= y
    one_minus_s = np.subtract(1.0, s)
    d *= one_minus_s
    d += s
    d *= dy
    return d


def cross_entropy(logits: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None):
    """Mean token cross-entropy and its gradient, for SFT.

    ``loss = sum_{b,t} m_bt (-log softmax(logits_bt)[targets_bt]) / sum_{b,t} m_bt``;
    ``dlogits_bt = m_bt (softmax(logits_bt) - onehot(targets_bt)) / sum m``.
    ``targets[b, t]`` is the target of ``logits[b, t]`` (shift before calling: the target of
    position ``t`` is usually ``tokens[b, t+1]``). ``mask`` (``(B, T)``, bool or non-negative
    weights, default all ones) selects the counted positions. Returns ``(loss: float,
    dlogits)`` with ``dlogits`` of the dtype of ``logits``.
    """
    logits = np.asarray(logits)
    if logits.ndim != 3:
        raise ValueError(f"logits must have shape (B, T, V), got shape {logits.shape}")
    targets = np.asarray(targets)
    n_vocab = logits.shape[-1]
    if targets.shape != logits.shape[:2] or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be an integer array of shape {logits.shape[:2]}, got {targets.dtype} {targets.shape}")
    if targets.size and (targets.min() < 0 or targets.max() >= n_vocab):
        raise ValueError(f"targets must lie in [0, {n_vocab}), got range [{targets.min()}, {targets.max()}]")
    if mask is None:
        weights = np.ones(targets.shape, dtype=np.float64)
    else:
        weights = np.asarray(mask, dtype=np.float64)
        if weights.shape != targets.shape or not np.all(weights >= 0) or not np.all(np.isfinite(weights)):
            raise ValueError(f"mask must be a finite non-negative array of shape {targets.shape}")
    total = weights.sum()
    if total <= 0:
        raise ValueError("mask must select at least one position (its sum must be > 0)")
    logp = log_softmax(logits.astype(np.float64, copy=False))
    picked = np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    loss = float(-(weights * picked).sum() / total)
    dlogits = np.exp(logp)
    np.put_along_axis(dlogits, targets[..., None], np.take_along_axis(dlogits, targets[..., None], -1) - 1.0, -1)
    dlogits *= (weights / total)[..., None]
    return loss, dlogits.astype(logits.dtype, copy=False)


def _scatter_add_rows(index: np.ndarray, rows: np.ndarray, n_out: int) -> np.ndarray:
    """``out[j] = sum_{i: index[i] = j} rows[i]`` (as ``np.add.at``, by sort + ``reduceat``; faster)."""
    order = np.argsort(index, kind="stable")
    sorted_index = index[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_index[1:] != sorted_index[:-1])))
    out = np.zeros((n_out, rows.shape[1]), dtype=rows.dtype)
    out[sorted_index[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return out


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------
@dataclass
class _Cache:
    tokens: np.ndarray
    layers: list = field(default_factory=list)
    final: tuple = ()


@dataclass
class DecodeState:
    """Keys and values of the positions decoded so far, for :meth:`Transformer.decode_step`.

    ``keys[l]`` and ``values[l]`` are ``(B, H, max_len, d_head)`` buffers of layer ``l`` whose
    first ``length`` positions are filled.
    """

    batch_size: int
    keys: list[np.ndarray]
    values: list[np.ndarray]
    length: int = 0


def _param_shapes(cfg: TransformerConfig) -> dict[str, tuple[int, ...]]:
    d, f, v = cfg.d_model, cfg.d_mlp, cfg.vocab_size
    shapes: dict[str, tuple[int, ...]] = {"tok_emb": (v, d), "pos_emb": (cfg.max_len, d)}
    for i in range(cfg.n_layers):
        p = f"h{i}."
        shapes.update({
            p + "ln1.gain": (d,), p + "ln1.bias": (d,),
            p + "attn.qkv.weight": (d, 3 * d), p + "attn.qkv.bias": (3 * d,),
            p + "attn.out.weight": (d, d), p + "attn.out.bias": (d,),
            p + "ln2.gain": (d,), p + "ln2.bias": (d,),
            p + "mlp.in.weight": (d, f), p + "mlp.in.bias": (f,),
            p + "mlp.out.weight": (f, d), p + "mlp.out.bias": (d,),
        })
    shapes.update({"ln_f.gain": (d,), "ln_f.bias": (d,)})
    if not cfg.tie_embeddings:
        shapes["head.weight"] = (d, v)
    return shapes


class Transformer:
    """Decoder-only pre-LN transformer (see the module docstring) with a hand-written backward.

    ``params`` maps names to arrays (``tok_emb (V, D)``, ``pos_emb (max_len, D)``,
    ``h{i}.ln1.gain``, ``h{i}.attn.qkv.weight (D, 3D)``, ..., ``ln_f.bias``, and
    ``head.weight (D, V)`` when the embeddings are untied). Optimisers update these arrays in
    place. :meth:`forward` (and the methods built on it) keep the activations of the last call
    for :meth:`backward`.
    """

    def __init__(self, config: TransformerConfig, seed: SeedLike = 0, *, _params: dict | None = None) -> None:
        if not isinstance(config, TransformerConfig):
            raise ValueError(f"config must be a TransformerConfig, got {type(config).__name__}")
        self.config = config
        self.dtype = np.dtype(config.dtype)
        shapes = _param_shapes(config)
        if _params is not None:  # internal: from_params / load have validated and copied them
            self.params = {name: np.ascontiguousarray(_params[name], dtype=self.dtype) for name in shapes}
        else:
            self.params = self._init_params(shapes, make_rng(seed))
        t = config.max_len
        mask_t = np.zeros((t, t), dtype=self.dtype)  # [key s, query t] = -inf where s > t
        mask_t[np.tril_indices(t, -1)] = -np.inf
        self._causal_mask_t = mask_t
        self._cache: _Cache | None = None
        self._seq_cache: tuple | None = None

    def _init_params(self, shapes: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
        cfg = self.config
        resid_std = cfg.init_std / math.sqrt(2.0 * max(cfg.n_layers, 1))
        params: dict[str, np.ndarray] = {}
        for name, shape in shapes.items():  # fixed order -> reproducible draws
            if name.endswith(".gain"):
                value = np.ones(shape)
            elif name.endswith(".bias"):
                value = np.zeros(shape)
            else:
                std = resid_std if name.endswith(("attn.out.weight", "mlp.out.weight")) else cfg.init_std
                value = rng.normal(0.0, std, size=shape)
            params[name] = np.ascontiguousarray(value, dtype=self.dtype)
        return params

    # ---------------------------------------------------------------- helpers
    @property
    def n_params(self) -> int:
        """Total number of scalar parameters."""
        return int(sum(p.size for p in self.params.values()))

    def _check_tokens(self, tokens: np.ndarray, name: str = "tokens") -> np.ndarray:
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"{name} must be an integer array of shape (B, T), got {tokens.dtype} with shape {tokens.shape}")
        b, t = tokens.shape
        if b < 1 or not 1 <= t <= self.config.max_len:
            raise ValueError(f"{name} must have B >= 1 and 1 <= T <= max_len={self.config.max_len}, got shape {tokens.shape}")
        lo, hi = tokens.min(), tokens.max()
        if lo < 0 or hi >= self.config.vocab_size:
            raise ValueError(f"{name} must lie in [0, {self.config.vocab_size}), got range [{lo}, {hi}]")
        return tokens

    def _head(self) -> np.ndarray:
        """The ``(D, V)`` output matrix (a transposed view when tied)."""
        p = self.params
        return p["tok_emb"].T if self.config.tie_embeddings else p["head.weight"]

    # ---------------------------------------------------------------- forward
    def forward(self, tokens: np.ndarray, *, keep_cache: bool = True) -> np.ndarray:
        """Logits ``(B, T, V)`` of the next token at every position of ``tokens (B, T)``.

        Position ``t`` sees tokens ``0..t`` only (causal). With ``keep_cache`` the activations
        are stored for :meth:`backward`.
        """
        tokens = self._check_tokens(tokens)
        cfg, p, dt = self.config, self.params, self.dtype
        b, t = tokens.shape
        n, d, h, dh = b * t, cfg.d_model, cfg.n_heads, cfg.d_head
        eps = cfg.layer_norm_eps
        scale = dt.type(1.0 / math.sqrt(dh))
        mask_t = self._causal_mask_t[:t, :t]
        cache = _Cache(tokens=tokens.copy()) if keep_cache else None

        x = p["tok_emb"][tokens.reshape(-1)]  # (N, D), a fresh array
        x.reshape(b, t, d)[...] += p["pos_emb"][:t]
        for i in range(cfg.n_layers):
            pre = f"h{i}."
            a_in, xhat1, rstd1 = layer_norm(x, p[pre + "ln1.gain"], p[pre + "ln1.bias"], eps)
            qkv = a_in @ p[pre + "attn.qkv.weight"]
            qkv += p[pre + "attn.qkv.bias"]
            heads = qkv.reshape(b, t, 3, h, dh).transpose(2, 0, 3, 1, 4)  # (3, B, H, T, dh) view
            q, k, v = heads[0], heads[1], heads[2]
            # Scores are kept transposed, probs_t[b, h, s, t] = P[t, s] (key s, query t), so that
            # the softmax reductions run over axis -2, which numpy reduces much faster than a
            # short last axis.
            probs_t = np.matmul(k, q.swapaxes(-1, -2))  # (B, H, T_key, T_query)
            probs_t *= scale
            probs_t += mask_t
            probs_t -= probs_t.max(axis=-2, keepdims=True)
            np.exp(probs_t, out=probs_t)
            probs_t /= probs_t.sum(axis=-2, keepdims=True)
            ctx = np.empty((b, t, h, dh), dtype=dt)
            np.matmul(probs_t.swapaxes(-1, -2), v, out=ctx.transpose(0, 2, 1, 3))
            ctx = ctx.reshape(n, d)
            attn = ctx @ p[pre + "attn.out.weight"]
            attn += p[pre + "attn.out.bias"]
            x += attn
            m_in, xhat2, rstd2 = layer_norm(x, p[pre + "ln2.gain"], p[pre + "ln2.bias"], eps)
            hid = m_in @ p[pre + "mlp.in.weight"]
            hid += p[pre + "mlp.in.bias"]
            act, gelu_half = gelu_tanh(hid)
            mlp = act @ p[pre + "mlp.out.weight"]
            mlp += p[pre + "mlp.out.bias"]
            x += mlp
            if cache is not None:
                cache.layers.append((a_in, xhat1, rstd1, heads, probs_t, ctx, m_in, xhat2, rstd2, hid, gelu_half, act))
        xf, xhatf, rstdf = layer_norm(x, p["ln_f.gain"], p["ln_f.bias"], eps)
        logits = xf @ self._head()
        if cache is not None:
            cache.final = (xf, xhatf, rstdf)
            self._cache = cache
            self._seq_cache = None  # a later sequence_logprobs call sets it for this forward
        return logits.reshape(b, t, cfg.vocab_size)

    __call__ = forward

    # ---------------------------------------------------------------- incremental decoding
    def start_decoding(self, batch_size: int) -> DecodeState:
        """An empty key/value cache for ``batch_size`` sequences (see :meth:`decode_step`)."""
        if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        cfg = self.config
        shape = (int(batch_size), cfg.n_heads, cfg.max_len, cfg.d_head)
        return DecodeState(
            batch_size=int(batch_size),
            keys=[np.zeros(shape, dtype=self.dtype) for _ in range(cfg.n_layers)],
            values=[np.zeros(shape, dtype=self.dtype) for _ in range(cfg.n_layers)],
        )

    def decode_step(self, state: DecodeState, tokens: np.ndarray) -> np.ndarray:
        """Append ``tokens (B,)`` at position ``state.length`` and return the next-token logits
        ``(B, V)`` there; equals ``forward(prefix)[:, -1]`` up to float rounding (the same
        arithmetic on one position, attending to the cached keys and values).
        Does not touch the backward cache."""
        cfg, p, dt = self.config, self.params, self.dtype
        tokens = np.asarray(tokens)
        b = state.batch_size
        if tokens.shape != (b,) or not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"tokens must be an integer array of shape ({b},), got {tokens.dtype} {tokens.shape}")
        if tokens.min() < 0 or tokens.max() >= cfg.vocab_size:
            raise ValueError(f"tokens must lie in [0, {cfg.vocab_size}), got range [{tokens.min()}, {tokens.max()}]")
        pos = state.length
        if pos >= cfg.max_len:
            raise ValueError(f"the decode state is full: max_len = {cfg.max_len} positions already decoded")
        h, dh, eps = cfg.n_heads, cfg.d_head, cfg.layer_norm_eps
        scale = dt.type(1.0 / math.sqrt(dh))
        x = p["tok_emb"][tokens]  # (B, D)
        x += p["pos_emb"][pos]
        for i in range(cfg.n_layers):
            pre = f"h{i}."
            a_in = layer_norm(x, p[pre + "ln1.gain"], p[pre + "ln1.bias"], eps)[0]
            qkv = a_in @ p[pre + "attn.qkv.weight"]
            qkv += p[pre + "attn.qkv.bias"]
            q, k, v = qkv.reshape(b, 3, h, dh).transpose(1, 0, 2, 3)  # each (B, H, dh)
            keys, values = state.keys[i], state.values[i]
            keys[:, :, pos] = k
            values[:, :, pos] = v
            scores = np.matmul(keys[:, :, : pos + 1], q[..., None])  # (B, H, S, 1)
            scores *= scale
            scores -= scores.max(axis=-2, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-2, keepdims=True)
            ctx = np.matmul(scores.swapaxes(-1, -2), values[:, :, : pos + 1])  # (B, H, 1, dh)
            attn = ctx.reshape(b, h * dh) @ p[pre + "attn.out.weight"]
            attn += p[pre + "attn.out.bias"]
            x += attn
            m_in = layer_norm(x, p[pre + "ln2.gain"], p[pre + "ln2.bias"], eps)[0]
            hid = m_in @ p[pre + "mlp.in.weight"]
            hid += p[pre + "mlp.in.bias"]
            mlp = gelu_tanh(hid)[0] @ p[pre + "mlp.out.weight"]
            mlp += p[pre + "mlp.out.bias"]
            x += mlp
        xf = layer_norm(x, p["ln_f.gain"], p["ln_f.bias"], eps)[0]
        state.length = pos + 1
        return xf @ self._head()

    # ---------------------------------------------------------------- backward
    def backward(self, dlogits: np.ndarray) -> dict[str, np.ndarray]:
        """Gradients of a scalar loss w.r.t. every parameter, given ``dloss/dlogits (B, T, V)``
        for the logits of the last :meth:`forward` call. Same keys and shapes as ``params``."""
        cache = self._cache
        if cache is None:
            raise ValueError("backward needs a preceding forward(..., keep_cache=True)")
        cfg, p, dt = self.config, self.params, self.dtype
        b, t = cache.tokens.shape
        n, d, h, dh = b * t, cfg.d_model, cfg.n_heads, cfg.d_head
        dlogits = np.asarray(dlogits)
        if dlogits.shape != (b, t, cfg.vocab_size):
            raise ValueError(f"dlogits must have shape {(b, t, cfg.vocab_size)}, got {dlogits.shape}")
        dlogits = np.ascontiguousarray(dlogits, dtype=dt).reshape(n, cfg.vocab_size)
        scale = dt.type(1.0 / math.sqrt(dh))
        grads: dict[str, np.ndarray] = {}

        xf, xhatf, rstdf = cache.final
        if cfg.tie_embeddings:
            dtok = dlogits.T @ xf  # (V, D)
            dxf = dlogits @ p["tok_emb"]
        else:
            grads["head.weight"] = xf.T @ dlogits
            dxf = dlogits @ p["head.weight"].T
        dx, grads["ln_f.gain"], grads["ln_f.bias"] = _layer_norm_backward(dxf, xhatf, rstdf, p["ln_f.gain"])

        for i in reversed(range(cfg.n_layers)):
            pre = f"h{i}."
            a_in, xhat1, rstd1, heads, probs_t, ctx, m_in, xhat2, rstd2, hid, gelu_half, act = cache.layers[i]
            # MLP branch
            grads[pre + "mlp.out.weight"] = act.T @ dx
            grads[pre + "mlp.out.bias"] = _column_sum(dx)
            dact = dx @ p[pre + "mlp.out.weight"].T
            dhid = _gelu_tanh_backward(dact, hid, act, gelu_half)
            grads[pre + "mlp.in.weight"] = m_in.T @ dhid
            grads[pre + "mlp.in.bias"] = _column_sum(dhid)
            dm_in = dhid @ p[pre + "mlp.in.weight"].T
            dres, grads[pre + "ln2.gain"], grads[pre + "ln2.bias"] = _layer_norm_backward(dm_in, xhat2, rstd2, p[pre + "ln2.gain"])
            dx += dres
            # attention branch
            grads[pre + "attn.out.weight"] = ctx.T @ dx
            grads[pre + "attn.out.bias"] = _column_sum(dx)
            dctx = (dx @ p[pre + "attn.out.weight"].T).reshape(b, t, h, dh).transpose(0, 2, 1, 3)  # (B,H,T,dh)
            q, k, v = heads[0], heads[1], heads[2]
            dqkv = np.empty((b, t, 3, h, dh), dtype=dt)
            dheads = dqkv.transpose(2, 0, 3, 1, 4)
            np.matmul(probs_t, dctx, out=dheads[2])  # dv = P^T dctx
            dprobs_t = np.matmul(v, dctx.swapaxes(-1, -2))  # (dP)^T = v dctx^T
            # softmax backward dS = P * (dP - rowsum(dP * P)); the mask has zero gradient.
            dsum = dprobs_t * probs_t
            dprobs_t -= dsum.sum(axis=-2, keepdims=True)
            dprobs_t *= probs_t
            dprobs_t *= scale
            np.matmul(dprobs_t.swapaxes(-1, -2), k, out=dheads[0])  # dq = dS k
            np.matmul(dprobs_t, q, out=dheads[1])  # dk = dS^T q
            dqkv = dqkv.reshape(n, 3 * d)
            grads[pre + "attn.qkv.weight"] = a_in.T @ dqkv
            grads[pre + "attn.qkv.bias"] = _column_sum(dqkv)
            da_in = dqkv @ p[pre + "attn.qkv.weight"].T
            dres, grads[pre + "ln1.gain"], grads[pre + "ln1.bias"] = _layer_norm_backward(da_in, xhat1, rstd1, p[pre + "ln1.gain"])
            dx += dres

        grads["pos_emb"] = pos = np.zeros_like(p["pos_emb"])
        pos[:t] = dx.reshape(b, t, d).sum(axis=0)
        emb = _scatter_add_rows(cache.tokens.reshape(-1), dx, cfg.vocab_size)
        if cfg.tie_embeddings:
            emb += dtok
        grads["tok_emb"] = emb
        return {name: grads[name] for name in p}

    # ---------------------------------------------------------------- log-prob views
    def next_token_logprobs(self, tokens: np.ndarray) -> np.ndarray:
        """``log pi(. | tokens[:, :t+1])`` for every prefix: ``(B, T, V)`` float64, one forward.

        Does not touch the backward cache.
        """
        return log_softmax(self.forward(tokens, keep_cache=False).astype(np.float64))

    def sequence_logprobs(self, tokens: np.ndarray, start: int, weights: np.ndarray | None = None) -> np.ndarray:
        """Per-sequence completion log-probability ``(B,)`` float64 (what the loss kernels consume).

        ``sum_{t = start}^{T-1} w_bt log pi(tokens[b, t] | tokens[b, :t])``: positions
        ``>= start`` are the completion, positions ``< start`` the prompt (``1 <= start < T``).
        ``weights`` (``(B, T - start)``, e.g. a 0/1 padding mask; default all ones) weight the
        completion tokens. Caches what :meth:`backward_sequence_logprobs` needs.
        """
        tokens = self._check_tokens(tokens)
        t = tokens.shape[1]
        if isinstance(start, (bool, np.bool_)) or not isinstance(start, (int, np.integer)) or not 1 <= start < t:
            raise ValueError(f"start must be an integer in [1, T-1] = [1, {t - 1}], got {start!r}")
        if weights is None:
            w = np.ones((tokens.shape[0], t - start))
        else:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (tokens.shape[0], t - start) or not np.all(np.isfinite(w)):
                raise ValueError(f"weights must be a finite array of shape {(tokens.shape[0], t - start)}, got {w.shape}")
        logits = self.forward(tokens)
        logp = log_softmax(logits[:, start - 1 : t - 1].astype(np.float64))  # (B, C, V)
        targets = tokens[:, start:, None]
        token_lp = np.take_along_axis(logp, targets, axis=-1)[..., 0]
        self._seq_cache = (start, logp, targets, w)
        return (w * token_lp).sum(axis=1)

    def backward_sequence_logprobs(self, dlogp: np.ndarray) -> dict[str, np.ndarray]:
        """Parameter gradients of ``sum_b dlogp[b] * sequence_logprobs(...)[b]`` for the last
        :meth:`sequence_logprobs` call; ``dlogp`` is ``d loss / d seq_logprob`` of shape ``(B,)``.

        ``d logp_b / d logits[b, t-1] = w_bt (onehot(tokens[b, t]) - softmax(logits[b, t-1]))``.
        """
        if self._seq_cache is None or self._cache is None:
            raise ValueError("backward_sequence_logprobs needs a preceding sequence_logprobs call")
        start, logp, targets, w = self._seq_cache
        b, t = self._cache.tokens.shape
        dlogp = np.asarray(dlogp, dtype=np.float64)
        if dlogp.shape != (b,) or not np.all(np.isfinite(dlogp)):
            raise ValueError(f"dlogp must be a finite array of shape {(b,)}, got {dlogp.shape}")
        coef = w * dlogp[:, None]  # (B, C)
        d_sub = np.exp(logp)
        d_sub *= -coef[..., None]
        np.put_along_axis(d_sub, targets, np.take_along_axis(d_sub, targets, -1) + coef[..., None], -1)
        dlogits = np.zeros((b, t, self.config.vocab_size), dtype=self.dtype)
        dlogits[:, start - 1 : t - 1] = d_sub
        return self.backward(dlogits)

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | PathLike) -> None:
        """Write the parameters and the config (JSON, key ``__config__``) to an ``.npz`` file
        (``np.savez``: a ``.npz`` suffix is appended to ``path`` if it lacks one)."""
        arrays = dict(self.params)
        arrays["__config__"] = np.array(self.config.to_json())
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str | PathLike) -> "Transformer":
        """Read a model written by :meth:`save` (bit-identical parameters)."""
        with np.load(path, allow_pickle=False) as data:
            if "__config__" not in data:
                raise ValueError(f"{path!s} is not a Transformer checkpoint (no __config__ entry)")
            config = TransformerConfig.from_json(str(data["__config__"]))
            params = {name: data[name] for name in data.files if name != "__config__"}
        return cls.from_params(config, params)

    @classmethod
    def from_params(cls, config: TransformerConfig, params: dict[str, np.ndarray]) -> "Transformer":
        """A model with the given parameters (copied, cast to ``config.dtype``); the names and
        shapes must be exactly those of ``Transformer(config).params``."""
        shapes = _param_shapes(config)
        if set(params) != set(shapes):
            raise ValueError(
                f"params must have exactly the parameter names of the config; "
                f"missing {sorted(set(shapes) - set(params))}, unexpected {sorted(set(params) - set(shapes))}"
            )
        for name, shape in shapes.items():
            if np.shape(params[name]) != shape:
                raise ValueError(f"params[{name!r}] must have shape {shape}, got {np.shape(params[name])}")
        return cls(config, _params={name: np.array(params[name], dtype=config.dtype) for name in shapes})

    def copy(self) -> "Transformer":
        """An independent model with equal parameters (e.g. a frozen reference policy)."""
        return Transformer.from_params(self.config, self.params)
