"""The round's state: what the jitted round keeps between rounds beside the policy class's own.

:class:`EngineState` holds the learner's side of a run (bonus counts, the loss reference, the
frozen and historical samplers' sums, the batch buffers, the running scalars, the checkpoint
table); :func:`new_engine_state` builds it at ``pi^(1) = pi_ref``. The kernels below keep its
per-slot arrays in step with the :class:`~xposim.policies.view.IterateView` when a response is new
and when a context's iterate is about to change.
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from xposim._jit import internal_kernel
from xposim.policies.arrays import EnvArrays
from xposim.policies.solving import N_COUNTERS
from xposim.policies.view import IterateView, view_create_slot

# slots of the float ``scalars`` array of the engine state
S_VALUE = 0  # J(pi^(t)) of the current iterate
S_BEST = 1  # best suboptimality so far
S_REGRET = 2  # cumulative regret
S_PREV_ALPHA = 3  # alpha of the previous round (to detect schedule changes)
S_DUELING = 4  # cumulative sum over queries of the mean of the two responses' reward gaps
S_WEAK = 5  # ... of the smaller gap
S_STRONG = 6  # ... of the larger gap
N_SCALARS = 7

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




def new_engine_state(arrays: EnvArrays, view: IterateView, batch_size: int, checkpoints: np.ndarray,
                     n_metrics: int, behaviour_cdf: np.ndarray, reference_cdf: np.ndarray) -> EngineState:
    """The state at ``pi^(1) = pi_ref``: the frozen sampler (POPO's ``pi_sam``) and the loss reference
    start at ``pi_ref`` (offsets 0); the historical sums start at zero (the mixture of ``pi^(1..t)``
    is accumulated from round 1); ``n_metrics`` columns per checkpoint row, NaN until recorded."""
    n_contexts, n_leaves = arrays.leaf_logref.shape
    loss_ref = np.full((n_contexts, n_leaves), -np.inf)
    for x in range(n_contexts):
        k = view.n_slots[x]
        loss_ref[x, :k] = arrays.leaf_logref[x, view.slot_leaf[x, :k]]
    return EngineState(
        loss_ref_logp=loss_ref,
        loss_ref_offset=np.zeros(n_contexts),
        frozen_logp=loss_ref.copy(),
        frozen_offset=np.zeros(n_contexts),
        hist_slot=np.zeros((n_contexts + 1, n_leaves)),
        hist_rest=np.zeros(n_contexts),
        hist_time=np.zeros(n_contexts),
        bonus_count=np.zeros((n_contexts, n_leaves)),
        appear_count=np.zeros((n_contexts, n_leaves)),
        bonus_weight=np.ones((n_contexts, n_leaves)),
        value_per_context=np.zeros(n_contexts),
        behaviour_cdf=behaviour_cdf,
        reference_cdf=reference_cdf,
        touched=np.zeros(n_contexts, dtype=np.bool_),
        solve_mask=np.zeros(n_contexts, dtype=np.bool_),
        changed=np.zeros(n_contexts, dtype=np.bool_),
        batch_context=np.zeros(batch_size, dtype=np.int64),
        batch_chosen=np.zeros(batch_size, dtype=np.int64),
        batch_rejected=np.zeros(batch_size, dtype=np.int64),
        batch_bonus=np.full(batch_size, -1, dtype=np.int64),
        batch_bonus_weight=np.ones(batch_size),
        scalars=np.zeros(N_SCALARS),
        counters=np.zeros(N_COUNTERS, dtype=np.int64),
        largest_gap=np.zeros(1),
        checkpoints=np.ascontiguousarray(checkpoints, dtype=np.int64),
        next_checkpoint=np.zeros(1, dtype=np.int64),
        metrics=np.full((len(checkpoints), n_metrics), np.nan),
        scratch=np.zeros(max(arrays.vocab_size, 2)),
    )


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


__all__ = ["EngineState", "RunConstants", "new_engine_state", "engine_create_slot", "flush_history",
           "snapshot_policy", "weights_scratch"]
