"""The round's argmin of the tabular class, context by context (paper mode).

Non-convexity. With an optimistic bonus the ``-S log Z`` part is concave, and the minimum reached
from the warm start need not be global: under the XPO bonus a response that once looked good can
keep ``f = R_max`` beside the best one although its labels are coin flips.
``benchmarks/diagnose_local_minima.py`` re-solves a round's objective from many starts and reports
how often and by how much the solver's point lies above the lowest value found.
``SolverSettings.champion_starts`` adds one start per variable (that slot, or ``g``, at ``R_max``,
every other variable at 0: the vertices the bonus's rich-get-richer pull heads for) and
``SolverSettings.restarts`` extra starts uniform in the box (one pool per run); the lowest
objective wins, ties to the warm start; solves whose starts disagree are counted. With champion
starts a solve costs ``O(slots)`` Newton solves instead of one, and the derivative-cache shortcut
is skipped.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from xposim._jit import internal_kernel
from xposim.losses.bonus import bonus_loss
from xposim.losses.kinds import BONUS_NONE, PAIR_CHIPO, PAIR_DPO, PAIR_IPO
from xposim.losses.pair import pair_loss
from xposim.numerics import NEG_INF
from xposim.policies.solving import (
    COUNTER_DISAGREEMENTS,
    COUNTER_FAILURES,
    COUNTER_IMPROVED,
    COUNTER_NEWTON_ITERATIONS,
    COUNTER_SOLVES,
    SolveProblem,
    improves_on,
    may_be_nonconvex,
    record_certificate,
    values_disagree,
)
from xposim.policies.store import store_gather
from xposim.policies.view import IterateView, view_normalize
from xposim.policies.tabular.certified import CERTIFIED, certified_search, supported_kinds
from xposim.policies.tabular.components import recenter_components
from xposim.policies.tabular.newton import projected_gradient_norm, kink_stationary, projected_newton
from xposim.policies.tabular.objective import context_objective
from xposim.policies.tabular.state import TabularState, Workspace


@internal_kernel
def _load_context(state: TabularState, view: IterateView, problem: SolveProblem, ws: Workspace, x: int) -> tuple[int, int, int, float]:
    """Gather context ``x`` into the workspace; returns ``(n, k, n_edges, N)`` (``N`` = number of loss terms)."""
    k = view.n_slots[x]
    # initialize the values of slots appended by the engine since the last solve
    for s in range(state.known[x], k):
        state.values[x, s] = state.rest_value[x]
    state.known[x] = k
    n_edges = store_gather(problem.store, x, ws.edge_a, ws.edge_b, ws.edge_w)
    scale = 0.0
    for e in range(n_edges):
        scale += ws.edge_w[e]
    for s in range(k):
        ws.v[s] = state.values[x, s]
        ws.lref[s] = problem.loss_ref_logp[x, s]
        ws.mcount[s] = problem.bonus_count[x, s]
        ws.bweight[s] = problem.bonus_weight[x, s]
        scale += problem.bonus_count[x, s]
    n = k
    rest_root = view.rest_tree[x, 1]
    if rest_root > NEG_INF:
        ws.lw[k] = rest_root
        ws.v[k] = state.rest_value[x]
        ws.lref[k] = 0.0
        ws.mcount[k] = 0.0
        ws.bweight[k] = 0.0
        n = k + 1
    return n, k, n_edges, scale


@internal_kernel
def _store_context(state: TabularState, view: IterateView, leaf_logref: np.ndarray, x: int, n: int, k: int,
                   v: np.ndarray, beta: float) -> bool:
    """Write ``v`` back into the class state and the view; True if any value changed."""
    changed = False
    for s in range(k):
        if state.values[x, s] != v[s]:
            changed = True
        state.values[x, s] = v[s]
        view.slot_logw[x, s] = leaf_logref[x, view.slot_leaf[x, s]] + v[s] / beta
    if n > k:
        if state.rest_value[x] != v[k]:
            changed = True
        state.rest_value[x] = v[k]
    view.rest_logscale[x] = state.rest_value[x] / beta
    view_normalize(view, x)
    return changed


@internal_kernel
def _bonus_term(kind: int, logp: float, logp_ref: float, alpha: float, beta: float, count: float,
                weight: float) -> tuple[float, float]:
    """``count * bonus_loss`` and its derivative in ``log pi`` (0 for a zero count)."""
    if count == 0.0 or kind == BONUS_NONE:
        return 0.0, 0.0
    loss, d_logp = bonus_loss(kind, logp, logp_ref, alpha, beta, weight)
    return count * loss, count * d_logp


@internal_kernel
def _bonus_delta(state: TabularState, problem: SolveProblem, ws: Workspace, x: int, s: int) -> float:
    """Move slot ``s``'s bonus term from the cached (count, weight) to the current one; returns the value change."""
    new_count = problem.bonus_count[x, s]
    new_weight = problem.bonus_weight[x, s]
    old_count = state.cache_count[x, s]
    old_weight = state.cache_weight[x, s]
    if new_count == old_count and (new_weight == old_weight or new_count == 0.0):
        return 0.0
    new_value, new_d = _bonus_term(problem.bonus_kind, ws.logp[s], ws.lref[s], problem.alpha, problem.beta,
                                   new_count, new_weight)
    old_value, old_d = _bonus_term(problem.bonus_kind, ws.logp[s], ws.lref[s], problem.alpha, problem.beta,
                                   old_count, old_weight)
    ws.d[s] += new_d - old_d
    state.cache_count[x, s] = new_count
    state.cache_weight[x, s] = new_weight
    return new_value - old_value


