"""The jitted round loop of the reward-model learners (one call per block of pre-drawn uniforms).

One round ``t`` (``B = batch_size`` pairs, then one refit)::

    regret += B (J* - J(pi_hat^(t)))                    # the played iterate
    for each of the B pairs:
        x ~ rho                                         # uniform u[0]
        (i, j) = rule(x; theta_hat, V^{-1}, C, u[5:])    # passive / pessimistic: i, j ~ pi_ref (u[1], u[2])
        label with the oracle (u[3]); dueling gaps; counts; V^{-1} and C updated by rank one
    theta_hat <- MLE (warm-started Newton) on every block that got data
    pi_hat^(t+1) ∝ pi_ref exp(r_hat / beta) on the contexts of those blocks; J, best iterate; checkpoint row

Uniforms per pair: ``[context, first, second, label, spare, extra...]`` (the learners' round's first five
and the rule's extras, :func:`xposim.learners.reward_models.rules.extra_uniforms`).
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit

from xposim.learners.sampling import cdf_search
from xposim.learners.reward_models.linalg import arm_dot, sherman_morrison_pair
from xposim.learners.reward_models.mle import add_curvature, add_gradient, newton_block, table_add
from xposim.learners.reward_models.policy import context_policy, mixture_value
from xposim.learners.reward_models.rules import (
    RULE_COLSTIM,
    RULE_MAXINP,
    RULE_THOMPSON_BAI,
    RULE_THOMPSON_EE,
    maxinp_radius,
    select_colstim,
    select_maxinp,
    select_thompson_bai,
    select_thompson_ee,
)
from xposim.numerics import NEG_INF
from xposim.oracles import first_wins_code
from xposim.policies.solving import COUNTER_FAILURES, COUNTER_NEWTON_ITERATIONS, COUNTER_SOLVES
from xposim.policies.view import view_normalize, view_sample_tempered

#: The metrics this loop can fill, by name; ``colidx[k]`` is the column of ``KNOWN_METRICS[k]`` in
#: the run's table (-1 when the table has no such column; columns it does not know stay NaN).
KNOWN_METRICS = (
    "round", "queries", "kl_regularized_value", "suboptimality", "best_iterate_suboptimality",
    "average_iterate_suboptimality", "cumulative_regret", "kl_to_ref", "expected_reward", "argmax_regret",
    "bai_regret", "dueling_regret", "weak_regret", "strong_regret", "solver_failures", "solver_disagreements",
    "uncertified_solves", "max_certified_gap", "solves",
)
(M_ROUND, M_QUERIES, M_VALUE, M_SUBOPT, M_BEST, M_AVERAGE, M_REGRET, M_KL, M_REWARD, M_ARGMAX, M_BAI, M_DUELING,
 M_WEAK, M_STRONG, M_FAILURES, M_DISAGREEMENTS, M_UNCERTIFIED, M_GAP, M_SOLVES) = range(len(KNOWN_METRICS))

# slots of the float ``scalars``
S_VALUE = 0  # J(pi_hat) of the current policy
S_BEST = 1  # best suboptimality so far
S_REGRET = 2  # cumulative regret of the played policies
S_DUELING = 3  # sum over queries of the mean of the two responses' reward gaps
S_WEAK = 4  # ... of the smaller gap
S_STRONG = 5  # ... of the larger gap
S_QUERIES = 6  # queries so far
S_REFRESHES = 7  # Newton-matrix refreshes so far (diagnostics)
N_SCALARS = 8

Constants = namedtuple(
    "Constants",
    [
        "rule", "onehot", "ridge", "tolerance", "max_iterations", "beta", "optimal_value", "batch", "width",
        "kappa", "delta", "radius_scale", "colstim_width", "colstim_threshold", "posterior_scale", "samples",
        "use_design", "oracle_code", "oracle_param", "offline",
    ],
)
Constants.__doc__ = """Scalar settings of a run (rule code, ridge, Newton settings, widths, oracle)."""

State = namedtuple(
    "State",
    [
        "features",  # (nc, L, d) float64 (one-hot: (1, 1, 1) unused)
        "theta",  # (n_blocks, d) MLE
        "inverse",  # (n_blocks, d, d) V^{-1} (or (1, 1, 1) when the rule uses no design matrix)
        "factor",  # (n_blocks, d, d) Cholesky factor of the Newton matrix
        "qdiag",  # (nc, L) ||phi||^2 in V^{-1} (or (1, 1))
        "rhat",  # (nc, L) fitted reward
        "policy_reward",  # (nc, L) the reward whose Gibbs policy is output (r_hat; pessimism: its LCB)
        "prob",  # (nc, L) pi_hat of the current policy
        "value_x",  # (nc,) J_x of the current policy
        "hist",  # (nc, L) sums of played policies (lazily flushed)
        "hist_time",  # (nc,) last flushed round
        "arms",  # (nc, L) int64 leaves with pi_ref > 0, first n_arms[x]
        "n_arms",  # (nc,) int64
        "ref_cdf",  # (nc, L) cumulative pi_ref (at the learner's temperature) for reference draws
        "design_count",  # (n_blocks,) float64 queries of the block so far
        "touched",  # (n_blocks,) bool block got data this round
        "predicted",  # (n_blocks, d) predicted gradient at theta: the terms of this round's comparisons
        "scalars",  # (N_SCALARS,)
        "counters",  # (N_COUNTERS,) int64
        "work",  # (4, d) Newton scratch
        "hessian",  # (d, d) scratch
        "vec",  # (3, d) scratch
        "yscratch",  # (L, d) MaxInP scratch: whitened features (or (1, 1))
        "gram",  # (L, L) MaxInP scratch: their Gram matrix (or (1, 1))
        "pair_scratch",  # (2, L) MaxInP scratch: the arms' rewards and squared widths
        "candidate",  # (L,) bool scratch
        "normals",  # (max(samples d, 2),) scratch
        "tokens",  # (max(A, 2),) scratch for the greedy path
        "checkpoints",  # (n_cp,) int64
        "next_checkpoint",  # (1,) int64
        "metrics",  # (n_cp, n_columns) float64
        "colidx",  # (len(KNOWN_METRICS),) int64
    ],
)
State.__doc__ = """Arrays of a reward-model run (field comments)."""


@njit(cache=True)
def policy_of_context(arrays, st: State, cst: Constants, x: int) -> None:
    """``prob[x]`` and ``value_x[x]`` of ``pi_hat ∝ pi_ref exp(policy_reward / beta)``."""
    value, _, _ = context_policy(arrays.leaf_logref[x], arrays.leaf_reward[x], st.policy_reward[x], cst.beta,
                                 st.prob[x])
    st.value_x[x] = value


@njit(cache=True)
def refresh_rewards(arrays, st: State, cst: Constants, x: int) -> None:
    """``rhat[x] = policy_reward[x] = <theta_hat, phi(x, .)>`` (online learners)."""
    b = x if cst.onehot else 0
    theta = st.theta[b]
    for leaf in range(st.rhat.shape[1]):
        value = arm_dot(st.features, cst.onehot, x, leaf, theta)
        st.rhat[x, leaf] = value
        st.policy_reward[x, leaf] = value


@njit(cache=True)
def total_value(arrays, st: State) -> float:
    total = 0.0
    for x in range(st.value_x.shape[0]):
        if arrays.rho[x] > 0.0:
            total += arrays.rho[x] * st.value_x[x]
    return total


@njit(cache=True)
def query_pair(t: int, u: np.ndarray, arrays, st: State, cst: Constants, table) -> None:
    """One query: context, the rule's pair, the label, the counts and the rank-one updates."""
    x = cdf_search(arrays.rho_cdf, u[0])
    b = x if cst.onehot else 0
    n_arms = st.n_arms[x]
    arms = st.arms[x]
    if cst.rule == RULE_MAXINP:
        d = st.theta.shape[1]
        radius = maxinp_radius(d, int(st.design_count[b]), cst.kappa, cst.delta, cst.radius_scale)
        i, j = select_maxinp(x, arms, n_arms, st.rhat[x], st.inverse[b], st.features, cst.onehot, radius,
                             st.candidate, st.yscratch, st.gram, st.hessian, st.pair_scratch)
    elif cst.rule == RULE_COLSTIM:
        i, j = select_colstim(x, arms, n_arms, st.rhat[x], st.qdiag[x], st.inverse[b], st.features, cst.onehot,
                              cst.colstim_width, cst.colstim_threshold, u[5:], st.vec[0])
    elif cst.rule == RULE_THOMPSON_EE:
        i, j = select_thompson_ee(x, arms, n_arms, st.theta[b], st.factor[b], st.features, cst.onehot,
                                  cst.posterior_scale, cst.samples, u[5:], st.normals, st.vec[0])
    elif cst.rule == RULE_THOMPSON_BAI:
        i, j = select_thompson_bai(x, arms, n_arms, st.theta[b], st.factor[b], st.features, cst.onehot,
                                   cst.posterior_scale, u[5:], st.normals, st.vec)
    else:  # passive and pessimistic: both responses from pi_ref
        i = cdf_search(st.ref_cdf[x], u[1])
        j = cdf_search(st.ref_cdf[x], u[2])
    first_wins = first_wins_code(cst.oracle_code, cst.oracle_param, arrays.leaf_reward[x, i],
                                 arrays.leaf_reward[x, j], u[3])
    gap_i = arrays.max_reward[x] - arrays.leaf_reward[x, i]
    gap_j = arrays.max_reward[x] - arrays.leaf_reward[x, j]
    st.scalars[S_DUELING] += 0.5 * (gap_i + gap_j)
    st.scalars[S_WEAK] += min(gap_i, gap_j)
    st.scalars[S_STRONG] += max(gap_i, gap_j)
    st.scalars[S_QUERIES] += 1.0
    st.design_count[b] += 1.0
    if i == j:  # z = 0: no information, nothing to count
        return
    table_add(table, b, x, i, j, first_wins)
    if not st.touched[b]:
        for a in range(st.predicted.shape[1]):
            st.predicted[b, a] = 0.0
    st.touched[b] = True
    add_gradient(st.predicted[b], st.theta[b], st.features, cst.onehot, x, i, j, first_wins)
    add_curvature(st.factor[b], st.theta[b], st.features, cst.onehot, x, i, j, st.vec[1])
    if cst.use_design:
        c = sherman_morrison_pair(st.inverse[b], st.features, cst.onehot, x, i, j, 1.0, st.vec[2])
        # ||phi||^2 in the new inverse = old - c <V_old^{-1} z, phi>^2 (every context shares theta)
        if cst.onehot:
            for leaf in range(st.qdiag.shape[1]):
                st.qdiag[x, leaf] = st.inverse[b, leaf, leaf]
        else:
            for y in range(st.qdiag.shape[0]):
                for leaf in range(st.qdiag.shape[1]):
                    s = arm_dot(st.features, cst.onehot, y, leaf, st.vec[2])
                    st.qdiag[y, leaf] -= c * s * s


