"""The token-logit class (softmax logits per state, bounded) and its per-round argmin (THEORY 3).

Class: one logit ``z(x, s, a)`` per context, state and token with ``|z| <= B`` (a box), and
``pi_z(a|s) = softmax(z(x, s, .))`` over the tokens with ``pi_ref(a|s) > 0`` (tokens the reference
never emits get ``pi_z = 0``, so the KL stays finite); ``log pi_z(tau|x) = sum_h log pi_z(a_h|s_h)``
— the LM-like parameterization. Realizability: ``pi*_beta`` is in the class iff in every state
the spread ``max_a log pi*(a|s) - min_a log pi*(a|s)`` over the support is ``<= 2B`` (take
``z = log pi* - (max + min)/2``); ``pi^(1) = pi_ref`` needs the same of ``log pi_ref``. The default
``B`` (``bound=None``) is the oracle choice ``1 + max(half-spread of log pi*_beta, half-spread of
log pi_ref)``: realizable with one nat of margin. ``V_max`` is not bounded by ``B`` alone:
``|log pi_z(tau) - log pi_ref(tau)| <= H (2B + max spread of log pi_ref)``.

Objective of context ``x`` (paper mode; contexts are separable, each has its own logits)::

    F(z) = sum_i W_i pair_loss(l(tau+_i), l(tau-_i)) + sum_j M_j bonus_loss(log pi_z(y_j), log pi_ref_loss(y_j))

with the kernels of :mod:`xposim.losses` and ``l = log pi_z - log pi_ref_loss``. Reverse
accumulation over the tree: with ``d_tau = dF/d log pi_z(tau)`` (from the kernels),
``N(s, a) = sum of d_tau over the data leaves below (s, a)`` and ``G(s) = sum_a N(s, a)``,
``dF/dz(s, a) = N(s, a) - pi_z(a|s) G(s)``. Hessian-vector products (for Newton-CG):
``H v = J^T S J v - G(s) pi_z(.|s) * (v_s - <pi_z(.|s), v_s>)`` with ``S`` the kernels' second
derivatives in ``log pi`` and ``(J v)_tau = sum_h (v(s_h, a_h) - <pi_z(.|s_h), v_{s_h}>)``. Only the
states on the paths of leaves with data enter ``F``; the other logits keep their values (the
objective does not depend on them: the warm start selects among the minimizers). The XPO
objective is non-convex (the bonus's ``-G(s)`` softmax curvature is negative semi-definite).

Argmin: projected Newton-CG on the box with Levenberg–Marquardt damping (documented choice).
Two-metric projection (Bertsekas): logits within ``eps = min(0.1 B, |z - P[z - grad]|_inf)`` of a
bound with the gradient pointing outward are sent to that bound; the free logits take the
truncated conjugate-gradient solution of ``(H_FF + lambda I) d = -g_F`` (exact Hessian-vector
products). The damping ``lambda`` is the trust-region memory of the non-convex problem: CG
meeting non-positive curvature raises it above the curvature deficit; a trial ``P[z + d]`` is
accepted when ``F`` decreases by at least ``1e-4`` times the damped model's predicted decrease,
after which ``lambda`` shrinks (ratio > 0.75; to 0 below ``1e-10 N``) or grows (ratio < 0.25);
a rejected trial raises ``lambda`` fourfold and halves the move of the logits sent to a bound.
With ``lambda = 0`` near a minimum the steps are Newton steps. Stop when the per-sample
projected gradient ``max |z - P[z - grad/N]| <= tolerance`` (:class:`SolverSettings`, ``N`` =
number of loss terms of the context). Warm started; ``SolverSettings.restarts`` extra starts
uniform in the box (one pool of uniforms per run), lowest objective wins (ties to the warm
start), disagreements counted. Observed on random instances: DPO-based objectives
(DPO + any bonus) converge from ``pi_ref`` in ~20 iterations on random data; IPO and the
clipped (non-smooth) chiPO loss can creep along valleys / stall at the clip kink and hit
``max_iterations`` (both are offline learners, which the engine runs on the built-in classes
only). trl mode: :func:`token_logit_gradient_step_context` (one projected gradient step on the
fresh batch's mean loss, learning rate in logit units).

Iterate view: every leaf is a slot (slot ``s`` = leaf ``s``) with log weight ``log pi_z(tau|x)``
(forward pass over the tree, ``O(n_states A)`` per changed context). The token-level policy for
:func:`xposim.exact.evaluate` is :meth:`TokenLogitClass.token_policy`.
"""
from __future__ import annotations

import math
from collections import namedtuple
from typing import Any

import numpy as np
from numba import njit

from xposim._jit import internal_kernel
from xposim import exact
from xposim.envs.token_mdp import TokenMDP
from xposim.losses.bonus import bonus_loss, bonus_loss_hessian
from xposim.losses.kinds import BONUS_NONE
from xposim.losses.pair import pair_loss, pair_loss_hessian
from xposim.numerics import NEG_INF
from xposim.policies.arrays import EnvArrays
from xposim.policies.base import check_optional_bound, PolicyClass
from xposim.policies.view import IterateView, view_normalize
from xposim.policies.leaf_data import (
    LeafData,
    LossParameters,
    all_leaves_view,
    batch_leaf_data,
    check_all_leaf_slots,
    expand_uniforms,
    gather_problem_data,
    loss_parameters,
    refuse_champion_starts,
)
from xposim.validation import check_positive
from xposim.policies.solving import (
    ARMIJO,
    COUNTER_SOLVES,
    OBJECTIVE_NOISE,
    STATUS_CONVERGED,
    STATUS_LINE_SEARCH,
    STATUS_MAX_ITERATIONS,
    SolverSettings,
    draw_restart_uniforms,
    improves_on,
    may_be_nonconvex,
    record_certificate,
    record_solve,
    values_disagree,
)

