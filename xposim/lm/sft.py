"""Supervised fine-tuning of the reference model ``pi_ref`` on the task's synthetic corpus.

The reference policy of the LM path is the transformer after SFT (no downloaded weights): the
corpus (:func:`xposim.lm.task.sample_corpus`) holds prompt + response sequences whose responses
come from a known skewed Markov chain in which the high-reward pattern is rare. The loss is the
mean token cross-entropy of the response tokens given everything before them
(:func:`xposim.lm.model.cross_entropy`; prompt tokens are not predicted), minimized by AdamW with
global-norm gradient clipping and a cosine learning-rate decay to ``final_lr_fraction * lr``.

:func:`load_or_train_reference` caches the trained model as ``reference_<key>.npz`` in a
directory, the key being a hash of every setting that determines the weights (task, model,
SFT settings, seed), so a second call with the same settings reuses it.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from xposim.lm.model import Transformer, TransformerConfig, cross_entropy
from xposim.lm.optim import AdamW, clip_grad_norm
from xposim.lm.task import LMTask, sample_corpus
from xposim.seeding import SeedLike, as_seed_sequence, make_rng, spawn_seeds

__all__ = ["SFTConfig", "SFTResult", "train_reference_model", "reference_cache_key", "load_or_train_reference",
           "sft_loss_and_grads"]

#: Bumped whenever the SFT procedure changes, so stale cached reference models are not reused.
SFT_CACHE_VERSION = 1


@dataclass(frozen=True)
class SFTConfig:
    """Settings of the supervised fine-tuning that produces the reference model."""

    corpus_size: int = 4096
    """Number of prompt + response examples drawn from the corpus chain."""
    steps: int = 600
    """Number of AdamW steps."""
    batch_size: int = 64
    """Examples per step (drawn by reshuffling the corpus every epoch)."""
    learning_rate: float = 3e-3
    """Peak AdamW learning rate."""
    final_lr_fraction: float = 0.1
    """The learning rate decays along a half cosine from ``lr`` to ``final_lr_fraction * lr``."""
    weight_decay: float = 0.0
    """Decoupled AdamW weight decay (applied to every parameter)."""
    grad_clip: float = 1.0
    """Global gradient-norm clip (``torch.nn.utils.clip_grad_norm_`` semantics)."""

    def __post_init__(self) -> None:
        for name in ("corpus_size", "steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name, low, high in (("learning_rate", 0.0, 10.0), ("final_lr_fraction", 0.0, 1.0),
                                ("weight_decay", 0.0, 10.0), ("grad_clip", 0.0, math.inf)):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
        if self.learning_rate <= 0 or self.grad_clip <= 0:
            raise ValueError("learning_rate and grad_clip must be > 0")


@dataclass
class SFTResult:
    """A trained reference model and its loss curve (mean cross-entropy per step, nats/token)."""

    model: Transformer
    losses: np.ndarray
    path: Path | None = None
    """Where the model is cached (``None`` if not saved)."""
    reused: bool = False
    """True if the model was loaded from the cache instead of trained."""


def sft_loss_and_grads(model: Transformer, sequences: np.ndarray, prompt_length: int) -> tuple[float, dict]:
    """Mean cross-entropy of the response tokens of ``sequences (B, P + H)`` and its parameter gradients.

    ``loss = mean_{b, t >= P} -log pi(tok_bt | tok_b<t)``: logits at position ``t - 1`` predict
    token ``t``; positions before ``P`` (the prompt) are masked out.
    """
    logits = model.forward(sequences)
    b, t, v = logits.shape
    mask = np.zeros((b, t - 1))
    mask[:, prompt_length - 1 :] = 1.0
    loss, d_shifted = cross_entropy(logits[:, :-1], sequences[:, 1:], mask)
    dlogits = np.zeros_like(logits)
    dlogits[:, :-1] = d_shifted
    return loss, model.backward(dlogits)


def train_reference_model(task: LMTask, model_config: TransformerConfig, config: SFTConfig = SFTConfig(),
                          seed: SeedLike = 0, progress: bool = False) -> SFTResult:
    """Initialize ``Transformer(model_config)`` and fine-tune it on the task's corpus (module docstring).

    ``seed`` drives, via independent child streams, the initialization, the corpus draw and the
    minibatch order: the same arguments give bit-identical weights.
    """
    if model_config.vocab_size != task.vocab_size or model_config.max_len < task.sequence_length:
        raise ValueError(
            f"model_config must have vocab_size={task.vocab_size} and max_len >= {task.sequence_length}, "
            f"got vocab_size={model_config.vocab_size}, max_len={model_config.max_len}"
        )
    init_seed, corpus_seed, order_seed = spawn_seeds(seed, 3)
    model = Transformer(model_config, init_seed)
    contexts, responses = sample_corpus(task, config.corpus_size, corpus_seed)
    corpus = task.full_sequences(contexts, responses)
    rng = make_rng(order_seed)
    optimizer = AdamW(model.params, lr=config.learning_rate, weight_decay=config.weight_decay)
    losses = np.empty(config.steps)
    order = rng.permutation(config.corpus_size)
    cursor = 0
    steps = range(config.steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="SFT reference", file=sys.stderr, leave=False)
    for step in steps:
        if cursor + config.batch_size > config.corpus_size:  # new epoch
            order = rng.permutation(config.corpus_size)
            cursor = 0
        batch = corpus[order[cursor : cursor + config.batch_size]]
        cursor += config.batch_size
        progress_fraction = step / max(config.steps - 1, 1)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress_fraction))
        optimizer.lr = config.learning_rate * (config.final_lr_fraction + (1.0 - config.final_lr_fraction) * cosine)
        losses[step], grads = sft_loss_and_grads(model, batch, task.prompt_length)
        clip_grad_norm(grads, config.grad_clip)
        optimizer.step(grads)
    return SFTResult(model=model, losses=losses)


def reference_cache_key(task: LMTask, model_config: TransformerConfig, config: SFTConfig, seed: SeedLike) -> str:
    """12 hex digits of the SHA-256 of every setting that determines the reference weights."""
    seq = as_seed_sequence(seed)
    payload = json.dumps(
        {
            "version": SFT_CACHE_VERSION,
            "task": json.loads(task.config.to_json()),
            "model": json.loads(model_config.to_json()),
            "sft": asdict(config),
            "seed": [int(v) for v in np.atleast_1d(seq.entropy)] + list(seq.spawn_key),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def load_or_train_reference(task: LMTask, model_config: TransformerConfig, config: SFTConfig = SFTConfig(),
                            seed: SeedLike = 0, directory: str | Path | None = None,
                            progress: bool = False) -> SFTResult:
    """The reference model for these settings: loaded from ``directory/reference_<key>.npz`` when
    present, else trained with :func:`train_reference_model` and saved there (``directory=None``:
    train, do not save). ``seed`` must be an int or a SeedSequence with a fixed entropy."""
    if directory is None:
        return train_reference_model(task, model_config, config, seed, progress)
    directory = Path(directory)
    key = reference_cache_key(task, model_config, config, seed)
    path = directory / f"reference_{key}.npz"
    losses_path = directory / f"reference_{key}.sft_losses.npy"
    if path.exists():
        model = Transformer.load(path)
        if model.config != model_config:
            raise ValueError(f"cached reference model {path} has config {model.config}, expected {model_config}")
        losses = np.load(losses_path) if losses_path.exists() else np.empty(0)
        return SFTResult(model=model, losses=losses, path=path, reused=True)
    result = train_reference_model(task, model_config, config, seed, progress)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".reference_{key}.tmp.npz"
    result.model.save(tmp)
    tmp.replace(path)
    np.save(losses_path, result.losses)
    result.path = path
    return result
