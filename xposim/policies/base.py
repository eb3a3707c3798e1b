"""The policy-class interface of xposim, and the shared trajectory-level data structures.

Everything here works at the TRAJECTORY level (THEORY 1.1: transitions are deterministic, so a
policy is its distribution over leaves ``pi(tau|x)``; docs/architecture.md numbering).

The iterate view (how every class shows its current policy to the learner engine)
-------------------------------------------------------------------------------
:class:`IterateView` holds, per context ``x``, the current iterate ``pi^(t)(.|x)`` as

* *slots*: an explicit list of leaves ``slot_leaf[x, 0..n_slots[x]-1]`` with unnormalized log
  weights ``slot_logw[x, s]``;
* the *rest*: every other leaf ``tau`` has log weight ``log pi_ref(tau|x) + rest_logscale[x]``
  (the policy is proportional to ``pi_ref`` off the slots);
* ``log_partition[x]`` = log of the total weight, so ``log pi(tau|x) = weight - log_partition``.

The rest is summarized by two log-domain segment trees over the leaves (``rest_tree`` holds
``log pi_ref(tau|x)`` of rest leaves, ``rest_reward_tree`` holds ``log(pi_ref(tau|x) r(tau|x))``;
``-inf`` on slots and padding), so sampling, subtree masses, ``J_beta``, the KL and the expected
reward of a context cost ``O(n_slots + log n_leaves)`` — never ``O(n_leaves)``.
The tabular class (``pi_f ∝ pi_ref e^{f/beta}``, f shared by all unobserved leaves) *is* such a
view; the finite class puts every leaf in a slot.

The engine (``xposim.learners.engine``) appends slots for every leaf that appears in the data
(:func:`view_create_slot`); appending never changes the policy (the new slot's weight is its
former rest weight). A class must therefore accept slots it did not create: it initializes its
per-slot parameters for slots ``>= its own count`` at the next solve.

The pair store
--------------
:class:`PairStore` holds the sufficient statistics of the preference data: per context, the
distinct ordered pairs ``(chosen slot, rejected slot)`` with their counts (``W[x, i, j]`` stored
sparsely: a hash index plus one linked list of edges per context). Pairs of a leaf with itself
are never stored: every pair loss of xposim is constant with zero gradient on them.
Per-slot bonus counts and appearance counts live in the engine state.

Adding a policy class
---------------------
Subclass :class:`PolicyClass`. The learner engine (``xposim.learners.engine``) runs a class
in one of two ways:

* *built-in fused loop*: classes with ``builtin_code`` ``TABULAR_CODE`` or ``FINITE_CODE`` run the
  whole round loop inside one numba function (fast path);
* *generic loop*: any other class (``builtin_code = None``) is driven from Python, one jitted
  :func:`xposim.learners.engine.play_round` per round, then ``solve`` (paper mode) or
  ``gradient_step`` (trl mode) of the class, then the jitted bookkeeping. Numba functions passed
  as arguments defeat numba's on-disk cache, hence this split.

The methods of the interface (see :class:`PolicyClass`) are ``validate``, ``create_state``,
``initial_view``, ``solve``, ``gradient_step``, ``is_context_separable`` and ``describe``. A
class writes its new iterate into the view's ``slot_logw``, ``rest_logscale`` and
``log_partition`` (use :func:`view_normalize`) and marks the contexts whose iterate changed.
"""
from __future__ import annotations

import abc
import math
from collections import namedtuple
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from xposim._jit import internal_kernel
from xposim.envs.token_mdp import TokenMDP
from xposim.numerics import logaddexp

NEG_INF = -math.inf
#: Largest float64 strictly below 1 (inverse-CDF draws are clipped to it).
ONE_MINUS = 1.0 - 2.0**-53

#: ``builtin_code`` of :class:`xposim.policies.tabular.TabularClass`.
TABULAR_CODE = 0
#: ``builtin_code`` of :class:`xposim.policies.finite.FiniteClass`.
FINITE_CODE = 1