#: Damping increases tried per iteration before the step search is declared failed.
MAX_DAMPING_TRIALS = 60
#: Smallest positive damping, per loss term (the damping is 0 or at least ``DAMPING_FLOOR * N``).
DAMPING_FLOOR = 1e-10
#: Largest width of the "near a bound" zone of the active set, as a fraction of ``B``.
ACTIVE_ZONE = 0.1

TokenLogitWork = namedtuple(
    "TokenLogitWork",
    [
        "leaf_local",  # (L,) int64 data-leaf index u of a leaf, -1 if none
        "local_leaf",  # (L,) int64 leaf of data-leaf u
        "path_state",  # (L, H) int64 active-state index along data-leaf u
        "path_token",  # (L, H) int64 token along data-leaf u
        "state_local",  # (n_states,) int64 active index of a state, -1 if none
        "local_state",  # (n_states,) int64 state of an active index
        "z",  # (n_states, A) logits of the active states (local copy)
        "allowed",  # (n_states, A) bool support of pi_ref on the active states
        "log_pi",  # (n_states, A) log pi_z on the active states
        "grad",  # (n_states, A)
        "free",  # (n_states, A) bool free variables of the Newton step
        "direction",  # (n_states, A)
        "step",  # (n_states, A) projected step of a trial
        "trial",  # (n_states, A)
        "best",  # (n_states, A)
        "cg_r", "cg_p", "cg_q", "cg_x",  # (n_states, A)
        "node_sum", "state_sum", "node_sum2", "state_sum2",  # (n_states, A), (n_states,) accumulators
        "state_mean",  # (n_states,) <pi_z(.|s), v_s>
        "logp",  # (L,) log pi_z of data-leaf u
        "coef",  # (L,) dF/dlog pi of data-leaf u
        "jv",  # (L,) (J v)_u
        "kv",  # (L,) (S J v)_u
    ],
)
TokenLogitWork.__doc__ = """Scratch arrays of the token-logit objective and solver (sized for one context)."""


def new_token_logit_work(n_leaves: int, n_states: int, vocab: int, horizon: int) -> TokenLogitWork:
    """Scratch arrays for one context of an ``A = vocab``, ``H = horizon`` tree."""
    sa = (n_states, vocab)
    return TokenLogitWork(
        leaf_local=np.full(n_leaves, -1, dtype=np.int64), local_leaf=np.zeros(n_leaves, dtype=np.int64),
        path_state=np.zeros((n_leaves, horizon), dtype=np.int64),
        path_token=np.zeros((n_leaves, horizon), dtype=np.int64),
        state_local=np.full(n_states, -1, dtype=np.int64), local_state=np.zeros(n_states, dtype=np.int64),
        z=np.zeros(sa), allowed=np.zeros(sa, dtype=np.bool_), log_pi=np.zeros(sa), grad=np.zeros(sa),
        free=np.zeros(sa, dtype=np.bool_), direction=np.zeros(sa), step=np.zeros(sa), trial=np.zeros(sa),
        best=np.zeros(sa),
        cg_r=np.zeros(sa), cg_p=np.zeros(sa), cg_q=np.zeros(sa), cg_x=np.zeros(sa),
        node_sum=np.zeros(sa), state_sum=np.zeros(n_states), node_sum2=np.zeros(sa), state_sum2=np.zeros(n_states),
        state_mean=np.zeros(n_states), logp=np.zeros(n_leaves), coef=np.zeros(n_leaves), jv=np.zeros(n_leaves),
        kv=np.zeros(n_leaves),
    )


# ============================================================================ setup of a context
@internal_kernel
def _add_data_leaf(work: TokenLogitWork, leaf: int, n_u: int, n_k: int, vocab: int, horizon: int,
                   n_states: int) -> tuple[int, int]:
    if work.leaf_local[leaf] >= 0:
        return n_u, n_k
    u = n_u
    work.leaf_local[leaf] = u
    work.local_leaf[u] = leaf
    width = 1
    for _ in range(horizon - 1):
        width *= vocab
    state = 0
    rest = leaf
    for h in range(horizon):
        a = rest // width
        rest -= a * width
        width //= vocab if vocab > 0 else 1
        k = work.state_local[state]
        if k < 0:
            k = n_k
            work.state_local[state] = k
            work.local_state[k] = state
            n_k += 1
        work.path_state[u, h] = k
        work.path_token[u, h] = a
        state = vocab * state + 1 + a
    return n_u + 1, n_k


