"""Reward-model explorers (issue 12): kernels against numpy/scipy, every learner on every environment
kind, pi_hat as the exact KL optimum of the fitted reward, determinism, the numpy reference loop."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import expit

import xposim
from xposim import exact
from xposim.envs import hidden_arm_bandit, linear_bandit, random_token_mdp
from xposim.learners import learner_names, loss_spec, make_learner, run_learner
from xposim.learners.metrics import METRIC_COLUMNS
from xposim.learners.reward_models import (
    CoLSTIM,
    MaxInP,
    PessimisticMLE,
    RewardModelLearner,
    ThompsonEE,
    link_slope,
    linalg,
    loop,
    mle,
    policy,
    rules,
)
from xposim.reference import reward_models_numpy as ref

NAMES = ["maxinp", "colstim", "thompson_ee", "thompson_bai", "passive_mle", "pessimistic_mle"]
ONLINE = NAMES[:-1]
#: the easy instance: d = 3, 8 arms, sharp comparisons (R_max = 4)
EASY = linear_bandit(3, 8, seed=1, r_max=4.0)
ENVS = {
    "linear": linear_bandit(4, 12, seed=3, n_contexts=2),
    "hidden_arm": hidden_arm_bandit(6, 0.1, r_max=4.0),
    "token_mdp": random_token_mdp(2, 3, 2, seed=2, r_max=4.0),
}
BETA = 0.5


def _design(features, onehot, x, i, j, d):
    z = np.zeros(d)
    if onehot:
        z[i] += 1.0
        z[j] -= 1.0
    else:
        z[:] = features[x, i] - features[x, j]
    return z


# ============================================================================ linear algebra
@pytest.mark.fast
@pytest.mark.parametrize("onehot", [False, True], ids=["dense", "onehot"])
def test_sherman_morrison_inverse_matches_numpy_inverse(onehot):
    rng = np.random.default_rng(0)
    d, n_leaves, ridge = (7, 7, 0.7) if onehot else (4, 9, 0.7)
    features = np.zeros((1, 1, 1)) if onehot else rng.standard_normal((2, n_leaves, d))
    inverse = np.eye(d) / ridge
    rows = []
    u = np.zeros(d)
    for _ in range(25):
        x = int(rng.integers(0, 1 if onehot else 2))
        i, j = (int(v) for v in rng.choice(n_leaves, 2, replace=False))
        z = _design(features, onehot, x, i, j, d)
        y = rng.standard_normal(d)
        before = y @ inverse @ y
        c = linalg.sherman_morrison_pair(inverse, features, onehot, x, i, j, 1.0, u)
        rows.append(z)
        direct = ref.design_inverse(np.array(rows), ridge, d)
        np.testing.assert_allclose(inverse, direct, rtol=1e-11, atol=1e-13)
        assert np.array_equal(inverse, inverse.T)
        # the returned c refreshes cached quadratic forms: ||y||^2_new = ||y||^2_old - c <u, y>^2
        assert y @ direct @ y == pytest.approx(before - c * (u @ y) ** 2, rel=1e-10)
    with pytest.raises(AssertionError):  # the check can fail: a stale inverse is caught
        np.testing.assert_allclose(np.eye(d) / ridge, direct, rtol=1e-11, atol=1e-13)


@pytest.mark.fast
def test_cholesky_kernels_match_numpy():
    rng = np.random.default_rng(1)
    d = 6
    a = rng.standard_normal((d, d))
    matrix = a @ a.T + 0.5 * np.eye(d)
    factor = np.zeros((d, d))
    assert linalg.cholesky_into(matrix, factor)
    np.testing.assert_allclose(factor, np.linalg.cholesky(matrix), rtol=1e-12, atol=1e-13)
    for k in range(8):
        v = rng.standard_normal(d)
        if k % 3 == 0:
            v[:2] = 0.0  # leading zeros are skipped exactly
        matrix = matrix + np.outer(v, v)
        linalg.cholesky_rank_one_update(factor, v.copy())
        np.testing.assert_allclose(factor, np.linalg.cholesky(matrix), rtol=1e-10, atol=1e-12)
    rhs = rng.standard_normal(d)
    out = np.zeros(d)
    linalg.forward_solve(factor, rhs, out)
    np.testing.assert_allclose(out, np.linalg.solve(factor, rhs), rtol=1e-10)
    linalg.backward_solve(factor, rhs, out)
    np.testing.assert_allclose(out, np.linalg.solve(factor.T, rhs), rtol=1e-10)
    linalg.cholesky_solve(factor, rhs, out)
    np.testing.assert_allclose(out, np.linalg.solve(matrix, rhs), rtol=1e-9)
    assert not linalg.cholesky_into(-np.eye(d), np.zeros((d, d)))  # not positive definite


@pytest.mark.fast
def test_box_muller_matches_numpy():
    u = np.random.default_rng(2).random(10)
    out = np.zeros(9)
    linalg.box_muller_into(u, out)
    np.testing.assert_allclose(out, ref.box_muller_numpy(u, 9), rtol=1e-14, atol=1e-15)


# ============================================================================ the MLE
def _fill(table, onehot, features, comparisons, n_leaves):
    """Count ``comparisons`` (x, i, j, first_wins) in ``table``; returns the per-comparison rows (z, won)."""
    z_rows, won = [], []
    for x, i, j, first_wins in comparisons:
        mle.table_add(table, x if onehot else 0, x, i, j, first_wins)
        z_rows.append(_design(features, onehot, x, i, j, n_leaves if onehot else features.shape[2]))
        won.append(1.0 if first_wins else 0.0)
    return np.array(z_rows), np.array(won)


def _comparisons(rng, n, n_contexts, n_leaves, pool=None):
    out = []
    for _ in range(n):
        x = int(rng.integers(0, n_contexts))
        if pool is None:
            i, j = (int(v) for v in rng.choice(n_leaves, 2, replace=False))
        else:
            i, j = pool[int(rng.integers(0, len(pool)))]
        out.append((x, i, j, bool(rng.random() < 0.6)))
    return out


@pytest.mark.fast
@pytest.mark.parametrize("onehot", [False, True], ids=["dense", "onehot"])
def test_mle_matches_scipy_logistic_regression(onehot):
    """The Newton MLE on pair counts equals scipy's minimizer of the per-comparison objective to 1e-8,
    from zero and warm-started with the predicted gradient; objective, gradient and Hessian match."""
    rng = np.random.default_rng(3)
    n_contexts, n_leaves, ridge = 2, 6, 0.8
    d = n_leaves if onehot else 3
    features = np.zeros((1, 1, 1)) if onehot else rng.standard_normal((n_contexts, n_leaves, d))
    n_blocks = n_contexts if onehot else 1
    table = mle.new_pair_table(200, n_blocks, n_contexts, n_leaves, d, onehot)
    pool = [(0, 1), (2, 3), (1, 4), (5, 0), (3, 1)]  # few distinct pairs: counts > 1 (sufficient statistics)
    comparisons = _comparisons(rng, 60, n_contexts, n_leaves, pool)
    z, won = _fill(table, onehot, features, comparisons, n_leaves)
    contexts = np.array([c[0] for c in comparisons])
    assert table.counts[0] < len(comparisons)  # rows aggregate repeated pairs
    theta = np.zeros((n_blocks, d))
    factor = np.zeros((n_blocks, d, d))
    factor[:, np.arange(d), np.arange(d)] = math.sqrt(ridge)
    work, hessian = np.zeros((4, d)), np.zeros((d, d))
    for b in range(n_blocks):
        mine = contexts == b if onehot else np.ones(len(comparisons), bool)
        converged, _, _ = mle.newton_block(table, b, theta[b], factor[b], features, onehot, ridge, 1e-10, 100, work,
                                           hessian, False)
        assert converged
        expected = ref.mle_scipy(z[mine], np.ones(mine.sum()), won[mine], ridge)
        np.testing.assert_allclose(theta[b], expected, atol=1e-8)
        probe = rng.standard_normal(d)
        value, grad, hess = ref.objective_numpy(probe, z[mine], np.ones(mine.sum()), won[mine], ridge)
        assert mle.objective(table, b, probe, features, onehot, ridge) == pytest.approx(value, rel=1e-12)
        out = np.zeros(d)
        mle.gradient(table, b, probe, features, onehot, ridge, out)
        np.testing.assert_allclose(out, grad, rtol=1e-10, atol=1e-12)
        mle.hessian_into(table, b, probe, features, onehot, ridge, hessian)
        np.testing.assert_allclose(hessian, hess, rtol=1e-10, atol=1e-12)
    # warm start: new comparisons, their gradient terms as the prediction, rank-one curvature
    more = _comparisons(rng, 15, n_contexts, n_leaves)
    predicted = np.zeros((n_blocks, d))
    for x, i, j, first_wins in more:
        b = x if onehot else 0
        mle.add_gradient(predicted[b], theta[b], features, onehot, x, i, j, first_wins)
        mle.add_curvature(factor[b], theta[b], features, onehot, x, i, j, np.zeros(d))
    z2, won2 = _fill(table, onehot, features, more, n_leaves)
    contexts2 = np.array([c[0] for c in more])
    for b in range(n_blocks):
        work[0] = predicted[b]
        converged, _, _ = mle.newton_block(table, b, theta[b], factor[b], features, onehot, ridge, 1e-10, 100, work,
                                           hessian, True)
        assert converged
        mine = contexts == b if onehot else np.ones(len(comparisons), bool)
        mine2 = contexts2 == b if onehot else np.ones(len(more), bool)
        zz = np.vstack([z[mine], z2[mine2]])
        expected = ref.mle_scipy(zz, np.ones(len(zz)), np.concatenate([won[mine], won2[mine2]]), ridge)
        np.testing.assert_allclose(theta[b], expected, atol=1e-8)


@pytest.mark.fast
def test_pair_table_counts_match_a_dict():
    rng = np.random.default_rng(4)
    table = mle.new_pair_table(40, 1, 3, 5, 2, False)
    counts = {}
    for x, i, j, first_wins in _comparisons(rng, 120, 3, 5):
        row = mle.table_add(table, 0, x, i, j, first_wins)
        lo, hi = min(i, j), max(i, j)
        n, w = counts.get((x, lo, hi), (0, 0))
        counts[(x, lo, hi)] = (n + 1, w + int(first_wins == (i == lo)))
        assert table.item_leaf[table.pair_a[row]] == lo and table.item_leaf[table.pair_b[row]] == hi
    assert table.counts[0] == len(counts)
    for row in range(table.counts[0]):
        a, b = table.pair_a[row], table.pair_b[row]
        key = (int(table.item_x[a]), int(table.item_leaf[a]), int(table.item_leaf[b]))
        assert (table.pair_n[row], table.pair_w[row]) == counts[key]
    tiny = mle.new_pair_table(1, 1, 1, 4, 2, False)
    mle.table_add(tiny, 0, 0, 0, 1, True)
    with pytest.raises(ValueError, match="full"):
        mle.table_add(tiny, 0, 0, 2, 3, True)


# ============================================================================ pi_hat
@pytest.mark.fast
@pytest.mark.parametrize("beta", [1e-3, 0.2, 1e3])
def test_context_policy_matches_numpy(beta):
    rng = np.random.default_rng(5)
    logref = np.log(rng.dirichlet(np.ones(7)))
    logref[2] = -np.inf
    reward = rng.random(7)
    values = rng.standard_normal(7)
    prob = np.zeros(7)
    value, r, kl = policy.context_policy(logref, reward, values, beta, prob)
    p, value_np, r_np, kl_np = ref.policy_numpy(logref, reward, values, beta)
    np.testing.assert_allclose(prob, p, rtol=1e-12, atol=1e-300)
    assert prob[2] == 0.0
    assert r == pytest.approx(r_np, rel=1e-12)
    assert kl == pytest.approx(kl_np, rel=1e-8, abs=1e-14)
    assert value == pytest.approx(value_np, rel=1e-11, abs=1e-12)
    weights = rng.random(7) * 3
    weights[2] = 0.0
    m = weights / 3
    expected = m @ reward - beta * np.sum(m[m > 0] * (np.log(m[m > 0]) - logref[m > 0]))
    assert policy.mixture_value(logref, reward, weights, 1 / 3, beta) == pytest.approx(expected, rel=1e-12)


# ============================================================================ the rules
@pytest.mark.fast
@pytest.mark.parametrize("onehot", [False, True], ids=["dense", "onehot"])
def test_rules_match_numpy(onehot):
    """MaxInP (three radii), CoLSTIM, both Thompson modes against dense numpy on the same inputs."""
    rng = np.random.default_rng(6)
    n_leaves = 9
    d = n_leaves if onehot else 4
    features = np.zeros((1, 1, 1)) if onehot else rng.standard_normal((1, n_leaves, d))
    phi = np.eye(n_leaves) if onehot else features[0]
    arms = np.array([0, 1, 2, 4, 5, 6, 7, 8], dtype=np.int64)  # leaf 3 impossible
    arms_padded = np.concatenate([arms, [0]])
    z = rng.standard_normal((30, d))
    inverse = ref.design_inverse(z, 1.0, d)
    theta = rng.standard_normal(d) * 0.5
    rhat = phi @ theta
    qdiag = np.einsum("lk,kl->l", phi, inverse @ phi.T)
    y = np.zeros((1, 1)) if onehot else np.zeros((n_leaves, d))
    for radius in (0.05, 1.0, 100.0):
        expected = ref.maxinp_numpy(arms, rhat, phi, inverse, radius)
        for gram in (np.zeros((1, 1)), np.zeros((n_leaves, n_leaves))):  # distances recomputed / from the Gram matrix
            got = rules.select_maxinp(0, arms_padded, len(arms), rhat, inverse, features, onehot, radius,
                                      np.zeros(n_leaves, dtype=np.bool_), y, gram, np.zeros((d, d)),
                                      np.zeros((2, n_leaves)))
            assert got == expected
    if not onehot:  # the whitened features reproduce the V^{-1} norms
        factor = np.zeros((d, d))
        assert rules.whiten_arms(0, arms_padded, len(arms), inverse, features, factor, y)
        diff = phi[arms][:, None] - phi[arms][None]
        np.testing.assert_allclose(np.sum((y[:len(arms), None] - y[None, :len(arms)]) ** 2, axis=2),
                                   np.einsum("abk,kl,abl->ab", diff, inverse, diff), rtol=1e-10, atol=1e-12)
        gram = np.zeros((len(arms), len(arms)))
        rules.gram_into(y, len(arms), gram)
        np.testing.assert_allclose(gram, phi[arms] @ inverse @ phi[arms].T, rtol=1e-10, atol=1e-12)
    uniforms = rng.random(n_leaves)
    got = rules.select_colstim(0, arms_padded, len(arms), rhat, qdiag, inverse, features, onehot, 1.3, 2.0, uniforms,
                               np.zeros(d))
    assert got == ref.colstim_numpy(arms, rhat, phi, inverse, 1.3, 2.0, uniforms)
    factor = np.linalg.cholesky(np.linalg.inv(inverse))
    samples = 6
    for scale in (0.01, 3.0):
        u = rng.random(rules.extra_uniforms(rules.RULE_THOMPSON_EE, n_leaves, d, samples))
        got = rules.select_thompson_ee(0, arms_padded, len(arms), theta, factor, features, onehot, scale, samples, u,
                                       np.zeros(samples * d), np.zeros(d))
        assert got == ref.thompson_ee_numpy(arms, phi, theta, factor, scale, samples, u)
        u = rng.random(rules.extra_uniforms(rules.RULE_THOMPSON_BAI, n_leaves, d, 1))
        got = rules.select_thompson_bai(0, arms_padded, len(arms), theta, factor, features, onehot, scale, u,
                                        np.zeros(max(d, 2)), np.zeros((3, d)))
        assert got == ref.thompson_bai_numpy(arms, phi, theta, factor, scale, u)
        assert got[0] != got[1]


@pytest.mark.fast
def test_maxinp_radius_and_default_constants():
    kappa = link_slope(2.0)
    assert kappa == pytest.approx(expit(2.0) * expit(-2.0), rel=1e-15)
    expected = 1.5 / kappa * math.sqrt(0.5 * 16 * math.log(1 + 2 * 1000 / 16) + math.log(1 / 0.05))
    assert rules.maxinp_radius(16, 1000, kappa, 0.05, 1.5) == pytest.approx(expected, rel=1e-14)
    assert CoLSTIM().rule_constants(16, 10**4, 1.0)["colstim_width"] == pytest.approx(math.sqrt(16 * math.log(1e4)))
    assert CoLSTIM(width=2.0).rule_constants(16, 10**4, 1.0)["colstim_width"] == 2.0
    kappa1 = link_slope(1.0)
    gamma = math.sqrt((16 + math.log(20)) / kappa1**2 + 1.0 * 16)
    assert PessimisticMLE().pessimism_width(16, 1.0) == pytest.approx(gamma, rel=1e-14)
    assert PessimisticMLE(gamma=0.3).pessimism_width(16, 1.0) == 0.3


# ============================================================================ settings
@pytest.mark.fast
@pytest.mark.parametrize("name, settings, argument", [
    ("maxinp", {"ridge": 0.0}, "ridge"),
    ("colstim", {"newton_tolerance": -1.0}, "newton_tolerance"),
    ("passive_mle", {"newton_max_iterations": 0}, "newton_max_iterations"),
    ("thompson_ee", {"mode": "trl"}, "mode"),
    ("thompson_bai", {"reference": "previous_iterate"}, "reference"),
    ("maxinp", {"delta": 1.5}, "delta"),
    ("maxinp", {"radius_scale": 0.0}, "radius_scale"),
    ("colstim", {"width": -1.0}, "width"),
    ("colstim", {"threshold": math.inf}, "threshold"),
    ("thompson_ee", {"samples": 1}, "samples"),
    ("thompson_bai", {"posterior_scale": 0.0}, "posterior_scale"),
    ("pessimistic_mle", {"n_pairs": 0}, "n_pairs"),
    ("pessimistic_mle", {"gamma": -1.0}, "gamma"),
    ("pessimistic_mle", {"norm_bound": 0.0}, "norm_bound"),
])
def test_bad_settings_raise_value_error_naming_the_argument(name, settings, argument):
    with pytest.raises(ValueError, match=argument):
        make_learner(name, **settings)


@pytest.mark.fast
def test_registered_by_name():
    assert set(NAMES) <= set(learner_names())
    for name in NAMES:
        learner = make_learner(name)
        assert isinstance(learner, RewardModelLearner) and learner.label == name
        assert learner.is_offline == (name == "pessimistic_mle")
        assert learner.plan(1.0, 10).mode == 0
        assert not learner.has_policy_loss
        with pytest.raises(ValueError, match="reward model"):
            loss_spec(name, beta=0.1)
    assert make_learner("thompson_ee", samples=5, name="ts5") == ThompsonEE(samples=5, name="ts5")
    assert isinstance(make_learner("maxinp"), MaxInP)
    # every column of the learners' checkpoint table is one this runner fills (a new column must be added here)
    assert set(METRIC_COLUMNS) <= set(loop.KNOWN_METRICS)


# ============================================================================ whole runs
@pytest.mark.parametrize("env_name", list(ENVS))
@pytest.mark.parametrize("name", NAMES)
def test_every_learner_on_every_environment_kind(name, env_name):
    """Finite metrics; pi_hat = the exact KL-regularized optimum of the fitted reward (1e-12); every
    value column against xposim.exact; dueling columns against the pair counts; widths against numpy."""
    env = ENVS[env_name]
    rounds = 40
    result = run_learner(env, make_learner(name), BETA, rounds, checkpoints=[0, 1, 7, rounds], seed=5)
    col = {c: k for k, c in enumerate(result.columns)}
    last = dict(zip(result.columns, result.metrics[-1]))
    offline = name == "pessimistic_mle"
    finite = [c for c in result.columns if not (offline and c == "cumulative_regret")]
    assert np.all(np.isfinite(result.metrics[:, [col[c] for c in finite]]))
    state = result.class_state
    # the output policy is pi_ref exp(f / beta) / Z for the learner's reward f, exactly
    token_policy, _ = exact.policy_from_leaf_values(env, state.policy_reward, BETA)
    np.testing.assert_allclose(result.leaf_logprobs(), exact.trajectory_logprobs(env, token_policy), atol=1e-12)
    if not offline:
        np.testing.assert_array_equal(state.policy_reward, state.rhat)
    features = np.eye(env.n_leaves)[None].repeat(env.n_contexts, 0) if state.onehot else env.features
    blocks = np.arange(env.n_contexts) if state.onehot else np.zeros(env.n_contexts, dtype=int)
    np.testing.assert_allclose(state.rhat, np.einsum("xlk,xk->xl", features, state.theta[blocks]), atol=1e-13)
    # value columns against an independent exact evaluation
    evaluation = exact.evaluate(env, result.token_policy(), BETA)
    optimum = exact.solve(env, BETA)
    assert result.final_value == pytest.approx(evaluation.value, abs=1e-10)
    assert last["suboptimality"] == pytest.approx(optimum.value - evaluation.value, abs=1e-10)
    assert last["kl_to_ref"] == pytest.approx(evaluation.kl, abs=1e-10)
    assert last["expected_reward"] == pytest.approx(evaluation.reward, abs=1e-10)
    best = np.where(env.trajectory_ref_logprobs > -np.inf, env.trajectory_rewards, -np.inf).max(axis=1)
    greedy = exact.evaluate(env, exact.greedy_policy(result.token_policy()), BETA).reward
    assert last["argmax_regret"] == pytest.approx(float(env.rho @ best) - greedy, abs=1e-10)
    mode = np.argmax(result.leaf_logprobs(), axis=1)
    gaps = best[:, None] - env.trajectory_rewards
    assert last["bai_regret"] == pytest.approx(float(env.rho @ gaps[np.arange(env.n_contexts), mode]), abs=1e-12)
    # dueling columns: the counted pairs (pairs of a response with itself carry no data, gap counted twice)
    table = state.table
    rows = np.arange(table.counts[0])
    x = table.item_x[table.pair_a[rows]]
    ga, gb = gaps[x, table.item_leaf[table.pair_a[rows]]], gaps[x, table.item_leaf[table.pair_b[rows]]]
    n = table.pair_n[rows]
    queries = rounds
    assert last["queries"] == queries
    assert last["weak_regret"] <= last["dueling_regret"] <= last["strong_regret"]
    if n.sum() == queries:
        assert last["dueling_regret"] == pytest.approx(np.sum(n * 0.5 * (ga + gb)), rel=1e-12, abs=1e-12)
        assert last["weak_regret"] == pytest.approx(np.sum(n * np.minimum(ga, gb)), rel=1e-12, abs=1e-12)
        assert last["strong_regret"] == pytest.approx(np.sum(n * np.maximum(ga, gb)), rel=1e-12, abs=1e-12)
    else:
        assert last["dueling_regret"] >= np.sum(n * 0.5 * (ga + gb)) - 1e-12
    # the inverse design matrix and the widths it gives, against numpy.linalg on the counts
    if make_learner(name).uses_design:
        for b in np.unique(blocks):
            mine = (x == b) if state.onehot else np.ones(len(rows), bool)
            d = state.theta.shape[1]
            z = np.array([_design(features, False, xx, i, j, d) for xx, i, j in
                          zip(x[mine], table.item_leaf[table.pair_a[rows[mine]]],
                              table.item_leaf[table.pair_b[rows[mine]]])]).reshape(-1, d)
            direct = ref.design_inverse(z * np.sqrt(n[mine])[:, None], make_learner(name).ridge, d)
            np.testing.assert_allclose(state.inverse[b], direct, rtol=1e-10, atol=1e-13)
        q = np.einsum("xlk,xkm,xlm->xl", features, state.inverse[blocks], features)
        np.testing.assert_allclose(state.qdiag, q, rtol=1e-9, atol=1e-12)
    assert last["solver_failures"] == 0 and last["solver_disagreements"] == 0
    assert last["uncertified_solves"] == 0 and last["max_certified_gap"] == 0
    if offline:
        assert np.all(result.metrics[:, col["queries"]] == rounds)
        assert np.all(np.isnan(result.metrics[:, col["cumulative_regret"]]))
        np.testing.assert_array_equal(result.metrics[:, col["round"]], [0, 1, 7, rounds])
        np.testing.assert_array_equal(np.delete(result.metrics, col["round"], axis=1)[0],
                                      np.delete(result.metrics, col["round"], axis=1)[-1])
    else:
        np.testing.assert_array_equal(result.metrics[:, col["queries"]], [0, 1, 7, rounds])
        assert result.metrics[0, col["suboptimality"]] == pytest.approx(
            optimum.value - exact.evaluate(env, env.ref_probs, BETA).value, abs=1e-12)
        assert np.all(np.diff(result.metrics[:, col["cumulative_regret"]]) >= 0)
        assert np.all(np.diff(result.metrics[:, col["best_iterate_suboptimality"]]) <= 1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_suboptimality_decreases_on_an_easy_instance(name):
    """Linear bandit d = 3, 8 arms, R_max = 4, beta = 0.5, 4 seeds: the mean suboptimality of pi_hat falls
    from round 30 to round 300 and ends below a quarter of pi_ref's (measured 0.004-0.034 against 0.584).
    Pessimism is one fit per dataset size: 30 against 300 pairs."""
    if name == "pessimistic_mle":
        small = xposim.simulate(EASY, name, BETA, 30, seeds=4, checkpoints=[30], workers=1)
        large = xposim.simulate(EASY, name, BETA, 300, seeds=4, checkpoints=[300], workers=1)
        start = exact.solve(EASY, BETA).value - exact.evaluate(EASY, EASY.ref_probs, BETA).value
        assert large.suboptimality.mean() < small.suboptimality.mean()
        assert large.suboptimality.mean() < 0.25 * start
        return
    table = xposim.simulate(EASY, name, BETA, 300, seeds=4, checkpoints=[0, 30, 300], workers=1)
    mean = table.groupby("round").suboptimality.mean()
    assert mean[300] < mean[30] < mean[0]
    assert mean[300] < 0.25 * mean[0]


def test_same_seed_same_bits_and_any_number_of_workers():
    env = ENVS["linear"]
    one = xposim.simulate(env, NAMES, BETA, 30, seeds=2, checkpoints=[0, 5, 30], workers=1)
    two = xposim.simulate(env, NAMES, BETA, 30, seeds=2, checkpoints=[0, 5, 30], workers=2)
    assert one.equals(two)
    assert list(one.columns) == list(xposim.simulation.COLUMNS)
    for name in NAMES:
        a = run_learner(env, make_learner(name), BETA, 25, seed=11)
        b = run_learner(env, make_learner(name), BETA, 25, seed=11, chunk_rounds=3)  # the block size changes nothing
        c = run_learner(env, make_learner(name), BETA, 25, seed=12)
        assert a.metrics.tobytes() == b.metrics.tobytes()
        assert not np.array_equal(a.metrics, c.metrics)


_SUBPROCESS = """
import json
from xposim.envs import hidden_arm_bandit, linear_bandit
from xposim.learners import make_learner, run_learner
out = {}
for env in (linear_bandit(3, 5, seed=1, r_max=2.0), hidden_arm_bandit(4, 0.2)):
    for name in %r:
        r = run_learner(env, make_learner(name, batch_size=2), 0.5, 6, checkpoints=[0, 3, 6], seed=7)
        out[env.name + name] = r.metrics.tobytes().hex() + r.class_state.theta.tobytes().hex()
