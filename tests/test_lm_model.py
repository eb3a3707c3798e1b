"""Tests of the numpy transformer (xposim.lm): gradients, causality, log-probs, sampling,
persistence, optimiser. Gradient checks use central finite differences in float64."""
from __future__ import annotations

import math

import numpy as np
import pytest

from xposim.lm import (
    AdamW,
    Transformer,
    TransformerConfig,
    clip_grad_norm,
    cross_entropy,
    gelu_tanh,
    layer_norm,
    log_softmax,
    no_decay_names,
    sample,
    sample_from_logits,
)
from xposim.seeding import make_rng

VOCAB, T, B = 7, 5, 3


def tiny_model(tie: bool, dtype: str = "float64", seed: int = 1, max_len: int = T, n_layers: int = 2) -> Transformer:
    """V=7, D=8, 2 heads, 2 layers; large init and perturbed LayerNorm/bias parameters so every
    nonlinearity (softmax, GELU, LN) is exercised away from its trivial point."""
    cfg = TransformerConfig(
        vocab_size=VOCAB, max_len=max_len, d_model=8, n_heads=2, n_layers=n_layers, d_mlp=12,
        tie_embeddings=tie, dtype=dtype, init_std=0.5,
    )
    model = Transformer(cfg, seed)
    rng = np.random.default_rng(seed + 100)
    for value in model.params.values():
        value += rng.normal(0.0, 0.3, size=value.shape)
    return model


def check_all_gradients(model: Transformer, loss_fn, analytic: dict, rng: np.random.Generator, n_random: int = 24):
    """Central differences (h = 1e-5) on every entry of small tensors (<= 64 entries) and on
    ``n_random`` random entries plus the first and last of larger ones. Returns the worst
    per-tensor relative error ``max|num - ana| / max|ana|``."""
    h = 1e-5
    worst = {}
    for name, value in model.params.items():
        if value.size <= 64:
            flat_idx = np.arange(value.size)
        else:
            flat_idx = np.unique(np.concatenate(([0, value.size - 1], rng.choice(value.size, n_random, replace=False))))
        num = np.empty(flat_idx.size)
        flat = value.reshape(-1)
        for j, fi in enumerate(flat_idx):
            old = flat[fi]
            flat[fi] = old + h
            up = loss_fn()
            flat[fi] = old - h
            down = loss_fn()
            flat[fi] = old
            num[j] = (up - down) / (2 * h)
        ana = analytic[name].reshape(-1)[flat_idx]
        scale = np.abs(ana).max()
        assert scale > 0, f"gradient of {name} is identically zero on the checked entries"
        worst[name] = float(np.abs(num - ana).max() / scale)
    return worst


# ---------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("tie", [True, False])
def test_gradient_check_weighted_logits(tie):
    model = tiny_model(tie)
    rng = np.random.default_rng(7)
    tokens = rng.integers(0, VOCAB, size=(B, T))
    weights = rng.normal(size=(B, T, VOCAB))
    model.forward(tokens)
    grads = model.backward(weights)
    assert set(grads) == set(model.params)
    for name in grads:
        assert grads[name].shape == model.params[name].shape and grads[name].dtype == np.float64
    errors = check_all_gradients(model, lambda: float((model.forward(tokens, keep_cache=False) * weights).sum()), grads, rng)
    assert set(errors) == set(model.params)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("tie", [True, False])
def test_gradient_check_sequence_logprobs(tie):
    model = tiny_model(tie, seed=3)
    rng = np.random.default_rng(11)
    tokens = rng.integers(0, VOCAB, size=(B, T))
    start = 2
    token_weights = rng.uniform(0.2, 1.0, size=(B, T - start))
    coef = rng.normal(size=B)  # d loss / d seq_logprob
    model.sequence_logprobs(tokens, start, token_weights)
    grads = model.backward_sequence_logprobs(coef)

    def loss():
        logp = log_softmax(model.forward(tokens, keep_cache=False).astype(np.float64))
        total = 0.0
        for b in range(B):
            for t in range(start, T):
                total += coef[b] * token_weights[b, t - start] * logp[b, t - 1, tokens[b, t]]
        return total

    errors = check_all_gradients(model, loss, grads, rng)
    assert max(errors.values()) < 1e-6, errors