@njit(cache=True)
def token_logit_setup(z_context: np.ndarray, allowed_context: np.ndarray, data: LeafData, k: int,
                      horizon: int, work: TokenLogitWork) -> tuple[int, int]:
    """Index the data leaves and the states on their paths for the ``k``-th context of ``data``.

    Copies the logits and support of those states into ``work.z`` / ``work.allowed``. Returns
    ``(n_data_leaves, n_active_states)``; :func:`token_logit_release` undoes the indexing.
    """
    n_states, vocab = z_context.shape
    n_u = 0
    n_k = 0
    for e in range(data.pair_ptr[k], data.pair_ptr[k + 1]):
        n_u, n_k = _add_data_leaf(work, data.pair_chosen[e], n_u, n_k, vocab, horizon, n_states)
        n_u, n_k = _add_data_leaf(work, data.pair_rejected[e], n_u, n_k, vocab, horizon, n_states)
    for j in range(data.bonus_ptr[k], data.bonus_ptr[k + 1]):
        n_u, n_k = _add_data_leaf(work, data.bonus_leaf[j], n_u, n_k, vocab, horizon, n_states)
    for q in range(n_k):
        s = work.local_state[q]
        for a in range(vocab):
            work.z[q, a] = z_context[s, a]
            work.allowed[q, a] = allowed_context[s, a]
    return n_u, n_k


@njit(cache=True)
def token_logit_release(n_u: int, n_k: int, work: TokenLogitWork) -> None:
    """Reset the leaf and state indices set by :func:`token_logit_setup`."""
    for u in range(n_u):
        work.leaf_local[work.local_leaf[u]] = -1
    for q in range(n_k):
        work.state_local[work.local_state[q]] = -1


# ============================================================================ objective
@internal_kernel
def _log_softmax_states(z: np.ndarray, allowed: np.ndarray, n_k: int, out: np.ndarray) -> None:
    vocab = z.shape[1]
    for q in range(n_k):
        largest = NEG_INF
        for a in range(vocab):
            if allowed[q, a] and z[q, a] > largest:
                largest = z[q, a]
        total = 0.0
        for a in range(vocab):
            if allowed[q, a]:
                total += math.exp(z[q, a] - largest)
        lse = largest + math.log(total)
        for a in range(vocab):
            out[q, a] = z[q, a] - lse if allowed[q, a] else NEG_INF


@njit(cache=True)
def token_logit_objective(z: np.ndarray, n_u: int, n_k: int, data: LeafData, k: int, loss: LossParameters,
                          want_grad: bool, work: TokenLogitWork, h_pair: np.ndarray, h_bonus: np.ndarray) -> float:
    """``F(z)`` of the ``k``-th context of ``data`` on the active logits ``z[:n_k]`` (module docstring).

    ``want_grad``: also ``work.grad`` (active rows), the per-state sums ``work.state_sum`` = ``G(s)``
    and the weighted second derivatives ``h_pair (E_k, 3)``, ``h_bonus (S_k,)`` used by
    :func:`token_logit_hessian_vector`. Needs :func:`token_logit_setup` first.
    """
    vocab = z.shape[1]
    horizon = work.path_state.shape[1]
    beta = loss.beta
    _log_softmax_states(z, work.allowed, n_k, work.log_pi)
    for u in range(n_u):
        total = 0.0
        for h in range(horizon):
            total += work.log_pi[work.path_state[u, h], work.path_token[u, h]]
        work.logp[u] = total
        work.coef[u] = 0.0
    value = 0.0
    e0 = data.pair_ptr[k]
    for e in range(e0, data.pair_ptr[k + 1]):
        w = data.pair_weight[e]
        if w == 0.0:
            if want_grad:
                h_pair[e - e0, 0] = 0.0
                h_pair[e - e0, 1] = 0.0
                h_pair[e - e0, 2] = 0.0
            continue
        c = work.leaf_local[data.pair_chosen[e]]
        r = work.leaf_local[data.pair_rejected[e]]
        l_c = work.logp[c] - data.pair_chosen_ref[e]
        l_r = work.logp[r] - data.pair_rejected_ref[e]
        term, d_c, d_r = pair_loss(loss.pair_kind, l_c, l_r, beta, loss.pair_param)
        value += w * term
        if want_grad:
            work.coef[c] += w * d_c
            work.coef[r] += w * d_r
            h_cc, h_cr, h_rr = pair_loss_hessian(loss.pair_kind, l_c, l_r, beta, loss.pair_param)
            h_pair[e - e0, 0] = w * h_cc
            h_pair[e - e0, 1] = w * h_cr
            h_pair[e - e0, 2] = w * h_rr
    j0 = data.bonus_ptr[k]
    for j in range(j0, data.bonus_ptr[k + 1]):
        m = data.bonus_count[j]
        if m == 0.0 or loss.bonus_kind == BONUS_NONE:
            if want_grad:
                h_bonus[j - j0] = 0.0
            continue
        y = work.leaf_local[data.bonus_leaf[j]]
        term, d_y = bonus_loss(loss.bonus_kind, work.logp[y], data.bonus_ref[j], loss.alpha, beta,
                               data.bonus_weight[j])
        value += m * term
        if want_grad:
            work.coef[y] += m * d_y
            h_bonus[j - j0] = m * bonus_loss_hessian(loss.bonus_kind, work.logp[y], data.bonus_ref[j], loss.alpha,
                                                     beta, data.bonus_weight[j])
    if want_grad:
        _reverse_accumulate(work.coef, n_u, n_k, work, work.node_sum, work.state_sum)
        for q in range(n_k):
            for a in range(vocab):
                if work.allowed[q, a]:
                    work.grad[q, a] = work.node_sum[q, a] - math.exp(work.log_pi[q, a]) * work.state_sum[q]
                else:
                    work.grad[q, a] = 0.0
    return value


