"""Run one learner for one seed: the Python driver around the jitted round (:mod:`xposim.learners.round`).

:func:`run_learner` builds the states, draws the run's uniforms in chunks from one
``numpy.random.Generator(PCG64(seed))`` (first the restart pool of the solver, then
``UNIFORMS_PER_PAIR * batch_size`` uniforms per round, round after round), runs the fused loop of
the built-in classes (or the generic per-round loop of any other :class:`PolicyClass`) and
returns a :class:`RunResult` with the checkpoint metrics and the final iterate.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time

import numpy as np

from xposim import exact
from xposim.envs.token_mdp import TokenMDP
from xposim.learners import metrics
from xposim.learners.config import AlphaBlocks, LearnerConfig
from xposim.learners.fused import fused_loop_for, offline_problem
from xposim.learners.plan import UNIFORMS_PER_PAIR, Mode, Sampler
from xposim.learners.round import begin_round, collect_offline_pairs, end_round
from xposim.learners.state import S_BEST, S_PREV_ALPHA, S_VALUE, RunConstants, new_engine_state
from xposim.policies.arrays import env_arrays, EnvArrays
from xposim.policies.base import PolicyClass
from xposim.policies.store import new_store
from xposim.policies.view import IterateView, token_log_policy_from_leaf_logprobs, view_leaf_logprobs_into
from xposim.policies.tabular import TabularClass
from xposim.policies.tabular.state import FRONTIER_SLOTS, certified_words
from xposim.resources import check_memory
from xposim.seeding import SeedLike, as_seed_sequence
from xposim.validation import check_int, check_positive

#: Rounds per chunk of pre-drawn uniforms (memory ``chunk * 5 * B`` floats).
CHUNK_ROUNDS = 16384


#: Policy classes that :func:`resolve_policy_class` builds from a name (with their default settings).
POLICY_CLASS_NAMES = ("tabular", "tabular_chi", "loglinear", "token_logit", "finite")


def resolve_policy_class(policy_class) -> PolicyClass:
    """A :class:`PolicyClass` from an instance or a name in :data:`POLICY_CLASS_NAMES`.

    ``"tabular"`` (reward-induced box class), ``"tabular_chi"`` (chiPO's class on the same box,
    :mod:`xposim.policies.tabular.chi_class`), ``"loglinear"`` (``f = <theta, phi>`` in a ball whose
    default radius is ``||env.reward_parameter||``), ``"token_logit"`` (bounded softmax logits per
    state); the finite class needs its members, so pass a ``FiniteClass(policies)`` instance.
    """
    from xposim.policies.loglinear import LogLinearClass
    from xposim.policies.token_logit import TokenLogitClass

    if isinstance(policy_class, PolicyClass):
        return policy_class
    if policy_class == "tabular":
        return TabularClass()
    if policy_class == "tabular_chi":
        from xposim.policies.tabular.chi_class import ChiTabularClass

        return ChiTabularClass()
    if policy_class == "loglinear":
        return LogLinearClass()
    if policy_class == "token_logit":
        return TokenLogitClass()
    if policy_class == "finite":
        raise ValueError("policy_class='finite' needs its members: pass xposim.policies.FiniteClass(policies)")
    raise ValueError(
        f"policy_class must be one of {list(POLICY_CLASS_NAMES)} or a PolicyClass instance, got {policy_class!r}"
    )


def check_beta(beta) -> float:
    """``beta``, finite and ``> 0`` (``ValueError`` naming it otherwise)."""
    return check_positive(beta, "beta")


def check_rounds(rounds) -> int:
    """``rounds``, an integer ``>= 1``."""
    return check_int(rounds, "rounds", 1)


def default_checkpoints(rounds: int, per_decade: int = 8) -> np.ndarray:
    """Log-spaced checkpoint rounds: ``0``, ``1``, about ``per_decade`` per decade, and ``rounds``."""
    rounds = check_rounds(rounds)
    grid = np.unique(np.round(np.logspace(0, math.log10(rounds), max(2, int(per_decade * math.log10(rounds)) + 2))))
    return np.unique(np.concatenate([[0, 1], grid.astype(np.int64), [rounds]])).astype(np.int64)


def check_checkpoints(checkpoints, rounds: int) -> np.ndarray:
    """Sorted unique int rounds in ``[0, rounds]`` (``None``: :func:`default_checkpoints`)."""
    if checkpoints is None:
        return default_checkpoints(rounds)
    try:
        array = np.asarray(checkpoints)
    except (TypeError, ValueError):
        raise ValueError(f"checkpoints must be a sequence of integers in [0, rounds], got {checkpoints!r}") from None
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"checkpoints must be a non-empty 1-d sequence of integers in [0, rounds], got {checkpoints!r}")
    if array.min() < 0 or array.max() > rounds:
        raise ValueError(f"checkpoints must lie in [0, rounds] = [0, {rounds}], got min {array.min()}, max {array.max()}")
    return np.unique(array.astype(np.int64))


#: float64 arrays of shape ``(n_contexts, n_leaves)`` a run holds (environment copies, iterate,
#: engine state, class state): an upper estimate for the built-in classes.
_LEAF_ARRAYS_PER_RUN = 24


def pair_capacity(n_contexts: int, n_leaves: int, learner: LearnerConfig, rounds: int) -> int:
    """Distinct pairs a run's store must hold: ``n_pairs`` (default ``rounds``) for offline
    learners, ``rounds * batch_size`` in paper mode, 1 in trl mode (only the fresh batch is used);
    never more than the ``n_contexts L (L - 1)`` ordered pairs that exist."""
    if learner.is_offline:
        pairs = learner.n_pairs if learner.n_pairs is not None else rounds
    elif learner.mode == "paper":
        pairs = rounds * learner.batch_size
    else:
        pairs = 1
    return min(pairs, n_contexts * n_leaves * max(n_leaves - 1, 1))


def estimate_run_bytes(env: TokenMDP, learner: LearnerConfig, rounds: int, n_checkpoints: int,
                       chunk_rounds: int = CHUNK_ROUNDS) -> int:
    """Bytes one :func:`run_learner` call allocates (its large arrays), for memory checks.

    ``_LEAF_ARRAYS_PER_RUN`` per-leaf arrays, the pair store and the solver's per-edge scratch
    (about 16 words per pair of :func:`pair_capacity`), one block of uniforms and alphas, and the
    checkpoint table. Reward-model learners: their own estimate
    (:func:`~xposim.learners.reward_models.runner.estimate_reward_model_bytes`).
    """
    from xposim.learners.reward_models import RewardModelLearner
    from xposim.learners.reward_models.runner import estimate_reward_model_bytes

    if isinstance(learner, RewardModelLearner):
        return estimate_reward_model_bytes(env, learner, rounds, n_checkpoints)
    n_contexts, n_leaves = int(env.n_contexts), int(env.n_leaves)
    pairs = pair_capacity(n_contexts, n_leaves, learner, rounds)
    block = min(chunk_rounds, rounds * learner.batch_size)
    words = (_LEAF_ARRAYS_PER_RUN * n_contexts * (n_leaves + 1) + 16 * pairs + block * (UNIFORMS_PER_PAIR + 1)
             + n_checkpoints * metrics.N_METRICS + learner.solver.dense_limit ** 2
             + learner.solver.restarts * (n_leaves + 1))
    solves = learner.is_offline or learner.mode == "paper"  # trl mode takes gradient steps: no argmin
    if solves and learner.solver.argmin == "certified":  # the branch-and-bound's workspace and kept searches
        slots = min(n_contexts, FRONTIER_SLOTS) if learner.solver.reuse_search else 0
        words += certified_words(n_leaves, pairs, learner.solver.max_nodes, slots)
    return 8 * words


@dataclasses.dataclass
class RunResult:
    """Output of :func:`run_learner`.

    ``metrics`` is ``(n_checkpoints, len(xposim.learners.metrics.METRIC_COLUMNS))``; :meth:`leaf_logprobs` and
    :meth:`token_policy` give the final iterate at trajectory and token level.
    """

    learner: LearnerConfig
    metrics: np.ndarray
    columns: tuple[str, ...]
    view: IterateView
    arrays: EnvArrays
    env: TokenMDP
    beta: float
    optimal_value: float
    counters: np.ndarray
    final_value: float
    store: object = None
    """The :class:`~xposim.policies.store.PairStore` of the run (all pairs; for inspection and tests)."""
    class_state: object = None
    """The policy class's final state (e.g. :class:`~xposim.policies.tabular.TabularState`)."""
    engine_state: object = None
    """The round's final :class:`~xposim.learners.state.EngineState` (bonus counts, loss reference, ...)."""

    def leaf_logprobs(self) -> np.ndarray:
        """``log pi_hat(tau|x)``, ``(n_contexts, n_leaves)``, of the last iterate."""
        out = np.empty(self.arrays.leaf_logref.shape)
        view_leaf_logprobs_into(self.view, self.arrays, out)
        return out

    def token_policy(self) -> np.ndarray:
        """The last iterate as a token-level policy ``(n_contexts, n_states, A)`` (for ``xposim.exact.evaluate``)."""
        out = np.empty(self.env.ref_probs.shape)
        token_log_policy_from_leaf_logprobs(self.leaf_logprobs(), self.env.vocab_size, self.env.n_states, out)
        return np.exp(out)


