"""The policy-class interface of xposim (THEORY 3).

Adding a policy class
---------------------
Subclass :class:`PolicyClass` and implement ``validate``, ``create_state`` and ``solve`` (and
``gradient_step`` for trl mode); then pass an instance as ``policy_class=`` to
:func:`xposim.simulate` or :func:`xposim.learners.run_learner`. Check it with the contract tests
of :mod:`xposim.testing` (``class TestMine(PolicyClassContract): ...``), which every built-in
class passes too.

The runner (``xposim.learners.runner``) plays a round in one of two ways, whatever the class:

* *fused loop*: a class registered in :mod:`xposim.learners.fused` (the tabular and finite classes)
  runs whole chunks of rounds inside one numba function — the same round logic and the same
  argmin kernels as below, without the Python call per round;
* *generic loop*: any other class: the jitted round logic (:func:`xposim.learners.round.begin_round`),
  then the class's ``solve`` (paper mode) or ``gradient_step`` (trl mode) from Python, then the
  jitted bookkeeping (:func:`xposim.learners.round.end_round`). Numba functions passed as
  arguments defeat numba's on-disk cache, hence the fused loops are written per class.

A class writes its new iterate into the view's ``slot_logw``, ``rest_logscale`` and
``log_partition`` (use :func:`~xposim.policies.view.view_normalize`) and marks the contexts whose
iterate changed.

The shared data structures live in their own modules: :mod:`xposim.policies.arrays`
(:class:`EnvArrays`), :mod:`xposim.policies.view` (:class:`IterateView`),
:mod:`xposim.policies.store` (:class:`PairStore`) and :mod:`xposim.policies.solving`
(:class:`SolveProblem`, :class:`SolverSettings`, counters).
"""
from __future__ import annotations

import abc
import math
from typing import Any

import numpy as np

from xposim.envs.token_mdp import TokenMDP
from xposim.policies.arrays import EnvArrays
from xposim.policies.solving import SolverSettings
from xposim.policies.view import IterateView, new_view

# Names that lived here before the shared structures got their own modules. numba's on-disk cache
# pickles argument types by module path and unpickles an index before it checks the source stamp, so
# an index written by an older xposim would fail to load ("Can't get attribute 'PairStore'") instead of
# being recompiled; these aliases let old indexes load and be discarded as stale.
from xposim.policies.solving import SolveProblem  # noqa: E402,F401  (cache compatibility)
from xposim.policies.store import PairStore  # noqa: E402,F401  (cache compatibility)



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

    Contract (all arrays at trajectory level, see :mod:`xposim.policies.view`):

    * ``name`` — short identifier used in results and error messages.
    * ``validate(env)`` — raise ``ValueError`` (naming the argument) if the class cannot be used on
      ``env`` (e.g. a log-linear class without ``env.features``).
    * ``is_context_separable`` — True if a solve only changes the contexts that received data
      (tabular); False if any solve may change every context (finite, log-linear).
    * ``supports_gradient_steps`` — True if ``gradient_step`` is implemented (trl mode).
    * ``create_state(env, arrays, beta, settings, rng=None)`` — the class's mutable parameters (any
      object; a namedtuple of arrays for the built-in classes). ``rng`` is the run's
      ``numpy.random.Generator``: a class draws the random starts of its multi-start solves from
      it (``settings.restarts``; see :func:`~xposim.policies.solving.draw_restart_uniforms`), first
      thing in the run, so the starts are a function of the run's seed.
    * ``initial_view(arrays, state)`` — the :class:`IterateView` of ``pi^(1)`` (``pi_ref`` for
      Algorithm 1; slots pre-created as the class needs them).
    * ``solver_workspace(arrays, settings, pair_capacity)`` — scratch memory the argmin reuses
      across rounds (``None`` if it needs none); passed back as ``workspace=``.
    * ``solve(problem, state, view, contexts, workspace=None)`` — paper mode (Algorithm 1, line 6):
      replace the iterate by the argmin over all the data (``problem`` is a :class:`SolveProblem`) on
      the contexts flagged in ``contexts`` (bool ``(nc,)``; a non-separable class may change any
      context); write the view; set ``problem.changed[x]`` for every context whose iterate changed
      and bump ``problem.counters[COUNTER_SOLVES]`` (and ``COUNTER_FAILURES`` /
      ``COUNTER_DISAGREEMENTS`` when relevant: they become table columns).
    * ``gradient_step(problem, state, view, batch, workspace=None)`` — trl mode: one gradient step of
      the fresh batch's mean loss; ``batch = (contexts, chosen_slots, rejected_slots, bonus_slots
      (-1: none), bonus_weights, n_batch, learning_rate)`` (int64/float64 arrays of length ``B``).
    * ``check_learner(learner, plan, env)`` — raise ``ValueError`` (naming the learner) if the class
      cannot run ``learner`` (its :class:`~xposim.learners.config.Plan` ``plan``) on ``env``; the
      default accepts every learner.
    * ``describe()`` — a dict of the class settings for result tables.
    """

    name: str = "policy_class"
    is_context_separable: bool = True
    supports_gradient_steps: bool = False

    @abc.abstractmethod
    def validate(self, env: TokenMDP) -> None: ...

    @abc.abstractmethod
    def create_state(self, env: TokenMDP, arrays: EnvArrays, beta: float, settings: SolverSettings,
                     rng: np.random.Generator | None = None) -> Any: ...

    def initial_view(self, arrays: EnvArrays, state: Any) -> IterateView:
        return new_view(arrays)

    def solver_workspace(self, arrays: EnvArrays, settings: SolverSettings, pair_capacity: int) -> Any:
        return None

    @abc.abstractmethod
    def solve(self, problem: Any, state: Any, view: IterateView, contexts: np.ndarray, workspace: Any = None) -> Any: ...

    def gradient_step(self, problem: Any, state: Any, view: IterateView, batch: Any, workspace: Any = None) -> Any:
        raise ValueError(f"policy class {self.name!r} does not support mode='trl' (one gradient step per batch)")

    def check_learner(self, learner: Any, plan: Any, env: TokenMDP) -> None:
        return None

    def describe(self) -> dict:
        return {"policy_class": self.name}