@internal_kernel
def _reverse_accumulate(leaf_values: np.ndarray, n_u: int, n_k: int, work: TokenLogitWork, node_sum: np.ndarray,
                        state_sum: np.ndarray) -> None:
    """``node_sum[s, a] = sum of leaf_values over data leaves below (s, a)``, ``state_sum[s] = sum_a node_sum[s, a]``."""
    vocab = node_sum.shape[1]
    horizon = work.path_state.shape[1]
    for q in range(n_k):
        state_sum[q] = 0.0
        for a in range(vocab):
            node_sum[q, a] = 0.0
    for u in range(n_u):
        v = leaf_values[u]
        if v == 0.0:
            continue
        for h in range(horizon):
            q = work.path_state[u, h]
            node_sum[q, work.path_token[u, h]] += v
            state_sum[q] += v


@njit(cache=True)
def token_logit_hessian_vector(v: np.ndarray, n_u: int, n_k: int, data: LeafData, k: int, work: TokenLogitWork,
                               h_pair: np.ndarray, h_bonus: np.ndarray, out: np.ndarray) -> None:
    """``out = H v`` at the point of the last :func:`token_logit_objective` call with ``want_grad`` (module docstring).

    Entries of ``v`` on disallowed tokens must be 0; ``out`` is 0 there.
    """
    vocab = v.shape[1]
    horizon = work.path_state.shape[1]
    for q in range(n_k):
        m = 0.0
        for a in range(vocab):
            if work.allowed[q, a]:
                m += math.exp(work.log_pi[q, a]) * v[q, a]
        work.state_mean[q] = m
    for u in range(n_u):
        total = 0.0
        for h in range(horizon):
            q = work.path_state[u, h]
            total += v[q, work.path_token[u, h]] - work.state_mean[q]
        work.jv[u] = total
        work.kv[u] = 0.0
    e0 = data.pair_ptr[k]
    for e in range(e0, data.pair_ptr[k + 1]):
        c = work.leaf_local[data.pair_chosen[e]]
        r = work.leaf_local[data.pair_rejected[e]]
        i = e - e0
        work.kv[c] += h_pair[i, 0] * work.jv[c] + h_pair[i, 1] * work.jv[r]
        work.kv[r] += h_pair[i, 1] * work.jv[c] + h_pair[i, 2] * work.jv[r]
    j0 = data.bonus_ptr[k]
    for j in range(j0, data.bonus_ptr[k + 1]):
        if h_bonus[j - j0] != 0.0:
            y = work.leaf_local[data.bonus_leaf[j]]
            work.kv[y] += h_bonus[j - j0] * work.jv[y]
    _reverse_accumulate(work.kv, n_u, n_k, work, work.node_sum2, work.state_sum2)
    for q in range(n_k):
        g_s = work.state_sum[q]
        for a in range(vocab):
            if work.allowed[q, a]:
                p = math.exp(work.log_pi[q, a])
                out[q, a] = work.node_sum2[q, a] - p * work.state_sum2[q] - g_s * p * (v[q, a] - work.state_mean[q])
            else:
                out[q, a] = 0.0


# ============================================================================ solver
@internal_kernel
def box_projected_gradient(z: np.ndarray, grad: np.ndarray, allowed: np.ndarray, n_k: int, n_terms: float,
                           bound: float) -> float:
    """``max |z - P[z - grad/N]|`` over the allowed active logits, ``P`` the clip to ``[-bound, bound]``."""
    scale = 1.0 / n_terms if n_terms > 0.0 else 1.0
    worst = 0.0
    for q in range(n_k):
        for a in range(z.shape[1]):
            if not allowed[q, a]:
                continue
            t = z[q, a] - scale * grad[q, a]
            if t > bound:
                t = bound
            elif t < -bound:
                t = -bound
            gap = abs(z[q, a] - t)
            if gap > worst:
                worst = gap
    return worst


@internal_kernel
def _dot(a: np.ndarray, b: np.ndarray, n_k: int) -> float:
    s = 0.0
    for q in range(n_k):
        for j in range(a.shape[1]):
            s += a[q, j] * b[q, j]
    return s