# ============================================================================ env arrays
EnvArrays = namedtuple(
    "EnvArrays",
    [
        "leaf_logref",  # (nc, L) log pi_ref(tau|x), -inf if impossible
        "leaf_reward",  # (nc, L) r(tau|x) in [0, r_max]
        "rho_cdf",  # (nc,) cumulative sum of rho
        "ref_cdf",  # (nc, L) cumulative pi_ref(.|x) in leaf order
        "max_reward",  # (nc,) max_tau r(tau|x) over pi_ref-possible leaves
        "rho",  # (nc,)
        "vocab_size",  # int A
        "horizon",  # int H
        "r_max",  # float R_max
    ],
)
EnvArrays.__doc__ = """Raw float64 arrays of a :class:`~xposim.envs.TokenMDP` at trajectory level (see field comments)."""


def env_arrays(env: TokenMDP) -> EnvArrays:
    """The :class:`EnvArrays` of ``env`` (copies, C-contiguous float64)."""
    if not isinstance(env, TokenMDP):
        raise ValueError(f"env must be an xposim.envs.TokenMDP, got {type(env).__name__}")
    logref = np.ascontiguousarray(env.trajectory_ref_logprobs, dtype=np.float64).copy()
    reward = np.ascontiguousarray(env.trajectory_rewards, dtype=np.float64).copy()
    ref = np.exp(logref)
    ref_cdf = np.cumsum(ref, axis=1)
    ref_cdf /= ref_cdf[:, -1:]
    rho = np.ascontiguousarray(env.rho, dtype=np.float64).copy()
    rho_cdf = np.cumsum(rho)
    rho_cdf /= rho_cdf[-1]
    possible = logref > -np.inf
    max_reward = np.where(possible, reward, -np.inf).max(axis=1)
    return EnvArrays(
        leaf_logref=logref,
        leaf_reward=reward,
        rho_cdf=rho_cdf,
        ref_cdf=np.ascontiguousarray(ref_cdf),
        max_reward=max_reward,
        rho=rho,
        vocab_size=int(env.vocab_size),
        horizon=int(env.horizon),
        r_max=float(env.r_max),
    )


# ============================================================================ segment tree
def tree_size(n_leaves: int) -> int:
    """Number of segment-tree leaves ``P``: the smallest power of two ``>= n_leaves``."""
    size = 1
    while size < n_leaves:
        size *= 2
    return size


@njit(cache=True)
def tree_build(tree: np.ndarray, leaf_values: np.ndarray) -> None:
    """Fill the log-domain sum tree ``tree (2P,)`` (heap order, root 1) from ``leaf_values (L,)``."""
    size = tree.shape[0] // 2
    n = leaf_values.shape[0]
    tree[0] = NEG_INF
    for i in range(size):
        tree[size + i] = leaf_values[i] if i < n else NEG_INF
    for node in range(size - 1, 0, -1):
        tree[node] = logaddexp(tree[2 * node], tree[2 * node + 1])


@njit(cache=True)
def tree_remove(tree: np.ndarray, leaf: int) -> None:
    """Set ``leaf`` to ``-inf`` and recompute its ancestors from their children (no cancellation)."""
    size = tree.shape[0] // 2
    node = size + leaf
    tree[node] = NEG_INF
    node //= 2
    while node >= 1:
        tree[node] = logaddexp(tree[2 * node], tree[2 * node + 1])
        node //= 2


@njit(cache=True)
def tree_range(tree: np.ndarray, lo: int, hi: int) -> float:
    """``log sum_{lo <= i < hi} exp(leaf_i)`` in ``O(log P)``."""
    size = tree.shape[0] // 2
    result = NEG_INF
    left = lo + size
    right = hi + size
    while left < right:
        if left & 1:
            result = logaddexp(result, tree[left])
            left += 1
        if right & 1:
            right -= 1
            result = logaddexp(result, tree[right])
        left //= 2
        right //= 2
    return result


