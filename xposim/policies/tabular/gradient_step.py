"""trl mode of the tabular class: one projected gradient step of the fresh batch's mean loss.
"""
from __future__ import annotations


import numpy as np
from numba import njit

from xposim.numerics import NEG_INF
from xposim.policies.solving import COUNTER_SOLVES, SolveProblem
from xposim.policies.view import IterateView
from xposim.policies.tabular.objective import context_objective
from xposim.policies.tabular.solve import _store_context
from xposim.policies.tabular.state import TabularState, Workspace


@njit(cache=True)
def tabular_gradient_step(state: TabularState, view: IterateView, leaf_logref: np.ndarray, problem: SolveProblem,
                          ws: Workspace, batch_context: np.ndarray, batch_chosen: np.ndarray,
                          batch_rejected: np.ndarray, batch_bonus: np.ndarray, batch_bonus_weight: np.ndarray,
                          n_batch: int, learning_rate: float) -> None:
    """trl mode: ``f <- P[f - learning_rate * grad(mean fresh-batch loss)]`` on the batch's contexts.

    The batch loss is ``(1/B) sum_b [pair_loss(l(chosen_b), l(rejected_b)) + bonus(y_b)]`` (the mean over
    the batch, as trl's trainers do); slots ``-1`` in ``batch_bonus`` mean no bonus response.
    Every context of the batch is updated with the gradient of the whole batch loss
    (including ``g`` through ``log Z``). Parameters are projected back on ``[0, R_max]``.
    """
    n_contexts = view.n_slots.shape[0]
    for x in range(n_contexts):
        present = False
        for b in range(n_batch):
            if batch_context[b] == x:
                present = True
        if not present:
            continue
        k = view.n_slots[x]
        for s in range(state.known[x], k):
            state.values[x, s] = state.rest_value[x]
        state.known[x] = k
        n_edges = np.int64(0)  # not a literal 0 (one specialization of context_objective)
        for b in range(n_batch):
            if batch_context[b] == x and batch_chosen[b] != batch_rejected[b]:
                ws.edge_a[n_edges] = batch_chosen[b]
                ws.edge_b[n_edges] = batch_rejected[b]
                ws.edge_w[n_edges] = 1.0 / n_batch
                n_edges += 1
        for s in range(k):
            ws.v[s] = state.values[x, s]
            ws.lw[s] = leaf_logref[x, view.slot_leaf[x, s]]
            ws.lref[s] = problem.loss_ref_logp[x, s]
            ws.mcount[s] = 0.0
            ws.bweight[s] = 0.0
        for b in range(n_batch):
            if batch_context[b] == x and batch_bonus[b] >= 0:
                ws.mcount[batch_bonus[b]] += 1.0 / n_batch
                ws.bweight[batch_bonus[b]] = batch_bonus_weight[b]
        n = k
        if view.rest_tree[x, 1] > NEG_INF:
            ws.lw[k] = view.rest_tree[x, 1]
            ws.v[k] = state.rest_value[x]
            ws.lref[k] = 0.0
            ws.mcount[k] = 0.0
            ws.bweight[k] = 0.0
            n = k + 1
        context_objective(n, k, ws.v, ws, n_edges, problem.pair_kind, problem.pair_param, problem.bonus_kind,
                          problem.alpha, problem.beta)
        for j in range(n):
            t = ws.v[j] - learning_rate * ws.grad[j]
            if t < state.lower:
                t = state.lower
            elif t > state.upper:
                t = state.upper
            ws.v[j] = t
        problem.counters[COUNTER_SOLVES] += 1
        state.cache_valid[x] = False
        if _store_context(state, view, leaf_logref, x, n, k, ws.v, problem.beta):
            problem.changed[x] = True
