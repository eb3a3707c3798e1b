"""The tabular reward-induced class ``Pi_F`` and its per-round argmin (THEORY 3): exact for convex
objectives (DPO, IPO); for the non-convex bonus objectives (XPO, ...) the local minimum reached
from the warm start, or the lowest over the champion starts too (see "Non-convexity" below).

Class: ``F = [0, R_max]^{trajectories}``, ``log pi_f(tau|x) = log pi_ref(tau|x) + f(tau)/beta - log Z_f(x)``.
Realizable (``f = r`` gives ``pi*_beta``) with ``V_max <= R_max``.

Modules, in the order a reader meets them:

* :mod:`~xposim.policies.tabular.state` — the parameters carried per context (one value per observed
  leaf and one shared value ``g`` for the rest) and the solver's scratch memory;
* :mod:`~xposim.policies.tabular.objective` — the objective of one context, its gradient and curvature;
* :mod:`~xposim.policies.tabular.newton` — the projected-Newton argmin on the box;
* :mod:`~xposim.policies.tabular.components` — which minimizer is returned when the argmin is a set;
* :mod:`~xposim.policies.tabular.certified` — the global minimum of a non-convex (bonus) objective with a
  proven lower bound (branch-and-bound);
* :mod:`~xposim.policies.tabular.frontier` — the last search of each context, kept so that the next
  round's certified solve starts from it;
* :mod:`~xposim.policies.tabular.solve` — the round's argmin context by context (warm start, derivative
  cache, the certified solver for the non-convex bonus objectives);
* :mod:`~xposim.policies.tabular.round_objective` — one round's argmin from explicit counts
  (:func:`solve_round_objective`), for checking any round of any run;
* :mod:`~xposim.policies.tabular.gradient_step` — trl mode;
* :mod:`~xposim.policies.tabular.policy_class` — :class:`TabularClass`, the :class:`~xposim.policies.base.PolicyClass`.
"""
from xposim.policies.tabular.certified import (
    certified_minimize,
    certified_minimize_reusing,
    new_certificate_workspace,
)
from xposim.policies.tabular.components import recenter_components
from xposim.policies.tabular.gradient_step import tabular_gradient_step
from xposim.policies.tabular.newton import kink_stationary, projected_gradient_norm, projected_newton
from xposim.policies.tabular.objective import context_objective, objective_value
from xposim.policies.tabular.policy_class import TabularClass
from xposim.policies.tabular.round_objective import RoundSolution, solve_round_objective
from xposim.policies.tabular.solve import tabular_solve, tabular_solve_context
from xposim.policies.tabular.state import TabularState, Workspace, new_workspace

__all__ = [
    "TabularClass",
    "TabularState",
    "Workspace",
    "new_workspace",
    "context_objective",
    "objective_value",
    "projected_newton",
    "projected_gradient_norm",
    "kink_stationary",
    "recenter_components",
    "tabular_solve",
    "tabular_solve_context",
    "tabular_gradient_step",
    "certified_minimize",
    "certified_minimize_reusing",
    "new_certificate_workspace",
    "solve_round_objective",
    "RoundSolution",
]