@njit(cache=True)
def tree_sample(tree: np.ndarray, u: float) -> int:
    """Inverse-CDF draw of a leaf with probability ``exp(leaf_i - root)`` from ``u in [0, 1)``.

    Descends from the root, rescaling ``u`` at each level; returns -1 if the tree is empty.
    """
    size = tree.shape[0] // 2
    if tree[1] == NEG_INF:
        return -1
    node = 1
    while node < size:
        left = tree[2 * node]
        right = tree[2 * node + 1]
        if right == NEG_INF:
            node = 2 * node
            continue
        if left == NEG_INF:
            node = 2 * node + 1
            continue
        p_left = math.exp(left - tree[node])
        if u < p_left:
            node = 2 * node
            u = u / p_left
        else:
            node = 2 * node + 1
            u = (u - p_left) / (1.0 - p_left) if p_left < 1.0 else 0.0
        if u >= 1.0:
            u = ONE_MINUS
        if u < 0.0:
            u = 0.0
    return node - size


# ============================================================================ iterate view
IterateView = namedtuple(
    "IterateView",
    [
        "slot_leaf",  # (nc, L) int64 leaf of slot s, -1 unused
        "leaf_slot",  # (nc, L) int64 slot of leaf, -1 if the leaf is in the rest
        "n_slots",  # (nc,) int64
        "slot_logw",  # (nc, L) float64 unnormalized log weight of slot s
        "rest_logscale",  # (nc,) rest leaf weight = log pi_ref + rest_logscale
        "log_partition",  # (nc,) log of the total weight
        "rest_tree",  # (nc, 2P) log pi_ref of rest leaves (segment tree)
        "rest_reward_tree",  # (nc, 2P) log(pi_ref * r) of rest leaves (segment tree)
    ],
)
IterateView.__doc__ = """The current iterate of a learner at trajectory level (module docstring)."""


def new_view(arrays: EnvArrays) -> IterateView:
    """The view of ``pi_ref`` itself: no slots, ``rest_logscale = 0``, ``log_partition = 0``."""
    n_contexts, n_leaves = arrays.leaf_logref.shape
    size = tree_size(n_leaves)
    rest_tree = np.empty((n_contexts, 2 * size))
    reward_tree = np.empty((n_contexts, 2 * size))
    with np.errstate(divide="ignore"):
        log_reward = np.log(arrays.leaf_reward)
    for x in range(n_contexts):
        tree_build(rest_tree[x], arrays.leaf_logref[x])
        tree_build(reward_tree[x], arrays.leaf_logref[x] + log_reward[x])
    log_partition = rest_tree[:, 1].copy()
    return IterateView(
        slot_leaf=np.full((n_contexts, n_leaves), -1, dtype=np.int64),
        leaf_slot=np.full((n_contexts, n_leaves), -1, dtype=np.int64),
        n_slots=np.zeros(n_contexts, dtype=np.int64),
        slot_logw=np.full((n_contexts, n_leaves), NEG_INF),
        rest_logscale=np.zeros(n_contexts),
        log_partition=log_partition,
        rest_tree=rest_tree,
        rest_reward_tree=reward_tree,
    )


def copy_view(view: IterateView) -> IterateView:
    """A deep copy of ``view``."""
    return IterateView(*(np.array(a, copy=True) for a in view))


@njit(cache=True)
def view_create_slot(view: IterateView, leaf_logref: np.ndarray, x: int, leaf: int) -> tuple[int, bool]:
    """Slot of ``leaf`` in context ``x``, appending it (policy unchanged) if it is in the rest.

    Returns ``(slot, created)``; the new slot's weight is ``log pi_ref(leaf) + rest_logscale[x]``.
    """
    slot = view.leaf_slot[x, leaf]
    if slot >= 0:
        return slot, False
    slot = view.n_slots[x]
    view.slot_leaf[x, slot] = leaf
    view.leaf_slot[x, leaf] = slot
    view.slot_logw[x, slot] = leaf_logref[x, leaf] + view.rest_logscale[x]
    view.n_slots[x] = slot + 1
    tree_remove(view.rest_tree[x], leaf)
    tree_remove(view.rest_reward_tree[x], leaf)
    return slot, True


