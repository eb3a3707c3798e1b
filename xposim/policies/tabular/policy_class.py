"""The tabular class as a :class:`~xposim.policies.base.PolicyClass`.
"""
from __future__ import annotations

import math

import numpy as np

from xposim.envs.token_mdp import TokenMDP
from xposim.policies.arrays import EnvArrays
from xposim.policies.base import PolicyClass
from xposim.policies.solving import SolveProblem, SolverSettings, draw_restart_uniforms
from xposim.policies.view import IterateView, new_view, view_normalize
from xposim.policies.tabular.gradient_step import tabular_gradient_step
from xposim.policies.tabular.solve import tabular_solve
from xposim.policies.tabular.state import FRONTIER_SLOTS, TabularState, Workspace, new_workspace


class TabularClass(PolicyClass):
    """Tabular reward-induced class ``{pi_f : f in [0, R_max]^{leaves}}`` (module docstring).

    Parameters
    ----------
    initial_value : the initial ``f`` of every leaf (``pi^(1) = pi_ref`` for any constant);
        ``None`` means ``R_max / 2``. Matters only through the selection rule for
        ``alpha = 0`` (leaves never compared keep it).
    """

    name = "tabular"
    is_context_separable = True
    supports_gradient_steps = True

    def __init__(self, initial_value: float | None = None) -> None:
        if initial_value is not None:
            if isinstance(initial_value, bool) or not isinstance(initial_value, (int, float)) or not math.isfinite(initial_value):
                raise ValueError(f"initial_value must be a finite real number in [0, R_max] or None, got {initial_value!r}")
        self.initial_value = initial_value

    def validate(self, env: TokenMDP) -> None:
        if not isinstance(env, TokenMDP):
            raise ValueError(f"env must be an xposim.envs.TokenMDP, got {type(env).__name__}")
        if self.initial_value is not None and not 0.0 <= self.initial_value <= env.r_max:
            raise ValueError(
                f"initial_value must lie in [0, r_max] = [0, {env.r_max}], got {self.initial_value!r}"
            )

    def create_state(self, env: TokenMDP, arrays: EnvArrays, beta: float, settings: SolverSettings,
                     rng: np.random.Generator | None = None) -> TabularState:
        """Every leaf at the initial value (``pi^(1) = pi_ref``); restart ``r`` puts leaf ``j`` at
        ``R_max u[r, j]`` and the unobserved aggregate at ``R_max u[r, L]`` (``u`` from ``rng``)."""
        self.validate(env)
        n_contexts, n_leaves = arrays.leaf_logref.shape
        start = env.r_max / 2.0 if self.initial_value is None else float(self.initial_value)
        restart_pool = draw_restart_uniforms(rng, settings, n_leaves)
        return TabularState(
            values=np.full((n_contexts, n_leaves), start),
            rest_value=np.full(n_contexts, start),
            known=np.zeros(n_contexts, dtype=np.int64),
            lower=0.0,
            upper=float(env.r_max),
            restart_pool=np.ascontiguousarray(restart_pool, dtype=np.float64),
            leaf_logref=np.ascontiguousarray(arrays.leaf_logref, dtype=np.float64),
            tolerance=float(settings.tolerance),
            max_iterations=int(settings.max_iterations),
            disagreement_tolerance=float(settings.disagreement_tolerance),
            dense_limit=int(settings.dense_limit),
            beta=float(beta),
            cache_d=np.zeros((n_contexts, n_leaves)),
            cache_value=np.zeros(n_contexts),
            cache_scale=np.zeros(n_contexts),
            cache_alpha=np.zeros(n_contexts),
            cache_count=np.zeros((n_contexts, n_leaves)),
            cache_weight=np.ones((n_contexts, n_leaves)),
            cache_valid=np.zeros(n_contexts, dtype=np.bool_),
            champion_starts=bool(settings.champion_starts),
            certify=settings.argmin == "certified",
            certificate_gap=float(settings.certificate_gap),
            max_nodes=int(settings.max_nodes),
            reuse_search=bool(settings.reuse_search),
        )

    def initial_view(self, arrays: EnvArrays, state: TabularState) -> IterateView:
        view = new_view(arrays)
        # every leaf starts at the same value g: pi^(1) = pi_ref; weights are log pi_ref + g / beta
        view.rest_logscale[:] = state.rest_value / state.beta
        for x in range(view.n_slots.shape[0]):
            view_normalize(view, x)
        return view

    def solver_workspace(self, arrays: EnvArrays, settings: SolverSettings, pair_capacity: int) -> Workspace:
        """Scratch memory of the argmin (:func:`~xposim.policies.tabular.state.new_workspace`), with the
        kept searches of up to ``FRONTIER_SLOTS`` contexts when certified solves reuse them."""
        certified = settings.argmin == "certified"
        slots = min(arrays.leaf_logref.shape[0], FRONTIER_SLOTS) if certified and settings.reuse_search else 0
        return new_workspace(arrays.leaf_logref.shape[1], pair_capacity, settings.dense_limit,
                             settings.max_nodes if certified else 0, slots)

    def solve(self, problem: SolveProblem, state: TabularState, view: IterateView, contexts: np.ndarray,
              workspace: Workspace | None = None) -> None:
        """The argmin of every flagged context (:func:`~xposim.policies.tabular.solve.tabular_solve`)."""
        if workspace is None:
            workspace = new_workspace(state.values.shape[1], problem.store.edge_weight.shape[0], state.dense_limit,
                                      state.max_nodes if state.certify else 0)
        tabular_solve(state, view, state.leaf_logref, problem, workspace, contexts)

    def gradient_step(self, problem: SolveProblem, state: TabularState, view: IterateView, batch,
                      workspace: Workspace | None = None) -> None:
        """trl mode (:func:`~xposim.policies.tabular.gradient_step.tabular_gradient_step`)."""
        contexts, chosen, rejected, bonus, bonus_weight, n_batch, learning_rate = batch
        if workspace is None:
            workspace = new_workspace(state.values.shape[1], max(int(n_batch), 1), state.dense_limit)
        tabular_gradient_step(state, view, state.leaf_logref, problem, workspace, contexts, chosen, rejected, bonus,
                              bonus_weight, int(n_batch), float(learning_rate))

    def describe(self) -> dict:
        return {"policy_class": self.name, "initial_value": self.initial_value}