def test_gradient_check_cross_entropy_dlogits():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(2, 4, 6)) * 3
    targets = rng.integers(0, 6, size=(2, 4))
    mask = rng.uniform(size=(2, 4)) > 0.3
    mask[0, 0] = True
    loss, dlogits = cross_entropy(logits, targets, mask)
    manual = -sum(log_softmax(logits[b, t])[targets[b, t]] for b in range(2) for t in range(4) if mask[b, t]) / mask.sum()
    assert loss == pytest.approx(manual, rel=1e-13)
    h = 1e-6
    num = np.empty_like(logits)
    for idx in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[idx] += h
        down[idx] -= h
        num[idx] = (cross_entropy(up, targets, mask)[0] - cross_entropy(down, targets, mask)[0]) / (2 * h)
    assert np.abs(num - dlogits).max() / np.abs(dlogits).max() < 1e-7
    assert np.all(dlogits[~mask] == 0)


@pytest.mark.fast
def test_elementwise_building_blocks_match_plain_formulas():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 5)) * 4
    y, s = gelu_tanh(x)
    np.testing.assert_allclose(y, 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(s, 0.5 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))), rtol=1e-14)
    gain, bias = rng.normal(size=5), rng.normal(size=5)
    out, xhat, rstd = layer_norm(x, gain, bias, 1e-5)
    expect = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5) * gain + bias
    np.testing.assert_allclose(out, expect, rtol=1e-12, atol=1e-12)
    big = np.array([[1e4, 0.0, -1e4], [-800.0, -800.0, -801.0]])
    ls = log_softmax(big)
    assert np.all(np.isfinite(ls))
    np.testing.assert_allclose(np.exp(ls).sum(1), 1.0, rtol=1e-14)
    assert ls[0, 0] == 0.0 and ls[1, 0] == pytest.approx(-math.log(2 + math.exp(-1)), rel=1e-14)


# ---------------------------------------------------------------------------------- structure
@pytest.mark.fast
def test_causality_changing_token_t_leaves_earlier_logits_unchanged():
    model = tiny_model(True, dtype="float32", max_len=6)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCAB, size=(4, 6))
    base = model.forward(tokens, keep_cache=False)
    for t in range(6):
        changed = tokens.copy()
        changed[:, t] = (changed[:, t] + 1 + rng.integers(0, VOCAB - 1, size=4)) % VOCAB
        out = model.forward(changed, keep_cache=False)
        np.testing.assert_array_equal(out[:, :t], base[:, :t])
        assert np.abs(out[:, t] - base[:, t]).max() > 1e-4  # position t does see its own token


@pytest.mark.fast
def test_sequence_logprobs_equal_manual_gather_and_next_token_logprobs_normalized():
    model = tiny_model(False, dtype="float32")
    rng = np.random.default_rng(4)
    tokens = rng.integers(0, VOCAB, size=(B, T))
    next_lp = model.next_token_logprobs(tokens)
    assert next_lp.shape == (B, T, VOCAB) and next_lp.dtype == np.float64
    np.testing.assert_allclose(np.exp(next_lp).sum(-1), 1.0, rtol=1e-12)
    logits = model.forward(tokens, keep_cache=False).astype(np.float64)
    for start in range(1, T):
        got = model.sequence_logprobs(tokens, start)
        manual = [sum(log_softmax(logits[b, t - 1])[tokens[b, t]] for t in range(start, T)) for b in range(B)]
        np.testing.assert_allclose(got, manual, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got, [next_lp[b, np.arange(start - 1, T - 1), tokens[b, start:]].sum() for b in range(B)], rtol=1e-12)
    with pytest.raises(ValueError, match="start"):
        model.sequence_logprobs(tokens, 0)
    with pytest.raises(ValueError, match="start"):
        model.sequence_logprobs(tokens, T)


