"""chiPO's realizable class ``tabular_chi`` (issue 14): the argmin, the link, per-learner selection."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import pytest

import xposim as xs
from xposim import exact
from xposim.envs import headroom_bandit, random_token_mdp
from xposim.learners import make_learner, run_learner
from xposim.learners.dpo import ChiPO, OnlineDPO
from xposim.losses import chipo_margin
from xposim.losses.kinds import PairLoss
from xposim.mixed_chi2 import chi_class_trajectory_logprobs
from xposim.reference import chi_numpy

BETA = 0.1


def leaf_values(result) -> np.ndarray:
    """The class parameters ``f`` per leaf (slots carry their own, the rest share ``rest_value``)."""
    state, view = result.class_state, result.view
    f = np.repeat(state.rest_value[:, None], result.env.n_leaves, axis=1)
    for x in range(f.shape[0]):
        for s in range(view.n_slots[x]):
            f[x, view.slot_leaf[x, s]] = state.values[x, s]
    return f


def test_chipo_runs_on_its_own_class_by_default():
    env = random_token_mdp(2, 4, 2, seed=3)
    result = run_learner(env, make_learner("chipo"), BETA, 300, seed=1)
    f = leaf_values(result)
    expected, _ = chi_class_trajectory_logprobs(env, f, BETA)
    np.testing.assert_allclose(result.leaf_logprobs(), expected, atol=1e-12)
    assert f.min() >= 0.0 and f.max() <= env.r_max
    for x in range(env.n_contexts):  # the plain scipy reference of the link
        ref = np.exp(env.trajectory_ref_logprobs[x])
        mu = chi_numpy.chi_normalizer(ref, f[x], BETA)
        log_z, _ = chi_numpy.chi_link((f[x] - mu) / BETA)
        np.testing.assert_allclose(result.leaf_logprobs()[x], env.trajectory_ref_logprobs[x] + log_z, atol=1e-10)
    reward = result.metrics[-1][list(result.columns).index("expected_reward")]
    assert reward == pytest.approx(exact.evaluate(env, result.token_policy(), BETA).reward, abs=1e-12)


def test_the_argmin_is_dpos_box_fit_and_the_margin_is_f_difference():
    """Over chiPO's class chiPO's margin is f+ - f-, so on the same data (same seed) the fitted f
    equals DPO's over the tilt class, and only the link differs."""
    env = random_token_mdp(1, 6, 1, seed=4)
    chipo = run_learner(env, make_learner("chipo"), BETA, 500, seed=2)
    dpo = run_learner(env, make_learner("dpo"), BETA, 500, seed=2)
    f_chi, f_dpo = leaf_values(chipo), leaf_values(dpo)
    np.testing.assert_array_equal(f_chi, f_dpo)
    log_ratio = chipo.leaf_logprobs() - env.trajectory_ref_logprobs
    for a in range(env.n_leaves):
        for b in range(env.n_leaves):
            margin = chipo_margin(float(log_ratio[0, a]), float(log_ratio[0, b]), BETA)
            assert margin == pytest.approx(f_chi[0, a] - f_chi[0, b], abs=1e-12)
    assert not np.allclose(chipo.leaf_logprobs(), dpo.leaf_logprobs())


def test_the_tilt_class_is_still_selectable_per_learner():
    env = headroom_bandit(n_covered=4, rare_exponents=(4, 6), rare_per_scale=1)
    seed = xs.seeding.child_seed(xs.seeding.as_seed_sequence(0), 1)
    column = "expected_reward"

    def last(table, learner):
        return table[(table["learner"] == learner) & (table["seed"] == 1)][column].iloc[-1]

    def run(learner, policy_class):
        result = run_learner(env, make_learner(learner), 0.05, 256, seed=seed, policy_class=policy_class)
        return result.metrics[-1][list(result.columns).index(column)]

    mixed = xs.simulate(env, ["chipo", "dpo"], 0.05, 256, seeds=2, workers=1, policy_class={"chipo": "tabular"})
    default = xs.simulate(env, ["chipo", "dpo"], 0.05, 256, seeds=2, workers=1)
    assert last(mixed, "chipo") == run("chipo", "tabular")
    assert last(default, "chipo") == run("chipo", "tabular_chi") == run("chipo", None)
    assert last(mixed, "dpo") == last(default, "dpo") == run("dpo", "tabular")


@dataclasses.dataclass(frozen=True)
class NarrowClipChiPO(ChiPO):
    """chiPO with its clip at 2 (R_max / 4): the loss is no longer the box Bradley–Terry fit."""

    def pair_parameter(self, r_max: float) -> float:
        return r_max / 4.0


def test_learners_outside_the_class_are_refused():
    env = random_token_mdp(1, 3, 1, seed=0)
    with pytest.raises(ValueError, match="tabular_chi.*'dpo'"):
        run_learner(env, make_learner("dpo"), BETA, 10, policy_class="tabular_chi")
    with pytest.raises(ValueError, match="tabular_chi.*'xpo'"):
        xs.simulate(env, ["xpo"], BETA, 10, seeds=1, policy_class="tabular_chi")
    with pytest.raises(ValueError, match="clip"):
        run_learner(env, NarrowClipChiPO(), BETA, 10)
    with pytest.raises(ValueError, match="no learner is labelled"):
        xs.simulate(env, ["chipo"], BETA, 10, seeds=1, policy_class={"xpo": "tabular"})
    with pytest.raises(ValueError, match="policy_class must be one of"):
        run_learner(env, make_learner("chipo"), BETA, 10, policy_class="chi")


@dataclasses.dataclass(frozen=True)
class OnlineChiPO(OnlineDPO):
    """A user's online chiPO: online DPO's sampling with chiPO's pair loss."""

    pair_loss = PairLoss.CHIPO  # -log sigma(clip(beta [phi(z+) - phi(z-)], -2 R_max, 2 R_max))

    registry_name: ClassVar[str] = "online_chipo"


def test_online_rounds_on_the_class_keep_the_link_and_are_deterministic():
    env = random_token_mdp(2, 4, 1, seed=6)
    learner = OnlineChiPO()
    first = run_learner(env, learner, BETA, 200, seed=3, policy_class="tabular_chi")
    again = run_learner(env, learner, BETA, 200, seed=3, policy_class="tabular_chi")
    np.testing.assert_array_equal(first.metrics, again.metrics)
    expected, _ = chi_class_trajectory_logprobs(env, leaf_values(first), BETA)
    np.testing.assert_allclose(first.leaf_logprobs(), expected, atol=1e-12)
    column = list(first.columns).index("expected_reward")
    assert first.metrics[-1][column] > first.metrics[0][column]
