"""The round loop of every learner (jitted), and the exact per-round metrics.

One round ``t = 1..T`` (THEORY 4; comments ``# Alg.1 line:`` map to Algorithm 1)::

    for each of the B pairs of the round:
        x ~ rho                                       # Alg.1 line: x ~ rho
        tau  ~ first sampler  (pi^(t) for XPO)        # Alg.1 line: tau ~ pi^(t)(.|x)
        tau~ ~ second sampler (pi_ref for XPO)        # Alg.1 line: tau~ ~ pi_ref(.|x)
        label (tau, tau~) with the oracle             # Alg.1 line: label -> (tau+, tau-)
        D <- D ∪ {(tau+, tau-)}; bonus sample y (= tau~, or a fresh draw)
    pi^(t+1) = argmin over all data (paper) or one gradient step on the batch (trl)

Randomness: the caller draws ``UNIFORMS_PER_PAIR * B`` uniforms per round in Python from one
``numpy.random.Generator`` (PCG64) per run and passes them in: results are identical bit for bit
with and without numba, and for any number of workers. Every draw is an inverse-CDF lookup.

Exact metrics (trajectory level, from the :class:`~xposim.policies.view.IterateView`):
``J_beta(pi^(t))`` every round (``O(n_slots)`` for the contexts that changed), hence the
cumulative regret ``sum_{s<=t} B (J* - J(pi^(s)))`` over the played iterates and the best
iterate; at checkpoints the average iterate (uniform mixture of the played iterates
``pi^(1..t)``, accumulated lazily per context), the KL to ``pi_ref``, the expected reward and the
argmax regret ``E_x[max_tau r(tau|x) - r(greedy(pi)(x))]``, greedy = the temperature-0
token-level policy (argmax token in every state along the path, ties to the lowest token).
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit

from xposim._jit import internal_kernel
from xposim import columns
from xposim.learners.config import (
    BONUS_ON_SECOND,
    BONUS_ON_SEPARATE,
    MODE_PAPER,
    REFERENCE_PREVIOUS,
    SAMPLER_BEHAVIOUR,
    SAMPLER_FROZEN,
    SAMPLER_GREEDY,
    SAMPLER_HISTORICAL,
    SAMPLER_POLICY,
    SAMPLER_REFERENCE,
    UNIFORMS_PER_PAIR,
)
from xposim.losses.kinds import BONUS_COPO, BONUS_NONE
from xposim.oracles import first_wins_code
from xposim.numerics import NEG_INF
from xposim.policies.arrays import EnvArrays
from xposim.policies.store import PairStore, store_add_pair
from xposim.policies.view import (
    IterateView,
    view_context_stats,
    view_create_slot,
    view_sample,
    view_mode_leaf,
    view_sample_rest,
    view_sample_tempered,
)
from xposim.policies.solving import (
    COUNTER_DISAGREEMENTS,
    COUNTER_FAILURES,
    COUNTER_SOLVES,
    COUNTER_UNCERTIFIED,
    SolveProblem,
)

# metric columns of the checkpoint table: the vocabulary's metrics, then the internal solve counter
METRIC_COLUMNS = columns.METRIC_COLUMNS + ("solves",)
N_METRICS = len(METRIC_COLUMNS)

# slots of the float ``scalars`` array of the engine state
S_VALUE = 0  # J(pi^(t)) of the current iterate
S_BEST = 1  # best suboptimality so far
S_REGRET = 2  # cumulative regret
S_PREV_ALPHA = 3  # alpha of the previous round (to detect schedule changes)
S_DUELING = 4  # cumulative sum over queries of the mean of the two responses' reward gaps
S_WEAK = 5  # ... of the smaller gap
S_STRONG = 6  # ... of the larger gap
N_SCALARS = 7

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

EngineState = namedtuple(
    "EngineState",
    [
        "loss_ref_logp",  # (nc, L) log pi_ref_loss per slot
        "loss_ref_offset",  # (nc,) rest leaves: log pi_ref_loss = log pi_ref + offset
        "frozen_logp",  # (nc, L) frozen sampler (POPO pi_sam) log-prob per slot
        "frozen_offset",  # (nc,)
        "hist_slot",  # (nc, L) sum of pi^(s)(leaf) over flushed rounds
        "hist_rest",  # (nc,) sum of the rest coefficients c_s over flushed rounds
        "hist_time",  # (nc,) last flushed round
        "bonus_count",  # (nc, L) M
        "appear_count",  # (nc, L) N(x, y)
        "bonus_weight",  # (nc, L) COPO weight c / sqrt(N); 1 otherwise
        "value_per_context",  # (nc,) J_x of the current iterate
        "behaviour_cdf",  # (nc, L) or (1, 1)
        "reference_cdf",  # (nc, L) cumulative pi_ref at the plan's temperature (arrays.ref_cdf at 1)
        "touched",  # (nc,) bool contexts with new data this round
        "solve_mask",  # (nc,) bool contexts to solve
        "changed",  # (nc,) bool contexts whose iterate changed
        "batch_context",  # (B,) int64
        "batch_chosen",  # (B,) int64 slot
        "batch_rejected",  # (B,) int64 slot
        "batch_bonus",  # (B,) int64 slot or -1
        "batch_bonus_weight",  # (B,)
        "scalars",  # (N_SCALARS,)
        "counters",  # (N_COUNTERS,) int64
        "largest_gap",  # (1,) largest relative optimality gap of an argmin so far
        "checkpoints",  # (n_cp,) int64 rounds to record (sorted)
        "next_checkpoint",  # (1,) int64
        "metrics",  # (n_cp, N_METRICS)
        "scratch",  # (max(A, 2),)
    ],
)

RunConstants = namedtuple("RunConstants", ["beta", "optimal_value"])


# ============================================================================ sampling
@internal_kernel
def cdf_search(cdf: np.ndarray, u: float) -> int:
    """Smallest index ``i`` with ``cdf[i] > u`` (inverse CDF; zero-probability entries are skipped)."""
    lo = 0
    hi = cdf.shape[0] - 1
    if u >= cdf[hi]:
        # rounding: return the last entry with positive probability
        while hi > 0 and cdf[hi - 1] == cdf[hi]:
            hi -= 1
        return hi
    while lo < hi:
        mid = (lo + hi) // 2
        if cdf[mid] > u:
            hi = mid
        else:
            lo = mid + 1
    return lo


@internal_kernel
def _sample_weighted_view(view: IterateView, x: int, u: float, slot_weight: np.ndarray,
                          rest_coefficient: float) -> int:
    """Draw from weights ``slot_weight[s]`` (linear) on the slots and ``rest_coefficient * pi_ref`` on the rest."""
    n = view.n_slots[x]
    root = view.rest_tree[x, 1]
    rest_mass = rest_coefficient * math.exp(root) if root > NEG_INF else 0.0
    total = rest_mass
    for s in range(n):
        total += slot_weight[s]
    target = u * total
    acc = 0.0
    last = -1
    for s in range(n):
        w = slot_weight[s]
        if w <= 0.0:
            continue
        acc += w
        last = s
        if target < acc:
            return view.slot_leaf[x, s]
    if rest_mass > 0.0:
        return view_sample_rest(view, x, (target - acc) / rest_mass)
    return view.slot_leaf[x, last]


@internal_kernel
def _historical_weights(view: IterateView, eng: EngineState, x: int, t: float, out: np.ndarray) -> float:
    """Mixture weights of ``pi^(1..t)`` on the slots of ``x`` (unnormalized sums); returns the rest coefficient."""
    pending = t - eng.hist_time[x]
    lz = view.log_partition[x]
    for s in range(view.n_slots[x]):
        out[s] = eng.hist_slot[x, s] + pending * math.exp(view.slot_logw[x, s] - lz)
    return eng.hist_rest[x] + pending * math.exp(view.rest_logscale[x] - lz)


@internal_kernel
def draw_response(code: int, arrays: EnvArrays, view: IterateView, eng: EngineState, x: int, u: float,
                  temperature: float, t: int, weights: np.ndarray) -> int:
    """A leaf of context ``x`` from sampler ``code`` (``SAMPLER_*``) with the uniform ``u``."""
    if code == SAMPLER_POLICY:
        if temperature == 1.0:
            return view_sample(view, x, u)
        return view_sample_tempered(view, x, u, temperature, arrays.vocab_size, arrays.horizon, eng.scratch)
    if code == SAMPLER_REFERENCE:  # pi_ref at the plan's token temperature (trl samples both responses at 0.9)
        return cdf_search(eng.reference_cdf[x], u)
    if code == SAMPLER_GREEDY:
        return view_sample_tempered(view, x, u, 0.0, arrays.vocab_size, arrays.horizon, eng.scratch)
    if code == SAMPLER_HISTORICAL:
        coefficient = _historical_weights(view, eng, x, float(t), weights)
        return _sample_weighted_view(view, x, u, weights, coefficient)
    if code == SAMPLER_FROZEN:
        for s in range(view.n_slots[x]):
            weights[s] = math.exp(eng.frozen_logp[x, s])
        return _sample_weighted_view(view, x, u, weights, math.exp(eng.frozen_offset[x]))
    if code == SAMPLER_BEHAVIOUR:
        return cdf_search(eng.behaviour_cdf[x], u)
    raise ValueError("unknown sampler code")


# ============================================================================ bookkeeping
@internal_kernel
def engine_create_slot(view: IterateView, arrays: EnvArrays, eng: EngineState, x: int, leaf: int) -> int:
    """Slot of ``leaf`` (appending it to the view if new, initializing the engine's per-slot arrays)."""
    slot, created = view_create_slot(view, arrays.leaf_logref, x, leaf)
    if created:
        lr = arrays.leaf_logref[x, leaf]
        eng.loss_ref_logp[x, slot] = lr + eng.loss_ref_offset[x]
        eng.frozen_logp[x, slot] = lr + eng.frozen_offset[x]
        eng.hist_slot[x, slot] = eng.hist_rest[x] * math.exp(lr)
        eng.bonus_count[x, slot] = 0.0
        eng.appear_count[x, slot] = 0.0
        eng.bonus_weight[x, slot] = 1.0
    return slot


@internal_kernel
def flush_history(view: IterateView, eng: EngineState, x: int, t: int) -> None:
    """Add ``(t - hist_time) pi_current(.|x)`` to the mixture sums (before ``x``'s iterate changes)."""
    pending = float(t) - eng.hist_time[x]
    if pending <= 0.0:
        return
    lz = view.log_partition[x]
    for s in range(view.n_slots[x]):
        eng.hist_slot[x, s] += pending * math.exp(view.slot_logw[x, s] - lz)
    eng.hist_rest[x] += pending * math.exp(view.rest_logscale[x] - lz)
    eng.hist_time[x] = float(t)


@internal_kernel
def snapshot_policy(view: IterateView, x: int, out_slot_logp: np.ndarray, out_offset: np.ndarray) -> None:
    """``out_slot_logp[x, s] = log pi(slot s|x)`` and ``out_offset[x] = log c`` (rest = c pi_ref)."""
    lz = view.log_partition[x]
    for s in range(view.n_slots[x]):
        out_slot_logp[x, s] = view.slot_logw[x, s] - lz
    out_offset[x] = view.rest_logscale[x] - lz


@internal_kernel
def weights_scratch(eng: EngineState) -> np.ndarray:
    """Scratch row ``(L,)`` for sampler weights: the extra last row of ``hist_slot`` (never a context)."""
    return eng.hist_slot[eng.hist_slot.shape[0] - 1]


@internal_kernel
def play_round(t: int, uniforms: np.ndarray, arrays: EnvArrays, plan, view: IterateView, eng: EngineState,
               store: PairStore) -> int:
    """Draw, label and store the ``B`` pairs of round ``t`` (no policy update). Returns ``B``.

    Sets ``eng.touched``; fills the batch buffers (slots of chosen, rejected and bonus responses).
    """
    n_contexts = view.n_slots.shape[0]
    for x in range(n_contexts):
        eng.touched[x] = False
    weights = weights_scratch(eng)
    batch = plan.batch_size
    for i in range(batch):
        base = UNIFORMS_PER_PAIR * i
        # Alg.1 line: x ~ rho
        x = cdf_search(arrays.rho_cdf, uniforms[base])
        # Alg.1 line: tau ~ pi^(t)(.|x)            (first sampler)
        a = draw_response(plan.first_sampler, arrays, view, eng, x, uniforms[base + 1], plan.temperature, t,
                          weights)
        # Alg.1 line: tau~ ~ pi_ref(.|x)           (second sampler; Alg.2/3: other samplers)
        b = draw_response(plan.second_sampler, arrays, view, eng, x, uniforms[base + 2], plan.temperature, t,
                          weights)
        # Alg.1 line: label (tau, tau~) with the oracle -> (tau+, tau-)
        first_wins = first_wins_code(plan.oracle_code, plan.oracle_param, arrays.leaf_reward[x, a],
                                     arrays.leaf_reward[x, b], uniforms[base + 3])
        # dueling regret of the queried pair (reward gaps to the context's best response)
        gap_a = arrays.max_reward[x] - arrays.leaf_reward[x, a]
        gap_b = arrays.max_reward[x] - arrays.leaf_reward[x, b]
        eng.scalars[S_DUELING] += 0.5 * (gap_a + gap_b)
        eng.scalars[S_WEAK] += min(gap_a, gap_b)
        eng.scalars[S_STRONG] += max(gap_a, gap_b)
        slot_a = engine_create_slot(view, arrays, eng, x, a)
        slot_b = engine_create_slot(view, arrays, eng, x, b)
        chosen = slot_a if first_wins else slot_b
        rejected = slot_b if first_wins else slot_a
        # Alg.1 line: D <- D ∪ {(tau+, tau-)}
        if plan.mode == MODE_PAPER:
            store_add_pair(store, x, chosen, rejected, 1.0)
        eng.appear_count[x, slot_a] += 1.0
        eng.appear_count[x, slot_b] += 1.0
        # bonus sample: alpha log pi(tau~) in Algorithm 1
        bonus_slot = -1
        if plan.bonus_response == BONUS_ON_SECOND:
            bonus_slot = slot_b
        elif plan.bonus_response == BONUS_ON_SEPARATE:
            y = draw_response(plan.bonus_sampler, arrays, view, eng, x, uniforms[base + 4], plan.temperature, t,
                              weights)
            bonus_slot = engine_create_slot(view, arrays, eng, x, y)
            eng.appear_count[x, bonus_slot] += 1.0
        if bonus_slot >= 0 and plan.mode == MODE_PAPER:
            eng.bonus_count[x, bonus_slot] += 1.0
        if plan.bonus_kind == BONUS_COPO:
            # stop-gradient weights c / sqrt(N(x, y)) at the current counts
            eng.bonus_weight[x, slot_a] = plan.copo_weight / math.sqrt(eng.appear_count[x, slot_a])
            eng.bonus_weight[x, slot_b] = plan.copo_weight / math.sqrt(eng.appear_count[x, slot_b])
            if bonus_slot >= 0:
                eng.bonus_weight[x, bonus_slot] = plan.copo_weight / math.sqrt(eng.appear_count[x, bonus_slot])
        eng.batch_context[i] = x
        eng.batch_chosen[i] = chosen
        eng.batch_rejected[i] = rejected
        eng.batch_bonus[i] = bonus_slot
        eng.batch_bonus_weight[i] = eng.bonus_weight[x, bonus_slot] if bonus_slot >= 0 else 1.0
        eng.touched[x] = True
    return batch




@njit(cache=True)
def begin_round(t: int, uniforms: np.ndarray, arrays: EnvArrays, plan, alpha: float, view: IterateView,
                eng: EngineState, store: PairStore, separable: bool, consts) -> SolveProblem:
    """Everything of round ``t`` before the policy update; returns the :class:`SolveProblem`.

    ``alpha`` is the bonus weight of round ``t``'s argmin.

    SE-POPO reset, the pairs (:func:`play_round`), the regret of ``pi^(t)``, which contexts to
    solve (those with new data; all contexts with data when ``alpha`` changed), the history flush
    and the loss-reference drift (SELM).
    """
    n_contexts = view.n_slots.shape[0]
    # SE-POPO: pi_sam <- last iterate at the start of every outer round
    if plan.outer_round_length > 0 and t > 1 and (t - 1) % plan.outer_round_length == 0:
        for x in range(n_contexts):
            snapshot_policy(view, x, eng.frozen_logp, eng.frozen_offset)
    batch = play_round(t, uniforms, arrays, plan, view, eng, store)
    # regret of the played iterate pi^(t) (one per query)
    eng.scalars[S_REGRET] += batch * (consts.optimal_value - eng.scalars[S_VALUE])
    alpha_changed = (t > 1 and alpha != eng.scalars[S_PREV_ALPHA] and plan.bonus_kind != BONUS_NONE
                     and plan.mode == MODE_PAPER)
    eng.scalars[S_PREV_ALPHA] = alpha
    for x in range(n_contexts):
        eng.solve_mask[x] = eng.touched[x] or (alpha_changed and view.n_slots[x] > 0)
        eng.changed[x] = False
    for x in range(n_contexts):
        if eng.solve_mask[x] or not separable:
            flush_history(view, eng, x, t)
        if eng.solve_mask[x] and plan.reference_mode == REFERENCE_PREVIOUS:
            # reference drift: the loss reference of x becomes the current iterate pi^(t)(.|x)
            snapshot_policy(view, x, eng.loss_ref_logp, eng.loss_ref_offset)
    return SolveProblem(store, eng.bonus_count, eng.bonus_weight, eng.loss_ref_logp, plan.pair_kind,
                        plan.pair_param, plan.bonus_kind, alpha, consts.beta, eng.changed, eng.counters,
                        eng.batch_context, eng.batch_chosen, eng.batch_rejected, eng.batch_bonus,
                        batch if plan.mode == MODE_PAPER else 0, plan.reference_mode == REFERENCE_PREVIOUS,
                        eng.largest_gap)


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


@njit(cache=True)
def end_round(t: int, arrays: EnvArrays, plan, view: IterateView, eng: EngineState, consts) -> None:
    """After the update: ``J(pi^(t+1))``, the best iterate, and the checkpoint row if ``t`` is one."""
    refresh_values(arrays, view, eng, consts.beta, np.bool_(False))  # np.bool_: not a literal (one specialization)
    gap = consts.optimal_value - eng.scalars[S_VALUE]
    if gap < eng.scalars[S_BEST]:
        eng.scalars[S_BEST] = gap
    row = eng.next_checkpoint[0]
    if row < eng.checkpoints.shape[0] and eng.checkpoints[row] == t:
        record_metrics(row, t, plan.batch_size, arrays, view, eng, consts, np.bool_(False))
        eng.next_checkpoint[0] = row + 1


# ============================================================================ offline data
@njit(cache=True, nogil=True)
def collect_offline_pairs(first: int, uniforms: np.ndarray, arrays: EnvArrays, plan, view: IterateView,
                          eng: EngineState, store: PairStore, any_data: np.ndarray) -> None:
    """Offline learners: draw pairs ``first .. first + len(uniforms) - 1`` (no update in between);
    ``any_data[x]`` becomes true for every context that got a pair."""
    for i in range(uniforms.shape[0]):
        play_round(first + i, uniforms[i], arrays, plan, view, eng, store)
        for x in range(any_data.shape[0]):
            any_data[x] = any_data[x] or eng.touched[x]
