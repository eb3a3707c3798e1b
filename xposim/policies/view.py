"""The iterate view: how every policy class shows its current policy to the learner engine.

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

The round (``xposim.learners.round``) appends slots for every leaf that appears in the data
(:func:`view_create_slot`); appending never changes the policy (the new slot's weight is its
former rest weight). A class must therefore accept slots it did not create: it initializes its
per-slot parameters for slots ``>= its own count`` at the next solve.
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit

from xposim._jit import internal_kernel
from xposim.numerics import NEG_INF, ONE_MINUS, logaddexp
from xposim.policies.arrays import EnvArrays
from xposim.policies.segment_tree import tree_build, tree_range, tree_remove, tree_sample, tree_size


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


@internal_kernel
def view_sample_rest(view: IterateView, x: int, fraction: float) -> int:
    """The rest leaf of context ``x`` at ``fraction`` of the rest's reference mass (clipped to ``[0, 1)``:
    rounding of the caller's subtraction may leave it a hair outside)."""
    if fraction < 0.0:
        fraction = 0.0
    if fraction >= 1.0:
        fraction = ONE_MINUS
    return tree_sample(view.rest_tree[x], fraction)


@njit(cache=True)
def view_mode_leaf(view: IterateView, leaf_logref: np.ndarray, x: int) -> int:
    """The most likely trajectory of context ``x`` under the view's policy (ties to the lowest leaf).

    ``O(n_leaves)``: the rest leaves' weights ``log pi_ref + rest_logscale`` are scanned one by one
    (the segment trees hold sums, not maxima). Used at checkpoints only.
    """
    best = NEG_INF
    best_leaf = 0
    for leaf in range(leaf_logref.shape[1]):
        slot = view.leaf_slot[x, leaf]
        w = view.slot_logw[x, slot] if slot >= 0 else leaf_logref[x, leaf] + view.rest_logscale[x]
        if w > best:
            best = w
            best_leaf = leaf
    return best_leaf


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
            return view_sample_rest(view, x, (u - acc) / rest_mass)
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