@njit(cache=True)
def view_normalize(view: IterateView, x: int) -> None:
    """Recompute ``log_partition[x]`` from the slot weights and the rest (log-sum-exp)."""
    n = view.n_slots[x]
    largest = view.rest_tree[x, 1] + view.rest_logscale[x]
    for s in range(n):
        if view.slot_logw[x, s] > largest:
            largest = view.slot_logw[x, s]
    if largest == NEG_INF:
        view.log_partition[x] = NEG_INF
        return
    total = 0.0
    rest = view.rest_tree[x, 1] + view.rest_logscale[x]
    if rest > NEG_INF:
        total += math.exp(rest - largest)
    for s in range(n):
        w = view.slot_logw[x, s]
        if w > NEG_INF:
            total += math.exp(w - largest)
    view.log_partition[x] = largest + math.log(total)


@njit(cache=True)
def view_leaf_logprob(view: IterateView, leaf_logref: np.ndarray, x: int, leaf: int) -> float:
    """``log pi(leaf|x)`` of the iterate."""
    slot = view.leaf_slot[x, leaf]
    if slot >= 0:
        return view.slot_logw[x, slot] - view.log_partition[x]
    return leaf_logref[x, leaf] + view.rest_logscale[x] - view.log_partition[x]


@internal_kernel
def view_rest_log_coefficient(view: IterateView, x: int) -> float:
    """``log c`` with ``pi(tau|x) = c pi_ref(tau|x)`` on every rest leaf."""
    return view.rest_logscale[x] - view.log_partition[x]


@njit(cache=True)
def view_sample(view: IterateView, x: int, u: float) -> int:
    """Inverse-CDF draw ``tau ~ pi(.|x)`` from ``u in [0, 1)``: slots in slot order, then the rest tree."""
    n = view.n_slots[x]
    lz = view.log_partition[x]
    acc = 0.0
    last_positive = -1
    for s in range(n):
        w = view.slot_logw[x, s]
        if w == NEG_INF:
            continue
        acc += math.exp(w - lz)
        last_positive = s
        if u < acc:
            return view.slot_leaf[x, s]
    root = view.rest_tree[x, 1]
    if root > NEG_INF:
        rest_mass = math.exp(root + view.rest_logscale[x] - lz)
        if rest_mass > 0.0:
            v = (u - acc) / rest_mass
            if v < 0.0:
                v = 0.0
            if v >= 1.0:
                v = ONE_MINUS
            return tree_sample(view.rest_tree[x], v)
    if last_positive >= 0:
        return view.slot_leaf[x, last_positive]
    return tree_sample(view.rest_tree[x], u)


@internal_kernel
def _child_log_masses(view: IterateView, x: int, base: int, width: int, vocab: int, out: np.ndarray) -> None:
    """Log mass of each child subtree (leaf ranges ``base + a*width ... +width``) under the iterate."""
    scale = view.rest_logscale[x]
    for a in range(vocab):
        lo = base + a * width
        out[a] = tree_range(view.rest_tree[x], lo, lo + width) + scale
    top = base + vocab * width
    for s in range(view.n_slots[x]):
        leaf = view.slot_leaf[x, s]
        if leaf >= base and leaf < top:
            a = (leaf - base) // width
            out[a] = logaddexp(out[a], view.slot_logw[x, s])


@njit(cache=True)
def view_sample_tempered(view: IterateView, x: int, u: float, temperature: float,
                         vocab: int, horizon: int, scratch: np.ndarray) -> int:
    """Token-by-token draw from the iterate at token temperature ``T`` (``pi(a|s)^{1/T}`` renormalized per state).

    ``T = 0`` is the greedy (temperature-0) policy: ``argmax_a pi(a|s)`` at every state along the
    path, ties to the lowest token. ``T = 1`` gives the same distribution as :func:`view_sample`.
    One uniform ``u`` drives the whole path (rescaled at each level). ``scratch`` has ``>= vocab`` entries.
    Cost ``O(H (n_slots + A log L))``.
    """
    width = np.int64(1)  # np.int64, not literals: one compiled specialization of _child_log_masses
    for _ in range(horizon - 1):
        width *= vocab
    base = np.int64(0)
    for _ in range(horizon):
        _child_log_masses(view, x, base, width, vocab, scratch)
        best = 0
        for a in range(1, vocab):
            if scratch[a] > scratch[best]:
                best = a
        if temperature == 0.0 or scratch[best] == NEG_INF:
            choice = best
        else:
            top = scratch[best] / temperature
            total = 0.0
            for a in range(vocab):
                if scratch[a] > NEG_INF:
                    total += math.exp(scratch[a] / temperature - top)
            acc = 0.0
            choice = -1
            last = best
            for a in range(vocab):
                if scratch[a] == NEG_INF:
                    continue
                p = math.exp(scratch[a] / temperature - top) / total
                if u < acc + p:
                    choice = a
                    u = (u - acc) / p
                    break
                acc += p
                last = a
            if choice < 0:
                choice = last
                u = ONE_MINUS
            if u >= 1.0:
                u = ONE_MINUS
            if u < 0.0:
                u = 0.0
        base += choice * width
        width //= vocab
    return base