@internal_kernel
def _damped_cg_direction(n_u: int, n_k: int, data: LeafData, k: int, work: TokenLogitWork, h_pair: np.ndarray,
                         h_bonus: np.ndarray, relative_tolerance: float, damping: float) -> tuple[bool, float]:
    """Truncated CG for ``(H_FF + damping I) d_F = -g_F`` on the free variables (``work.direction``, 0 elsewhere).

    Returns ``(True, 0)`` on success, ``(False, kappa)`` when a direction ``p`` of non-positive damped
    curvature ``kappa = p^T (H + damping I) p / p^T p`` is met (the caller raises the damping).
    """
    vocab = work.z.shape[1]
    n_free = 0
    for q in range(n_k):
        for a in range(vocab):
            work.cg_x[q, a] = 0.0
            if work.free[q, a]:
                work.cg_r[q, a] = -work.grad[q, a]
                n_free += 1
            else:
                work.cg_r[q, a] = 0.0
            work.cg_p[q, a] = work.cg_r[q, a]
    rr = _dot(work.cg_r, work.cg_r, n_k)
    target = relative_tolerance * relative_tolerance * rr
    ok = True
    kappa = 0.0
    for _ in range(2 * n_free + 10):
        if rr <= target or rr == 0.0:
            break
        token_logit_hessian_vector(work.cg_p, n_u, n_k, data, k, work, h_pair, h_bonus, work.cg_q)
        for q in range(n_k):
            for a in range(vocab):
                if work.free[q, a]:
                    work.cg_q[q, a] += damping * work.cg_p[q, a]
                else:
                    work.cg_q[q, a] = 0.0
        curvature = _dot(work.cg_p, work.cg_q, n_k)
        if curvature <= 0.0:
            ok = False
            kappa = curvature / _dot(work.cg_p, work.cg_p, n_k)
            break
        step = rr / curvature
        for q in range(n_k):
            for a in range(vocab):
                work.cg_x[q, a] += step * work.cg_p[q, a]
                work.cg_r[q, a] -= step * work.cg_q[q, a]
        rr_new = _dot(work.cg_r, work.cg_r, n_k)
        ratio = rr_new / rr
        rr = rr_new
        for q in range(n_k):
            for a in range(vocab):
                work.cg_p[q, a] = work.cg_r[q, a] + ratio * work.cg_p[q, a]
    for q in range(n_k):
        for a in range(vocab):
            work.direction[q, a] = work.cg_x[q, a]
    return ok, kappa


@internal_kernel
def _projected_trial(origin: np.ndarray, direction: np.ndarray, step: float, bound: float, n_k: int,
                     grad: np.ndarray, out: np.ndarray) -> float:
    """``out = P[origin + step * direction]`` (clip to the box); returns ``grad^T (out - origin)``."""
    change = 0.0
    for q in range(n_k):
        for a in range(origin.shape[1]):
            t = origin[q, a] + step * direction[q, a]
            if t > bound:
                t = bound
            elif t < -bound:
                t = -bound
            out[q, a] = t
            change += grad[q, a] * (t - origin[q, a])
    return change


@internal_kernel
def token_logit_projected_newton(n_u: int, n_k: int, data: LeafData, k: int, loss: LossParameters, bound: float,
                                 n_terms: float, tolerance: float, max_iterations: int, work: TokenLogitWork,
                                 h_pair: np.ndarray, h_bonus: np.ndarray) -> tuple[float, int, int]:
    """Minimize ``F`` over the box from ``work.z`` (in place; module docstring). Returns ``(F, status, iterations)``."""
    vocab = work.z.shape[1]
    z = work.z
    for q in range(n_k):
        for a in range(vocab):
            if z[q, a] > bound:
                z[q, a] = bound
            elif z[q, a] < -bound:
                z[q, a] = -bound
    value = token_logit_objective(z, n_u, n_k, data, k, loss, True, work, h_pair, h_bonus)
    iterations = 0
    damping = 0.0
    floor = DAMPING_FLOOR * n_terms
    while True:
        pg = box_projected_gradient(z, work.grad, work.allowed, n_k, n_terms, bound)
        if pg <= tolerance:
            return value, STATUS_CONVERGED, iterations
        if iterations >= max_iterations:
            return value, STATUS_MAX_ITERATIONS, iterations
        # active set: within eps of a bound with the gradient pushing outward
        eps = min(ACTIVE_ZONE * bound, box_projected_gradient(z, work.grad, work.allowed, n_k, 1.0, bound))
        for q in range(n_k):
            for a in range(vocab):
                g = work.grad[q, a]
                at_low = z[q, a] <= -bound + eps and g > 0.0
                at_high = z[q, a] >= bound - eps and g < 0.0
                work.free[q, a] = work.allowed[q, a] and not (at_low or at_high)
        noise = OBJECTIVE_NOISE * (abs(value) + 1.0)
        accepted = False
        active_scale = 1.0  # the variables sent to a bound move by this fraction of the way (halved on failure)
        for _ in range(MAX_DAMPING_TRIALS):
            ok, kappa = _damped_cg_direction(n_u, n_k, data, k, work, h_pair, h_bonus, min(0.5, math.sqrt(pg)),
                                             damping)
            if not ok:
                # non-positive curvature: damp more than the curvature deficit
                damping = max(4.0 * damping, damping - 2.0 * kappa, floor)
                continue
            for q in range(n_k):
                for a in range(vocab):
                    if work.allowed[q, a] and not work.free[q, a]:
                        work.direction[q, a] = active_scale * ((bound if work.grad[q, a] < 0.0 else -bound) - z[q, a])
            decrease = _projected_trial(z, work.direction, 1.0, bound, n_k, work.grad, work.trial)
            for q in range(n_k):
                for a in range(vocab):
                    work.step[q, a] = work.trial[q, a] - z[q, a]
            token_logit_hessian_vector(work.step, n_u, n_k, data, k, work, h_pair, h_bonus, work.cg_q)
            curvature = _dot(work.step, work.cg_q, n_k)
            for q in range(n_k):
                for a in range(vocab):
                    if work.free[q, a]:
                        curvature += damping * work.step[q, a] * work.step[q, a]
            predicted = -(decrease + 0.5 * curvature)  # decrease of the model damped on the free variables
            if predicted > 0.0:
                trial_value = token_logit_objective(work.trial, n_u, n_k, data, k, loss, False, work, h_pair,
                                                    h_bonus)
                if trial_value <= value - ARMIJO * predicted + noise:
                    accepted = True
                    ratio = (value - trial_value) / predicted
                    if ratio > 0.75:
                        damping = 0.25 * damping if 0.25 * damping >= floor else 0.0
                    elif ratio < 0.25:
                        damping = max(2.0 * damping, floor)
                    break
                # the trial evaluation overwrote the softmax tables used by the Hessian-vector products
                token_logit_objective(z, n_u, n_k, data, k, loss, True, work, h_pair, h_bonus)
            damping = max(4.0 * damping, floor)
            active_scale *= 0.5
        if not accepted:
            return value, STATUS_LINE_SEARCH, iterations
        for q in range(n_k):
            for a in range(vocab):
                z[q, a] = work.trial[q, a]
        iterations += 1
        value = token_logit_objective(z, n_u, n_k, data, k, loss, True, work, h_pair, h_bonus)