print(json.dumps(out))
""" % (NAMES,)


def test_numba_disabled_gives_identical_numbers():
    results = []
    for disable in ("0", "1"):
        environment = dict(os.environ, NUMBA_DISABLE_JIT=disable)
        done = subprocess.run([sys.executable, "-c", _SUBPROCESS], env=environment, capture_output=True, text=True,
                              timeout=600, cwd=os.path.dirname(os.path.dirname(__file__)))
        assert done.returncode == 0, done.stderr[-2000:]
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert results[0] == results[1]


@pytest.mark.parametrize("name", ["passive_mle", "maxinp", "colstim"])
def test_numpy_reference_loop_follows_the_same_trajectory(name):
    """The jitted loop and the plain numpy loop (design summed and inverted, MLE by scipy every round)
    consume the same uniforms: same J every round (1e-8), same theta, and the cumulative regret, best
    and average iterate recomputed from the reference's per-round policies."""
    env = linear_bandit(3, 8, seed=4, n_contexts=2, r_max=2.0)
    rounds = 25
    learner = make_learner(name)
    result = run_learner(env, learner, BETA, rounds, checkpoints=np.arange(rounds + 1), seed=3)
    width = 5 + learner.extra_uniforms(env.n_leaves, 3)
    uniforms = np.random.Generator(np.random.PCG64(np.random.SeedSequence(3))).random((rounds, width))
    constants = learner.rule_constants(3, rounds, env.r_max)
    rule = {"passive_mle": "passive", "maxinp": "maxinp", "colstim": "colstim"}[name]
    expected = ref.reference_run(env, rule, BETA, rounds, uniforms, ridge=learner.ridge,
                                 kappa=constants.get("kappa", 1.0), width=constants.get("colstim_width", 1.0),
                                 threshold=constants.get("colstim_threshold", 1.0))
    col = {c: k for k, c in enumerate(result.columns)}
    np.testing.assert_allclose(result.metrics[1:, col["kl_regularized_value"]], expected["values"], atol=1e-8)
    np.testing.assert_allclose(result.class_state.theta[0], expected["theta"], atol=1e-8)
    optimum = exact.solve(env, BETA).value
    played = np.concatenate([[exact.evaluate(env, env.ref_probs, BETA).value], expected["values"][:-1]])
    np.testing.assert_allclose(result.metrics[1:, col["cumulative_regret"]], np.cumsum(optimum - played), atol=1e-8)
    np.testing.assert_allclose(result.metrics[1:, col["best_iterate_suboptimality"]],
                               np.minimum.accumulate(optimum - expected["values"]).clip(max=optimum - played[0]),
                               atol=1e-8)
    reference_policy = np.exp(env.trajectory_ref_logprobs)
    history = [reference_policy] + expected["policies"][:-1]
    for t in (1, 10, rounds):
        mixture = np.mean(history[:t], axis=0)
        value = 0.0
        for x in range(env.n_contexts):
            m, lr = mixture[x], env.trajectory_ref_logprobs[x]
            value += env.rho[x] * (m @ env.trajectory_rewards[x] - BETA * np.sum(m * (np.log(m) - lr)))
        assert result.metrics[t, col["average_iterate_suboptimality"]] == pytest.approx(optimum - value, abs=1e-8)


