"""Learners: every learner on every env kind, exactness of the per-round metrics, determinism,
Proposition 2.1's separation, sign conventions, the numpy/scipy reference loop, the generic loop."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import logsumexp

from xposim import exact
from xposim.envs import linear_bandit, random_token_mdp, two_arm_lower_bound
from xposim.learners import (
    DecayingAlpha,
    TheoryAlpha,
    learner_names,
    make_learner,
    run_learner,
)
from xposim.learners import XPO, BonusOn, LearnerConfig, Sampler
from xposim.learners import metrics as engine_metrics
from xposim.losses import Bonus, PairLoss
from xposim.policies import SolverSettings, TabularClass
from xposim.policies import solving, tabular
from xposim.reference.learners_numpy import reference_run

BANDIT = random_token_mdp(1, 6, 1, seed=1)
TREE = random_token_mdp(2, 3, 2, seed=2)
LINEAR = linear_bandit(4, 12, seed=3)


@pytest.mark.parametrize("env", [BANDIT, TREE, LINEAR], ids=["bandit", "token_mdp_H2", "linear_bandit"])
@pytest.mark.parametrize("name", learner_names())
def test_every_learner_runs_and_engine_value_is_exact(env, name):
    beta = 0.2
    rounds = 40
    learner = make_learner(name)
    result = run_learner(env, learner, beta, rounds, checkpoints=[0, 1, 7, rounds], seed=5)
    metrics = result.metrics
    gap = result.columns.index("max_certified_gap")
    assert np.all(np.isfinite(np.delete(metrics, [6, gap], axis=1)))
    # no certificate (POPO, chiPO: no bound) is an infinite gap, reported with the uncertified count
    uncertified = metrics[:, result.columns.index("uncertified_solves")]
    assert np.all((metrics[:, gap] >= 0.0) & ((metrics[:, gap] <= 1e-9) | (uncertified > 0)))
    optimum = exact.solve(env, beta)
    evaluation = exact.evaluate(env, result.token_policy(), beta)
    assert result.final_value == pytest.approx(evaluation.value, abs=1e-10)
    assert metrics[-1, 2] == pytest.approx(evaluation.value, abs=1e-10)
    assert metrics[-1, 3] == pytest.approx(optimum.value - evaluation.value, abs=1e-10)
    assert metrics[-1, 7] == pytest.approx(evaluation.kl, abs=1e-10)
    assert metrics[-1, 8] == pytest.approx(evaluation.reward, abs=1e-10)
    assert np.all(metrics[:, 3] >= -1e-12) and np.all(metrics[:, 4] >= -1e-12)
    assert np.all(np.diff(metrics[:, 4]) <= 1e-15)  # best iterate never gets worse
    assert np.all(metrics[:, 4] <= metrics[:, 3] + 1e-15)
    greedy = exact.greedy_policy(result.token_policy())
    greedy_reward = exact.evaluate(env, greedy, beta).reward
    best = np.max(np.where(env.trajectory_ref_logprobs > -np.inf, env.trajectory_rewards, -np.inf), axis=1)
    assert metrics[-1, 9] == pytest.approx(float(env.rho @ best) - greedy_reward, abs=1e-10)
    if learner.is_offline:
        assert np.all(metrics[:, 1] == rounds) and np.all(np.isnan(metrics[:, 6]))
    else:
        np.testing.assert_array_equal(metrics[:, 1], metrics[:, 0] * learner.batch_size)
        assert metrics[0, 3] == pytest.approx(optimum.value - exact.evaluate(env, env.ref_probs, beta).value, abs=1e-12)
        assert np.all(np.diff(metrics[:, 6]) >= -1e-12)


def test_same_seed_same_numbers_bit_for_bit():
    for name in ["xpo", "online_dpo_greedy", "xpo_historical", "se_popo"]:
        a = run_learner(TREE, make_learner(name), 0.2, 50, seed=11)
        b = run_learner(TREE, make_learner(name), 0.2, 50, seed=11)
        c = run_learner(TREE, make_learner(name), 0.2, 50, seed=12)
        assert a.metrics.tobytes() == b.metrics.tobytes()
        assert not np.array_equal(a.metrics[:, 6], c.metrics[:, 6])


_SUBPROCESS = """
import json, sys
import numpy as np
from xposim.envs import random_token_mdp
from xposim.learners import make_learner, run_learner
env = random_token_mdp(2, 3, 2, seed=2)
out = {}
for name in ["xpo", "online_dpo", "xpo_historical", "copo"]:
    r = run_learner(env, make_learner(name), 0.2, 12, checkpoints=[0, 3, 12], seed=7)
    out[name] = r.metrics.tobytes().hex()