@njit(cache=True)
def token_logit_solve_context(z_context: np.ndarray, allowed_context: np.ndarray, data: LeafData, k: int,
                              loss: LossParameters, bound: float, tolerance: float, max_iterations: int,
                              starts: np.ndarray, disagreement_tolerance: float,
                              work: TokenLogitWork) -> tuple[float, int, int, bool, bool, bool]:
    """Argmin of the ``k``-th context of ``data`` from the warm start ``z_context (n_states, A)`` (updated in place).

    ``starts (restarts, n_states * A)`` are uniforms in ``[0, 1)`` mapped to ``[-bound, bound]``
    (only the active logits are restarted). Returns ``(F, status of the winner, iterations,
    disagreement, improved, changed)``; a start replaces the incumbent only when lower by more than
    ``disagreement_tolerance * max(1, |F|)`` (``improved``: a restart won).
    """
    horizon = work.path_state.shape[1]
    vocab = z_context.shape[1]
    n_u, n_k = token_logit_setup(z_context, allowed_context, data, k, horizon, work)
    n_terms = 0.0
    for e in range(data.pair_ptr[k], data.pair_ptr[k + 1]):
        n_terms += data.pair_weight[e]
    if loss.bonus_kind != BONUS_NONE:
        for j in range(data.bonus_ptr[k], data.bonus_ptr[k + 1]):
            n_terms += data.bonus_count[j]
    h_pair = np.empty((data.pair_ptr[k + 1] - data.pair_ptr[k], 3))
    h_bonus = np.empty(data.bonus_ptr[k + 1] - data.bonus_ptr[k])
    if n_terms == 0.0:
        token_logit_release(n_u, n_k, work)
        return 0.0, STATUS_CONVERGED, 0, False, False, False
    value, status, iterations = token_logit_projected_newton(n_u, n_k, data, k, loss, bound, n_terms, tolerance,
                                                             max_iterations, work, h_pair, h_bonus)
    disagreement = False
    improved = False
    if starts.shape[0] > 0:
        for q in range(n_k):
            for a in range(vocab):
                work.best[q, a] = work.z[q, a]
        best_value = value
        lowest = value
        highest = value
        for r in range(starts.shape[0]):
            for q in range(n_k):
                s = work.local_state[q]
                for a in range(vocab):
                    work.z[q, a] = -bound + 2.0 * bound * starts[r, s * vocab + a]
            value_r, status_r, iterations_r = token_logit_projected_newton(n_u, n_k, data, k, loss, bound, n_terms,
                                                                           tolerance, max_iterations, work, h_pair,
                                                                           h_bonus)
            iterations += iterations_r
            lowest = min(lowest, value_r)
            highest = max(highest, value_r)
            if improves_on(value_r, best_value, disagreement_tolerance):
                best_value = value_r
                status = status_r
                for q in range(n_k):
                    for a in range(vocab):
                        work.best[q, a] = work.z[q, a]
        for q in range(n_k):
            for a in range(vocab):
                work.z[q, a] = work.best[q, a]
        improved = best_value < value
        value = best_value
        disagreement = values_disagree(highest, lowest, lowest, disagreement_tolerance)
    changed = False
    for q in range(n_k):
        s = work.local_state[q]
        for a in range(vocab):
            if allowed_context[s, a]:
                if z_context[s, a] != work.z[q, a]:
                    changed = True
                z_context[s, a] = work.z[q, a]
    token_logit_release(n_u, n_k, work)
    return value, status, iterations, disagreement, improved, changed


@njit(cache=True)
def token_logit_gradient_step_context(z_context: np.ndarray, allowed_context: np.ndarray, data: LeafData, k: int,
                                      loss: LossParameters, bound: float, learning_rate: float,
                                      work: TokenLogitWork) -> float:
    """trl mode: ``z <- P_box[z - learning_rate * grad F_batch(z)]`` on the ``k``-th context; returns ``F_batch``."""
    horizon = work.path_state.shape[1]
    vocab = z_context.shape[1]
    n_u, n_k = token_logit_setup(z_context, allowed_context, data, k, horizon, work)
    h_pair = np.empty((data.pair_ptr[k + 1] - data.pair_ptr[k], 3))
    h_bonus = np.empty(data.bonus_ptr[k + 1] - data.bonus_ptr[k])
    value = token_logit_objective(work.z, n_u, n_k, data, k, loss, True, work, h_pair, h_bonus)
    for q in range(n_k):
        s = work.local_state[q]
        for a in range(vocab):
            if allowed_context[s, a]:
                t = work.z[q, a] - learning_rate * work.grad[q, a]
                z_context[s, a] = min(bound, max(-bound, t))
    token_logit_release(n_u, n_k, work)
    return value