@njit(cache=True)
def view_context_stats(view: IterateView, arrays: EnvArrays, beta: float, x: int) -> tuple[float, float, float]:
    """``(J_beta on x, E[r | x], KL(pi(.|x) || pi_ref(.|x)))`` of the iterate, exactly.

    ``J = E_pi[r] - beta KL``; slots by direct summation, the rest as
    ``c (R_U - beta log(c) P_U)`` with ``P_U, R_U`` the reference mass and reward mass of the rest.
    ``KL = +inf`` (``J = -inf``) if the iterate puts mass on a leaf with ``pi_ref = 0``.
    """
    lz = view.log_partition[x]
    reward = 0.0
    kl = 0.0
    for s in range(view.n_slots[x]):
        lp = view.slot_logw[x, s] - lz
        if lp == NEG_INF:
            continue
        leaf = view.slot_leaf[x, s]
        p = math.exp(lp)
        lr = arrays.leaf_logref[x, leaf]
        reward += p * arrays.leaf_reward[x, leaf]
        if lr == NEG_INF:
            if p > 0.0:
                kl = math.inf
        elif p > 0.0:
            kl += p * (lp - lr)
    root = view.rest_tree[x, 1]
    if root > NEG_INF:
        log_c = view.rest_logscale[x] - lz
        reward += math.exp(view.rest_reward_tree[x, 1] + log_c)
        kl += math.exp(root + log_c) * log_c
    if kl < 0.0:
        kl = 0.0
    return reward - beta * kl, reward, kl


@njit(cache=True)
def view_leaf_logprobs_into(view: IterateView, arrays: EnvArrays, out: np.ndarray) -> None:
    """Full table ``out[x, tau] = log pi(tau|x)`` (``(nc, L)``, ``O(nc L)``; for outputs, not the round loop)."""
    n_contexts, n_leaves = out.shape
    for x in range(n_contexts):
        log_c = view.rest_logscale[x] - view.log_partition[x]
        for leaf in range(n_leaves):
            slot = view.leaf_slot[x, leaf]
            if slot >= 0:
                out[x, leaf] = view.slot_logw[x, slot] - view.log_partition[x]
            else:
                out[x, leaf] = arrays.leaf_logref[x, leaf] + log_c


@njit(cache=True)
def token_log_policy_from_leaf_logprobs(leaf_logp: np.ndarray, vocab: int, n_states: int, out: np.ndarray) -> None:
    """Token-level ``log pi(a|s)`` (``out (nc, n_states, A)``) of a trajectory distribution ``leaf_logp (nc, L)``.

    ``M(s) = log sum of pi over the leaves below s``; ``log pi(a|s) = M(child) - M(s)`` (backward
    pass over the tree numbering of :mod:`xposim.envs.tree`). A state of zero mass gets the uniform
    distribution (it is never reached, any row is valid).
    """
    n_contexts = leaf_logp.shape[0]
    mass = np.empty(n_states)
    for x in range(n_contexts):
        for s in range(n_states - 1, -1, -1):
            first = vocab * s + 1
            total = NEG_INF
            for a in range(vocab):
                child = first + a
                m = leaf_logp[x, child - n_states] if child >= n_states else mass[child]
                out[x, s, a] = m
                total = logaddexp(total, m)
            mass[s] = total
            for a in range(vocab):
                if total == NEG_INF:
                    out[x, s, a] = -math.log(vocab)
                else:
                    out[x, s, a] = out[x, s, a] - total