@njit(cache=True)
def refit(arrays, st: State, cst: Constants, table, t: int) -> None:
    """Newton on every touched block; then pi_hat of the contexts of those blocks (history flushed first)."""
    n_blocks = st.theta.shape[0]
    for b in range(n_blocks):
        if not st.touched[b]:
            continue
        # warm start: theta_hat of the last round had gradient ~0, so the gradient now is the new comparisons' terms
        for a in range(st.predicted.shape[1]):
            st.work[0, a] = st.predicted[b, a]
        converged, iterations, refreshes = newton_block(table, b, st.theta[b], st.factor[b], st.features,
                                                        cst.onehot, cst.ridge, cst.tolerance, cst.max_iterations,
                                                        st.work, st.hessian, not cst.offline)
        st.scalars[S_REFRESHES] += refreshes
        st.counters[COUNTER_SOLVES] += 1
        st.counters[COUNTER_NEWTON_ITERATIONS] += iterations
        if not converged:
            st.counters[COUNTER_FAILURES] += 1
    for x in range(st.value_x.shape[0]):
        b = x if cst.onehot else 0
        if not st.touched[b]:
            continue
        pending = float(t) - st.hist_time[x]
        if pending > 0.0:
            for leaf in range(st.prob.shape[1]):
                st.hist[x, leaf] += pending * st.prob[x, leaf]
            st.hist_time[x] = float(t)
        refresh_rewards(arrays, st, cst, x)
        policy_of_context(arrays, st, cst, x)
    for b in range(n_blocks):
        st.touched[b] = False