# ============================================================================ policies
@njit(cache=True)
def token_log_policy_into(z: np.ndarray, allowed: np.ndarray, out: np.ndarray) -> None:
    """``out[x, s, a] = log pi_z(a|s)`` (``-inf`` on disallowed tokens) for every context and state."""
    n_contexts, n_states, vocab = z.shape
    for x in range(n_contexts):
        _log_softmax_states(z[x], allowed[x], n_states, out[x])


@njit(cache=True)
def leaf_logprobs_from_token_log_policy(log_policy: np.ndarray, x: int, out: np.ndarray, scratch: np.ndarray) -> None:
    """``out[tau] = sum_h log pi(a_h|s_h)`` for every leaf of context ``x`` (forward pass; ``scratch (n_states,)``)."""
    n_states, vocab = log_policy.shape[1], log_policy.shape[2]
    scratch[0] = 0.0
    for s in range(n_states):
        base = scratch[s]
        for a in range(vocab):
            child = vocab * s + 1 + a
            value = base + log_policy[x, s, a] if log_policy[x, s, a] > NEG_INF else NEG_INF
            if child >= n_states:
                out[child - n_states] = value
            else:
                scratch[child] = value


@njit(cache=True)
def token_logit_write_view(z: np.ndarray, allowed: np.ndarray, log_policy: np.ndarray, view: IterateView,
                           contexts: np.ndarray, leaf_logp: np.ndarray, scratch: np.ndarray) -> None:
    """Slot log weights ``log pi_z(tau|x)`` of the flagged contexts (bool ``contexts``), renormalized."""
    n_contexts, n_states, vocab = z.shape
    for x in range(n_contexts):
        if not contexts[x]:
            continue
        _log_softmax_states(z[x], allowed[x], n_states, log_policy[x])
        leaf_logprobs_from_token_log_policy(log_policy, x, leaf_logp, scratch)
        for s in range(view.n_slots[x]):
            view.slot_logw[x, s] = leaf_logp[view.slot_leaf[x, s]]
        view_normalize(view, x)


# ============================================================================ the class
TokenLogitState = namedtuple(
    "TokenLogitState",
    [
        "z",  # (nc, n_states, A) logits
        "allowed",  # (nc, n_states, A) bool pi_ref > 0
        "log_policy",  # (nc, n_states, A) log pi_z (refreshed for written contexts)
        "bound",  # float B
        "beta",  # float
        "horizon",  # int
        "starts",  # (restarts, n_states * A) uniforms
        "work",  # TokenLogitWork
        "leaf_logp",  # (L,) scratch
        "scratch",  # (n_states,) scratch
        "settings",  # SolverSettings
    ],
)
TokenLogitState.__doc__ = """Mutable logits and scratch of the token-logit class."""