def test_pessimistic_lower_confidence_bound_matches_numpy():
    """r_lcb = r_hat - Gamma ||phi||_{V^{-1}}: theta against scipy on the counts, V^{-1} against numpy."""
    env = ENVS["linear"]
    learner = make_learner("pessimistic_mle", n_pairs=150)
    result = run_learner(env, learner, BETA, 10, checkpoints=[0, 10], seed=2)
    state, table = result.class_state, result.class_state.table
    rows = np.arange(table.counts[0])
    x = table.item_x[table.pair_a[rows]]
    z = env.features[x, table.item_leaf[table.pair_a[rows]]] - env.features[x, table.item_leaf[table.pair_b[rows]]]
    n, w = table.pair_n[rows], table.pair_w[rows]
    assert n.sum() <= 150 and result.metrics[-1, list(result.columns).index("queries")] == 150
    theta = ref.mle_scipy(z, n, w, learner.ridge)
    np.testing.assert_allclose(state.theta[0], theta, atol=1e-8)
    inverse = ref.design_inverse(z * np.sqrt(n)[:, None], learner.ridge, env.feature_dim)
    width = learner.pessimism_width(env.feature_dim, env.r_max)
    lcb = env.features @ theta - width * np.sqrt(np.einsum("xlk,km,xlm->xl", env.features, inverse, env.features))
    np.testing.assert_allclose(state.policy_reward, lcb, atol=1e-7)
    assert np.all(state.policy_reward < state.rhat)


