"""Torch-free LM-scale reference path: a tiny numpy transformer with a hand-written backward.

* :mod:`xposim.lm.model`: :class:`TransformerConfig`, :class:`Transformer` (forward, backward,
  sequence log-probs, next-token log-probs, save/load), ``log_softmax``, ``cross_entropy``.
* :mod:`xposim.lm.sampling`: :func:`sample` (temperature / greedy, scored at 1 and at the
  sampling temperature).
* :mod:`xposim.lm.optim`: :class:`AdamW`, :func:`clip_grad_norm`.

This package never imports torch.
"""
from xposim.lm.model import Transformer, TransformerConfig, cross_entropy, gelu_tanh, layer_norm, log_softmax
from xposim.lm.optim import AdamW, clip_grad_norm, global_norm, no_decay_names
from xposim.lm.sampling import SampleResult, sample, sample_from_logits

__all__ = [
    "TransformerConfig",
    "Transformer",
    "log_softmax",
    "cross_entropy",
    "gelu_tanh",
    "layer_norm",
    "AdamW",
    "clip_grad_norm",
    "global_norm",
    "no_decay_names",
    "SampleResult",
    "sample",
    "sample_from_logits",
]