@njit(cache=True)
def record_metrics(row: int, t: int, arrays, st: State, cst: Constants, view) -> None:
    """Checkpoint row ``row`` for round ``t`` (policy ``pi_hat^(t+1)``); ``view`` (all leaves in slots)
    is refilled with the policy for the greedy path."""
    beta = cst.beta
    reward = 0.0
    kl = 0.0
    argmax_regret = 0.0
    bai_regret = 0.0
    average = 0.0
    n_leaves = st.prob.shape[1]
    for x in range(st.value_x.shape[0]):
        if arrays.rho[x] == 0.0:
            continue
        _, r_x, kl_x = context_policy(arrays.leaf_logref[x], arrays.leaf_reward[x], st.policy_reward[x], beta,
                                      st.prob[x])
        reward += arrays.rho[x] * r_x
        kl += arrays.rho[x] * kl_x
        best = NEG_INF
        mode = 0
        for leaf in range(n_leaves):
            w = arrays.leaf_logref[x, leaf] + st.policy_reward[x, leaf] / beta
            if arrays.leaf_logref[x, leaf] == NEG_INF:
                w = NEG_INF
            view.slot_logw[x, leaf] = w
            if w > best:
                best = w
                mode = leaf
        view_normalize(view, x)
        greedy = view_sample_tempered(view, x, 0.0, 0.0, arrays.vocab_size, arrays.horizon, st.tokens)
        argmax_regret += arrays.rho[x] * (arrays.max_reward[x] - arrays.leaf_reward[x, greedy])
        bai_regret += arrays.rho[x] * (arrays.max_reward[x] - arrays.leaf_reward[x, mode])
        if t > 0 and not cst.offline:
            pending = float(t) - st.hist_time[x]
            for leaf in range(n_leaves):
                st.hist[x, leaf] += pending * st.prob[x, leaf]
            st.hist_time[x] = float(t)
            average += arrays.rho[x] * mixture_value(arrays.leaf_logref[x], arrays.leaf_reward[x], st.hist[x],
                                                     1.0 / t, beta)
    value = st.scalars[S_VALUE]
    j_star = cst.optimal_value
    values = np.full(len(KNOWN_METRICS), np.nan)  # a metric left unset stays NaN
    values[M_ROUND] = float(t)
    values[M_QUERIES] = st.scalars[S_QUERIES]
    values[M_VALUE] = value
    values[M_SUBOPT] = j_star - value
    if cst.offline:
        values[M_BEST] = j_star - value
        values[M_AVERAGE] = j_star - value
        values[M_REGRET] = math.nan
    else:
        values[M_BEST] = st.scalars[S_BEST]
        values[M_AVERAGE] = j_star - (value if t == 0 else average)
        values[M_REGRET] = st.scalars[S_REGRET]
    values[M_KL] = kl
    values[M_REWARD] = reward
    values[M_ARGMAX] = argmax_regret
    values[M_BAI] = bai_regret
    values[M_DUELING] = st.scalars[S_DUELING]
    values[M_WEAK] = st.scalars[S_WEAK]
    values[M_STRONG] = st.scalars[S_STRONG]
    values[M_FAILURES] = float(st.counters[COUNTER_FAILURES])
    values[M_DISAGREEMENTS] = 0.0
    values[M_UNCERTIFIED] = 0.0
    values[M_GAP] = 0.0
    values[M_SOLVES] = float(st.counters[COUNTER_SOLVES])
    for metric in range(len(KNOWN_METRICS)):  # into the run's columns (-1: the table has none)
        column = st.colidx[metric]
        if column >= 0:
            st.metrics[row, column] = values[metric]


