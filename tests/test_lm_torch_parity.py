"""Optional: the numpy transformer equals a torch (autograd) implementation of the same
architecture (benchmarks/_torch_reference.py) in float64: logits, every parameter gradient,
sequence log-prob gradients and AdamW steps. Skipped when torch is not installed (it is not a
dependency of xposim)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xposim.lm import AdamW, Transformer, TransformerConfig  # noqa: E402

_REF = Path(__file__).resolve().parents[1] / "benchmarks" / "_torch_reference.py"


def _load_reference():
    spec = importlib.util.spec_from_file_location("_xposim_torch_reference", _REF)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref = _load_reference()


def _models(tie: bool, seed: int = 0):
    cfg = TransformerConfig(
        vocab_size=11, max_len=9, d_model=16, n_heads=4, n_layers=2, d_mlp=24,
        tie_embeddings=tie, dtype="float64", init_std=0.3,
    )
    model = Transformer(cfg, seed)
    rng = np.random.default_rng(seed + 1)
    for value in model.params.values():  # move LN gains/biases off 1/0
        value += rng.normal(0.0, 0.2, size=value.shape)
    return model, ref.TorchTransformer(cfg, model.params, dtype=torch.float64)


@pytest.mark.parametrize("tie", [True, False])
def test_logits_and_all_gradients_match_torch(tie):
    model, tmodel = _models(tie)
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, 11, size=(4, 9))
    weights = rng.normal(size=(4, 9, 11))
    logits = model.forward(tokens)
    grads = model.backward(weights)
    tlogits = tmodel(torch.tensor(tokens))
    (tlogits * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(logits, tlogits.detach().numpy(), rtol=0, atol=1e-10)
    tgrads = tmodel.grads()
    assert set(tgrads) == set(grads)
    for name in grads:
        scale = max(np.abs(tgrads[name]).max(), 1e-300)
        assert np.abs(grads[name] - tgrads[name]).max() / scale < 1e-10, name


def test_sequence_logprob_gradients_match_torch():
    model, tmodel = _models(False, seed=5)
    rng = np.random.default_rng(8)
    tokens = rng.integers(0, 11, size=(3, 7))
    start, coef = 3, rng.normal(size=3)
    logp = model.sequence_logprobs(tokens, start)
    grads = model.backward_sequence_logprobs(coef)
    tt = torch.tensor(tokens)
    tlogp_all = torch.log_softmax(tmodel(tt), dim=-1)[:, start - 1 : -1]
    tlogp = tlogp_all.gather(-1, tt[:, start:, None])[..., 0].sum(1)
    (tlogp * torch.tensor(coef)).sum().backward()
    np.testing.assert_allclose(logp, tlogp.detach().numpy(), rtol=1e-12)
    tgrads = tmodel.grads()
    for name in grads:
        scale = max(np.abs(tgrads[name]).max(), 1e-300)
        assert np.abs(grads[name] - tgrads[name]).max() / scale < 1e-10, name


def test_adamw_matches_torch_adamw():
    model, tmodel = _models(True, seed=2)
    opt = AdamW(model.params, lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    topt = torch.optim.AdamW(tmodel.parameters(), lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    rng = np.random.default_rng(0)
    for _ in range(3):
        grads = {name: rng.normal(size=value.shape) for name, value in model.params.items()}
        opt.step(grads)
        for name, p in tmodel.weights.items():
            p.grad = torch.tensor(grads[name.replace("/", ".")])
        topt.step()
    for name, p in tmodel.weights.items():
        np.testing.assert_allclose(model.params[name.replace("/", ".")], p.detach().numpy(), rtol=1e-12, atol=1e-14)
