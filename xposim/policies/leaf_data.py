"""Leaf-indexed snapshot of the preference data and bonus samples, grouped by context (CSR).

The learner engine keeps the data in slot coordinates (:class:`xposim.policies.store.PairStore`
and per-slot bonus counts). The parametric classes (:mod:`xposim.policies.loglinear`,
:mod:`xposim.policies.token_logit`) evaluate their objective many times per solve, so they first
copy the data of the contexts being solved into this flat, leaf-indexed layout:

* ``contexts[k]`` — the ``k``-th context with data;
* pairs of that context: ``pair_chosen[i], pair_rejected[i]`` (leaves), ``pair_weight[i]``
  (count), ``pair_chosen_ref[i], pair_rejected_ref[i]`` (log-probabilities of the two leaves under
  the loss reference) for ``pair_ptr[k] <= i < pair_ptr[k+1]``;
* bonus samples: ``bonus_leaf[j]`` (leaf), ``bonus_count[j]`` (multiplicity),
  ``bonus_weight[j]`` (the COPO weight ``w``; ignored by the other bonuses), ``bonus_ref[j]``
  (loss-reference log-probability) for ``bonus_ptr[k] <= j < bonus_ptr[k+1]``.

The loss reference ``pi_ref_loss`` is the environment's ``pi_ref`` except for learners with
reference drift (SELM: the previous iterate); the engine keeps it per slot
(``SolveProblem.loss_ref_logp``). The objective of a class is then (THEORY 4.3 / 4.5)
``sum_i pair_weight[i] * pair_loss(l(chosen_i), l(rejected_i)) + sum_j bonus_count[j] *
bonus_loss(log pi(leaf_j), log pi_ref_loss(leaf_j))`` with ``l = log pi - log pi_ref_loss``;
its number of terms (``sum pair_weight + sum bonus_count``) scales the stopping rule of
:class:`xposim.policies.solving.SolverSettings`.
"""
from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np
from numba import njit

from xposim.losses.kinds import BONUS_NONE
from xposim.numerics import NEG_INF
from xposim.policies.arrays import EnvArrays
from xposim.policies.store import PairStore
from xposim.policies.view import IterateView, new_view, view_normalize

LeafData = namedtuple(
    "LeafData",
    [
        "contexts",  # (m,) int64 contexts with data
        "pair_ptr",  # (m+1,) int64
        "pair_chosen",  # (E,) int64 leaf
        "pair_rejected",  # (E,) int64 leaf
        "pair_weight",  # (E,) float64 count
        "pair_chosen_ref",  # (E,) float64 log pi_ref_loss(chosen)
        "pair_rejected_ref",  # (E,) float64 log pi_ref_loss(rejected)
        "bonus_ptr",  # (m+1,) int64
        "bonus_leaf",  # (S,) int64 leaf
        "bonus_count",  # (S,) float64 multiplicity
        "bonus_weight",  # (S,) float64 COPO weight
        "bonus_ref",  # (S,) float64 log pi_ref_loss(leaf)
    ],
)
LeafData.__doc__ = """Leaf-indexed CSR snapshot of pairs and bonus samples per context (module docstring)."""

LossParameters = namedtuple("LossParameters", ["pair_kind", "pair_param", "bonus_kind", "alpha", "beta"])
LossParameters.__doc__ = """The loss of a learner: ``pair_loss(pair_kind, ., ., beta, pair_param)`` per pair and
``bonus_loss(bonus_kind, ., ., alpha, beta, w)`` per bonus sample (codes of :mod:`xposim.losses.kinds`)."""