@internal_kernel
def _try_incremental(state: TabularState, view: IterateView, leaf_logref: np.ndarray, problem: SolveProblem,
                     ws: Workspace, x: int) -> bool:
    """Derivative cache: if the round's new terms leave the warm start optimal, update the cache and return True.

    Valid only when the objective changed by the round's new terms alone (same alpha, no reference
    drift, cache filled at the current values). Cost ``O(n_slots + B)`` instead of ``O(edges)``.
    """
    if not state.cache_valid[x] or problem.reference_drift or problem.n_batch == 0:
        return False
    if problem.alpha != state.cache_alpha[x]:
        return False
    k = view.n_slots[x]
    beta = problem.beta
    n = k
    for s in range(k):
        ws.v[s] = state.values[x, s]
        ws.lw[s] = leaf_logref[x, view.slot_leaf[x, s]]
        ws.lref[s] = problem.loss_ref_logp[x, s]
        ws.d[s] = state.cache_d[x, s]
    if view.rest_tree[x, 1] > NEG_INF:
        ws.v[k] = state.rest_value[x]
        ws.lw[k] = view.rest_tree[x, 1]
        ws.lref[k] = 0.0
        ws.d[k] = 0.0
        n = k + 1
    largest = NEG_INF
    for j in range(n):
        z = ws.lw[j] + ws.v[j] / beta
        ws.logp[j] = z
        if z > largest:
            largest = z
    total = 0.0
    for j in range(n):
        total += math.exp(ws.logp[j] - largest)
    log_partition = largest + math.log(total)
    for j in range(n):
        ws.logp[j] -= log_partition
        ws.p[j] = math.exp(ws.logp[j])
    value = state.cache_value[x]
    scale = state.cache_scale[x]
    for b in range(problem.n_batch):
        if problem.batch_context[b] != x:
            continue
        c = problem.batch_chosen[b]
        r = problem.batch_rejected[b]
        if c != r:
            loss, d_chosen, d_rejected = pair_loss(problem.pair_kind, ws.logp[c] - ws.lref[c], ws.logp[r] - ws.lref[r],
                                                   beta, problem.pair_param)
            value += loss
            ws.d[c] += d_chosen
            ws.d[r] += d_rejected
            scale += 1.0
        if problem.bonus_kind != BONUS_NONE:
            for s in (c, r, problem.batch_bonus[b]):
                if s >= 0:
                    before = state.cache_count[x, s]
                    value += _bonus_delta(state, problem, ws, x, s)
                    scale += state.cache_count[x, s] - before
    s_total = 0.0
    for j in range(n):
        s_total += ws.d[j]
    for j in range(n):
        ws.grad[j] = (ws.d[j] - ws.p[j] * s_total) / beta
    # whatever the outcome, the cache now describes the current values with the new data
    for s in range(k):
        state.cache_d[x, s] = ws.d[s]
    state.cache_value[x] = value
    state.cache_scale[x] = scale
    pg = projected_gradient_norm(n, ws.v, ws.grad, max(scale, 1.0), state.lower, state.upper)
    return pg <= state.tolerance