def _behaviour_cdf(env: TokenMDP, learner: LearnerConfig, plan) -> np.ndarray:
    uses = Sampler.BEHAVIOUR in (plan.first_sampler, plan.second_sampler, plan.bonus_sampler)
    policy = learner.behaviour_policy()
    if not uses:
        return np.zeros((1, 1))
    if policy is None:
        raise ValueError("behaviour must be given when a learner samples from a behaviour policy")
    try:
        logp = exact.trajectory_logprobs(env, policy)
    except ValueError as error:
        raise ValueError(f"behaviour is not a valid policy of the environment: {error}") from None
    probs = np.exp(logp)
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]
    return np.ascontiguousarray(cdf)


def tempered_reference_cdf(env: TokenMDP, arrays: EnvArrays, temperature: float) -> np.ndarray:
    """Cumulative trajectory distribution of ``pi_ref`` at token temperature ``T``, in leaf order.

    Per state ``pi_T(a|s) = pi_ref(a|s)^{1/T} / sum_b pi_ref(b|s)^{1/T}`` (``T = 0``: the argmax
    token, ties to the lowest), as trl's generation samples both responses at ``T`` (0.9 by default).
    ``T = 1`` is ``arrays.ref_cdf`` itself.
    """
    if temperature == 1.0:
        return arrays.ref_cdf
    with np.errstate(divide="ignore"):
        logits = np.log(env.ref_probs)
    if temperature == 0.0:
        token_policy = exact.greedy_policy(logits)
    else:
        scaled = logits / temperature
        top = scaled.max(axis=2, keepdims=True)
        weights = np.exp(scaled - top)
        token_policy = weights / weights.sum(axis=2, keepdims=True)
    cdf = np.cumsum(np.exp(exact.trajectory_logprobs(env, token_policy)), axis=1)
    cdf /= cdf[:, -1:]
    return np.ascontiguousarray(cdf)