def make_leaf_data(
    leaf_logref: np.ndarray,
    contexts,
    pair_context,
    pair_chosen,
    pair_rejected,
    pair_weight,
    bonus_context,
    bonus_leaf,
    bonus_count,
    bonus_weight=None,
) -> LeafData:
    """:class:`LeafData` from flat lists (any order; tests and reference loops use this).

    The loss reference is ``leaf_logref[x, leaf]`` (the environment's ``pi_ref``, ``(nc, L)``).
    ``contexts`` lists the contexts to keep (in that order); entries of other contexts are dropped.
    Duplicate pairs / bonus leaves are kept as separate entries (their losses simply add up).
    """
    leaf_logref = np.asarray(leaf_logref, dtype=np.float64)
    contexts = np.asarray(contexts, dtype=np.int64).reshape(-1)
    pc = np.asarray(pair_context, dtype=np.int64).reshape(-1)
    pch = np.asarray(pair_chosen, dtype=np.int64).reshape(-1)
    prj = np.asarray(pair_rejected, dtype=np.int64).reshape(-1)
    pw = np.asarray(pair_weight, dtype=np.float64).reshape(-1)
    bc = np.asarray(bonus_context, dtype=np.int64).reshape(-1)
    bl = np.asarray(bonus_leaf, dtype=np.int64).reshape(-1)
    bn = np.asarray(bonus_count, dtype=np.float64).reshape(-1)
    bw = np.ones(bl.shape[0]) if bonus_weight is None else np.asarray(bonus_weight, dtype=np.float64).reshape(-1)
    if not (pc.shape == pch.shape == prj.shape == pw.shape):
        raise ValueError("pair_context, pair_chosen, pair_rejected and pair_weight must have the same length")
    if not (bc.shape == bl.shape == bn.shape == bw.shape):
        raise ValueError("bonus_context, bonus_leaf, bonus_count and bonus_weight must have the same length")
    if np.any(pw < 0) or np.any(bn < 0) or not np.all(np.isfinite(pw)) or not np.all(np.isfinite(bn)):
        raise ValueError("pair_weight and bonus_count must be finite and >= 0")
    pair_parts, bonus_parts = [], []
    pair_ptr, bonus_ptr = [0], [0]
    for x in contexts:
        ip = np.flatnonzero(pc == x)
        ib = np.flatnonzero(bc == x)
        pair_parts.append(ip)
        bonus_parts.append(ib)
        pair_ptr.append(pair_ptr[-1] + ip.size)
        bonus_ptr.append(bonus_ptr[-1] + ib.size)
    ip = np.concatenate(pair_parts).astype(np.int64) if pair_parts else np.zeros(0, dtype=np.int64)
    ib = np.concatenate(bonus_parts).astype(np.int64) if bonus_parts else np.zeros(0, dtype=np.int64)
    return LeafData(
        contexts=contexts.copy(),
        pair_ptr=np.array(pair_ptr, dtype=np.int64),
        pair_chosen=pch[ip].copy(),
        pair_rejected=prj[ip].copy(),
        pair_weight=pw[ip].copy(),
        pair_chosen_ref=leaf_logref[pc[ip], pch[ip]].astype(np.float64),
        pair_rejected_ref=leaf_logref[pc[ip], prj[ip]].astype(np.float64),
        bonus_ptr=np.array(bonus_ptr, dtype=np.int64),
        bonus_leaf=bl[ib].copy(),
        bonus_count=bn[ib].copy(),
        bonus_weight=bw[ib].copy(),
        bonus_ref=leaf_logref[bc[ib], bl[ib]].astype(np.float64),
    )


@njit(cache=True)
def count_leaf_data(store: PairStore, view: IterateView, bonus_count: np.ndarray, use_bonus: bool,
                    contexts: np.ndarray) -> tuple[int, int]:
    """``(pairs, bonus entries)`` that :func:`gather_leaf_data_into` will write for ``contexts``."""
    n_pairs = 0
    n_bonus = 0
    for k in range(contexts.shape[0]):
        x = contexts[k]
        n_pairs += store.context_edges[x]
        if use_bonus:
            for s in range(view.n_slots[x]):
                if bonus_count[x, s] > 0.0:
                    n_bonus += 1
    return n_pairs, n_bonus


@njit(cache=True)
def gather_leaf_data_into(store: PairStore, view: IterateView, bonus_count: np.ndarray, bonus_weight: np.ndarray,
                          loss_ref_logp: np.ndarray, use_bonus: bool, contexts: np.ndarray, out: LeafData) -> None:
    """Fill ``out`` (sized by :func:`count_leaf_data`) from the slot-indexed engine data.

    ``loss_ref_logp[x, s]`` is ``log pi_ref_loss`` of slot ``s``; ``use_bonus=False`` leaves the bonus
    part empty (learners without a bonus, or ``alpha = 0``).
    """
    e = 0
    b = 0
    for k in range(contexts.shape[0]):
        x = contexts[k]
        out.contexts[k] = x
        out.pair_ptr[k] = e
        out.bonus_ptr[k] = b
        edge = store.context_head[x]
        while edge >= 0:
            chosen = store.edge_chosen[edge]
            rejected = store.edge_rejected[edge]
            out.pair_chosen[e] = view.slot_leaf[x, chosen]
            out.pair_rejected[e] = view.slot_leaf[x, rejected]
            out.pair_weight[e] = store.edge_weight[edge]
            out.pair_chosen_ref[e] = loss_ref_logp[x, chosen]
            out.pair_rejected_ref[e] = loss_ref_logp[x, rejected]
            e += 1
            edge = store.edge_next[edge]
        if use_bonus:
            for s in range(view.n_slots[x]):
                n = bonus_count[x, s]
                if n > 0.0:
                    out.bonus_leaf[b] = view.slot_leaf[x, s]
                    out.bonus_count[b] = n
                    out.bonus_weight[b] = bonus_weight[x, s]
                    out.bonus_ref[b] = loss_ref_logp[x, s]
                    b += 1
    out.pair_ptr[contexts.shape[0]] = e
    out.bonus_ptr[contexts.shape[0]] = b