@pytest.mark.fast
def test_other_forward_calls_do_not_disturb_the_backward_cache():
    model = tiny_model(True)
    rng = np.random.default_rng(9)
    tokens = rng.integers(0, VOCAB, size=(B, T))
    coef = rng.normal(size=B)
    model.sequence_logprobs(tokens, 2)
    expected = model.backward_sequence_logprobs(coef)
    model.sequence_logprobs(tokens, 2)
    model.next_token_logprobs(rng.integers(0, VOCAB, size=(5, 3)))
    sample(model, tokens[:, :1], 2, make_rng(0))
    got = model.backward_sequence_logprobs(coef)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])
    model.forward(tokens)  # a new cached forward invalidates the sequence log-prob cache
    with pytest.raises(ValueError, match="sequence_logprobs"):
        model.backward_sequence_logprobs(coef)


@pytest.mark.fast
def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match="divisible"):
        TransformerConfig(vocab_size=5, max_len=4, d_model=6, n_heads=4)
    with pytest.raises(ValueError, match="dtype"):
        TransformerConfig(vocab_size=5, max_len=4, dtype="float16")
    with pytest.raises(ValueError, match="vocab_size"):
        TransformerConfig(vocab_size=1, max_len=4)
    model = tiny_model(True)
    with pytest.raises(ValueError, match="tokens"):
        model.forward(np.array([[0, VOCAB]]))
    with pytest.raises(ValueError, match="tokens"):
        model.forward(np.zeros((1, T + 1), dtype=int))
    with pytest.raises(ValueError, match="tokens"):
        model.forward(np.zeros((1, 2)))  # float tokens
    fresh = Transformer(model.config, 0)
    with pytest.raises(ValueError, match="forward"):
        fresh.backward(np.zeros((1, 2, VOCAB)))
    model.forward(np.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match="dlogits"):
        model.backward(np.zeros((2, 4, VOCAB)))


# ---------------------------------------------------------------------------------- sampling
@pytest.mark.fast
@pytest.mark.parametrize("tie,n_layers", [(True, 2), (False, 1), (True, 0)])
def test_incremental_decoding_equals_full_forward(tie, n_layers):
    model = tiny_model(tie, max_len=6, n_layers=n_layers)
    tokens = np.random.default_rng(6).integers(0, VOCAB, size=(4, 6))
    full = model.forward(tokens, keep_cache=False)
    state = model.start_decoding(4)
    steps = np.stack([model.decode_step(state, tokens[:, j]) for j in range(6)], axis=1)
    assert state.length == 6
    np.testing.assert_allclose(steps, full, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="full"):
        model.decode_step(state, tokens[:, 0])
    with pytest.raises(ValueError, match="tokens"):
        model.decode_step(model.start_decoding(4), tokens[:3, 0])


@pytest.mark.fast
def test_greedy_sampling_is_deterministic_argmax_and_scored_at_temperature_one():
    # float64: decoding runs forwards on prefixes, whose float32 rounding differs (~1e-7
    # relative) from the one full-length forward of next_token_logprobs.
    model = tiny_model(True, dtype="float64", max_len=6)
    prompts = np.array([[0, 1], [3, 3], [6, 2]])
    rng = make_rng(0)
    state = rng.bit_generator.state
    first = sample(model, prompts, 4, rng, temperature=0.0)
    assert rng.bit_generator.state == state  # greedy consumes no randomness
    second = sample(model, prompts, 4, make_rng(123), temperature=0)
    np.testing.assert_array_equal(first.tokens, second.tokens)
    np.testing.assert_array_equal(first.tokens[:, :2], prompts)
    next_lp = model.next_token_logprobs(first.tokens)
    for step in range(4):
        pos = 2 + step
        np.testing.assert_array_equal(first.tokens[:, pos], next_lp[:, pos - 1].argmax(axis=1))
        np.testing.assert_allclose(first.logprobs[:, step], next_lp[np.arange(3), pos - 1, first.tokens[:, pos]], rtol=1e-12)
    np.testing.assert_array_equal(first.sampling_logprobs, 0.0)
    np.testing.assert_allclose(first.sequence_logprobs, model.sequence_logprobs(first.tokens, 2), rtol=1e-12)


@pytest.mark.fast
def test_greedy_ties_go_to_the_lowest_token():
    tokens, lp1, lpt = sample_from_logits(np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]]), make_rng(0), 0.0)
    np.testing.assert_array_equal(tokens, [1, 0])
    np.testing.assert_allclose(lp1, [log_softmax(np.array([1.0, 3, 3, 0]))[1], -math.log(4)], rtol=1e-14)


