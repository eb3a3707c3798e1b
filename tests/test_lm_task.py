"""The LM task (reward, corpus) and the exact / Monte Carlo scoring of a network policy."""
from __future__ import annotations

import numpy as np
import pytest

from xposim import exact
from xposim.envs import tree
from xposim.lm.blas_threads import blas_threads
from xposim.lm.model import Transformer, TransformerConfig
from xposim.lm.sampling import sample
from xposim.lm.tabulate import (
    exact_scores,
    mixture_value,
    monte_carlo_scores,
    score_sequences,
    tabulate_log_policy,
    tabulate_policy,
)
from xposim.lm.task import LMTaskConfig, check_exact_scoring, make_lm_task, sample_corpus
from xposim.seeding import make_rng


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with blas_threads(1):
        yield


def _random_model(task, dtype="float64", seed=3, init_std=0.5):
    config = TransformerConfig(vocab_size=task.vocab_size, max_len=task.sequence_length, d_model=16, n_heads=2,
                               n_layers=1, dtype=dtype, init_std=init_std)
    return Transformer(config, seed)


# ------------------------------------------------------------------------------------ the task
@pytest.mark.fast
def test_task_is_deterministic_in_its_seed_and_differs_across_seeds():
    a, b, c = make_lm_task(seed=5), make_lm_task(seed=5), make_lm_task(seed=6)
    for name in ("prompts", "token_scores", "corpus_start_probs", "corpus_transitions"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.pattern == b.pattern
    assert not np.array_equal(a.token_scores, c.token_scores)
    assert len({tuple(p) for p in a.prompts}) == a.n_contexts  # distinct prompts


@pytest.mark.fast
def test_reward_matches_its_formula_on_hand_built_responses():
    task = make_lm_task(vocab_size=5, horizon=4, pattern_length=2, seed=2, linear_weight=0.3, r_max=2.0)
    p0, p1 = task.pattern
    other = next(t for t in range(task.vocab_size) if t not in task.pattern)
    with_pattern = np.array([[other, p0, p1, other]])
    without = np.array([[p1, other, other, p0]])  # both tokens, wrong order / not adjacent
    for x in range(task.n_contexts):
        ctx = np.array([x])
        for response, has in ((with_pattern, 1.0), (without, 0.0)):
            linear = task.token_scores[x, response[0]].mean()
            expected = 2.0 * (0.3 * linear + 0.7 * has)
            assert task.reward(ctx, response)[0] == pytest.approx(expected, abs=1e-14)
    assert task.contains_pattern(with_pattern)[0] and not task.contains_pattern(without)[0]


@pytest.mark.fast
def test_leaf_rewards_lie_in_range_and_follow_tree_numbering():
    task = make_lm_task(vocab_size=4, horizon=3)
    rewards = task.leaf_rewards()
    assert rewards.shape == (task.n_contexts, 4**3)
    assert rewards.min() >= 0.0 and rewards.max() <= task.r_max
    leaf = tree.leaf_index((3, 0, 2), 4)
    assert rewards[1, leaf] == task.reward(np.array([1]), np.array([[3, 0, 2]]))[0]


@pytest.mark.fast
def test_pattern_is_rare_under_the_corpus_and_rarer_with_smaller_rarity():
    def pattern_probability(rarity):
        task = make_lm_task(pattern_rarity=rarity)
        env = task.token_mdp(task.corpus_policy())
        return exact_scores(env, task, env.ref_probs, 0.2).pattern_probability

    rare, rarer, plain = pattern_probability(0.25), pattern_probability(0.05), pattern_probability(1.0)
    assert rarer < rare < plain
    assert rare < 0.05


@pytest.mark.fast
def test_corpus_samples_follow_the_corpus_chain():
    task = make_lm_task(vocab_size=4, horizon=2, n_prompts=2)
    n = 40_000
    contexts, responses = sample_corpus(task, n, seed=1)
    env = task.token_mdp(task.corpus_policy())
    probs = exact.trajectory_probabilities(env, env.ref_probs)  # (n_contexts, 16)
    for x in range(task.n_contexts):
        mine = responses[contexts == x]
        counts = np.bincount(mine[:, 0] * 4 + mine[:, 1], minlength=16)
        expected = probs[x] * mine.shape[0]
        z = (counts - expected) / np.sqrt(expected * (1 - probs[x]) + 1e-12)
        assert np.max(np.abs(z)) < 5.0


@pytest.mark.fast
def test_bad_task_settings_name_the_setting():
    with pytest.raises(ValueError, match="n_prompts"):
        LMTaskConfig(vocab_size=2, prompt_length=2, n_prompts=5)
    with pytest.raises(ValueError, match="pattern_length"):
        LMTaskConfig(horizon=2, pattern_length=3)
    with pytest.raises(ValueError, match="pattern_rarity"):
        LMTaskConfig(pattern_rarity=0.0)
    with pytest.raises(ValueError, match="oracle"):
        LMTaskConfig(oracle="coin")
    task = make_lm_task()
    with pytest.raises(ValueError, match="responses"):
        task.reward(np.array([0]), np.array([[0, 1, 2, task.vocab_size]]))
    with pytest.raises(ValueError, match="vocab_size=8, horizon=8"):
        check_exact_scoring(4, 8, 8)


# ------------------------------------------------------------------------------------ tabulation
@pytest.mark.fast
@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-10), ("float32", 1e-4)])
def test_tabulated_policy_reproduces_the_network_sequence_logprobs(dtype, tolerance):
    """trajectory_logprobs of the tabulated policy == model.sequence_logprobs for every leaf.

    float32 models: the tabulation and the scoring run forward passes on sequences of different
    lengths, so logits may differ by float32 rounding (the tolerance), not more."""
    task = make_lm_task(vocab_size=4, horizon=3, n_prompts=3)
    model = _random_model(task, dtype)
    policy = tabulate_policy(model, task)
    np.testing.assert_allclose(policy.sum(axis=2), 1.0, atol=1e-12)
    env = task.token_mdp(policy)
    from_table = exact.trajectory_logprobs(env, policy)
    leaves = tree.leaf_tokens(task.vocab_size, task.horizon)
    for x in range(task.n_contexts):
        sequences = task.full_sequences(np.full(leaves.shape[0], x), leaves)
        direct = model.sequence_logprobs(sequences, start=task.prompt_length)
        np.testing.assert_allclose(from_table[x], direct, rtol=0, atol=tolerance)
        np.testing.assert_allclose(score_sequences(model, sequences, task.prompt_length), direct, rtol=0, atol=tolerance)


