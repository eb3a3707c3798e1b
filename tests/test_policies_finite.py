"""Finite class: exact argmin by enumeration (incremental objectives vs a from-scratch numpy recount), tie rule."""
from __future__ import annotations

import numpy as np
import pytest

from xposim.testing import PolicyClassContract
from xposim import exact
from xposim.envs import random_token_mdp, two_arm_lower_bound
from xposim.learners import make_learner, run_learner
from xposim.policies import FiniteClass
from xposim.reference import losses_numpy as L

BETA = 0.2


def random_policies(env, count, seed):
    rng = np.random.default_rng(seed)
    return np.array([rng.dirichlet(np.ones(env.vocab_size), size=env.ref_probs.shape[:2]) for _ in range(count)])


def recount_objectives(result, members_logp, pair, bonus, alpha, beta, param):
    """Every member's objective from scratch, from the run's stored data (numpy reference losses)."""
    store = result.store
    eng = result.engine_state
    view = result.view
    objective = np.zeros(members_logp.shape[0])
    for e in range(int(store.n_edges[0])):
        x = store.edge_context[e]
        a, b = store.edge_chosen[e], store.edge_rejected[e]
        la = members_logp[:, x, view.slot_leaf[x, a]] - eng.loss_ref_logp[x, a]
        lb = members_logp[:, x, view.slot_leaf[x, b]] - eng.loss_ref_logp[x, b]
        objective += store.edge_weight[e] * L.pair_loss(pair, la, lb, beta, param)[0]
    if bonus != "none":
        for x in range(view.n_slots.shape[0]):
            for s in range(view.n_slots[x]):
                m = eng.bonus_count[x, s]
                if m > 0:
                    lp = members_logp[:, x, view.slot_leaf[x, s]]
                    objective += m * L.bonus_loss(bonus, lp, eng.loss_ref_logp[x, s], alpha, beta, eng.bonus_weight[x, s])[0]
    return objective


@pytest.mark.parametrize("name,bonus,alpha", [("xpo", "xpo", 0.3), ("online_dpo", "none", 0.0), ("copo", "copo", 0.4),
                                              ("popo", "popo", 0.5), ("selm", "selm", 0.3)])
def test_incremental_objectives_match_recount_and_argmin_is_exact(name, bonus, alpha):
    env = random_token_mdp(2, 3, 2, seed=1)
    policies = random_policies(env, 7, seed=2)
    fc = FiniteClass(policies)
    result = run_learner(env, make_learner(name, alpha=alpha) if bonus != "none" else make_learner(name), BETA, 60,
                         checkpoints=[60], seed=4, policy_class=fc)
    members_logp = fc.leaf_logprobs(env)
    expected = recount_objectives(result, members_logp, "dpo", bonus, alpha, BETA, env.r_max)
    state = result.class_state
    np.testing.assert_allclose(state.objective, expected, rtol=1e-10, atol=1e-10)
    assert state.current[0] == int(np.argmin(expected))
    # the reported iterate is that member
    np.testing.assert_allclose(result.leaf_logprobs(), members_logp[state.current[0]], atol=1e-12)
    assert result.final_value == pytest.approx(exact.evaluate(env, policies[state.current[0]], BETA).value, abs=1e-12)


def test_ties_go_to_the_lowest_index():
    env = two_arm_lower_bound(0.05)
    star = exact.solve(env, 0.05).policy
    ref = env.ref_probs
    worse = 0.5 * ref + 0.5 * star
    for members, expected in [([ref, star, star], 1), ([star, worse, star], 0), ([worse, ref, star, star, star], 2)]:
        fc = FiniteClass(np.array(members))
        result = run_learner(env, make_learner("xpo", alpha=0.05), 0.05, 40, checkpoints=[40], seed=0, policy_class=fc)
        objective = result.class_state.objective
        duplicates = [i for i in range(len(members)) if np.array_equal(members[i], star)]
        assert all(objective[i] == objective[duplicates[0]] for i in duplicates)  # exact ties
        assert result.class_state.current[0] == expected
        assert result.metrics[-1, 3] == pytest.approx(0.0, abs=1e-12)  # pi* is in the class


def test_finite_class_theory_setting_separation():
    """Finite class containing pi*: XPO finds it on Prop. 2.1's instance, online DPO mostly does not."""
    beta = 0.02
    env = two_arm_lower_bound(beta)
    star = exact.solve(env, beta).policy
    members = np.array([env.ref_probs, star, 0.5 * (env.ref_probs + star)])
    fc = FiniteClass(members)
    found = {"xpo": 0, "online_dpo": 0}
    for seed in range(16):
        for name in found:
            learner = make_learner(name, alpha=0.05) if name == "xpo" else make_learner(name)
            result = run_learner(env, learner, beta, 50, checkpoints=[50], seed=seed, policy_class=fc)
            found[name] += int(result.metrics[-1, 3] < 1 / 8)
    assert found["xpo"] >= 15
    assert found["online_dpo"] <= 10


@pytest.mark.fast
def test_validation_errors():
    env = random_token_mdp(1, 3, 1, seed=0)
    with pytest.raises(ValueError, match="policies"):
        FiniteClass(np.zeros((2, 3)))
    bad = np.tile(env.ref_probs, (2, 1, 1, 1)).copy()
    bad[1, 0, 0] = [1.0, 0.0, 0.0]  # zero probability where pi_ref > 0: unbounded density ratio
    with pytest.raises(ValueError, match="positive probability exactly where pi_ref"):
        FiniteClass(bad).validate(env)
    wrong = np.tile(env.ref_probs, (2, 1, 1, 1))[:, :, :, :2]
    with pytest.raises(ValueError, match="shape"):
        FiniteClass(wrong).validate(env)
    fc = FiniteClass(np.tile(env.ref_probs, (2, 1, 1, 1)))
    with pytest.raises(ValueError, match="trl"):
        run_learner(env, make_learner("xpo", mode="trl"), 0.1, 5, policy_class=fc)


class TestFiniteClassContract(PolicyClassContract):
    """The interface contract (xposim.testing) on the finite class: fused loop and the generic loop agree."""

    def make_env(self):
        return random_token_mdp(2, 3, 2, seed=4)

    def make_policy_class(self):
        return FiniteClass(random_policies(self.make_env(), 5, seed=9))