# ============================================================================ pair store
PairStore = namedtuple(
    "PairStore",
    [
        "hash_keys",  # (H,) int64 key (x*L + chosen)*L + rejected, -1 empty
        "hash_edges",  # (H,) int64 edge id of the key
        "edge_context",  # (E,) int64
        "edge_chosen",  # (E,) int64 chosen slot
        "edge_rejected",  # (E,) int64 rejected slot
        "edge_weight",  # (E,) float64 count
        "edge_next",  # (E,) int64 next edge of the same context, -1 ends
        "context_head",  # (nc,) int64 first edge of the context, -1 none
        "context_edges",  # (nc,) int64 number of distinct edges of the context
        "n_edges",  # (1,) int64
        "n_leaves",  # (1,) int64 L (key base)
    ],
)
PairStore.__doc__ = """Sparse pair counts ``W[x, chosen, rejected]`` (module docstring)."""


def new_store(n_contexts: int, n_leaves: int, capacity: int) -> PairStore:
    """An empty :class:`PairStore` holding up to ``capacity`` distinct pairs (all contexts)."""
    capacity = max(int(capacity), 1)
    hash_size = tree_size(2 * capacity + 1)
    return PairStore(
        hash_keys=np.full(hash_size, -1, dtype=np.int64),
        hash_edges=np.full(hash_size, -1, dtype=np.int64),
        edge_context=np.zeros(capacity, dtype=np.int64),
        edge_chosen=np.zeros(capacity, dtype=np.int64),
        edge_rejected=np.zeros(capacity, dtype=np.int64),
        edge_weight=np.zeros(capacity),
        edge_next=np.full(capacity, -1, dtype=np.int64),
        context_head=np.full(n_contexts, -1, dtype=np.int64),
        context_edges=np.zeros(n_contexts, dtype=np.int64),
        n_edges=np.zeros(1, dtype=np.int64),
        n_leaves=np.array([n_leaves], dtype=np.int64),
    )


@njit(cache=True)
def store_add_pair(store: PairStore, x: int, chosen: int, rejected: int, weight: float) -> int:
    """Add ``weight`` to the count of the ordered pair ``(chosen, rejected)`` of context ``x`` (slots).

    Returns the edge id, or -1 for a self-pair (not stored: constant loss, zero gradient) or when
    the store is full (the caller sized it for every pair of the run, so this is a bug).
    """
    if chosen == rejected:
        return -1
    n = store.n_leaves[0]
    key = (x * n + chosen) * n + rejected
    mask = store.hash_keys.shape[0] - 1
    h = (key ^ (key >> 16)) & mask
    while True:
        k = store.hash_keys[h]
        if k == key:
            edge = store.hash_edges[h]
            store.edge_weight[edge] += weight
            return edge
        if k == -1:
            break
        h = (h + 1) & mask
    edge = store.n_edges[0]
    if edge >= store.edge_weight.shape[0]:
        return -1
    store.hash_keys[h] = key
    store.hash_edges[h] = edge
    store.edge_context[edge] = x
    store.edge_chosen[edge] = chosen
    store.edge_rejected[edge] = rejected
    store.edge_weight[edge] = weight
    store.edge_next[edge] = store.context_head[x]
    store.context_head[x] = edge
    store.context_edges[x] += 1
    store.n_edges[0] = edge + 1
    return edge


@njit(cache=True)
def store_gather(store: PairStore, x: int, out_chosen: np.ndarray, out_rejected: np.ndarray,
                 out_weight: np.ndarray) -> int:
    """Copy the edges of context ``x`` (most recent first) into the ``out_*`` arrays; returns their number."""
    edge = store.context_head[x]
    i = 0
    while edge >= 0:
        out_chosen[i] = store.edge_chosen[edge]
        out_rejected[i] = store.edge_rejected[edge]
        out_weight[i] = store.edge_weight[edge]
        i += 1
        edge = store.edge_next[edge]
    return i