@pytest.mark.fast
def test_tabulation_with_horizon_one_is_the_next_token_distribution():
    task = make_lm_task(vocab_size=5, horizon=1, n_prompts=3, pattern_length=1)
    model = _random_model(task)
    log_policy = tabulate_log_policy(model, task)
    assert log_policy.shape == (3, 1, 5)
    np.testing.assert_allclose(log_policy[:, 0], model.next_token_logprobs(task.prompts)[:, -1], atol=1e-12)


@pytest.mark.fast
def test_exact_scores_of_the_reference_itself():
    task = make_lm_task(vocab_size=4, horizon=3)
    policy = tabulate_policy(_random_model(task), task)
    env = task.token_mdp(policy)
    scores = exact_scores(env, task, policy, beta=0.3)
    assert scores.kl_to_ref == pytest.approx(0.0, abs=1e-12)
    assert scores.kl_regularized_value == pytest.approx(scores.expected_reward, abs=1e-12)
    probs = exact.trajectory_probabilities(env, policy)
    assert scores.expected_reward == pytest.approx(float(task.rho @ (probs * task.leaf_rewards()).sum(1)), abs=1e-12)
    # the entropy of a sequence distribution over A^H responses is at most H log A
    assert 0.0 < scores.entropy <= task.horizon * np.log(task.vocab_size) + 1e-12
    # the optimum beats the reference, and its score is the solver's value
    solution = exact.solve(env, 0.3)
    assert exact_scores(env, task, solution.policy, 0.3).kl_regularized_value == pytest.approx(solution.value, abs=1e-10)
    assert solution.value > scores.kl_regularized_value


def test_monte_carlo_scores_agree_with_exact_scores_within_their_intervals():
    task = make_lm_task(vocab_size=4, horizon=3)
    reference = _random_model(task, seed=1)
    policy_model = _random_model(task, seed=2, init_std=0.8)
    env = task.token_mdp(tabulate_policy(reference, task))
    beta = 0.3
    truth = exact_scores(env, task, tabulate_policy(policy_model, task), beta)
    assert truth.kl_to_ref > 0.05  # a policy far enough from the reference for the check to bite
    rng = make_rng(11)
    n = 4000
    contexts = rng.choice(task.n_contexts, size=n, p=task.rho)
    drawn = sample(policy_model, task.prompts[contexts], task.horizon, rng, 1.0)
    logp_ref = score_sequences(reference, drawn.tokens, task.prompt_length)
    mc = monte_carlo_scores(task, contexts, drawn.tokens[:, task.prompt_length:], drawn.sequence_logprobs, logp_ref, beta)
    assert mc.n == n
    # a 95% half-width is 1.96 sd; allow 4.5 sd (a false alarm is then ~1e-5 per quantity)
    for name in ("kl_regularized_value", "expected_reward", "kl_to_ref", "entropy"):
        half_width = getattr(mc, f"{name}_ci95")
        assert 0 < half_width < 1.0
        assert abs(getattr(mc, name) - getattr(truth, name)) < 4.5 / 1.96 * half_width, name


@pytest.mark.fast
def test_mixture_value_of_one_policy_is_its_value_and_mixtures_gain_by_concavity():
    task = make_lm_task(vocab_size=4, horizon=3)
    env = task.token_mdp(tabulate_policy(_random_model(task, seed=1), task))
    policies = [tabulate_policy(_random_model(task, seed=s, init_std=0.8), task) for s in (2, 3)]
    beta = 0.4
    values = [exact.evaluate(env, pol, beta).value for pol in policies]
    probs = [exact.trajectory_probabilities(env, pol) for pol in policies]
    for value, prob in zip(values, probs):
        assert mixture_value(env, prob, beta) == pytest.approx(value, abs=1e-10)
    # J_beta is concave in the response distribution (linear reward minus a convex KL)
    assert mixture_value(env, 0.5 * (probs[0] + probs[1]), beta) > 0.5 * (values[0] + values[1])
    with pytest.raises(ValueError, match="trajectory_probabilities"):
        mixture_value(env, probs[0][:, :-1], beta)
