"""chiPO's realizable class ``Pi_chi`` on the tabular box (Huang et al. 2024, arXiv 2407.13399; THEORY 4.5).

Class: ``F = [0, R_max]^{trajectories}``, ``pi_f(tau|x) = pi_ref(tau|x) z_f(tau)`` with
``phi(z_f(tau)) = 1 + (f(tau) - mu_f(x)) / beta``, ``phi(z) = z + log z`` (so
``z_f = phi^{-1}((f - Z_f)/beta)`` with ``Z_f = mu_f - beta``) and ``mu_f(x)`` the normalizer
(:func:`xposim.chi_link.chi_normalizer`). ``f = r`` gives the mixed-chi^2 optimum ``pi*_mix``
(:func:`xposim.mixed_chi2.solve_mixed_chi2`): the class is realizable for chiPO's objective as the
exponential-tilt class :class:`~xposim.policies.tabular.TabularClass` is for DPO's.

The argmin. In this class chiPO's margin is linear in ``f``:
``beta [phi(z_f(tau+)) - phi(z_f(tau-))] = f(tau+) - f(tau-)``, and on the box
``|f(tau+) - f(tau-)| <= R_max <= 2 r_max`` so chiPO's clip at ``2 r_max`` never binds. chiPO's
loss over this class is therefore ``sum -log sigma(f(tau+) - f(tau-))``, a box-constrained
Bradley–Terry fit — the same function of ``f`` as DPO's loss over the tilt class (whose margin
``beta (log pi_f/pi_ref)(tau+) - (.)(tau-)`` is also ``f(tau+) - f(tau-)``). The class solves it with
the tilt class's exact convex argmin (same selection rule among minimizers) and maps ``f`` to the
policy through chiPO's link instead of ``e^{f/beta}``. Only losses whose margin is linear in ``f``
in this class are supported: the chiPO pair loss, no bonus, paper mode; anything else is refused
by :meth:`ChiTabularClass.check_learner` (DPO's loss over this class is not convex in ``f``).

The class has no fused loop of its own: the runner's generic loop calls :meth:`ChiTabularClass.solve`
(one Python call per round online, one per run offline), which runs the same jitted argmin
(:func:`chi_solve`); the fused loops would cost two more large compilations for no gain offline.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from xposim.chi_link import chi_normalizer
from xposim.envs.token_mdp import TokenMDP
from xposim.losses.kinds import BONUS_NONE, PAIR_CHIPO, PAIR_DPO
from xposim.numerics import NEG_INF
from xposim.policies.solving import SolveProblem
from xposim.policies.tabular.policy_class import TabularClass
from xposim.policies.tabular.solve import tabular_solve
from xposim.policies.tabular.state import TabularState, Workspace, new_workspace
from xposim.policies.view import IterateView, view_normalize


@njit(cache=True)
def chi_relink_context(state: TabularState, view: IterateView, leaf_logref: np.ndarray, x: int,
                       log_mass: np.ndarray, values: np.ndarray, log_z: np.ndarray, u: np.ndarray) -> None:
    """Write context ``x``'s policy ``pi_f`` of chiPO's link into ``view`` from the class state.

    Items: the ``state.known[x]`` slots (mass ``pi_ref`` of their leaf, value ``values[x, s]``) and
    the unobserved rest (mass ``pi_ref`` of the rest, value ``rest_value[x]``); ``log_mass``,
    ``values``, ``log_z``, ``u`` are scratch of length ``>= n_leaves + 1``.
    """
    k = state.known[x]
    for s in range(k):
        log_mass[s] = leaf_logref[x, view.slot_leaf[x, s]]
        values[s] = state.values[x, s]
    log_mass[k] = view.rest_tree[x, 1]
    values[k] = state.rest_value[x]
    chi_normalizer(log_mass, values, k + 1, state.beta, log_z, u)
    for s in range(k):
        view.slot_logw[x, s] = log_mass[s] + log_z[s] if log_mass[s] > NEG_INF else NEG_INF
    view.rest_logscale[x] = log_z[k] if log_mass[k] > NEG_INF else 0.0
    view_normalize(view, x)


@njit(cache=True)
def chi_relink(state: TabularState, view: IterateView, leaf_logref: np.ndarray, contexts: np.ndarray) -> None:
    """:func:`chi_relink_context` for every context flagged in ``contexts`` (bool ``(nc,)``)."""
    n = leaf_logref.shape[1] + 1
    log_mass = np.empty(n)
    values = np.empty(n)
    log_z = np.empty(n)
    u = np.empty(n)
    for x in range(contexts.shape[0]):
        if contexts[x]:
            chi_relink_context(state, view, leaf_logref, x, log_mass, values, log_z, u)


@njit(cache=True)
def chi_solve(state: TabularState, view: IterateView, leaf_logref: np.ndarray, problem: SolveProblem,
              ws: Workspace, contexts: np.ndarray) -> None:
    """The argmin over chiPO's class on the flagged contexts (module docstring): the box
    Bradley–Terry fit in ``f`` (``problem`` must carry ``PAIR_DPO``'s margin, see
    :func:`bradley_terry_problem`), then the chiPO link."""
    tabular_solve(state, view, leaf_logref, problem, ws, contexts)
    chi_relink(state, view, leaf_logref, contexts)


def bradley_terry_problem(problem: SolveProblem) -> SolveProblem:
    """``problem`` with the pair loss that has chiPO's margin over this class: ``-log sigma(f+ - f-)``."""
    return problem._replace(pair_kind=PAIR_DPO, pair_param=0.0)