def centered_log_probabilities(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(z, half_spread)``: ``z = log p - (max + min)/2`` over the support per state (0 off it), and the half spreads."""
    probs = np.asarray(probs, dtype=np.float64)
    allowed = probs > 0.0
    with np.errstate(divide="ignore"):
        logp = np.log(probs)
    high = np.where(allowed, logp, -np.inf).max(axis=-1, keepdims=True)
    low = np.where(allowed, logp, np.inf).min(axis=-1, keepdims=True)
    center = 0.5 * (high + low)
    z = np.where(allowed, logp - center, 0.0)
    return np.ascontiguousarray(z), (0.5 * (high - low))[..., 0]


def realizability_bound(env: TokenMDP, beta: float) -> float:
    """Smallest ``B`` with ``pi*_beta`` and ``pi_ref`` both in the class: the largest half-spread of their log-probabilities."""
    optimum = exact.solve(env, beta)
    _, spread_star = centered_log_probabilities(optimum.policy)
    _, spread_ref = centered_log_probabilities(env.ref_probs)
    return float(max(spread_star.max(), spread_ref.max()))


class TokenLogitClass(PolicyClass):
    """Token-logit class ``{pi_z(a|s) = softmax(z(x, s, .)) : |z| <= B}`` (module docstring).

    Parameters
    ----------
    bound : the box ``B`` (> 0). ``None``: ``1 + realizability_bound(env, beta)`` (oracle default,
        realizable with one nat of margin). An explicit bound must hold ``pi_ref`` (half-spread of
        ``log pi_ref`` per state ``<= B``) so that ``pi^(1) = pi_ref``.
    """

    name = "token_logit"
    is_context_separable = True
    supports_gradient_steps = True

    def __init__(self, bound: float | None = None) -> None:
        self.bound = check_optional_bound(bound)

    def validate(self, env: TokenMDP) -> None:
        if not isinstance(env, TokenMDP):
            raise ValueError(f"env must be an xposim.envs.TokenMDP, got {type(env).__name__}")
        if self.bound is not None:
            _, spread = centered_log_probabilities(env.ref_probs)
            if spread.max() > self.bound * (1.0 + 1e-12):
                raise ValueError(
                    f"bound must be >= {spread.max():.6g} (the largest half-spread of log pi_ref(.|s)) so that "
                    f"pi^(1) = pi_ref is in the class, got {self.bound!r}"
                )

    def resolved_bound(self, env: TokenMDP, beta: float) -> float:
        """The box ``B`` used on ``env`` at ``beta``."""
        return self.bound if self.bound is not None else 1.0 + realizability_bound(env, beta)

    def create_state(self, env: TokenMDP, arrays: EnvArrays, beta: float, settings: SolverSettings,
                     rng: np.random.Generator | None = None) -> TokenLogitState:
        """State with ``z = log pi_ref - centre`` per state (``pi^(1) = pi_ref``).

        Random starts: ``(settings.restarts, n_leaves + 1)`` uniforms drawn from ``rng``
        (:func:`~xposim.policies.solving.draw_restart_uniforms`); each row becomes ``n_states * A`` uniforms
        (:func:`~xposim.policies.leaf_data.expand_uniforms`), start ``z = -B + 2 B u``. ``rng = None`` is
        allowed only with ``settings.restarts == 0``.
        """
        self.validate(env)
        beta = check_positive(beta, "beta")
        bound = self.resolved_bound(env, float(beta))
        z, _ = centered_log_probabilities(env.ref_probs)
        z = np.clip(z, -bound, bound)
        n_contexts, n_states, vocab = z.shape
        width = n_states * vocab
        starts = np.zeros((0, width))
        refuse_champion_starts(settings)
        pool = draw_restart_uniforms(rng, settings, arrays.leaf_logref.shape[1])
        if settings.restarts:
            starts = expand_uniforms(pool, width)
        allowed = np.ascontiguousarray(env.ref_probs > 0.0)
        log_policy = np.empty_like(z)
        token_log_policy_into(z, allowed, log_policy)
        horizon = int(env.horizon)
        return TokenLogitState(
            z=z, allowed=allowed, log_policy=log_policy, bound=float(bound), beta=float(beta), horizon=horizon,
            starts=starts, work=new_token_logit_work(env.n_leaves, n_states, vocab, horizon),
            leaf_logp=np.empty(env.n_leaves), scratch=np.empty(n_states), settings=settings,
        )

    def initial_view(self, arrays: EnvArrays, state: TokenLogitState) -> IterateView:
        """The view of ``pi_z`` at the initial logits (``= pi_ref``) with every leaf as a slot."""
        view = all_leaves_view(arrays, arrays.leaf_logref)
        token_logit_write_view(state.z, state.allowed, state.log_policy, view,
                               np.ones(state.z.shape[0], dtype=np.bool_), state.leaf_logp, state.scratch)
        return view

    def solve(self, problem: Any, state: TokenLogitState, view: IterateView, contexts: np.ndarray,
              workspace: Any = None) -> None:
        """Paper mode: the argmin of every context flagged in ``contexts`` (bool ``(nc,)``) over all its data."""
        check_all_leaf_slots(view, self.name)
        data = gather_problem_data(problem, view, contexts)
        loss = loss_parameters(problem)
        bonus_active = loss.bonus_kind != BONUS_NONE and loss.alpha > 0.0
        s = state.settings
        written = np.zeros(state.z.shape[0], dtype=np.bool_)
        for k, x in enumerate(data.contexts):
            starts = state.starts if bonus_active and data.bonus_ptr[k + 1] > data.bonus_ptr[k] else state.starts[:0]
            _, status, iterations, disagreement, improved, changed = token_logit_solve_context(
                state.z[x], state.allowed[x], data, k, loss, state.bound, s.tolerance, s.max_iterations, starts,
                s.disagreement_tolerance, state.work)
            problem.counters[COUNTER_SOLVES] += 1
            record_solve(problem.counters, iterations, status == STATUS_CONVERGED, disagreement, improved)
            if may_be_nonconvex(loss.pair_kind, loss.bonus_kind, loss.alpha):  # a local method: no certificate
                record_certificate(problem.counters, problem.largest_gap, 0.0, -math.inf, False)
            if changed:
                written[x] = True
                problem.changed[x] = True
        token_logit_write_view(state.z, state.allowed, state.log_policy, view, written, state.leaf_logp,
                               state.scratch)

    def gradient_step(self, problem: Any, state: TokenLogitState, view: IterateView, batch: Any,
                      learning_rate: float | None = None, workspace: Any = None) -> None:
        """trl mode: one projected gradient step of the fresh batch's mean loss per context of the batch."""
        check_all_leaf_slots(view, self.name)
        data, lr = batch_leaf_data(problem, view, batch, learning_rate)
        loss = loss_parameters(problem)
        written = np.zeros(state.z.shape[0], dtype=np.bool_)
        for k, x in enumerate(data.contexts):
            token_logit_gradient_step_context(state.z[x], state.allowed[x], data, k, loss, state.bound, lr,
                                              state.work)
            problem.counters[COUNTER_SOLVES] += 1
            written[x] = True
            problem.changed[x] = True
        token_logit_write_view(state.z, state.allowed, state.log_policy, view, written, state.leaf_logp,
                               state.scratch)

    # ---------------------------------------------------------------- outputs
    def token_policy(self, env: TokenMDP, state: TokenLogitState) -> np.ndarray:
        """Token-level ``pi_z(a|s)`` ``(n_contexts, n_states, A)`` for :func:`xposim.exact.evaluate`."""
        log_policy = np.empty_like(state.z)
        token_log_policy_into(state.z, state.allowed, log_policy)
        return np.exp(log_policy)

    def describe(self) -> dict:
        return {"policy_class": self.name, "bound": self.bound}