print(json.dumps(out))
"""


def test_numba_disabled_gives_identical_numbers():
    results = []
    for disable in ("0", "1"):
        env = dict(os.environ, NUMBA_DISABLE_JIT=disable)
        done = subprocess.run([sys.executable, "-c", _SUBPROCESS], env=env, capture_output=True, text=True,
                              timeout=600, cwd=os.path.dirname(os.path.dirname(__file__)))
        assert done.returncode == 0, done.stderr[-2000:]
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert results[0] == results[1]


def test_proposition_2_1_separation():
    """two_arm_lower_bound(beta = 0.02), 64 seeds, round 100 (T <= e^{1/(8 beta)}/2 = 259).

    Online DPO: with probability (1 - pi_ref(a))^200 ~ 0.68 arm a is never drawn and the gap stays
    0.374 >= 1/8. XPO with alpha = 0.01 (= 5 beta / sqrt(T)) explores a in its first round.
    """
    beta = 0.02
    env = two_arm_lower_bound(beta)
    stuck = {"online_dpo": 0, "xpo": 0}
    for seed in range(64):
        for name in stuck:
            learner = make_learner(name, alpha=0.01) if name == "xpo" else make_learner(name)
            result = run_learner(env, learner, beta, 100, checkpoints=[100], seed=seed)
            stuck[name] += int(result.metrics[-1, 3] >= 1 / 8)
    assert stuck["online_dpo"] >= 32  # expected ~45-49 of 64
    assert stuck["xpo"] <= 6  # expected 0


def test_xpo_lowers_pi_on_reference_samples():
    """Sign sanity: on the same data, alpha > 0 gives lower log pi(tau~) than alpha = 0 (THEORY 4.5)."""
    env = random_token_mdp(1, 8, 1, seed=4)
    base_run = run_learner(env, make_learner("xpo", alpha=0.0), 0.3, 30, seed=2)
    view, eng = base_run.view, base_run.engine_state
    k = int(view.n_slots[0])
    ws = tabular.new_workspace(env.n_leaves, 64, 16)
    n_edges = 0
    store = base_run.store
    edge = store.context_head[0]
    while edge >= 0:
        ws.edge_a[n_edges], ws.edge_b[n_edges], ws.edge_w[n_edges] = (store.edge_chosen[edge], store.edge_rejected[edge],
                                                                      store.edge_weight[edge])
        n_edges += 1
        edge = store.edge_next[edge]
    leaves = view.slot_leaf[0, :k]
    ws.lw[:k] = env.trajectory_ref_logprobs[0, leaves]
    ws.lref[:k] = ws.lw[:k]
    ws.mcount[:k] = eng.bonus_count[0, :k]
    ws.bweight[:k] = 1.0
    n = k
    if view.rest_tree[0, 1] > -np.inf:
        ws.lw[k], ws.lref[k], ws.mcount[k] = view.rest_tree[0, 1], 0.0, 0.0
        n = k + 1
    bonus_slots = np.flatnonzero(ws.mcount[:k] > 0)
    logp = {}
    for alpha in (0.0, 0.2):
        v = np.zeros(ws.v.shape[0])
        v[:n] = 0.5
        tabular.projected_newton(n, k, v, ws, n_edges, 0, 1.0, 1 if alpha > 0 else 0, alpha, 0.3, 0.0, 1.0, 60.0,
                                 1e-10, 500, 16)
        z = ws.lw[:n] + v[:n] / 0.3
        logp[alpha] = (z - logsumexp(z))[bonus_slots]
    weighted = ws.mcount[bonus_slots]
    assert np.sum(weighted * logp[0.2]) < np.sum(weighted * logp[0.0]) - 0.1


def test_engine_matches_numpy_scipy_reference_loop():
    """Same seed, same uniforms: the plain loop (L-BFGS-B over every leaf) follows the same trajectory.

    beta = 1 and a small alpha keep the XPO objective unimodal here, so both solvers reach the same argmin.
    """
    env = random_token_mdp(2, 3, 2, seed=3)
    beta, alpha, rounds = 1.0, 0.05, 30
    for name in ("xpo", "online_dpo"):
        learner = make_learner(name, alpha=alpha) if name == "xpo" else make_learner(name)
        result = run_learner(env, learner, beta, rounds, checkpoints=list(range(rounds + 1)), seed=9)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(9)))
        uniforms = rng.random((rounds, 5))
        values, sampled, values_j = reference_run(env, beta, rounds, uniforms, alpha=alpha if name == "xpo" else 0.0,
                                                  learner=name, tolerance=1e-10)
        np.testing.assert_allclose(result.metrics[:, 2], values_j, atol=5e-7)
        z = env.trajectory_ref_logprobs + values / beta
        np.testing.assert_allclose(np.exp(result.leaf_logprobs()), np.exp(z - logsumexp(z, axis=1, keepdims=True)),
                                   atol=5e-6)


class PythonTabular(TabularClass):
    """The tabular class through the generic (Python-level) loop: a subclass has no fused loop, so the
    runner calls the interface (``create_state``, ``solver_workspace``, ``solve``, ``gradient_step``)."""


@pytest.mark.parametrize("name", ["xpo", "selm", "xpo_trl", "copo"])
def test_generic_loop_equals_fused_loop(name):
    fused = run_learner(TREE, make_learner(name), 0.2, 25, seed=3)
    generic = run_learner(TREE, make_learner(name), 0.2, 25, seed=3, policy_class=PythonTabular())
    assert fused.metrics.tobytes() == generic.metrics.tobytes()


def test_average_iterate_is_the_mixture_of_played_iterates():
    env = random_token_mdp(2, 3, 2, seed=6)
    beta, rounds = 0.3, 6
    learner = make_learner("xpo", alpha=0.1)
    full = run_learner(env, learner, beta, rounds, checkpoints=list(range(rounds + 1)), seed=1)
    iterates = [np.exp(env.trajectory_ref_logprobs)]
    for t in range(1, rounds):
        iterates.append(np.exp(run_learner(env, learner, beta, t, checkpoints=[t], seed=1).leaf_logprobs()))
    j_star = exact.solve(env, beta).value
    for t in range(1, rounds + 1):
        mixture = np.mean(iterates[:t], axis=0)
        with np.errstate(divide="ignore"):
            log_mix = np.log(mixture)
        terms = np.where(mixture > 0, mixture * (env.trajectory_rewards - beta * (log_mix - env.trajectory_ref_logprobs)), 0)
        value = float(env.rho @ terms.sum(axis=1))
        assert full.metrics[t, 5] == pytest.approx(j_star - value, abs=1e-12)
        # cumulative regret sums the played iterates' suboptimality
        played = [j_star - float(env.rho @ np.where(p > 0, p * (env.trajectory_rewards - beta * (np.log(np.where(p > 0, p, 1)) - env.trajectory_ref_logprobs)), 0).sum(axis=1)) for p in iterates[:t]]
        assert full.metrics[t, 6] == pytest.approx(sum(played), abs=1e-11)


def test_batch_queries_and_trl_mode_differ_from_paper():
    batch = run_learner(TREE, make_learner("xpo", batch_size=4), 0.2, 10, checkpoints=[10], seed=1)
    assert batch.metrics[-1, 1] == 40
    assert batch.store.edge_weight[: batch.store.n_edges[0]].sum() + 0 <= 40
    paper = run_learner(TREE, make_learner("xpo"), 0.2, 30, seed=1)
    trl = run_learner(TREE, make_learner("xpo", mode="trl"), 0.2, 30, seed=1)
    assert trl.learner.resolved_alpha() == 1e-5
    assert trl.learner.resolved_oracle().code == 1  # argmax labels
    assert trl.learner.resolved_temperature() == 0.9
    assert not np.array_equal(paper.metrics, trl.metrics)
    assert trl.store.n_edges[0] == 0  # trl mode keeps no data


def test_trl_step_is_one_projected_gradient_step():
    env = random_token_mdp(1, 4, 1, seed=8)
    learner = make_learner("online_dpo", mode="trl", learning_rate=0.3, labels="bradley_terry", temperature=1.0)
    one = run_learner(env, learner, 0.5, 1, seed=2)
    eng, view = one.engine_state, one.view
    a, b = view.slot_leaf[0, eng.batch_chosen[0]], view.slot_leaf[0, eng.batch_rejected[0]]
    values = one.class_state.values[0]
    assert a != b  # seed 2 draws two different responses
    # d/df_chosen of -log sigma(f_c - f_r) at f_c = f_r is -1/2: one step of 0.3 moves the pair apart by 0.15 each
    assert values[eng.batch_chosen[0]] == pytest.approx(0.5 + 0.15, abs=1e-12)
    assert values[eng.batch_rejected[0]] == pytest.approx(0.5 - 0.15, abs=1e-12)
    assert one.class_state.rest_value[0] == 0.5  # no bonus: the unobserved value does not move


def test_reference_drift_and_popo_sampler_reset():
    selm = run_learner(BANDIT, make_learner("selm"), 0.2, 20, seed=3)
    eng = selm.engine_state
    # SELM's loss reference is no longer pi_ref after updates
    k = int(selm.view.n_slots[0])
    leaves = selm.view.slot_leaf[0, :k]
    assert not np.allclose(eng.loss_ref_logp[0, :k], BANDIT.trajectory_ref_logprobs[0, leaves])
    se = run_learner(BANDIT, make_learner("se_popo", outer_rounds=20), 0.2, 20, seed=3)
    popo = run_learner(BANDIT, make_learner("popo"), 0.2, 20, seed=3)
    k = int(popo.view.n_slots[0])
    leaves = popo.view.slot_leaf[0, :k]
    np.testing.assert_allclose(popo.engine_state.frozen_logp[0, :k], BANDIT.trajectory_ref_logprobs[0, leaves])
    assert not np.array_equal(se.metrics, popo.metrics)


def test_alpha_schedules():
    theory = make_learner("xpo", alpha=TheoryAlpha(c=2.0))
    assert np.allclose(theory.resolved_alpha().values(0.1, 100), 2.0 * 0.1 / 10.0)
    tree4 = random_token_mdp(4, 3, 1, seed=0)
    decaying = run_learner(tree4, make_learner("xpo", alpha=DecayingAlpha(c=1.0)), 0.2, 30, seed=0)
    constant = run_learner(tree4, make_learner("xpo", alpha=0.1), 0.2, 30, seed=0)
    assert constant.counters[0] == 30  # one context per round
    assert decaying.counters[0] > 60  # every context with data, every round


@pytest.mark.fast
def test_registry_and_argument_errors():
    with pytest.raises(ValueError, match="known learners: .*online_dpo"):
        make_learner("xpoo")
    with pytest.raises(ValueError, match="alpha"):
        make_learner("xpo", alpha=-1.0)
    with pytest.raises(ValueError, match="batch_size"):
        make_learner("xpo", batch_size=0)
    with pytest.raises(ValueError, match="unknown setting"):
        make_learner("online_dpo", sampler="historical")
    with pytest.raises(ValueError, match="mode"):
        make_learner("xpo", mode="fast")
    with pytest.raises(ValueError, match="reference"):
        make_learner("xpo", reference="previous")
    with pytest.raises(ValueError, match="labels|oracle"):
        make_learner("xpo", labels="coinflip")
    with pytest.raises(ValueError, match="tau_ipo"):
        make_learner("ipo", tau_ipo=0.0)
    with pytest.raises(ValueError, match="behaviour"):
        make_learner("xpo", sampler="behaviour")
    learner = make_learner("xpo")
    with pytest.raises(ValueError, match="beta"):
        run_learner(BANDIT, learner, 0.0, 10)
    with pytest.raises(ValueError, match="rounds"):
        run_learner(BANDIT, learner, 0.1, 0)
    with pytest.raises(ValueError, match="checkpoints"):
        run_learner(BANDIT, learner, 0.1, 10, checkpoints=[11])
    with pytest.raises(ValueError, match="policy_class"):
        run_learner(BANDIT, learner, 0.1, 10, policy_class="no_such_class")
    with pytest.raises(ValueError, match="SolverSettings|tolerance"):
        SolverSettings(tolerance=0.0)
    assert make_learner("xpo").describe()["algorithm"] == "xpo"
    assert make_learner("online_dpo_greedy").greedy is True


def test_alpha_zero_xpo_is_not_online_dpo():
    a = run_learner(TREE, make_learner("xpo", alpha=0.0), 0.2, 30, seed=4)
    b = run_learner(TREE, make_learner("online_dpo"), 0.2, 30, seed=4)
    assert not np.array_equal(a.metrics, b.metrics)


def test_multistart_reports_and_never_worsens_the_objective():
    env = random_token_mdp(1, 10, 1, seed=2)
    plain = run_learner(env, make_learner("xpo", alpha=0.05), 0.1, 200, seed=1)
    multi = run_learner(env, make_learner("xpo", alpha=0.05, solver=SolverSettings(restarts=3)), 0.1, 200, seed=1)
    assert plain.counters[solving.COUNTER_DISAGREEMENTS] == 0
    assert multi.counters[solving.COUNTER_SOLVES] == 200
    assert multi.counters[solving.COUNTER_DISAGREEMENTS] >= multi.counters[solving.COUNTER_IMPROVED]
    assert multi.metrics[-1, engine_metrics.METRIC_COLUMNS.index("solver_disagreements")] == multi.counters[solving.COUNTER_DISAGREEMENTS]


def test_chunking_and_relabeling_do_not_change_numbers():
    a = run_learner(TREE, make_learner("xpo"), 0.2, 50, seed=8)
    b = run_learner(TREE, make_learner("xpo", name="my_xpo"), 0.2, 50, seed=8, chunk_rounds=7)
    assert b.learner.label == "my_xpo"
    assert a.metrics.tobytes() == b.metrics.tobytes()
    # default alpha of XPO is the theory's shape c beta / sqrt(T) with c = 5
    assert make_learner("xpo").resolved_alpha().values(0.02, 100)[0] == pytest.approx(0.01)


def test_behaviour_policy_samplers():
    """Offline DPO on data from pi* and XPO with a fixed behaviour sampler (Algorithm 2)."""
    env = random_token_mdp(1, 6, 1, seed=12)
    beta = 0.2
    star = exact.solve(env, beta).policy
    from xposim.learners import OfflineDPO, XPO

    result = run_learner(env, OfflineDPO(name="dpo_star", behaviour=star, n_pairs=300), beta, 10, seed=1)
    sampled = result.view.slot_leaf[0, : result.view.n_slots[0]]
    support = np.flatnonzero(exact.trajectory_probabilities(env, star)[0] > 1e-3)
    assert set(sampled) <= set(range(env.n_leaves)) and len(set(sampled) & set(support)) >= 1
    assert np.all(result.metrics[:, 1] == 300)
    xpo = run_learner(env, XPO(sampler="behaviour", behaviour=star, alpha=0.05), beta, 30, seed=1)
    assert xpo.final_value == pytest.approx(exact.evaluate(env, xpo.token_policy(), beta).value, abs=1e-10)
    with pytest.raises(ValueError, match="behaviour"):
        run_learner(env, OfflineDPO(behaviour=np.ones((1, 1, 5))), beta, 10)


@pytest.mark.parametrize("name", ["xpo", "online_dpo", "vpo"])
def test_dueling_regret_columns_match_the_stored_pairs(name):
    """dueling/weak/strong regret = sums over every queried pair (the store keeps them all in paper mode)
    of the mean/min/max of the two responses' reward gaps; bai_regret = the gap of pi_hat's most likely
    trajectory (lowest leaf on ties), each recomputed here in numpy."""
    env = TREE
    result = run_learner(env, make_learner(name), 0.2, 30, seed=4)
    store, view = result.store, result.view
    gaps = result.arrays.max_reward[:, None] - result.arrays.leaf_reward
    dueling = weak = strong = 0.0
    for e in range(int(store.n_edges[0])):
        x = store.edge_context[e]
        a = view.slot_leaf[x, store.edge_chosen[e]]
        b = view.slot_leaf[x, store.edge_rejected[e]]
        w = store.edge_weight[e]
        dueling += w * 0.5 * (gaps[x, a] + gaps[x, b])
        weak += w * min(gaps[x, a], gaps[x, b])
        strong += w * max(gaps[x, a], gaps[x, b])
    # pairs of a response with itself are not stored: add them back from the appearance counts
    same = 30 - store.edge_weight[: int(store.n_edges[0])].sum()
    last = dict(zip(result.columns, result.metrics[-1]))
    assert same >= 0
    if same == 0:
        assert last["dueling_regret"] == pytest.approx(dueling, rel=1e-12, abs=1e-12)
        assert last["weak_regret"] == pytest.approx(weak, rel=1e-12, abs=1e-12)
        assert last["strong_regret"] == pytest.approx(strong, rel=1e-12, abs=1e-12)
    else:
        assert last["dueling_regret"] >= dueling - 1e-12 and last["weak_regret"] >= weak - 1e-12
    assert last["weak_regret"] <= last["dueling_regret"] <= last["strong_regret"]
    logp = result.leaf_logprobs()
    mode = np.argmax(logp, axis=1)
    bai = float(np.sum(env.rho * gaps[np.arange(env.n_contexts), mode]))
    assert last["bai_regret"] == pytest.approx(bai, rel=1e-12, abs=1e-15)


# ----------------------------------------------------------------------------- the plan as declared fields
@dataclasses.dataclass(frozen=True)
class DeclaredXPO(LearnerConfig):
    """A user's XPO written from Algorithm 1's lines alone (no code of the package's XPO)."""

    first_sampler = Sampler.POLICY  # tau ~ pi^(t)(.|x)
    second_sampler = Sampler.REFERENCE  # tau~ ~ pi_ref(.|x)
    pair_loss = PairLoss.DPO  # L_DPO(pi; D)
    bonus = Bonus.XPO  # + alpha log pi(tau~) ...
    bonus_on = BonusOn.SECOND  # ... on tau~
    default_alpha = TheoryAlpha(c=5.0)  # XPO's default alpha = 5 beta / sqrt(T)


@dataclasses.dataclass(frozen=True)
class Undeclared(LearnerConfig):
    """Declares no samplers."""


@dataclasses.dataclass(frozen=True)
class BonusNowhere(DeclaredXPO):
    """Declares a bonus but no response to carry it."""

    bonus_on = BonusOn.NONE


@dataclasses.dataclass(frozen=True)
class OldStyle(XPO):
    """Overrides the losses() tuple that learners declared before the plan fields (no longer read)."""

    def losses(self, r_max: float):
        return 2, r_max, 1, 1.0


def test_the_plan_is_the_declared_fields():
    xpo = XPO()
    assert (xpo.first_sampler, xpo.second_sampler, xpo.bonus_on) == (Sampler.POLICY, Sampler.REFERENCE, BonusOn.SECOND)
    assert (xpo.pair_loss, xpo.bonus) == (PairLoss.DPO, Bonus.XPO) and xpo.has_bonus
    plan = xpo.plan(1.0, 10)
    assert (plan.first_sampler, plan.second_sampler, plan.bonus_response, plan.bonus_kind) == (0, 1, 1, 1)
    assert all(type(getattr(plan, field)) is int for field in ("first_sampler", "second_sampler", "pair_kind", "mode"))
    assert XPO(sampler="historical").second_sampler is Sampler.HISTORICAL
    assert make_learner("online_dpo", greedy=True).first_sampler is Sampler.GREEDY
    assert make_learner("ipo", tau_ipo=0.3).plan(1.0, 10).pair_param == 0.3
    assert make_learner("copo", count_weight=2.0).plan(1.0, 10).copo_weight == 2.0
    assert not make_learner("online_dpo").has_bonus
    # a learner written from the algorithm's lines runs exactly as the package's XPO
    ours = run_learner(BANDIT, DeclaredXPO(), 0.05, 64, seed=5)
    theirs = run_learner(BANDIT, XPO(), 0.05, 64, seed=5)
    np.testing.assert_array_equal(ours.metrics, theirs.metrics)
    with pytest.raises(ValueError, match="first_sampler"):
        run_learner(BANDIT, Undeclared(), 0.05, 4)
    with pytest.raises(ValueError, match="bonus_on"):
        BonusNowhere().plan(1.0, 4)
    with pytest.raises(ValueError, match="losses"):
        OldStyle().plan(1.0, 4)
