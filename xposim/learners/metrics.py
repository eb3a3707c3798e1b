"""The exact per-round metrics of a learner's run and the columns of its checkpoint table.

Trajectory level, from the :class:`~xposim.policies.view.IterateView`: ``J_beta(pi^(t))`` every round
(``O(n_slots)`` for the contexts that changed), hence the cumulative regret ``sum_{s<=t} B (J* -
J(pi^(s)))`` over the played iterates and the best iterate; the dueling regrets of the queried pairs
(docs/theory.md section 8); at checkpoints the average iterate (the uniform mixture of the played
iterates ``pi^(1..t)``, accumulated lazily per context), the KL to ``pi_ref``, the expected reward,
the argmax regret ``E_x[max_tau r(tau|x) - r(greedy(pi)(x))]`` (greedy = the temperature-0
token-level policy: the argmax token in every state along the path, ties to the lowest token), the
best-arm-identification regret of the policy's mode, and the solver's counters.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from xposim import columns
from xposim._jit import internal_kernel
from xposim.learners.state import S_BEST, S_DUELING, S_REGRET, S_STRONG, S_VALUE, S_WEAK, EngineState
from xposim.numerics import NEG_INF
from xposim.policies.arrays import EnvArrays
from xposim.policies.solving import COUNTER_DISAGREEMENTS, COUNTER_FAILURES, COUNTER_SOLVES, COUNTER_UNCERTIFIED
from xposim.policies.view import IterateView, view_context_stats, view_mode_leaf, view_sample_tempered

# metric columns of the checkpoint table: the vocabulary's metrics, then the internal solve counter
METRIC_COLUMNS = columns.METRIC_COLUMNS + ("solves",)
N_METRICS = len(METRIC_COLUMNS)

# the metric columns' positions in a checkpoint row (numba reads module-level ints as constants)
C_ROUND = METRIC_COLUMNS.index("round")
C_QUERIES = METRIC_COLUMNS.index("queries")
C_VALUE = METRIC_COLUMNS.index("kl_regularized_value")
C_SUBOPT = METRIC_COLUMNS.index("suboptimality")
C_BEST = METRIC_COLUMNS.index("best_iterate_suboptimality")
C_AVERAGE = METRIC_COLUMNS.index("average_iterate_suboptimality")
C_REGRET = METRIC_COLUMNS.index("cumulative_regret")
C_KL = METRIC_COLUMNS.index("kl_to_ref")
C_REWARD = METRIC_COLUMNS.index("expected_reward")
C_ARGMAX = METRIC_COLUMNS.index("argmax_regret")
C_BAI = METRIC_COLUMNS.index("bai_regret")
C_DUELING = METRIC_COLUMNS.index("dueling_regret")
C_WEAK = METRIC_COLUMNS.index("weak_regret")
C_STRONG = METRIC_COLUMNS.index("strong_regret")
C_FAILURES = METRIC_COLUMNS.index("solver_failures")
C_DISAGREEMENTS = METRIC_COLUMNS.index("solver_disagreements")
C_UNCERTIFIED = METRIC_COLUMNS.index("uncertified_solves")
C_GAP = METRIC_COLUMNS.index("max_certified_gap")
C_SOLVES = METRIC_COLUMNS.index("solves")


@internal_kernel
def record_query_gaps(arrays: EnvArrays, eng: EngineState, x: int, a: int, b: int) -> None:
    """Dueling regret of the queried pair ``(a, b)`` of context ``x``: the mean, the smaller and the
    larger of the two responses' reward gaps to the context's best response, accumulated."""
    gap_a = arrays.max_reward[x] - arrays.leaf_reward[x, a]
    gap_b = arrays.max_reward[x] - arrays.leaf_reward[x, b]
    eng.scalars[S_DUELING] += 0.5 * (gap_a + gap_b)
    eng.scalars[S_WEAK] += min(gap_a, gap_b)
    eng.scalars[S_STRONG] += max(gap_a, gap_b)


@njit(cache=True)
def refresh_values(arrays: EnvArrays, view: IterateView, eng: EngineState, beta: float, everything: bool) -> None:
    """Recompute ``J_x`` of the changed contexts (all if ``everything``) and ``J = sum_x rho(x) J_x``."""
    total = 0.0
    for x in range(view.n_slots.shape[0]):
        if everything or eng.changed[x]:
            value, _, _ = view_context_stats(view, arrays, beta, x)
            eng.value_per_context[x] = value
        if arrays.rho[x] > 0.0:
            total += arrays.rho[x] * eng.value_per_context[x]
    eng.scalars[S_VALUE] = total


@internal_kernel
def _average_iterate_value(view: IterateView, arrays: EnvArrays, eng: EngineState, beta: float, t: int) -> float:
    """``J_beta`` of the uniform mixture of the played iterates ``pi^(1..t)`` (exact)."""
    total = 0.0
    for x in range(view.n_slots.shape[0]):
        if arrays.rho[x] == 0.0:
            continue
        pending = float(t) - eng.hist_time[x]
        lz = view.log_partition[x]
        reward = 0.0
        kl = 0.0
        for s in range(view.n_slots[x]):
            m = (eng.hist_slot[x, s] + pending * math.exp(view.slot_logw[x, s] - lz)) / t
            if m <= 0.0:
                continue
            leaf = view.slot_leaf[x, s]
            reward += m * arrays.leaf_reward[x, leaf]
            lr = arrays.leaf_logref[x, leaf]
            kl = kl + m * (math.log(m) - lr) if lr > NEG_INF else math.inf
        coefficient = (eng.hist_rest[x] + pending * math.exp(view.rest_logscale[x] - lz)) / t
        root = view.rest_tree[x, 1]
        if root > NEG_INF and coefficient > 0.0:
            reward += coefficient * math.exp(view.rest_reward_tree[x, 1])
            kl += coefficient * math.exp(root) * math.log(coefficient)
        if kl < 0.0:
            kl = 0.0
        total += arrays.rho[x] * (reward - beta * kl)
    return total


@njit(cache=True)
def record_metrics(row: int, t: int, batch: int, arrays: EnvArrays, view: IterateView, eng: EngineState,
                   consts, offline: bool) -> None:
    """Write the checkpoint row ``row`` for round ``t`` (policy ``pi^(t+1)``)."""
    beta = consts.beta
    j_star = consts.optimal_value
    reward = 0.0
    kl = 0.0
    argmax_regret = 0.0
    bai_regret = 0.0
    for x in range(view.n_slots.shape[0]):
        if arrays.rho[x] == 0.0:
            continue
        _, r_x, kl_x = view_context_stats(view, arrays, beta, x)
        reward += arrays.rho[x] * r_x
        kl += arrays.rho[x] * kl_x
        greedy_leaf = view_sample_tempered(view, x, 0.0, 0.0, arrays.vocab_size, arrays.horizon, eng.scratch)
        argmax_regret += arrays.rho[x] * (arrays.max_reward[x] - arrays.leaf_reward[x, greedy_leaf])
        mode_leaf = view_mode_leaf(view, arrays.leaf_logref, x)
        bai_regret += arrays.rho[x] * (arrays.max_reward[x] - arrays.leaf_reward[x, mode_leaf])
    value = eng.scalars[S_VALUE]
    m = eng.metrics
    m[row, C_ROUND] = t
    m[row, C_QUERIES] = t * batch
    m[row, C_VALUE] = value
    m[row, C_SUBOPT] = j_star - value
    if offline:
        m[row, C_BEST] = j_star - value
        m[row, C_AVERAGE] = j_star - value
        m[row, C_REGRET] = math.nan
    else:
        m[row, C_BEST] = eng.scalars[S_BEST]
        m[row, C_AVERAGE] = j_star - (value if t == 0 else _average_iterate_value(view, arrays, eng, beta, t))
        m[row, C_REGRET] = eng.scalars[S_REGRET]
    m[row, C_KL] = kl
    m[row, C_REWARD] = reward
    m[row, C_ARGMAX] = argmax_regret
    m[row, C_BAI] = bai_regret
    m[row, C_DUELING] = eng.scalars[S_DUELING]
    m[row, C_WEAK] = eng.scalars[S_WEAK]
    m[row, C_STRONG] = eng.scalars[S_STRONG]
    m[row, C_FAILURES] = eng.counters[COUNTER_FAILURES]
    m[row, C_DISAGREEMENTS] = eng.counters[COUNTER_DISAGREEMENTS]
    m[row, C_UNCERTIFIED] = eng.counters[COUNTER_UNCERTIFIED]
    m[row, C_GAP] = eng.largest_gap[0]
    m[row, C_SOLVES] = eng.counters[COUNTER_SOLVES]


__all__ = ["METRIC_COLUMNS", "N_METRICS", "record_query_gaps", "refresh_values", "record_metrics"]