@njit(cache=True, nogil=True)
def run_rounds(first_round: int, uniforms: np.ndarray, arrays, st: State, cst: Constants, table, view) -> None:
    """Rounds ``first_round .. first_round + len(uniforms) - 1`` (row ``k``: the ``B * width`` uniforms of a round)."""
    j_star = cst.optimal_value
    for k in range(uniforms.shape[0]):
        t = first_round + k
        st.scalars[S_REGRET] += cst.batch * (j_star - st.scalars[S_VALUE])
        for p in range(cst.batch):
            query_pair(t, uniforms[k, p * cst.width:(p + 1) * cst.width], arrays, st, cst, table)
        refit(arrays, st, cst, table, t)
        st.scalars[S_VALUE] = total_value(arrays, st)
        gap = j_star - st.scalars[S_VALUE]
        if gap < st.scalars[S_BEST]:
            st.scalars[S_BEST] = gap
        row = st.next_checkpoint[0]
        if row < st.checkpoints.shape[0] and st.checkpoints[row] == t:
            record_metrics(row, t, arrays, st, cst, view)
            st.next_checkpoint[0] = row + 1


@njit(cache=True, nogil=True)
def collect_offline(uniforms: np.ndarray, arrays, st: State, cst: Constants, table) -> None:
    """Offline data: one query per row of ``uniforms`` (both responses from ``pi_ref``), no refit."""
    for k in range(uniforms.shape[0]):
        query_pair(k + 1, uniforms[k, 0:cst.width], arrays, st, cst, table)


__all__ = ["Constants", "State", "KNOWN_METRICS", "run_rounds", "collect_offline", "record_metrics",
           "policy_of_context", "refresh_rewards", "total_value", "N_SCALARS"]
