"""Torch-free LM-scale reference path: a tiny numpy transformer with a hand-written backward.

* :mod:`xposim.lm.model`: :class:`TransformerConfig`, :class:`Transformer` (forward, backward,
  sequence log-probs, next-token log-probs, save/load), ``log_softmax``, ``cross_entropy``.
* :mod:`xposim.lm.sampling`: :func:`sample` (temperature / greedy, scored at 1 and at the
  sampling temperature).
* :mod:`xposim.lm.optim`: :class:`AdamW`, :func:`clip_grad_norm`.
* :mod:`xposim.lm.task`: :class:`LMTask` (prompts, reward with a rare high-reward pattern, corpus).
* :mod:`xposim.lm.tabulate`: the network as an exact ``TokenMDP`` policy; exact and Monte Carlo scores.
* :mod:`xposim.lm.sft`: the reference model (SFT on the task's corpus, cached as ``.npz``).
* :mod:`xposim.lm.preference`: offline DPO, online DPO and XPO on the shared loss kernels.

This package never imports torch.
"""
from xposim.lm.model import Transformer, TransformerConfig, cross_entropy, gelu_tanh, layer_norm, log_softmax
from xposim.lm.optim import AdamW, clip_grad_norm, global_norm, no_decay_names
from xposim.lm.sampling import SampleResult, sample, sample_from_logits
from xposim.lm.task import LMTask, LMTaskConfig, make_lm_task, sample_corpus
from xposim.lm.tabulate import exact_scores, monte_carlo_scores, tabulate_policy
from xposim.lm.sft import SFTConfig, load_or_train_reference, train_reference_model
from xposim.lm.preference import PreferenceConfig, PreferenceRun, run_preference_learning

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
    "LMTaskConfig",
    "LMTask",
    "make_lm_task",
    "sample_corpus",
    "tabulate_policy",
    "exact_scores",
    "monte_carlo_scores",
    "SFTConfig",
    "train_reference_model",
    "load_or_train_reference",
    "PreferenceConfig",
    "PreferenceRun",
    "run_preference_learning",
]
