"""trl mode samples both responses at trl's temperature (0.9): the reference draw included."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import xposim as xs
from xposim.learners import make_learner, run_learner
from xposim.learners.runner import tempered_reference_cdf
from xposim.policies.arrays import env_arrays


def _brute_force_tempered(env, temperature):
    """Trajectory probabilities of pi_ref tempered per state, by enumeration of token paths."""
    A, H = env.vocab_size, env.horizon
    out = np.zeros((env.n_contexts, A ** H))
    for x in range(env.n_contexts):
        for leaf, tokens in enumerate(itertools.product(range(A), repeat=H)):
            state, prob = 0, 1.0
            for a in tokens:
                p = env.ref_probs[x, state]
                if temperature == 0.0:
                    q = np.zeros(A)
                    q[int(np.argmax(p))] = 1.0
                else:
                    q = p ** (1.0 / temperature)
                    q = q / q.sum()
                prob *= q[a]
                state = A * state + 1 + a
            out[x, leaf] = prob
    return out


@pytest.mark.parametrize("temperature", [0.0, 0.5, 0.9, 1.0, 2.0])
def test_tempered_reference_matches_enumeration(temperature):
    env = xs.envs.random_token_mdp(3, 3, 2, seed=4)
    cdf = tempered_reference_cdf(env, env_arrays(env), temperature)
    probs = np.diff(np.concatenate([np.zeros((env.n_contexts, 1)), cdf], axis=1), axis=1)
    assert np.allclose(probs, _brute_force_tempered(env, temperature), atol=1e-12)


def test_trl_mode_draws_the_reference_response_at_its_temperature():
    # one context, two arms, pi_ref = (0.8, 0.2): at T = 0.9 the reference draw is 0.8^(1/0.9) / Z
    env = xs.envs.TokenMDP.from_arrays([1.0], np.array([[[0.8, 0.2]]]), np.array([[[1.0, 0.0]]]))
    batch = 20000
    learner = make_learner("xpo_trl", batch_size=batch)
    result = run_learner(env, learner, 0.1, 1, seed=11)
    slots = result.engine_state.batch_bonus
    leaves = result.view.slot_leaf[0, slots]
    frequency = np.mean(leaves == 0)
    expected = 0.8 ** (1 / 0.9) / (0.8 ** (1 / 0.9) + 0.2 ** (1 / 0.9))
    assert abs(expected - 0.8) > 0.015  # the test can tell the two apart
    assert abs(frequency - expected) < 4 * np.sqrt(expected * (1 - expected) / batch)
