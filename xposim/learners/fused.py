"""Fused round loops: a policy class's whole round (the round logic of :mod:`xposim.learners.round`
and the class's argmin) inside one numba function, and the registry that tells the runner which class has one.

A class without a fused loop runs in the runner's generic loop (the jitted round logic, then the
class's ``solve`` or ``gradient_step`` from Python). Numba functions passed as arguments defeat
numba's on-disk cache, so a fused loop is written once per class, here, and looked up by class:
the runner asks :func:`fused_loop_for` and never branches on the class itself.

Every loop reads as Algorithm 1 of the paper (:mod:`xposim.learners.round`): ``begin_round``
(sample, label, record), the class's argmin over all the data, ``end_round`` (metrics).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numba import njit

from xposim.learners.metrics import refresh_values
from xposim.learners.plan import LossReference, Mode
from xposim.learners.round import begin_round, end_round
from xposim.learners.state import EngineState
from xposim.policies.arrays import EnvArrays
from xposim.policies.base import PolicyClass
from xposim.policies.finite import FiniteClass, FiniteState, finite_solve
from xposim.policies.solving import SolveProblem
from xposim.policies.store import PairStore
from xposim.policies.tabular import TabularClass, TabularState, Workspace, tabular_gradient_step, tabular_solve
from xposim.policies.view import IterateView


@njit(cache=True, nogil=True)
def offline_problem(plan, consts, eng: EngineState, store: PairStore) -> SolveProblem:
    """The single argmin of an offline learner: all pairs, no bonus, no new batch."""
    return SolveProblem(store, eng.bonus_count, eng.bonus_weight, eng.loss_ref_logp, plan.pair_kind,
                        plan.pair_param, plan.bonus_kind, 0.0, consts.beta, eng.changed, eng.counters,
                        eng.batch_context, eng.batch_chosen, eng.batch_rejected, eng.batch_bonus, 0, False,
                        eng.largest_gap)


@njit(cache=True, nogil=True)
def run_rounds_tabular(first_round: int, uniforms: np.ndarray, arrays: EnvArrays, plan, consts,
                       alpha_chunk: np.ndarray, view: IterateView, eng: EngineState, store: PairStore,
                       state: TabularState, ws: Workspace) -> None:
    """Rounds ``first_round .. first_round + len(uniforms) - 1`` of a learner on the tabular class
    (``alpha_chunk[i]`` is the bonus weight of round ``first_round + i``)."""
    for i in range(uniforms.shape[0]):
        t = first_round + i
        problem = begin_round(t, uniforms[i], arrays, plan, alpha_chunk[i], view, eng, store, True, consts)
        if plan.mode == Mode.PAPER:
            # Alg. 1: pi^(t+1) = argmin_pi alpha sum log pi(tau~) + L_DPO(pi; D)
            tabular_solve(state, view, arrays.leaf_logref, problem, ws, eng.solve_mask)
        else:
            tabular_gradient_step(state, view, arrays.leaf_logref, problem, ws, eng.batch_context,
                                  eng.batch_chosen, eng.batch_rejected, eng.batch_bonus,
                                  eng.batch_bonus_weight, plan.batch_size, plan.learning_rate)
        end_round(t, arrays, plan, view, eng, consts)


@njit(cache=True, nogil=True)
def solve_offline_tabular(arrays: EnvArrays, plan, consts, view: IterateView, eng: EngineState,
                          store: PairStore, state: TabularState, ws: Workspace, any_data: np.ndarray) -> None:
    """Offline learners on the tabular class: one argmin of every context with data."""
    problem = offline_problem(plan, consts, eng, store)
    tabular_solve(state, view, arrays.leaf_logref, problem, ws, any_data)
    refresh_values(arrays, view, eng, consts.beta, np.bool_(True))


@njit(cache=True, nogil=True)
def run_rounds_finite(first_round: int, uniforms: np.ndarray, arrays: EnvArrays, plan, consts,
                      alpha_chunk: np.ndarray, view: IterateView, eng: EngineState, store: PairStore,
                      state: FiniteState) -> None:
    """Rounds of a learner on the finite class (exact argmin by enumeration, paper mode only;
    ``alpha_chunk[i]`` is the bonus weight of round ``first_round + i``)."""
    recompute = plan.reference_mode == LossReference.PREVIOUS_ITERATE
    for i in range(uniforms.shape[0]):
        t = first_round + i
        problem = begin_round(t, uniforms[i], arrays, plan, alpha_chunk[i], view, eng, store, False, consts)
        # Alg. 1: pi^(t+1) = argmin over the class (enumeration)
        finite_solve(state, view, problem, eng.batch_context, eng.batch_chosen, eng.batch_rejected,
                     eng.batch_bonus, plan.batch_size, eng.solve_mask, recompute)
        end_round(t, arrays, plan, view, eng, consts)


@njit(cache=True, nogil=True)
def solve_offline_finite(arrays: EnvArrays, plan, consts, view: IterateView, eng: EngineState,
                         store: PairStore, state: FiniteState, any_data: np.ndarray) -> None:
    """Offline learners on the finite class: one argmin (enumeration) over all the pairs."""
    problem = offline_problem(plan, consts, eng, store)
    finite_solve(state, view, problem, eng.batch_context, eng.batch_chosen, eng.batch_rejected,
                 eng.batch_bonus, 0, any_data, True)
    refresh_values(arrays, view, eng, consts.beta, np.bool_(True))


# ============================================================================ registry
@dataclass(frozen=True)
class FusedLoop:
    """The fused kernels of one policy class, called with one signature whatever the class.

    ``run_rounds(first_round, uniforms, arrays, plan, consts, alpha_chunk, view, eng, store, state, workspace)``
    plays a chunk of rounds; ``solve_offline(arrays, plan, consts, view, eng, store, state, workspace, any_data)``
    is the single argmin of an offline learner. ``workspace`` is what the class's
    :meth:`~xposim.policies.base.PolicyClass.solver_workspace` returned (``None`` if nothing).
    """

    run_rounds: Callable
    solve_offline: Callable


_FUSED: dict[type, FusedLoop] = {}


def register_fused_loop(policy_class: type, loop: FusedLoop) -> None:
    """Declare ``loop`` the fused loop of instances of ``policy_class`` (exact type; subclasses that
    override the argmin must not inherit it, so they fall back to the generic loop)."""
    if not (isinstance(policy_class, type) and issubclass(policy_class, PolicyClass)):
        raise ValueError(f"policy_class must be a PolicyClass subclass, got {policy_class!r}")
    _FUSED[policy_class] = loop


def fused_loop_for(pclass: PolicyClass) -> FusedLoop | None:
    """The fused loop of ``pclass``'s exact type, or ``None`` (the runner's generic loop)."""
    return _FUSED.get(type(pclass))


register_fused_loop(TabularClass, FusedLoop(run_rounds_tabular, solve_offline_tabular))
register_fused_loop(FiniteClass, FusedLoop(
    lambda *args: run_rounds_finite(*args[:-1]),  # the finite class has no workspace
    lambda arrays, plan, consts, view, eng, store, state, workspace, any_data: solve_offline_finite(
        arrays, plan, consts, view, eng, store, state, any_data),
))
