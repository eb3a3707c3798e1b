"""SFT of the reference model and the preference loops (DPO, online DPO, XPO) of the LM path."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from xposim import exact
from xposim.lm.blas_threads import blas_threads
from xposim.lm.model import Transformer, TransformerConfig
from xposim.lm.optim import AdamW
from xposim.lm.preference import (
    PairBatch,
    PreferenceConfig,
    preference_loss,
    preference_step,
    run_preference_learning,
)
from xposim.lm.sft import SFTConfig, load_or_train_reference, train_reference_model
from xposim.lm.tabulate import score_sequences, tabulate_policy
from xposim.lm.task import make_lm_task
from xposim.losses import bonus_loss_and_grad, pair_loss_and_grad
from xposim.seeding import make_rng


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with blas_threads(1):
        yield


def _model_config(task, dtype="float32", d_model=16):
    return TransformerConfig(vocab_size=task.vocab_size, max_len=task.sequence_length, d_model=d_model, n_heads=2,
                             n_layers=1, dtype=dtype)


@pytest.fixture(scope="module")
def small():
    """A small enumerable task and its SFT reference (A=6, H=4, 4 prompts; d_model 16, 1 layer)."""
    with blas_threads(1):
        task = make_lm_task()
        reference = train_reference_model(task, _model_config(task), SFTConfig(steps=250), seed=0).model
        env = task.token_mdp(tabulate_policy(reference, task))
    return task, reference, env


def _random_batch(task, reference, rng, m, policy_for_first=None):
    contexts = rng.choice(task.n_contexts, size=m)
    chosen = rng.integers(task.vocab_size, size=(m, task.horizon))
    rejected = rng.integers(task.vocab_size, size=(m, task.horizon))
    p = task.prompt_length
    return PairBatch(
        contexts=contexts, chosen=chosen, rejected=rejected,
        ref_logp_chosen=score_sequences(reference, task.full_sequences(contexts, chosen), p),
        ref_logp_rejected=score_sequences(reference, task.full_sequences(contexts, rejected), p),
        bonus_on_chosen=rng.random(m) < 0.5,
    )


# ------------------------------------------------------------------------------------ SFT
def test_sft_fits_the_corpus_and_is_deterministic(small, tmp_path):
    task, reference, _ = small
    corpus_env = task.token_mdp(task.corpus_policy())
    untrained = Transformer(_model_config(task), 0)

    def kl_corpus_to(model):  # KL(corpus || model), exact, via evaluate on the model's TokenMDP
        return exact.evaluate(task.token_mdp(tabulate_policy(model, task)), corpus_env.ref_probs, 1.0).kl

    assert kl_corpus_to(reference) < 0.5 * kl_corpus_to(untrained)
    first = load_or_train_reference(task, _model_config(task), SFTConfig(steps=30), seed=4, directory=tmp_path)
    second = load_or_train_reference(task, _model_config(task), SFTConfig(steps=30), seed=4, directory=tmp_path)
    assert not first.reused and second.reused and first.path == second.path and first.path.exists()
    assert first.losses[-5:].mean() < first.losses[:5].mean()
    for name, value in first.model.params.items():
        np.testing.assert_array_equal(value, second.model.params[name])
    other = load_or_train_reference(task, _model_config(task), SFTConfig(steps=30), seed=5, directory=tmp_path)
    assert other.path != first.path and not other.reused


# ------------------------------------------------------------------------------------ the loss through the network
@pytest.mark.fast
@pytest.mark.parametrize("learner", ["xpo", "online_dpo", "dpo"])
def test_lm_loss_is_the_kernel_loss_on_the_same_log_ratios(small, learner):
    task, reference, _ = small
    rng = make_rng(7)
    policy = Transformer(reference.config, _params={k: v + 0.05 * rng.standard_normal(v.shape).astype(v.dtype)
                                                     for k, v in reference.params.items()})
    batch = _random_batch(task, reference, rng, 9)
    config = PreferenceConfig(learner=learner, beta=0.3, alpha=0.07 if learner == "xpo" else None)
    loss = preference_loss(policy, task, batch, config.loss_spec())
    p = task.prompt_length
    # the network's log-probs (float32 model: other batch shapes round differently, hence 1e-5) ...
    np.testing.assert_allclose(loss.logp_chosen, score_sequences(policy, task.full_sequences(batch.contexts, batch.chosen), p),
                               atol=1e-5)
    np.testing.assert_allclose(loss.logp_rejected,
                               score_sequences(policy, task.full_sequences(batch.contexts, batch.rejected), p), atol=1e-5)
    # ... and, on exactly those log-ratios, the kernels' values and derivatives
    logp_c, logp_r = loss.logp_chosen, loss.logp_rejected
    pair_sum, d_c, d_r = pair_loss_and_grad("dpo", logp_c - batch.ref_logp_chosen, logp_r - batch.ref_logp_rejected, 0.3)
    assert loss.pair_loss_sum == pytest.approx(pair_sum, rel=1e-12, abs=1e-12)
    if learner == "xpo":
        tilde = np.where(batch.bonus_on_chosen, logp_c, logp_r)
        bonus_sum, d_tilde = bonus_loss_and_grad("xpo", tilde, None, 0.07, 0.3)
        assert bonus_sum < 0  # alpha * log pi(tau~) with log pi < 0
        d_c = d_c + np.where(batch.bonus_on_chosen, d_tilde, 0.0)
        d_r = d_r + np.where(batch.bonus_on_chosen, 0.0, d_tilde)
    else:
        bonus_sum = 0.0
    assert loss.bonus_loss_sum == pytest.approx(bonus_sum, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(loss.d_logp, np.concatenate([d_c, d_r]) / len(batch), rtol=1e-12, atol=1e-15)
    assert loss.mean == pytest.approx((pair_sum + bonus_sum) / len(batch), rel=1e-12)


@pytest.mark.fast
def test_parameter_gradient_of_the_lm_loss_matches_finite_differences():
    """The kernels' derivatives, back-propagated through the network, are the gradient of the
    objective the loop minimizes (float64 model, central differences)."""
    task = make_lm_task(vocab_size=4, horizon=3, n_prompts=2)
    config = TransformerConfig(vocab_size=4, max_len=task.sequence_length, d_model=8, n_heads=2, n_layers=1,
                               dtype="float64", init_std=0.3)
    reference = Transformer(config, 1)
    policy = Transformer(config, 2)
    batch = _random_batch(task, reference, make_rng(3), 5)
    spec = PreferenceConfig(learner="xpo", beta=0.5, alpha=0.2).loss_spec()
    grads = policy.backward_sequence_logprobs(preference_loss(policy, task, batch, spec).d_logp)
    rng = make_rng(4)
    for name in ("tok_emb", "h0.attn.qkv.weight", "h0.mlp.out.bias", "ln_f.gain"):
        flat = policy.params[name].reshape(-1)
        for i in rng.choice(flat.size, size=3, replace=False):
            old = flat[i]
            flat[i] = old + 1e-6
            up = preference_loss(policy, task, batch, spec).mean
            flat[i] = old - 1e-6
            down = preference_loss(policy, task, batch, spec).mean
            flat[i] = old
            assert grads[name].reshape(-1)[i] == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-9), name


@pytest.mark.fast
def test_xpo_bonus_pushes_the_reference_samples_down(small):
    """Sign check (THEORY 4.3): from the same state and batch, an XPO step lowers log pi(tau~)
    more than the same step without the bonus."""
    task, reference, _ = small
    batch = _random_batch(task, reference, make_rng(8), 16)
    tilde = task.full_sequences(batch.contexts, np.where(batch.bonus_on_chosen[:, None], batch.chosen, batch.rejected))
    after = {}
    for alpha in (0.0, 0.5):
        policy = Transformer(reference.config, _params={k: v.copy() for k, v in reference.params.items()})
        preference_step(policy, AdamW(policy.params, lr=1e-3), task, batch,
                        PreferenceConfig(learner="xpo", alpha=alpha).loss_spec(), grad_clip=1e9)
        after[alpha] = score_sequences(policy, tilde, task.prompt_length).sum()
    assert after[0.5] < after[0.0]


# ------------------------------------------------------------------------------------ runs
def test_xpo_raises_the_exact_value_and_is_deterministic(small):
    task, reference, env = small
    # these settings raise J_beta for each of the seeds 0..9 (checked once; seed 3 is used here)
    config = PreferenceConfig(learner="xpo", rounds=6, pairs_per_round=64, learning_rate=3e-4, epochs_per_round=1,
                              minibatch_size=32, eval_samples=32, scoring="exact", progress=False)
    first = run_preference_learning(task, reference, config, seed=3, env=env)
    second = run_preference_learning(task, reference, config, seed=3, env=env)
    pd.testing.assert_frame_equal(first.log, second.log, check_exact=True)
    log = first.log
    assert list(log["round"]) == list(range(7)) and list(log["labels"]) == [64 * t for t in range(7)]
    # exact J_beta of the last iterate above the reference's, below the optimum
    assert log["kl_regularized_value"].iloc[-1] > log["kl_regularized_value"].iloc[0]
    assert log["kl_regularized_value"].max() < log["optimal_value"].iloc[0]
    assert first.summary["final_value"] == log["kl_regularized_value"].iloc[-1]
    assert first.summary["optimal_value"] == pytest.approx(exact.solve(env, config.beta).value, abs=1e-12)
    # the average iterate (uniform mixture of pi^(1..t+1)) is at least the mean of the iterates' values
    assert log["average_iterate_value"].iloc[0] == pytest.approx(log["kl_regularized_value"].iloc[0], abs=1e-10)
    assert log["average_iterate_value"].iloc[-1] >= log["kl_regularized_value"].mean() - 1e-12
    # round 0 is pi_ref itself
    assert log["kl_to_ref"].iloc[0] == pytest.approx(0.0, abs=1e-12)
    # objective/kl is the exact KL here; the Monte Carlo estimate is a separate column
    np.testing.assert_array_equal(log["objective/kl"], log["kl_to_ref"])
    assert log["mc/kl_to_ref"].notna().all()
    # at round 1 the sampling policy is pi_ref: every batch margin is 0, accuracy 0 (trl's convention)
    assert log["rewards/margins"].iloc[1] == pytest.approx(0.0, abs=1e-6)
    assert log["rewards/accuracies"].iloc[1] == 0.0
    assert (log["loss/xpo"].iloc[1:] < 0).all()  # alpha * log pi(tau~) with log pi < 0
    # paper mode: epochs over all pairs so far, minibatches of 32 pairs
    assert first.gradient_steps == sum(math.ceil(64 * t / 32) for t in range(1, 7))
    assert len(first.pairs) == 6 * 64
    different = run_preference_learning(task, reference, config, seed=4, env=env)
    assert not different.log["kl_regularized_value"].equals(log["kl_regularized_value"])


def test_trl_mode_one_step_per_batch_argmax_labels(small):
    task, reference, env = small
    config = PreferenceConfig(learner="xpo", mode="trl", rounds=3, pairs_per_round=24, eval_samples=0,
                              scoring="exact", progress=False)
    assert config.resolved_alpha == 1e-5 and config.resolved_temperature == 0.9
    run = run_preference_learning(task, reference, config, seed=0, env=env)
    assert run.gradient_steps == 3
    pairs = run.pairs
    assert np.all(task.reward(pairs.contexts, pairs.chosen) >= task.reward(pairs.contexts, pairs.rejected))
    assert run.log["mc/kl_to_ref"].isna().all() and run.log["objective/kl"].notna().all()


def test_offline_dpo_pairs_do_not_depend_on_the_policy_but_online_ones_do(small):
    task, reference, env = small

    def pairs(learner, lr):
        config = PreferenceConfig(learner=learner, rounds=3, pairs_per_round=16, learning_rate=lr, eval_samples=0,
                                  scoring="exact", progress=False)
        return run_preference_learning(task, reference, config, seed=1, env=env).pairs

    dpo_a, dpo_b = pairs("dpo", 1e-3), pairs("dpo", 3e-2)
    np.testing.assert_array_equal(dpo_a.chosen, dpo_b.chosen)
    np.testing.assert_array_equal(dpo_a.rejected, dpo_b.rejected)
    online_a, online_b = pairs("online_dpo", 1e-3), pairs("online_dpo", 3e-2)
    assert not np.array_equal(np.concatenate([online_a.chosen, online_a.rejected]),
                              np.concatenate([online_b.chosen, online_b.rejected]))


def test_monte_carlo_scoring_without_exact_columns(small):
    task, reference, _ = small
    config = PreferenceConfig(learner="online_dpo", rounds=2, pairs_per_round=8, eval_samples=64,
                              scoring="monte_carlo", progress=False)
    run = run_preference_learning(task, reference, config, seed=0)
    log = run.log
    assert log["kl_regularized_value"].isna().all() and math.isnan(run.summary["optimal_value"])
    np.testing.assert_array_equal(log["objective/kl"], log["mc/kl_to_ref"])
    # the Monte Carlo KL of pi_ref against itself is exactly 0 (same network, same samples)
    assert log["mc/kl_to_ref"].iloc[0] == 0.0 and log["mc/kl_to_ref_ci95"].iloc[0] == 0.0
    assert run.summary["initial_value"] == log["mc/kl_regularized_value"].iloc[0]


@pytest.mark.fast
def test_bad_preference_settings_name_the_setting():
    with pytest.raises(ValueError, match="learner"):
        PreferenceConfig(learner="ppo")
    with pytest.raises(ValueError, match="rounds"):
        PreferenceConfig(rounds=0)
    with pytest.raises(ValueError, match="alpha"):
        PreferenceConfig(learner="dpo", alpha=0.1)
    with pytest.raises(ValueError, match="mode"):
        PreferenceConfig(mode="fast")
    with pytest.raises(ValueError, match="beta"):
        PreferenceConfig(beta=0.0)
    task = make_lm_task(vocab_size=8, horizon=8)
    model = Transformer(_model_config(task), 0)
    with pytest.raises(ValueError, match="vocab_size=8, horizon=8"):
        run_preference_learning(task, model, PreferenceConfig(scoring="exact", rounds=1))


@pytest.mark.fast
def test_lm_monte_carlo_scoring_needs_samples():
    from xposim.lm.preference import PreferenceConfig

    with pytest.raises(ValueError, match="eval_samples must be >= 1 when scoring='monte_carlo'"):
        PreferenceConfig(scoring="monte_carlo", eval_samples=0)
