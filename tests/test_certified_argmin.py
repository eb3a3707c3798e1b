"""The certified argmin as the tabular class's default (#11): the runs report certificates, the public
round-solve function agrees with the engine's solves, and a local solver's known failure is caught."""
from __future__ import annotations

import math

import numpy as np
import pytest

import xposim as xs
from xposim.learners import make_learner, run_learner
from xposim.policies import SolverSettings, TabularClass
from xposim.policies.tabular import solve_round_objective
from xposim.policies.tabular.objective import context_objective
from xposim.policies.tabular.state import new_workspace


def test_default_xpo_solves_are_certified_and_local_ones_are_reported():
    env = xs.envs.random_token_mdp(3, 2, 2, seed=1)
    table = xs.simulate(env, ["xpo", "vpo", "selm", "online_dpo", "dpo"], 0.05, 40, seeds=2, workers=1)
    last = table[table["round"] == 40].set_index(["learner", "seed"])
    assert (last["uncertified_solves"] == 0).all()
    assert (last["max_certified_gap"] <= 1e-9).all()
    # online DPO's objective is convex: nothing to certify
    assert (last.loc["online_dpo", "max_certified_gap"] == 0.0).all()
    local = make_learner("xpo", name="xpo_local", solver=SolverSettings(argmin="local"))
    table = xs.simulate(env, [local], 0.05, 40, seeds=2, workers=1)
    last = table[table["round"] == 40]
    assert (last["uncertified_solves"] > 0).all() and np.isinf(last["max_certified_gap"]).all()
    # POPO's bounded bonus has no certificate here: reported, never hidden
    table = xs.simulate(env, ["popo"], 0.05, 20, seeds=1, workers=1)
    assert (table[table["round"] == 20]["uncertified_solves"] > 0).all()


def test_the_engine_iterate_is_the_certified_argmin_of_the_last_round():
    """Rebuild context x's last objective from the run's data (win counts, bonus counts) and solve it with
    the public function: same value as the engine's iterate, to 1e-9 relative, and certified."""
    env = xs.envs.random_token_mdp(2, 3, 1, seed=4)  # a contextual bandit, K = 3 arms per context
    beta = 0.1
    learner = make_learner("xpo", alpha=0.05)
    result = run_learner(env, learner, beta, 30, seed=2)
    store, view, eng, state = result.store, result.view, result.engine_state, result.class_state
    for x in range(env.n_contexts):
        k = int(view.n_slots[x])
        leaves = view.slot_leaf[x, :k]
        wins = np.zeros((env.n_leaves, env.n_leaves))
        for e in range(int(store.n_edges[0])):
            if store.edge_context[e] == x:
                wins[leaves[store.edge_chosen[e]], leaves[store.edge_rejected[e]]] += store.edge_weight[e]
        bonus = np.zeros(env.n_leaves)
        bonus[leaves] = eng.bonus_count[x, :k]
        ref = np.exp(env.trajectory_ref_logprobs[x])
        solution = solve_round_objective(ref, wins, bonus, beta, 0.05, r_max=env.r_max)
        assert solution.status == "certified"
        # the engine's iterate, evaluated on the same objective
        engine_values = np.full(env.n_leaves, state.rest_value[x])
        engine_values[leaves] = state.values[x, :k]
        ws = new_workspace(env.n_leaves, 64, 8)
        edges = [(a, b, wins[a, b]) for a in range(env.n_leaves) for b in range(env.n_leaves) if wins[a, b] > 0]
        for e, (a, b, w) in enumerate(edges):
            ws.edge_a[e], ws.edge_b[e], ws.edge_w[e] = a, b, w
        ws.lw[:env.n_leaves] = np.log(ref)
        ws.lref[:env.n_leaves] = np.log(ref)
        ws.mcount[:env.n_leaves] = bonus
        ws.bweight[:env.n_leaves] = 1.0
        engine_value, _ = context_objective(env.n_leaves, env.n_leaves, engine_values, ws, len(edges), 0, 0.0, 1,
                                            0.05, beta)
        assert engine_value == pytest.approx(solution.value, rel=1e-9, abs=1e-9)
        assert solution.lower_bound <= engine_value + 1e-9 * max(1.0, abs(engine_value))


def test_plateau_regression_local_solver_stops_the_certificate_does_not():
    """A response at 0 beside two at R_max: its reference mass e^{-R_max/beta} makes its gradient ~1e-44,
    so the local solver accepts the warm start; the global minimizer raises it (issue #11's plateaus)."""
    ref = np.array([0.45, 0.45, 0.10])
    wins = np.array([[0.0, 5.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    bonus = np.array([10.0, 10.0, 0.0])
    local = solve_round_objective(ref, wins, bonus, 0.01, 0.5, method="local", warm_start=[1.0, 1.0, 0.0])
    certified = solve_round_objective(ref, wins, bonus, 0.01, 0.5, warm_start=[1.0, 1.0, 0.0])
    assert local.values[2] == 0.0 and local.status == "local" and local.lower_bound == -math.inf
    assert certified.status == "certified" and certified.gap <= 1e-9
    assert certified.value < local.value - 100.0
    assert certified.values[2] == 1.0
    np.testing.assert_allclose(certified.policy.sum(), 1.0, atol=1e-12)


def test_round_solve_validates_its_inputs():
    ref = np.array([0.5, 0.5])
    with pytest.raises(ValueError, match="ref_probs must sum to 1"):
        solve_round_objective([0.5, 0.6], np.zeros((2, 2)), np.zeros(2), 0.1, 0.1)
    with pytest.raises(ValueError, match="wins must have shape"):
        solve_round_objective(ref, np.zeros((3, 3)), np.zeros(2), 0.1, 0.1)
    with pytest.raises(ValueError, match="beta must be a finite real number > 0"):
        solve_round_objective(ref, np.zeros((2, 2)), np.zeros(2), 0.0, 0.1)
    with pytest.raises(ValueError, match="method must be one of"):
        solve_round_objective(ref, np.zeros((2, 2)), np.zeros(2), 0.1, 0.1, method="global")
    with pytest.raises(ValueError, match="ref_probs > 0"):
        solve_round_objective([1.0, 0.0], [[0, 0], [1, 0]], np.zeros(2), 0.1, 0.1)
    with pytest.raises(ValueError, match="argmin must be one of"):
        SolverSettings(argmin="best")
    with pytest.raises(ValueError, match="max_nodes must be an integer >= 1"):
        SolverSettings(max_nodes=0)


def test_certified_xpo_escapes_the_separation_trap_in_every_seed():
    """Proposition 2.1's instance: with the certified argmin (every solve certified) every seed's XPO
    reaches the good arm within 100 queries."""
    env = xs.envs.two_arm_lower_bound(0.05)
    certified = xs.simulate(env, ["xpo"], 0.05, 100, seeds=8, workers=1)
    last = certified[certified["round"] == 100]
    assert (last["uncertified_solves"] == 0).all()
    assert (last["suboptimality"] < 0.01).all(), last["suboptimality"].tolist()
    assert TabularClass().describe()["policy_class"] == "tabular"