# ============================================================================ solve problem
# status counters (int64 array ``counters`` of the SolveProblem)
COUNTER_SOLVES = 0
COUNTER_FAILURES = 1
COUNTER_DISAGREEMENTS = 2
COUNTER_NEWTON_ITERATIONS = 3
COUNTER_IMPROVED = 4
N_COUNTERS = 5

SolveProblem = namedtuple(
    "SolveProblem",
    [
        "store",  # PairStore
        "bonus_count",  # (nc, L) M[x, slot]
        "bonus_weight",  # (nc, L) per-slot bonus weight (COPO's c / sqrt(N)); 1 otherwise
        "loss_ref_logp",  # (nc, L) log pi_ref_loss of each slot
        "pair_kind",  # int PAIR_*
        "pair_param",  # float tau_ipo (IPO) or r_max (chiPO)
        "bonus_kind",  # int BONUS_*
        "alpha",  # float
        "beta",  # float
        "changed",  # (nc,) bool out: the iterate of x changed
        "counters",  # (N_COUNTERS,) int64 in/out
        "batch_context",  # (B,) int64 the round's new data (paper mode): contexts,
        "batch_chosen",  # (B,) chosen slots,
        "batch_rejected",  # (B,) rejected slots,
        "batch_bonus",  # (B,) bonus slots (-1: none)
        "n_batch",  # int number of new pairs (0: unknown, no incremental shortcut)
        "reference_drift",  # bool the loss reference changed since the last solve
    ],
)
SolveProblem.__doc__ = """What a class's argmin reads (paper mode): all the data of the run so far, the round's new
data (``batch_*``, ``n_batch``), the loss settings, and where to report (``changed``, ``counters``).

``store`` holds every pair; ``bonus_count[x, s]`` / ``bonus_weight[x, s]`` the bonus samples per slot;
``loss_ref_logp[x, s]`` the loss reference ``log pi_ref_loss`` per slot (the environment's ``pi_ref``
or, for SELM, the previous iterate). Counters: ``COUNTER_*`` indices."""