def empty_leaf_data(n_contexts: int, n_pairs: int, n_bonus: int) -> LeafData:
    """Uninitialized :class:`LeafData` arrays for ``n_contexts`` contexts, ``n_pairs`` pairs, ``n_bonus`` bonus entries."""
    return LeafData(
        contexts=np.empty(n_contexts, dtype=np.int64),
        pair_ptr=np.empty(n_contexts + 1, dtype=np.int64),
        pair_chosen=np.empty(n_pairs, dtype=np.int64),
        pair_rejected=np.empty(n_pairs, dtype=np.int64),
        pair_weight=np.empty(n_pairs),
        pair_chosen_ref=np.empty(n_pairs),
        pair_rejected_ref=np.empty(n_pairs),
        bonus_ptr=np.empty(n_contexts + 1, dtype=np.int64),
        bonus_leaf=np.empty(n_bonus, dtype=np.int64),
        bonus_count=np.empty(n_bonus),
        bonus_weight=np.empty(n_bonus),
        bonus_ref=np.empty(n_bonus),
    )


def gather_leaf_data(store: PairStore, view: IterateView, bonus_count: np.ndarray, bonus_weight: np.ndarray,
                     loss_ref_logp: np.ndarray, use_bonus: bool, contexts: np.ndarray) -> LeafData:
    """:class:`LeafData` of the contexts ``contexts`` (int array) from the engine's slot-indexed data.

    Reads the :class:`PairStore`, the per-slot bonus counts ``bonus_count (nc, L)`` and COPO weights
    ``bonus_weight (nc, L)``, and the per-slot loss reference ``loss_ref_logp (nc, L)``; slots are
    mapped to leaves through ``view.slot_leaf``. Cost ``O(stored pairs of the contexts + slots)``.
    """
    contexts = np.ascontiguousarray(contexts, dtype=np.int64)
    n_pairs, n_bonus = count_leaf_data(store, view, bonus_count, use_bonus, contexts)
    out = empty_leaf_data(contexts.shape[0], n_pairs, n_bonus)
    gather_leaf_data_into(store, view, bonus_count, bonus_weight, loss_ref_logp, use_bonus, contexts, out)
    return out


def number_of_terms(data: LeafData) -> float:
    """``sum pair_weight + sum bonus_count``: the number of loss terms (scales the stopping rule)."""
    return float(np.sum(data.pair_weight) + np.sum(data.bonus_count))


# ============================================================================ engine adapters
def all_leaves_view(arrays: EnvArrays, leaf_logref: np.ndarray) -> IterateView:
    """The view of ``pi_ref`` with every leaf as a slot (slot ``s`` = leaf ``s``) and an empty rest."""
    view = new_view(arrays)
    n_contexts, n_leaves = leaf_logref.shape
    view.slot_leaf[:] = np.arange(n_leaves)[None, :]
    view.leaf_slot[:] = np.arange(n_leaves)[None, :]
    view.n_slots[:] = n_leaves
    view.slot_logw[:] = leaf_logref
    view.rest_tree[:] = NEG_INF
    view.rest_reward_tree[:] = NEG_INF
    view.rest_logscale[:] = 0.0
    for x in range(n_contexts):
        view_normalize(view, x)
    return view


def check_all_leaf_slots(view: IterateView, name: str) -> None:
    """ValueError unless every leaf of every context is a slot (the view came from ``initial_view``)."""
    n_leaves = view.slot_leaf.shape[1]
    if np.any(view.n_slots != n_leaves):
        raise ValueError(
            f"policy class {name!r} needs the view of its initial_view (every leaf a slot); "
            f"got n_slots = {view.n_slots.tolist()} with {n_leaves} leaves"
        )


def loss_parameters(problem: Any) -> LossParameters:
    """The :class:`LossParameters` of a :class:`~xposim.policies.tabular.SolveProblem`."""
    return LossParameters(int(problem.pair_kind), float(problem.pair_param), int(problem.bonus_kind),
                          float(problem.alpha), float(problem.beta))