@internal_kernel
def _fill_cache(state: TabularState, problem: SolveProblem, ws: Workspace, x: int, k: int, value: float,
                scale: float) -> None:
    """Record ``ws.d`` (at the final values) and the objective as the context's derivative cache."""
    for s in range(k):
        state.cache_d[x, s] = ws.d[s]
        state.cache_count[x, s] = problem.bonus_count[x, s]
        state.cache_weight[x, s] = problem.bonus_weight[x, s]
    state.cache_value[x] = value
    state.cache_scale[x] = scale
    state.cache_alpha[x] = problem.alpha
    state.cache_valid[x] = True


@internal_kernel
def _bonus_active(problem: SolveProblem, x: int, k: int) -> bool:
    """True if context ``x``'s objective has a bonus term (a bonus kind, ``alpha > 0`` and a sample)."""
    if problem.bonus_kind == BONUS_NONE or problem.alpha <= 0.0:
        return False
    for s in range(k):
        if problem.bonus_count[x, s] > 0.0:
            return True
    return False


@internal_kernel
def tabular_solve_context(state: TabularState, view: IterateView, leaf_logref: np.ndarray,
                          problem: SolveProblem, ws: Workspace, x: int) -> None:
    """Paper-mode argmin of context ``x`` (module docstring); updates state, view, ``problem.changed``."""
    k_known = state.known[x]
    for s in range(k_known, view.n_slots[x]):
        state.values[x, s] = state.rest_value[x]
        state.cache_d[x, s] = 0.0
        state.cache_count[x, s] = 0.0
        state.cache_weight[x, s] = 1.0
    state.known[x] = view.n_slots[x]
    bonus_active = _bonus_active(problem, x, view.n_slots[x])
    champions = state.champion_starts and bonus_active
    # a non-convex objective (THEORY 3): the certified solver runs every time (a stationary warm start
    # is not a global minimum); convex objectives: any stationary point is the argmin
    nonconvex = may_be_nonconvex(problem.pair_kind, problem.bonus_kind, problem.alpha) and (
        bonus_active or problem.pair_kind == PAIR_CHIPO)
    certify = state.certify and nonconvex and supported_kinds(problem.pair_kind, problem.bonus_kind)
    # the warm start (previous iterate): the derivative cache can show it stationary without a solve
    incremental = _try_incremental(state, view, leaf_logref, problem, ws, x)
    if incremental and not (champions or certify):
        problem.counters[COUNTER_SOLVES] += 1
        if nonconvex:
            record_certificate(problem.counters, problem.largest_gap, 0.0, NEG_INF, np.bool_(False))
        return
    n, k, n_edges, scale = _load_context(state, view, problem, ws, x)
    for s in range(k):
        ws.lw[s] = leaf_logref[x, view.slot_leaf[x, s]]
    beta = problem.beta
    lo = state.lower
    hi = state.upper
    for j in range(n):
        ws.v0[j] = ws.v[j]
    if incremental:
        value = state.cache_value[x]
        converged = True
    else:
        value, converged, iterations = projected_newton(
            n, k, ws.v, ws, n_edges, problem.pair_kind, problem.pair_param, problem.bonus_kind, problem.alpha,
            beta, lo, hi, max(scale, 1.0), state.tolerance, state.max_iterations, state.dense_limit,
        )
        problem.counters[COUNTER_NEWTON_ITERATIONS] += iterations
        if not converged:
            converged = kink_stationary(n, k, ws.v, ws, n_edges, problem.pair_kind, problem.pair_param,
                                        problem.bonus_kind, problem.alpha, beta, lo, hi, max(scale, 1.0),
                                        state.tolerance)
    problem.counters[COUNTER_SOLVES] += 1
    # non-convex objectives: champion starts (variable j at the top, the others at the bottom), then
    # the random restarts; the lowest objective wins, ties to the warm start
    n_restarts = state.restart_pool.shape[0]
    searched = bonus_active and (champions or n_restarts > 0)
    if searched:
        best_value = value
        best_converged = converged
        for j in range(n):
            ws.v_best[j] = ws.v[j]
        disagreement = False
        n_leaves = state.restart_pool.shape[1] - 1
        first = -n if champions else 0
        for r in range(first, n_restarts):
            if r < 0:
                champion = -r - 1
                for j in range(n):
                    ws.v[j] = hi if j == champion else lo
            else:
                for s in range(k):
                    ws.v[s] = lo + (hi - lo) * state.restart_pool[r, view.slot_leaf[x, s]]
                if n > k:
                    ws.v[k] = lo + (hi - lo) * state.restart_pool[r, n_leaves]
            value_r, converged_r, iterations_r = projected_newton(
                n, k, ws.v, ws, n_edges, problem.pair_kind, problem.pair_param, problem.bonus_kind,
                problem.alpha, beta, lo, hi, max(scale, 1.0), state.tolerance, state.max_iterations,
                state.dense_limit,
            )
            problem.counters[COUNTER_NEWTON_ITERATIONS] += iterations_r
            if values_disagree(value_r, value, value, state.disagreement_tolerance):
                disagreement = True
            if improves_on(value_r, best_value, state.disagreement_tolerance):
                best_value = value_r
                best_converged = converged_r
                for j in range(n):
                    ws.v_best[j] = ws.v[j]
        for j in range(n):
            ws.v[j] = ws.v_best[j]
        if best_value < value:
            problem.counters[COUNTER_IMPROVED] += 1
        converged = best_converged
        if disagreement:
            problem.counters[COUNTER_DISAGREEMENTS] += 1
    # Alg.1's argmin is global: the certified branch-and-bound, seeded with the local solution above
    if certify and n <= ws.certificate.box_lo.shape[0]:
        # the context's last search is the start when it is kept (slot x % slots; -1: from the root)
        slots = ws.frontier.meta.shape[0]
        slot = x % slots if state.reuse_search and slots > 0 else -1
        value, lower, status, nodes = certified_search(
            n, k, ws.v, ws, ws.certificate, n_edges, problem.pair_kind, problem.pair_param, problem.bonus_kind,
            problem.alpha, beta, lo, hi, max(scale, 1.0), state.tolerance, state.max_iterations, state.dense_limit,
            state.certificate_gap, state.max_nodes, ws.frontier, np.int64(slot), np.int64(x))
        record_certificate(problem.counters, problem.largest_gap, value, lower, status == CERTIFIED)
        converged = True
        searched = True
    elif nonconvex:  # a local method (or a context too large for the certificate): no lower bound
        record_certificate(problem.counters, problem.largest_gap, value, NEG_INF, np.bool_(False))
    if not converged:
        problem.counters[COUNTER_FAILURES] += 1
    if not bonus_active and (problem.pair_kind == PAIR_DPO or problem.pair_kind == PAIR_IPO):
        # (the objective and dF/dlog pi only depend on differences inside components: cache stays valid)
        recenter_components(n, ws.v, ws.v0, ws, n_edges, lo, hi)
    elif searched:
        value, _ = context_objective(n, k, ws.v, ws, n_edges, problem.pair_kind, problem.pair_param,
                                     problem.bonus_kind, problem.alpha, beta)
    _fill_cache(state, problem, ws, x, k, value, scale)
    if _store_context(state, view, leaf_logref, x, n, k, ws.v, beta):
        problem.changed[x] = True


@njit(cache=True)
def tabular_solve(state: TabularState, view: IterateView, leaf_logref: np.ndarray, problem: SolveProblem,
                  ws: Workspace, contexts: np.ndarray) -> None:
    """:func:`tabular_solve_context` on every context flagged in ``contexts``."""
    for x in range(contexts.shape[0]):
        if contexts[x]:
            tabular_solve_context(state, view, leaf_logref, problem, ws, x)