class ChiTabularClass(TabularClass):
    """chiPO's realizable class ``{pi_ref phi^{-1}((f - Z_f)/beta) : f in [0, R_max]^{leaves}}`` (module docstring).

    Use it with the ``chipo`` learner (its default class on tabular environments); any other
    learner is refused with an error naming what the class supports. No trl mode.
    """

    name = "tabular_chi"
    supports_gradient_steps = False

    def check_learner(self, learner, plan, env: TokenMDP) -> None:
        """Refuse learners whose loss is not linear in ``f`` over this class (module docstring)."""
        label = getattr(learner, "label", learner)
        if plan.pair_kind != PAIR_CHIPO or plan.bonus_kind != BONUS_NONE:
            raise ValueError(
                f"policy class 'tabular_chi' (chiPO's class) supports the chiPO pair loss without a bonus "
                f"(learner 'chipo'); learner {label!r} has another loss or a bonus: use policy_class='tabular'")
        if plan.mode != 0:
            raise ValueError(f"policy class 'tabular_chi' has no trl mode (learner {label!r} has mode='trl')")
        if 2.0 * plan.pair_param < env.r_max:
            raise ValueError(
                f"policy class 'tabular_chi' needs chiPO's clip 2 r_max >= the box width R_max = {env.r_max} "
                f"(learner {label!r} has r_max = {plan.pair_param}); otherwise its loss is not the box "
                f"Bradley–Terry fit")

    def solve(self, problem: SolveProblem, state: TabularState, view: IterateView, contexts: np.ndarray,
              workspace: Workspace | None = None) -> None:
        """The argmin of every flagged context (:func:`chi_solve`)."""
        if workspace is None:
            workspace = new_workspace(state.values.shape[1], problem.store.edge_weight.shape[0], state.dense_limit,
                                      state.max_nodes if state.certify else 0)
        chi_solve(state, view, state.leaf_logref, bradley_terry_problem(problem), workspace, contexts)

    def gradient_step(self, problem, state, view, batch, workspace=None):
        return super(TabularClass, self).gradient_step(problem, state, view, batch, workspace)


__all__ = ["ChiTabularClass", "chi_relink", "chi_relink_context", "chi_solve", "bradley_terry_problem"]
