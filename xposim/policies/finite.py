"""The finite class ``Pi = {pi_1, ..., pi_N}`` given explicitly (THEORY 3, the theory's own setting).

Each member is a token-level policy ``(n_contexts, n_states, A)``; the class tabulates its leaf
log-probabilities ``(N, n_contexts, n_leaves)`` once. The argmin is exact by enumeration: the
objective of every member is kept up to date incrementally (each new pair adds one pair-loss
term per member, each bonus sample updates one bonus term per member), so a round costs
``O(N)`` (plus ``O(N (E_x + L))`` for a context whose loss reference drifted, SELM).

Objective of member ``m`` (all contexts together: a member is a whole policy)::

    F(m) = sum_{x,(i,j)} W_xij pair_loss(l_m(i), l_m(j)) + alpha(t) * sum_{x,i} M_xi bonus_unit_m(i)

with ``bonus_unit`` the bonus kernel at ``alpha = 1`` (every bonus of xposim is linear in ``alpha``,
so an alpha schedule costs nothing). Ties go to the LOWEST index (strict ``<`` scan): identical
members accumulate identical sums, so the tie is exact.

``pi^(1) = pi_ref`` (Algorithm 1) whether or not ``pi_ref`` is a member; the first solve picks a
member. Members must have bounded density ratios (THEORY 3): ``pi_m(tau|x) > 0`` exactly where
``pi_ref(tau|x) > 0`` — otherwise the XPO objective is ``-inf``. The class is not
context-separable: a new member changes every context. Gradient steps (trl mode) make no sense
on a discrete class and raise ``ValueError``.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

from xposim._jit import internal_kernel
from xposim.envs.token_mdp import TokenMDP
from xposim.losses.bonus import bonus_loss
from xposim.losses.kinds import BONUS_NONE
from xposim.losses.pair import pair_loss
from xposim.policies.arrays import EnvArrays
from xposim.policies.base import PolicyClass
from xposim.policies.view import IterateView, new_view, view_create_slot, view_normalize
from xposim.policies.solving import COUNTER_SOLVES, SolveProblem, SolverSettings, draw_restart_uniforms

FiniteState = namedtuple(
    "FiniteState",
    [
        "member_logp",  # (N, nc, L) log pi_m(tau|x)
        "pair_total",  # (N,)
        "bonus_total",  # (N,) bonus terms at alpha = 1
        "pair_part",  # (N, nc) per-context parts
        "bonus_part",  # (N, nc)
        "count_used",  # (nc, L) bonus counts in the current objective
        "weight_used",  # (nc, L) bonus weights in the current objective
        "current",  # (1,) int64 index of the current member (-1: pi_ref, before the first solve)
        "objective",  # (N,) scratch: F(m) of the last solve
    ],
)
FiniteState.__doc__ = """Tabulated members and their running objectives (module docstring)."""


@internal_kernel
def _bonus_term(kind: int, logp: float, logp_ref: float, beta: float, count: float, weight: float) -> float:
    if count == 0.0:
        return 0.0
    loss, _ = bonus_loss(kind, logp, logp_ref, 1.0, beta, weight)
    return count * loss


@internal_kernel
def _recompute_context(state: FiniteState, problem: SolveProblem, x: int, n_slots: int) -> None:
    """Rebuild the context-``x`` parts of every member from all the data (after a reference drift)."""
    store = problem.store
    n_members = state.member_logp.shape[0]
    for m in range(n_members):
        pair_part = 0.0
        edge = store.context_head[x]
        while edge >= 0:
            a = store.edge_chosen[edge]
            b = store.edge_rejected[edge]
            loss, _, _ = pair_loss(problem.pair_kind, state.member_logp[m, x, a] - problem.loss_ref_logp[x, a],
                                   state.member_logp[m, x, b] - problem.loss_ref_logp[x, b], problem.beta,
                                   problem.pair_param)
            pair_part += store.edge_weight[edge] * loss
            edge = store.edge_next[edge]
        bonus_part = 0.0
        if problem.bonus_kind != BONUS_NONE:
            for s in range(n_slots):
                bonus_part += _bonus_term(problem.bonus_kind, state.member_logp[m, x, s], problem.loss_ref_logp[x, s],
                                          problem.beta, problem.bonus_count[x, s], problem.bonus_weight[x, s])
        state.pair_total[m] += pair_part - state.pair_part[m, x]
        state.bonus_total[m] += bonus_part - state.bonus_part[m, x]
        state.pair_part[m, x] = pair_part
        state.bonus_part[m, x] = bonus_part
    for s in range(n_slots):
        state.count_used[x, s] = problem.bonus_count[x, s]
        state.weight_used[x, s] = problem.bonus_weight[x, s]


@internal_kernel
def _update_bonus_slot(state: FiniteState, problem: SolveProblem, x: int, s: int) -> None:
    """Replace the bonus term of slot ``(x, s)`` if its count or weight changed."""
    new_count = problem.bonus_count[x, s]
    new_weight = problem.bonus_weight[x, s]
    old_count = state.count_used[x, s]
    old_weight = state.weight_used[x, s]
    if new_count == old_count and (new_weight == old_weight or new_count == 0.0):
        return
    for m in range(state.member_logp.shape[0]):
        lp = state.member_logp[m, x, s]
        lr = problem.loss_ref_logp[x, s]
        delta = (_bonus_term(problem.bonus_kind, lp, lr, problem.beta, new_count, new_weight)
                 - _bonus_term(problem.bonus_kind, lp, lr, problem.beta, old_count, old_weight))
        state.bonus_total[m] += delta
        state.bonus_part[m, x] += delta
    state.count_used[x, s] = new_count
    state.weight_used[x, s] = new_weight


@njit(cache=True)
def finite_solve(state: FiniteState, view: IterateView, problem: SolveProblem, batch_context: np.ndarray,
                 batch_chosen: np.ndarray, batch_rejected: np.ndarray, batch_bonus: np.ndarray, n_batch: int,
                 solve_mask: np.ndarray, recompute: bool) -> None:
    """Add the round's data to every member's objective and move to the argmin (ties: lowest index).

    ``recompute`` (loss reference drifted on the ``solve_mask`` contexts): rebuild those contexts'
    parts from all the data instead of adding the new terms.
    """
    n_members = state.member_logp.shape[0]
    n_contexts = view.n_slots.shape[0]
    if recompute:
        for x in range(n_contexts):
            if solve_mask[x]:
                _recompute_context(state, problem, x, view.n_slots[x])
    else:
        for b in range(n_batch):
            x = batch_context[b]
            c = batch_chosen[b]
            r = batch_rejected[b]
            if c != r:
                for m in range(n_members):
                    loss, _, _ = pair_loss(problem.pair_kind, state.member_logp[m, x, c] - problem.loss_ref_logp[x, c],
                                           state.member_logp[m, x, r] - problem.loss_ref_logp[x, r], problem.beta,
                                           problem.pair_param)
                    state.pair_total[m] += loss
                    state.pair_part[m, x] += loss
            if problem.bonus_kind != BONUS_NONE:
                _update_bonus_slot(state, problem, x, c)
                _update_bonus_slot(state, problem, x, r)
                if batch_bonus[b] >= 0:
                    _update_bonus_slot(state, problem, x, batch_bonus[b])
    best = 0
    for m in range(n_members):
        state.objective[m] = state.pair_total[m] + problem.alpha * state.bonus_total[m]
        if state.objective[m] < state.objective[best]:
            best = m
    problem.counters[COUNTER_SOLVES] += 1
    if best != state.current[0]:
        state.current[0] = best
        for x in range(n_contexts):
            for s in range(view.n_slots[x]):
                view.slot_logw[x, s] = state.member_logp[best, x, s]
            view.rest_logscale[x] = 0.0
            view_normalize(view, x)
            problem.changed[x] = True


@njit(cache=True)
def _create_all_slots(view: IterateView, leaf_logref: np.ndarray) -> None:
    for x in range(view.n_slots.shape[0]):
        for leaf in range(leaf_logref.shape[1]):
            view_create_slot(view, leaf_logref, x, leaf)


class FiniteClass(PolicyClass):
    """An explicit finite class of token-level policies (module docstring).

    Parameters
    ----------
    policies : ``(N, n_contexts, n_states, A)`` array (or a sequence of ``(n_contexts, n_states, A)``
        arrays), each a valid policy of the environment it will be used with.
    """

    name = "finite"
    is_context_separable = False
    supports_gradient_steps = False

    def __init__(self, policies) -> None:
        try:
            array = np.ascontiguousarray(np.asarray(policies, dtype=np.float64))
        except (TypeError, ValueError) as error:
            raise ValueError(f"policies must be an array (N, n_contexts, n_states, A) of probabilities ({error})") from None
        if array.ndim != 4 or array.shape[0] < 1:
            raise ValueError(f"policies must have shape (N >= 1, n_contexts, n_states, A), got {array.shape}")
        self.policies = array
        self._leaf_logp: np.ndarray | None = None
        self._env_id: int | None = None

    @property
    def size(self) -> int:
        """``N = |Pi|``."""
        return int(self.policies.shape[0])

    def leaf_logprobs(self, env: TokenMDP) -> np.ndarray:
        """``(N, n_contexts, n_leaves)`` log-probabilities of every member (validated, cached per env)."""
        from xposim.exact import trajectory_logprobs

        if self._leaf_logp is not None and self._env_id == id(env):
            return self._leaf_logp
        expected = env.ref_probs.shape
        if self.policies.shape[1:] != expected:
            raise ValueError(
                f"policies must have shape (N, n_contexts, n_states, A) = (N, {expected[0]}, {expected[1]}, "
                f"{expected[2]}) for this env, got {self.policies.shape}"
            )
        out = np.empty((self.size, env.n_contexts, env.n_leaves))
        ref_possible = env.trajectory_ref_logprobs > -np.inf
        for m in range(self.size):
            try:
                out[m] = trajectory_logprobs(env, self.policies[m])
            except ValueError as error:
                raise ValueError(f"policies[{m}] is not a valid policy: {error}") from None
            possible = out[m] > -np.inf
            if np.any(possible != ref_possible):
                x, k = np.argwhere(possible != ref_possible)[0]
                raise ValueError(
                    f"policies[{m}] must give positive probability exactly where pi_ref does (bounded density "
                    f"ratios, THEORY 3); context {x}, trajectory {k}: log pi_m = {out[m, x, k]:.3g}, "
                    f"log pi_ref = {env.trajectory_ref_logprobs[x, k]:.3g}"
                )
        self._leaf_logp = out
        self._env_id = id(env)
        return out

    def validate(self, env: TokenMDP) -> None:
        if not isinstance(env, TokenMDP):
            raise ValueError(f"env must be an xposim.envs.TokenMDP, got {type(env).__name__}")
        self.leaf_logprobs(env)

    def create_state(self, env: TokenMDP, arrays: EnvArrays, beta: float, settings: SolverSettings,
                     rng: np.random.Generator | None = None) -> FiniteState:
        """Objectives at zero, no current member (``pi^(1) = pi_ref``). The argmin is exact, so the random
        starts drawn from ``rng`` (the same block as every class, keeping a run's later draws class-independent)
        are not used."""
        draw_restart_uniforms(rng, settings, arrays.leaf_logref.shape[1])
        logp = self.leaf_logprobs(env)
        n, nc, n_leaves = logp.shape
        return FiniteState(
            member_logp=np.ascontiguousarray(logp),
            pair_total=np.zeros(n),
            bonus_total=np.zeros(n),
            pair_part=np.zeros((n, nc)),
            bonus_part=np.zeros((n, nc)),
            count_used=np.zeros((nc, n_leaves)),
            weight_used=np.ones((nc, n_leaves)),
            current=np.full(1, -1, dtype=np.int64),
            objective=np.zeros(n),
        )

    def initial_view(self, arrays: EnvArrays, state: FiniteState) -> IterateView:
        view = new_view(arrays)
        _create_all_slots(view, arrays.leaf_logref)  # slot s = leaf s; weights = log pi_ref
        return view

    def solve(self, problem: SolveProblem, state: FiniteState, view: IterateView, contexts: np.ndarray,
              workspace=None) -> None:
        """Add the round's data to every member's objective and move to the argmin (:func:`finite_solve`);
        the contexts whose loss reference drifted (SELM) are recomputed from all their data."""
        finite_solve(state, view, problem, problem.batch_context, problem.batch_chosen, problem.batch_rejected,
                     problem.batch_bonus, problem.n_batch, contexts, bool(problem.reference_drift))

    def describe(self) -> dict:
        return {"policy_class": self.name, "class_size": self.size}