# ============================================================================ the interface
@dataclass(frozen=True)
class SolverSettings:
    """Settings of the per-round argmin (projected Newton, see :mod:`xposim.policies.tabular`).

    Attributes
    ----------
    tolerance : stop when ``max_j |v_j - P[v_j - grad_j / N]| <= tolerance``, ``P`` the projection
        on the box and ``N`` the number of loss terms of the context (pairs plus bonus samples):
        the projected gradient of the *per-sample* objective, so the position accuracy does not
        depend on how much data there is. Default ``1e-8``.
    max_iterations : cap on Newton iterations per solve; a solve that hits it is counted as a
        failure in the ``solver_failures`` column. Default 200.
    restarts : extra starting points per solve besides the warm start (non-convex objectives:
        THEORY 3); start ``j`` is uniform in the box from a pool drawn once per run. The lowest
        objective wins (ties to the warm start); solves whose starts disagree by more than
        ``disagreement_tolerance`` (relative objective) are counted in ``solver_disagreements``.
    disagreement_tolerance : relative objective gap for counting a disagreement. Default ``1e-9``.
    champion_starts : tabular class only. When the bonus is active, every solve also starts from
        each *champion* point — one response (or the unobserved aggregate) at ``R_max``, all others
        at 0 — besides the warm start. The XPO objective's local minima sit at such vertices (the
        bonus's ``-log Z`` term is concave), and the warm start alone can keep one the data no
        longer support (``benchmarks/diagnose_local_minima.py``). Costs one Newton solve per
        observed response per round. Default False (the warm-start solver).
    dense_limit : the Newton system is solved by a (modified) Cholesky factorization when the
        number of free variables is at most this, by preconditioned truncated conjugate gradients
        above it. Default 128.
    """

    tolerance: float = 1e-8
    max_iterations: int = 200
    restarts: int = 0
    disagreement_tolerance: float = 1e-9
    dense_limit: int = 128
    champion_starts: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.champion_starts, (bool, np.bool_)):
            raise ValueError(f"champion_starts must be True or False, got {self.champion_starts!r}")
        if not (isinstance(self.tolerance, (int, float)) and math.isfinite(self.tolerance) and self.tolerance > 0):
            raise ValueError(f"tolerance must be a finite real number > 0, got {self.tolerance!r}")
        for name, minimum in (("max_iterations", 1), ("restarts", 0), ("dense_limit", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        d = self.disagreement_tolerance
        if not (isinstance(d, (int, float)) and math.isfinite(d) and d >= 0):
            raise ValueError(f"disagreement_tolerance must be a finite real number >= 0, got {d!r}")


def check_optional_bound(bound) -> float | None:
    """A class's parameter bound: ``None`` (the class picks a default) or a finite real ``> 0``."""
    if bound is None:
        return None
    if isinstance(bound, bool) or not isinstance(bound, (int, float, np.integer, np.floating)) \
            or not math.isfinite(bound) or bound <= 0:
        raise ValueError(f"bound must be a finite real number > 0 or None, got {bound!r}")
    return float(bound)


class PolicyClass(abc.ABC):
    """A policy class ``Pi`` and its per-round argmin (THEORY 3).

    Contract (all arrays at trajectory level, see the module docstring):

    * ``name`` — short identifier used in results and error messages.
    * ``builtin_code`` — ``TABULAR_CODE`` / ``FINITE_CODE`` for the two classes with a fused
      numba loop; ``None`` for every other class (driven by the generic loop).
    * ``validate(env)`` — raise ``ValueError`` (naming the argument) if the class cannot be used on
      ``env`` (e.g. a log-linear class without ``env.features``).
    * ``is_context_separable`` — True if a solve only changes the contexts that received data
      (tabular); False if any solve may change every context (finite, log-linear).
    * ``supports_gradient_steps`` — True if ``gradient_step`` is implemented (trl mode).
    * ``create_state(env, arrays, beta, settings)`` — the class's mutable parameters (any object;
      a namedtuple of arrays for the built-in classes).
    * ``initial_view(arrays, state)`` — the :class:`IterateView` of ``pi^(1)`` (``pi_ref`` for
      Algorithm 1; slots pre-created as the class needs them).
    * ``solve(problem, state, view, contexts)`` — paper mode: replace the iterate by the argmin
      over all the data (``problem`` is a :class:`SolveProblem`) on the contexts flagged in
      ``contexts`` (bool ``(nc,)``; a non-separable class may change any context); write the view
      (``slot_logw``, ``rest_logscale``, then :func:`view_normalize`); set ``problem.changed[x]``
      for every context whose iterate changed and bump ``problem.counters[COUNTER_SOLVES]`` (and
      ``COUNTER_FAILURES`` / ``COUNTER_DISAGREEMENTS`` when relevant: they become table columns).
    * ``gradient_step(problem, state, view, batch)`` — trl mode: one gradient step of the fresh
      batch's mean loss; ``batch = (contexts, chosen_slots, rejected_slots, bonus_slots (-1: none),
      bonus_weights, n_batch, learning_rate)`` (int64/float64 arrays of length ``B``).
    * ``describe()`` — a dict of the class settings for result tables.
    """

    name: str = "policy_class"
    builtin_code: int | None = None
    is_context_separable: bool = True
    supports_gradient_steps: bool = False

    @abc.abstractmethod
    def validate(self, env: TokenMDP) -> None: ...

    @abc.abstractmethod
    def create_state(self, env: TokenMDP, arrays: EnvArrays, beta: float, settings: SolverSettings) -> Any: ...

    def initial_view(self, arrays: EnvArrays, state: Any) -> IterateView:
        return new_view(arrays)

    @abc.abstractmethod
    def solve(self, problem: Any, state: Any, view: IterateView, contexts: np.ndarray) -> Any: ...

    def gradient_step(self, problem: Any, state: Any, view: IterateView, batch: Any) -> Any:
        raise ValueError(f"policy class {self.name!r} does not support mode='trl' (one gradient step per batch)")

    def describe(self) -> dict:
        return {"policy_class": self.name}
