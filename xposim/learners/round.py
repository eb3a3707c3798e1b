"""One round of a learner, as Algorithm 1 of the paper writes it (THEORY 4.3), for every learner.

The learner's config declares its plan (:mod:`xposim.learners.xpo` for XPO: which sampler draws
``tau`` and ``tau~``, the pair loss, the bonus); this module executes it. Round ``t``::

    begin_round(t):
        for each of the B pairs of the round:         # (Algorithm 4: B > 1)
            query_pair:
                x    ~ rho                            # Alg. 1: x ~ rho
                tau  ~ plan.first_sampler             # Alg. 1: tau  ~ pi^(t)(.|x)
                tau~ ~ plan.second_sampler            # Alg. 1: tau~ ~ pi_ref(.|x)
                (tau+, tau-) = label(tau, tau~)       # Alg. 1: the preference oracle
                D <- D ∪ {(tau+, tau-)}               # Alg. 1: D <- D ∪ {(tau+, tau-)}
                the bonus sample: tau~ (XPO), or a third response (VPO, COPO)
        -> the round's SolveProblem: all of D, the bonus counts, alpha_t, beta
    the policy class's solve                          # Alg. 1: pi^(t+1) = argmin_{pi in Pi}
                                                      #   alpha sum log pi(tau~) + L_DPO(pi; D)
        (the class's fused loop, xposim.learners.fused, or the runner's generic loop;
         in trl mode one gradient step on the batch instead)
    end_round(t)                                      # metrics of pi^(t+1): xposim.learners.metrics

Randomness: the caller draws ``UNIFORMS_PER_PAIR * B`` uniforms per round in Python from one
``numpy.random.Generator`` (PCG64) per run and passes them in: results are identical bit for bit
with and without numba, and for any number of workers. Every draw is an inverse-CDF lookup
(:mod:`xposim.learners.sampling`).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from xposim._jit import internal_kernel
from xposim.learners.metrics import record_metrics, record_query_gaps, refresh_values
from xposim.learners.plan import UNIFORMS_PER_PAIR, BonusOn, LossReference, Mode
from xposim.learners.sampling import cdf_search, draw_response
from xposim.learners.state import (
    S_BEST,
    S_PREV_ALPHA,
    S_REGRET,
    S_VALUE,
    EngineState,
    engine_create_slot,
    flush_history,
    snapshot_policy,
    weights_scratch,
)
from xposim.losses.kinds import BONUS_COPO, BONUS_NONE
from xposim.oracles import first_wins_code
from xposim.policies.arrays import EnvArrays
from xposim.policies.solving import SolveProblem
from xposim.policies.store import PairStore, store_add_pair
from xposim.policies.view import IterateView


@njit(cache=True)
def begin_round(t: int, uniforms: np.ndarray, arrays: EnvArrays, plan, alpha: float, view: IterateView,
                eng: EngineState, store: PairStore, separable: bool, consts) -> SolveProblem:
    """Algorithm 1 up to its argmin for round ``t``: the round's pairs, and the problem the argmin solves.

    ``alpha`` is the bonus weight of round ``t``'s argmin. Also: the SE-POPO reset, the regret of
    the played ``pi^(t)``, which contexts to solve (those with new data; all contexts with data when
    ``alpha`` changed), the history flush and the loss-reference drift (SELM).
    """
    n_contexts = view.n_slots.shape[0]
    # SE-POPO: pi_sam <- last iterate at the start of every outer round
    if plan.outer_round_length > 0 and t > 1 and (t - 1) % plan.outer_round_length == 0:
        for x in range(n_contexts):
            snapshot_policy(view, x, eng.frozen_logp, eng.frozen_offset)
    # Alg. 1: sample, label, record -- once per pair of the round
    batch = play_round(t, uniforms, arrays, plan, view, eng, store)
    # regret of the played iterate pi^(t) (one per query)
    eng.scalars[S_REGRET] += batch * (consts.optimal_value - eng.scalars[S_VALUE])
    alpha_changed = (t > 1 and alpha != eng.scalars[S_PREV_ALPHA] and plan.bonus_kind != BONUS_NONE
                     and plan.mode == Mode.PAPER)
    eng.scalars[S_PREV_ALPHA] = alpha
    for x in range(n_contexts):
        eng.solve_mask[x] = eng.touched[x] or (alpha_changed and view.n_slots[x] > 0)
        eng.changed[x] = False
    for x in range(n_contexts):
        if eng.solve_mask[x] or not separable:
            flush_history(view, eng, x, t)
        if eng.solve_mask[x] and plan.reference_mode == LossReference.PREVIOUS_ITERATE:
            # reference drift: the loss reference of x becomes the current iterate pi^(t)(.|x)
            snapshot_policy(view, x, eng.loss_ref_logp, eng.loss_ref_offset)
    # the argmin's problem (the policy class solves it): all pairs of D, the bonus counts, alpha, beta
    return SolveProblem(store, eng.bonus_count, eng.bonus_weight, eng.loss_ref_logp, plan.pair_kind,
                        plan.pair_param, plan.bonus_kind, alpha, consts.beta, eng.changed, eng.counters,
                        eng.batch_context, eng.batch_chosen, eng.batch_rejected, eng.batch_bonus,
                        batch if plan.mode == Mode.PAPER else 0,
                        plan.reference_mode == LossReference.PREVIOUS_ITERATE, eng.largest_gap)


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
    for i in range(plan.batch_size):
        query_pair(i, t, uniforms[UNIFORMS_PER_PAIR * i:UNIFORMS_PER_PAIR * (i + 1)], arrays, plan, view, eng,
                   store, weights)
    return plan.batch_size


@internal_kernel
def query_pair(i: int, t: int, u: np.ndarray, arrays: EnvArrays, plan, view: IterateView, eng: EngineState,
               store: PairStore, weights: np.ndarray) -> None:
    """Pair ``i`` of round ``t`` from its ``UNIFORMS_PER_PAIR`` uniforms ``u``: Algorithm 1's
    sampling, labeling and data steps."""
    # Alg. 1: x ~ rho
    x = cdf_search(arrays.rho_cdf, u[0])
    # Alg. 1: tau ~ pi^(t)(.|x)                (the first sampler)
    a = draw_response(plan.first_sampler, arrays, view, eng, x, u[1], plan.temperature, t, weights)
    # Alg. 1: tau~ ~ pi_ref(.|x)               (the second sampler; Algorithms 2, 3: other samplers)
    b = draw_response(plan.second_sampler, arrays, view, eng, x, u[2], plan.temperature, t, weights)
    # Alg. 1: label (tau, tau~) with the preference oracle -> (tau+, tau-)
    first_wins = first_wins_code(plan.oracle_code, plan.oracle_param, arrays.leaf_reward[x, a],
                                 arrays.leaf_reward[x, b], u[3])
    record_query_gaps(arrays, eng, x, a, b)
    slot_a = engine_create_slot(view, arrays, eng, x, a)
    slot_b = engine_create_slot(view, arrays, eng, x, b)
    chosen = slot_a if first_wins else slot_b
    rejected = slot_b if first_wins else slot_a
    # Alg. 1: D <- D ∪ {(tau+, tau-)}          (trl mode keeps only the fresh batch)
    if plan.mode == Mode.PAPER:
        store_add_pair(store, x, chosen, rejected, 1.0)
    eng.appear_count[x, slot_a] += 1.0
    eng.appear_count[x, slot_b] += 1.0
    # the bonus sample of the argmin's alpha sum log pi(tau~): tau~ itself, or a third response
    bonus_slot = -1
    if plan.bonus_response == BonusOn.SECOND:
        bonus_slot = slot_b
    elif plan.bonus_response == BonusOn.SEPARATE:
        y = draw_response(plan.bonus_sampler, arrays, view, eng, x, u[4], plan.temperature, t, weights)
        bonus_slot = engine_create_slot(view, arrays, eng, x, y)
        eng.appear_count[x, bonus_slot] += 1.0
    if bonus_slot >= 0 and plan.mode == Mode.PAPER:
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


@njit(cache=True)
def end_round(t: int, arrays: EnvArrays, plan, view: IterateView, eng: EngineState, consts) -> None:
    """After the argmin: ``J(pi^(t+1))``, the best iterate, and the checkpoint row if ``t`` is one."""
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


__all__ = ["begin_round", "play_round", "query_pair", "end_round", "collect_offline_pairs"]