def test_temperature_sampling_frequencies_match_softmax():
    cfg = TransformerConfig(vocab_size=6, max_len=4, d_model=8, n_heads=2, n_layers=1, init_std=1.0, dtype="float64")
    model = Transformer(cfg, 5)
    n, temperature = 20_000, 0.7
    prompts = np.tile([[2, 4]], (n, 1))
    result = sample(model, prompts, 1, make_rng(17), temperature=temperature)
    logits = model.forward(prompts[:1], keep_cache=False)[0, -1]
    p_temp = np.exp(log_softmax(logits / temperature))
    assert p_temp.max() > 0.3  # a peaked distribution, so temperature matters
    counts = np.bincount(result.tokens[:, 2], minlength=6)
    # each count is Binomial(n, p); 5 standard deviations (+1 for discreteness) per token
    assert np.all(np.abs(counts - n * p_temp) <= 5 * np.sqrt(n * p_temp * (1 - p_temp)) + 1), (counts, n * p_temp)
    p_one = np.exp(log_softmax(logits))
    assert np.abs(p_one - p_temp).max() > 0.02  # the two temperatures are distinguishable here
    np.testing.assert_allclose(result.logprobs[:, 0], np.log(p_one)[result.tokens[:, 2]], rtol=1e-12)
    np.testing.assert_allclose(result.sampling_logprobs[:, 0], np.log(p_temp)[result.tokens[:, 2]], rtol=1e-12)


@pytest.mark.fast
def test_sampling_is_reproducible_and_validates_arguments():
    model = tiny_model(False, dtype="float32", max_len=6)
    prompts = np.zeros((8, 1), dtype=int)
    a = sample(model, prompts, 5, make_rng(3), temperature=0.9)
    b = sample(model, prompts, 5, make_rng(3), temperature=0.9)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.logprobs, b.logprobs)
    with pytest.raises(ValueError, match="n_new"):
        sample(model, prompts, 6, make_rng(0))
    with pytest.raises(ValueError, match="temperature"):
        sample(model, prompts, 1, make_rng(0), temperature=-0.1)
    with pytest.raises(ValueError, match="rng"):
        sample(model, prompts, 1, 0)


# ---------------------------------------------------------------------------------- persistence
@pytest.mark.fast
@pytest.mark.parametrize("tie", [True, False])
def test_save_load_round_trip_is_bit_identical(tmp_path, tie):
    model = tiny_model(tie, dtype="float32")
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = Transformer.load(path)
    assert loaded.config == model.config
    assert set(loaded.params) == set(model.params)
    for name, value in model.params.items():
        assert loaded.params[name].dtype == value.dtype
        assert loaded.params[name].tobytes() == value.tobytes()
    tokens = np.random.default_rng(0).integers(0, VOCAB, size=(2, T))
    np.testing.assert_array_equal(loaded.forward(tokens), model.forward(tokens))


@pytest.mark.fast
def test_copy_and_from_params_are_independent_and_validated(tmp_path):
    model = tiny_model(False, dtype="float32")
    twin = model.copy()
    for name in model.params:
        assert twin.params[name] is not model.params[name]
        np.testing.assert_array_equal(twin.params[name], model.params[name])
    model.params["h0.mlp.in.weight"] += 1.0
    assert not np.array_equal(twin.params["h0.mlp.in.weight"], model.params["h0.mlp.in.weight"])
    bad = dict(model.params)
    del bad["head.weight"]
    with pytest.raises(ValueError, match="head.weight"):
        Transformer.from_params(model.config, bad)
    bad = dict(model.params, **{"tok_emb": np.zeros((VOCAB + 1, 8))})
    with pytest.raises(ValueError, match="tok_emb"):
        Transformer.from_params(model.config, bad)
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="checkpoint"):
        Transformer.load(tmp_path / "other.npz")