_ANNOUNCED = False


def kernels_need_compiling(pclass: PolicyClass) -> bool:
    """Whether the fused round loop of ``pclass`` is neither compiled in this process nor in numba's
    on-disk cache (a fresh install: the first run compiles for about a minute). ``False`` when unsure."""
    loop = fused_loop_for(pclass)
    kernel = getattr(loop, "run_rounds", None)
    if kernel is None or not hasattr(kernel, "signatures") or kernel.signatures:
        return False
    try:  # numba's cache index of the kernel (an internal path: any surprise means "unsure")
        import os

        return not os.path.exists(kernel._cache._cache_file._index_path)
    except AttributeError:
        return False


def announce_compilation(pclass: PolicyClass) -> None:
    """Print one line to stderr, once per process, before a run that compiles the kernels."""
    global _ANNOUNCED
    if not _ANNOUNCED and kernels_need_compiling(pclass):
        _ANNOUNCED = True
        print("xposim: compiling kernels, first run only (cached for the next runs)", file=sys.stderr, flush=True)


def run_learner(
    env: TokenMDP,
    learner: LearnerConfig,
    beta: float,
    rounds: int,
    checkpoints=None,
    seed: SeedLike = 0,
    policy_class=None,
    optimal_value: float | None = None,
    chunk_rounds: int = CHUNK_ROUNDS,
    on_chunk=None,
) -> RunResult:
    """Run ``learner`` for ``rounds`` rounds on ``env`` with KL coefficient ``beta`` (one seed).

    ``checkpoints``: rounds at which metrics are recorded (default :func:`default_checkpoints`;
    round 0 is ``pi^(1) = pi_ref``). ``seed``: int or ``SeedSequence`` (the run's only randomness).
    ``policy_class``: a name in :data:`POLICY_CLASS_NAMES`, a :class:`~xposim.policies.base.PolicyClass`
    instance, or ``None`` (default): the learner's own ``default_policy_class`` (``"tabular"``;
    ``"tabular_chi"`` for chiPO).
    ``optimal_value``: ``J_beta(pi*)`` if already known (else solved here).
    ``chunk_rounds``: rounds per block of pre-drawn uniforms (does not change the numbers);
    ``on_chunk(first_round, last_round, seconds)`` is called after every block (progress, timing).
    """
    if not isinstance(env, TokenMDP):
        raise ValueError(f"env must be an xposim.envs.TokenMDP, got {type(env).__name__}")
    if not isinstance(learner, LearnerConfig):
        raise ValueError(f"learner must be a LearnerConfig (see xposim.learners.make_learner), got {learner!r}")
    beta = check_beta(beta)
    rounds = check_rounds(rounds)
    checkpoints = check_checkpoints(checkpoints, rounds)
    from xposim.learners.reward_models import RewardModelLearner, run_reward_model  # issue 12 (lazy import)

    if isinstance(learner, RewardModelLearner):  # fit-a-reward-model learners have their own round loop
        return run_reward_model(env, learner, beta, rounds, checkpoints, seed, optimal_value,
                                chunk_rounds=chunk_rounds, on_chunk=on_chunk)
    pclass = resolve_policy_class(learner.default_policy_class if policy_class is None else policy_class)
    pclass.validate(env)
    plan = learner.plan(env.r_max, rounds)
    pclass.check_learner(learner, plan, env)
    if plan.mode != Mode.PAPER and not pclass.supports_gradient_steps:
        raise ValueError(
            f"mode='trl' needs a policy class with gradient steps; policy_class {pclass.name!r} has none"
        )
    check_memory(estimate_run_bytes(env, learner, rounds, len(checkpoints)),
                 f"run_learner({learner.label!r}, rounds={rounds}) on an environment with {env.n_leaves} leaves",
                 "use fewer rounds, checkpoints or a smaller environment")
    alpha_blocks = AlphaBlocks(learner.resolved_alpha(), beta, rounds)
    arrays = env_arrays(env)
    if optimal_value is None:
        optimal_value = exact.solve(env, beta).value
    consts = RunConstants(beta=beta, optimal_value=float(optimal_value))
    rng = np.random.Generator(np.random.PCG64(as_seed_sequence(seed)))
    n_contexts, n_leaves = arrays.leaf_logref.shape
    settings = learner.solver
    state = pclass.create_state(env, arrays, beta, settings, rng=rng)  # the class draws its restarts first
    view = pclass.initial_view(arrays, state)
    behaviour_cdf = _behaviour_cdf(env, learner, plan)
    eng = new_engine_state(arrays, view, plan.batch_size, checkpoints, metrics.N_METRICS, behaviour_cdf,
                           tempered_reference_cdf(env, arrays, plan.temperature))
    width = UNIFORMS_PER_PAIR * plan.batch_size

    chunk_rounds = check_rounds(chunk_rounds)
    if learner.is_offline:
        n_pairs = learner.n_pairs if learner.n_pairs is not None else rounds
        capacity = pair_capacity(n_contexts, n_leaves, learner, rounds)
        store = new_store(n_contexts, n_leaves, capacity)
        loop = fused_loop_for(pclass)
        workspace = pclass.solver_workspace(arrays, settings, capacity)
        # all n pairs first (drawn block by block: the same stream as one draw of n rows), then one argmin
        any_data = np.zeros(n_contexts, dtype=np.bool_)
        first = 1
        while first <= n_pairs:
            n = min(chunk_rounds, n_pairs - first + 1)
            collect_offline_pairs(first, rng.random((n, width)), arrays, plan, view, eng, store, any_data)
            first += n
        if loop is not None:
            loop.solve_offline(arrays, plan, consts, view, eng, store, state, workspace, any_data)
        else:  # any other class: the same single argmin through its ``solve``
            pclass.solve(offline_problem(plan, consts, eng, store), state, view, any_data, workspace=workspace)
            metrics.refresh_values(arrays, view, eng, beta, True)
        metrics.record_metrics(0, 0, 1, arrays, view, eng, consts, True)
        row = eng.metrics[0].copy()
        for i, t in enumerate(checkpoints):
            eng.metrics[i] = row
            eng.metrics[i, 0] = t
            eng.metrics[i, 1] = n_pairs
        final_value = eng.scalars[S_VALUE]
        return RunResult(learner, eng.metrics, metrics.METRIC_COLUMNS, view, arrays, env, beta,
                         float(optimal_value), eng.counters.copy(), float(final_value), store, state, eng)

    capacity = pair_capacity(n_contexts, n_leaves, learner, rounds)
    store = new_store(n_contexts, n_leaves, capacity)
    chunk = max(1, chunk_rounds // plan.batch_size)
    alpha_chunk = alpha_blocks.block(1, min(chunk, rounds))
    metrics.refresh_values(arrays, view, eng, beta, True)
    eng.scalars[S_BEST] = optimal_value - eng.scalars[S_VALUE]
    eng.scalars[S_PREV_ALPHA] = alpha_chunk[0]
    if checkpoints[0] == 0:
        metrics.record_metrics(0, 0, plan.batch_size, arrays, view, eng, consts, False)
        eng.next_checkpoint[0] = 1
    # (trl mode never solves an argmin: no branch-and-bound memory)
    workspace = pclass.solver_workspace(arrays, settings if plan.mode == Mode.PAPER
                                        else dataclasses.replace(settings, argmin="local"),
                                        max(capacity, plan.batch_size))
    loop = fused_loop_for(pclass)
    t = 1
    while t <= rounds:
        n = min(chunk, rounds - t + 1)
        started = time.perf_counter()
        uniforms = rng.random((n, width))
        if t > 1:
            alpha_chunk = alpha_blocks.block(t, n)
        if loop is not None:
            loop.run_rounds(t, uniforms, arrays, plan, consts, alpha_chunk, view, eng, store, state, workspace)
        else:
            _generic_rounds(pclass, t, uniforms, arrays, plan, consts, alpha_chunk, view, eng, store, state,
                            workspace)
        if on_chunk is not None:
            on_chunk(t, t + n - 1, time.perf_counter() - started)
        t += n
    return RunResult(learner, eng.metrics, metrics.METRIC_COLUMNS, view, arrays, env, beta, float(optimal_value),
                     eng.counters.copy(), float(eng.scalars[S_VALUE]), store, state, eng)


def _generic_rounds(pclass: PolicyClass, first_round: int, uniforms: np.ndarray, arrays, plan, consts, alpha_chunk,
                    view, eng, store, state, workspace) -> None:
    """The round loop for classes without a fused loop: jitted round logic, Python-level class update."""
    separable = bool(pclass.is_context_separable)
    for i in range(uniforms.shape[0]):
        t = first_round + i
        problem = begin_round(t, uniforms[i], arrays, plan, alpha_chunk[i], view, eng, store, separable, consts)
        if plan.mode == Mode.PAPER:
            pclass.solve(problem, state, view, eng.solve_mask, workspace=workspace)
        else:
            batch = (eng.batch_context, eng.batch_chosen, eng.batch_rejected, eng.batch_bonus,
                     eng.batch_bonus_weight, plan.batch_size, plan.learning_rate)
            pclass.gradient_step(problem, state, view, batch, workspace=workspace)
        end_round(t, arrays, plan, view, eng, consts)


__all__ = ["RunResult", "run_learner", "estimate_run_bytes", "default_checkpoints", "check_checkpoints", "resolve_policy_class"]