@pytest.mark.fast
def test_a_run_that_cannot_fit_in_memory_is_refused_before_it_allocates():
    env = hidden_arm_bandit(200_000, 0.1)  # one-hot model: (2 10^5)^2 matrices
    with pytest.raises(ValueError, match="memory.*smaller environment"):
        run_learner(env, make_learner("passive_mle"), BETA, 10)


@pytest.mark.fast
def test_simulate_estimates_reward_model_memory_with_their_own_formula():
    """simulate's up-front memory check uses the reward models' estimate (a one-hot model on 2 10^5
    arms is refused before any job starts, naming simulate)."""
    from xposim.learners.reward_models.runner import estimate_reward_model_bytes
    from xposim.learners.runner import estimate_run_bytes
    from xposim.simulation import simulate

    env = hidden_arm_bandit(200_000, 0.1)
    learner = make_learner("passive_mle")
    assert estimate_run_bytes(env, learner, 10, 2) == estimate_reward_model_bytes(env, learner, 10, 2)
    assert estimate_run_bytes(env, learner, 10, 2) > estimate_run_bytes(env, make_learner("xpo"), 10, 2)
    with pytest.raises(ValueError, match="simulate with 1 learner.*memory"):
        simulate(env, [learner], BETA, 10, seeds=1, workers=1)


def test_batches_query_several_pairs_per_round_and_fit_once():
    """batch_size = 3: three queries per round, one Newton solve per round, and the cumulative regret
    counts each played policy once per query."""
    env = ENVS["linear"]
    rounds = 12
    result = run_learner(env, make_learner("maxinp", batch_size=3), BETA, rounds, checkpoints=np.arange(rounds + 1),
                         seed=1)
    col = {c: k for k, c in enumerate(result.columns)}
    np.testing.assert_array_equal(result.metrics[:, col["queries"]], 3 * np.arange(rounds + 1))
    np.testing.assert_array_equal(result.metrics[:, col["solves"]], np.arange(rounds + 1))
    subopt = result.metrics[:, col["suboptimality"]]
    np.testing.assert_allclose(result.metrics[1:, col["cumulative_regret"]], 3 * np.cumsum(subopt[:-1]), rtol=1e-12)
    table = result.class_state.table
    assert 0 < table.pair_n[:table.counts[0]].sum() <= 3 * rounds