@pytest.mark.fast
def test_same_seed_same_parameters_bit_for_bit():
    cfg = TransformerConfig(vocab_size=11, max_len=6, d_model=16, n_heads=4, n_layers=2, tie_embeddings=False)
    a, b, c = Transformer(cfg, 42), Transformer(cfg, 42), Transformer(cfg, 43)
    assert list(a.params) == list(b.params)
    for name in a.params:
        assert a.params[name].tobytes() == b.params[name].tobytes()
    assert any(a.params[name].tobytes() != c.params[name].tobytes() for name in a.params)
    # float64 and float32 models of one seed hold the same draws up to rounding
    d = Transformer(TransformerConfig(**{**cfg.__dict__, "dtype": "float64"}), 42)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], d.params[name].astype(np.float32))
    tokens = np.random.default_rng(1).integers(0, 11, size=(3, 6))
    np.testing.assert_allclose(a.forward(tokens), d.forward(tokens), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------- optimiser
@pytest.mark.fast
def test_adamw_matches_hand_computed_updates():
    params = {"w": np.array([1.0, -2.0]), "b": np.array([0.5])}
    opt = AdamW(params, lr=0.1, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.5, no_decay={"b"})
    grads_seq = [{"w": np.array([0.5, -0.1]), "b": np.array([2.0])}, {"w": np.array([-0.3, 0.4]), "b": np.array([1.0])}]
    w, b = [1.0, -2.0], 0.5
    mw, vw, mb, vb = [0.0, 0.0], [0.0, 0.0], 0.0, 0.0
    for k, g in enumerate(grads_seq, start=1):
        opt.step(g)
        for i in range(2):
            w[i] *= 1 - 0.1 * 0.5
            mw[i] = 0.8 * mw[i] + 0.2 * g["w"][i]
            vw[i] = 0.9 * vw[i] + 0.1 * g["w"][i] ** 2
            w[i] -= 0.1 * (mw[i] / (1 - 0.8**k)) / (math.sqrt(vw[i] / (1 - 0.9**k)) + 1e-3)
        mb = 0.8 * mb + 0.2 * g["b"][0]
        vb = 0.9 * vb + 0.1 * g["b"][0] ** 2
        b -= 0.1 * (mb / (1 - 0.8**k)) / (math.sqrt(vb / (1 - 0.9**k)) + 1e-3)  # no decay on "b"
        np.testing.assert_allclose(params["w"], w, rtol=1e-14)
        np.testing.assert_allclose(params["b"], [b], rtol=1e-14)
    with pytest.raises(ValueError, match="lr"):
        AdamW(params, lr=-1.0)
    with pytest.raises(ValueError, match="no_decay"):
        AdamW(params, lr=0.1, no_decay={"nope"})


@pytest.mark.fast
def test_adamw_on_model_reduces_sft_loss_and_no_decay_names():
    model = tiny_model(True, dtype="float32", n_layers=1)
    names = no_decay_names(model.params)
    assert "tok_emb" in names and "h0.ln1.gain" in names and "h0.attn.qkv.bias" in names
    assert "h0.attn.qkv.weight" not in names and "h0.mlp.out.weight" not in names
    opt = AdamW(model.params, lr=0.02, weight_decay=0.01, no_decay=names)
    tokens = np.random.default_rng(0).integers(0, VOCAB, size=(4, T))
    losses = []
    for _ in range(30):
        loss, dlogits = cross_entropy(model.forward(tokens[:, :-1]), tokens[:, 1:])
        grads = model.backward(dlogits)
        clip_grad_norm(grads, 1.0)
        opt.step(grads)
        losses.append(loss)
    assert losses[-1] < 0.5 * losses[0]
    assert all(v.dtype == np.float32 for v in model.params.values())


@pytest.mark.fast
def test_clip_grad_norm():
    grads = {"a": np.array([3.0]), "b": np.array([[4.0, 0.0]])}
    assert clip_grad_norm(grads, 10.0) == pytest.approx(5.0, rel=1e-15)
    np.testing.assert_array_equal(grads["a"], [3.0])  # below the threshold: untouched
    assert clip_grad_norm(grads, 1.0) == pytest.approx(5.0, rel=1e-15)
    new_norm = math.sqrt(grads["a"][0] ** 2 + grads["b"][0, 0] ** 2)
    assert new_norm == pytest.approx(5.0 / (5.0 + 1e-6), rel=1e-12)
    np.testing.assert_allclose(grads["b"][0, 0] / grads["a"][0], 4.0 / 3.0, rtol=1e-14)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(grads, 0.0)
    with pytest.raises(ValueError, match="finite"):
        clip_grad_norm({"a": np.array([np.inf])}, 1.0)