def gather_problem_data(problem: Any, view: IterateView, contexts: np.ndarray | None) -> LeafData:
    """:class:`LeafData` of the contexts with data (``contexts=None``) or of the flagged contexts (bool mask)."""
    use_bonus = int(problem.bonus_kind) != BONUS_NONE and float(problem.alpha) > 0.0
    has_data = (problem.store.context_edges > 0)
    if use_bonus:
        has_data = has_data | np.any(problem.bonus_count > 0.0, axis=1)
    if contexts is not None:
        has_data = has_data & np.asarray(contexts, dtype=bool)
    ids = np.flatnonzero(has_data).astype(np.int64)
    return gather_leaf_data(problem.store, view, problem.bonus_count, problem.bonus_weight, problem.loss_ref_logp,
                            use_bonus, ids)


def batch_leaf_data(problem: Any, view: IterateView, batch: Any, learning_rate: float | None) -> tuple[LeafData, float]:
    """:class:`LeafData` of a fresh trl batch (weights ``1/B``) and the learning rate.

    ``batch`` is the engine's tuple ``(batch_context, batch_chosen, batch_rejected, batch_bonus,
    batch_bonus_weight, batch_size, learning_rate)`` (slots; ``batch_bonus = -1``: no bonus response)
    or an object with those attributes. ``learning_rate`` overrides the batch's when given.
    """
    if isinstance(batch, tuple) and len(batch) == 7:
        ctx_all, chosen_all, rejected_all, bonus_all, bonus_w_all, n_batch, lr = batch
    else:
        ctx_all, chosen_all, rejected_all = batch.batch_context, batch.batch_chosen, batch.batch_rejected
        bonus_all, bonus_w_all = batch.batch_bonus, batch.batch_bonus_weight
        n_batch = getattr(batch, "batch_size", len(ctx_all))
        lr = getattr(batch, "learning_rate", None)
    n_batch = int(n_batch)
    lr = float(learning_rate if learning_rate is not None else lr)
    ctx = np.asarray(ctx_all[:n_batch], dtype=np.int64)
    chosen_slot = np.asarray(chosen_all[:n_batch], dtype=np.int64)
    rejected_slot = np.asarray(rejected_all[:n_batch], dtype=np.int64)
    bonus_slot = np.asarray(bonus_all[:n_batch], dtype=np.int64)
    bonus_w = np.asarray(bonus_w_all[:n_batch], dtype=np.float64)
    keep = chosen_slot != rejected_slot
    use_bonus = (int(problem.bonus_kind) != BONUS_NONE) & (bonus_slot >= 0)
    # leaf-indexed loss reference (every leaf is a slot of the view)
    ref_table = np.take_along_axis(np.asarray(problem.loss_ref_logp), view.leaf_slot, axis=1)
    data = make_leaf_data(
        ref_table, np.unique(ctx), ctx[keep], view.slot_leaf[ctx[keep], chosen_slot[keep]],
        view.slot_leaf[ctx[keep], rejected_slot[keep]], np.full(int(keep.sum()), 1.0 / n_batch),
        ctx[use_bonus], view.slot_leaf[ctx[use_bonus], bonus_slot[use_bonus]],
        np.full(int(use_bonus.sum()), 1.0 / n_batch), bonus_w[use_bonus],
    )
    return data, lr


def expand_uniforms(pool: np.ndarray, width: int) -> np.ndarray:
    """Rows of ``width`` uniforms in ``[0, 1)`` from the engine's restart pool ``(restarts, m)``.

    The class draws the pool once per run with shape ``(restarts, n_leaves + 1)``
    (:func:`~xposim.policies.solving.draw_restart_uniforms`); a class that
    needs ``width`` numbers per start uses the first ``width`` columns when ``m >= width``, else a
    generator seeded (:mod:`xposim.seeding`) by the bits of the row, so the starts stay a
    deterministic function of the run's seed.
    """
    from xposim.seeding import make_rng

    pool = np.ascontiguousarray(pool, dtype=np.float64)
    if pool.ndim != 2:
        raise ValueError(f"restart_pool must be a 2-d array (restarts, m), got shape {pool.shape}")
    if np.any(pool < 0.0) or np.any(pool > 1.0):
        raise ValueError("restart_pool must hold uniforms in [0, 1]")
    if pool.shape[1] >= width:
        return np.ascontiguousarray(pool[:, :width])
    out = np.empty((pool.shape[0], width))
    for r in range(pool.shape[0]):
        words = pool[r].view(np.uint32).astype(np.uint64).tolist() or [0]
        out[r] = make_rng(np.random.SeedSequence(words)).random(width)
    return out


def refuse_champion_starts(settings) -> None:
    """``settings.champion_starts`` is a tabular-class setting: the classes that draw their starts
    with :func:`expand_uniforms` have no champion points."""
    if getattr(settings, "champion_starts", False):
        raise ValueError("champion_starts=True applies to the tabular class only; use restarts=N with this "
                         "policy class")
