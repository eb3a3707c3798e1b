"""``run_reward_model``: one reward-model learner, one seed (what ``run_learner`` dispatches to).

Randomness: one ``numpy.random.Generator(PCG64(seed))`` per run; each round draws
``batch_size * (5 + extras)`` uniforms (:mod:`xposim.learners.reward_models.loop`), block by
block, so the numbers do not depend on the block size, on threads, or on numba being on.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from xposim import exact
from xposim.envs.token_mdp import TokenMDP
from xposim.learners import metrics
from xposim.learners.reward_models import loop, mle, rules
from xposim.learners.reward_models.config import PessimisticMLE, RewardModelLearner
from xposim.learners.runner import (
    CHUNK_ROUNDS,
    RunResult,
    check_beta,
    check_checkpoints,
    check_rounds,
    tempered_reference_cdf,
)
from xposim.policies.arrays import EnvArrays, env_arrays
from xposim.policies.segment_tree import tree_size
from xposim.policies.solving import N_COUNTERS
from xposim.policies.view import IterateView, view_normalize
from xposim.resources import check_memory
from xposim.seeding import SeedLike, as_seed_sequence

#: Uniforms per block of pre-drawn rounds at most (16 MiB); the block never changes the numbers.
UNIFORM_BUDGET = 1 << 21


@dataclasses.dataclass
class RewardModelState:
    """The final reward model of a run (``RunResult.class_state`` of a reward-model learner)."""

    theta: np.ndarray
    """``(n_blocks, d)`` MLE: one block ``theta`` (linear), or one row of leaf rewards per context (one-hot)."""
    rhat: np.ndarray
    """``(n_contexts, n_leaves)`` fitted reward ``r_hat(x, tau)``."""
    policy_reward: np.ndarray
    """``(n_contexts, n_leaves)`` the reward of the output ``pi_hat ∝ pi_ref exp(policy_reward / beta)``
    (``r_hat``; the lower confidence bound for the pessimistic MLE)."""
    inverse: np.ndarray
    """``(n_blocks, d, d)`` inverse design matrix ``(lambda I + sum z z^T)^{-1}`` (``(1, 1, 1)`` if unused)."""
    factor: np.ndarray
    """``(n_blocks, d, d)`` Cholesky factor of the Newton matrix (the Laplace precision)."""
    qdiag: np.ndarray
    """``(n_contexts, n_leaves)`` ``||phi(x, tau)||^2_{V^{-1}}`` (``(1, 1)`` if the rule uses no design matrix)."""
    table: mle.PairTable
    """Pair-count statistics."""
    onehot: bool
    """True when the model has one value per (context, leaf) (the environment has no features)."""
    newton_refreshes: int = 0
    """Times the Newton matrix was refactored from scratch (the rest were rank-one updates)."""


def model_dimensions(env: TokenMDP) -> tuple[bool, int, int]:
    """``(onehot, n_blocks, d)`` of the reward model of ``env`` (features: one block of ``d = feature_dim``;
    none: one block of ``d = n_leaves`` per context)."""
    if env.features is None:
        return True, int(env.n_contexts), int(env.n_leaves)
    return False, 1, int(env.feature_dim)


def _queries(learner: RewardModelLearner, rounds: int) -> int:
    if learner.is_offline:
        return learner.n_pairs if learner.n_pairs is not None else rounds
    return rounds * learner.batch_size


def estimate_reward_model_bytes(env: TokenMDP, learner: RewardModelLearner, rounds: int, n_checkpoints: int) -> int:
    """Bytes one :func:`run_reward_model` call allocates (its large arrays), for memory checks."""
    onehot, n_blocks, d = model_dimensions(env)
    nc, n_leaves = int(env.n_contexts), int(env.n_leaves)
    queries = _queries(learner, rounds)
    capacity = min(queries, nc * n_leaves * max(n_leaves - 1, 1) // 2)
    width = learner.batch_size * (5 + learner.extra_uniforms(n_leaves, d))
    block_rows = max(1, min(CHUNK_ROUNDS, UNIFORM_BUDGET // width))
    gram = n_leaves**2 if (learner.rule == rules.RULE_MAXINP and not onehot and n_leaves**2 <= rules.GRAM_LIMIT) else 0
    words = (24 * nc * (n_leaves + 1) + (0 if onehot else nc * n_leaves * d) + gram
             + (2 if learner.uses_design else 1) * n_blocks * d * d + 2 * d * d + n_leaves * d
             + block_rows * width + n_checkpoints * len(metrics.METRIC_COLUMNS))
    return 8 * words + mle.table_bytes(capacity, n_blocks, nc, n_leaves, d, onehot)


def _all_slot_view(arrays: EnvArrays) -> IterateView:
    """An :class:`IterateView` with every leaf in a slot (slot ``s`` = leaf ``s``), filled later."""
    nc, n_leaves = arrays.leaf_logref.shape
    size = tree_size(n_leaves)
    leaves = np.broadcast_to(np.arange(n_leaves, dtype=np.int64), (nc, n_leaves)).copy()
    return IterateView(slot_leaf=leaves, leaf_slot=leaves.copy(), n_slots=np.full(nc, n_leaves, dtype=np.int64),
                       slot_logw=np.full((nc, n_leaves), -np.inf), rest_logscale=np.zeros(nc),
                       log_partition=np.zeros(nc), rest_tree=np.full((nc, 2 * size), -np.inf),
                       rest_reward_tree=np.full((nc, 2 * size), -np.inf))


def _fill_view(view: IterateView, arrays: EnvArrays, policy_reward: np.ndarray, beta: float) -> None:
    logw = np.where(arrays.leaf_logref > -np.inf, arrays.leaf_logref + policy_reward / beta, -np.inf)
    view.slot_logw[:] = logw
    for x in range(logw.shape[0]):
        view_normalize(view, x)


def _constants(learner: RewardModelLearner, onehot: bool, d: int, queries: int, r_max: float, beta: float,
               optimal_value: float, width: int) -> loop.Constants:
    oracle = learner.resolved_oracle()
    settings = {"kappa": 1.0, "delta": 0.5, "radius_scale": 1.0, "colstim_width": 0.0, "colstim_threshold": 0.0,
                "posterior_scale": 1.0, "samples": 1}
    settings.update(learner.rule_constants(d, queries, r_max))
    return loop.Constants(
        rule=int(learner.rule), onehot=bool(onehot), ridge=float(learner.ridge),
        tolerance=float(learner.newton_tolerance), max_iterations=int(learner.newton_max_iterations),
        beta=float(beta), optimal_value=float(optimal_value), batch=int(learner.batch_size), width=int(width),
        kappa=float(settings["kappa"]), delta=float(settings["delta"]),
        radius_scale=float(settings["radius_scale"]), colstim_width=float(settings["colstim_width"]),
        colstim_threshold=float(settings["colstim_threshold"]), posterior_scale=float(settings["posterior_scale"]),
        samples=int(settings["samples"]), use_design=bool(learner.uses_design), oracle_code=int(oracle.code),
        oracle_param=float(oracle.parameter), offline=bool(learner.is_offline),
    )


def _new_state(env: TokenMDP, arrays: EnvArrays, learner: RewardModelLearner, onehot: bool, n_blocks: int, d: int,
               checkpoints: np.ndarray, columns: tuple[str, ...]) -> loop.State:
    nc, n_leaves = arrays.leaf_logref.shape
    ridge = float(learner.ridge)
    features = np.zeros((1, 1, 1)) if onehot else np.array(env.features, dtype=np.float64, order="C", copy=True)
    if learner.uses_design:
        inverse = np.zeros((n_blocks, d, d))
        inverse[:, np.arange(d), np.arange(d)] = 1.0 / ridge
        qdiag = (np.full((nc, n_leaves), 1.0 / ridge) if onehot
                 else np.einsum("xlk,xlk->xl", features, features) / ridge)
    else:
        inverse = np.zeros((1, 1, 1))
        qdiag = np.zeros((1, 1))
    factor = np.zeros((n_blocks, d, d))
    factor[:, np.arange(d), np.arange(d)] = np.sqrt(ridge)
    possible = arrays.leaf_logref > -np.inf
    arms = np.zeros((nc, n_leaves), dtype=np.int64)
    n_arms = possible.sum(axis=1).astype(np.int64)
    for x in range(nc):
        arms[x, :n_arms[x]] = np.flatnonzero(possible[x])
    samples = getattr(learner, "samples", 1)
    maxinp_dense = learner.rule == loop.RULE_MAXINP and not onehot
    colidx = np.array([columns.index(name) if name in columns else -1 for name in loop.KNOWN_METRICS],
                      dtype=np.int64)
    return loop.State(
        features=features, theta=np.zeros((n_blocks, d)), inverse=inverse, factor=factor, qdiag=qdiag,
        rhat=np.zeros((nc, n_leaves)), policy_reward=np.zeros((nc, n_leaves)), prob=np.zeros((nc, n_leaves)),
        value_x=np.zeros(nc), hist=np.zeros((nc, n_leaves)), hist_time=np.zeros(nc), arms=arms, n_arms=n_arms,
        ref_cdf=tempered_reference_cdf(env, arrays, learner.resolved_temperature()),
        design_count=np.zeros(n_blocks), touched=np.zeros(n_blocks, dtype=np.bool_), predicted=np.zeros((n_blocks, d)),
        scalars=np.zeros(loop.N_SCALARS), counters=np.zeros(N_COUNTERS, dtype=np.int64), work=np.zeros((4, d)),
        hessian=np.zeros((d, d)), vec=np.zeros((3, d)),
        yscratch=np.zeros((n_leaves, d)) if maxinp_dense else np.zeros((1, 1)),
        gram=(np.zeros((n_leaves, n_leaves)) if maxinp_dense and n_leaves**2 <= rules.GRAM_LIMIT
              else np.zeros((1, 1))),
        pair_scratch=np.zeros((2, n_leaves)), candidate=np.zeros(n_leaves, dtype=np.bool_), normals=np.zeros(max(samples * d, 2)),
        tokens=np.zeros(max(arrays.vocab_size, 2)), checkpoints=np.ascontiguousarray(checkpoints, dtype=np.int64),
        next_checkpoint=np.zeros(1, dtype=np.int64), metrics=np.full((len(checkpoints), len(columns)), np.nan),
        colidx=colidx,
    )


def run_reward_model(
    env: TokenMDP,
    learner: RewardModelLearner,
    beta: float,
    rounds: int,
    checkpoints=None,
    seed: SeedLike = 0,
    optimal_value: float | None = None,
    policy_class=None,
    chunk_rounds: int = CHUNK_ROUNDS,
    on_chunk=None,
) -> RunResult:
    """Run a reward-model ``learner`` for ``rounds`` rounds on ``env`` (one seed); arguments as
    :func:`xposim.learners.run_learner` (whose ``RunResult`` it returns, with the metric columns
    of ``xposim.learners.metrics.METRIC_COLUMNS``, filled by name).

    ``policy_class`` is ignored: the output policy is ``pi_ref exp(r_hat / beta) / Z`` exactly.
    ``result.class_state`` is the final :class:`RewardModelState`; ``result.view`` holds ``pi_hat``.
    Columns: ``cumulative_regret = sum_t B (J* - J(pi_hat^(t)))`` over the played policies (NaN
    offline); ``solver_failures`` = Newton solves that hit ``newton_max_iterations``;
    ``solver_disagreements = uncertified_solves = max_certified_gap = 0`` (the MLE is convex);
    ``solves`` = Newton solves; the other columns as in :func:`xposim.simulate`.
    """
    if not isinstance(env, TokenMDP):
        raise ValueError(f"env must be an xposim.envs.TokenMDP, got {type(env).__name__}")
    if not isinstance(learner, RewardModelLearner):
        raise ValueError(f"learner must be a reward-model learner (RewardModelLearner), got {learner!r}")
    beta = check_beta(beta)
    rounds = check_rounds(rounds)
    checkpoints = check_checkpoints(checkpoints, rounds)
    chunk_rounds = check_rounds(chunk_rounds)
    onehot, n_blocks, d = model_dimensions(env)
    n_leaves = int(env.n_leaves)
    check_memory(estimate_reward_model_bytes(env, learner, rounds, len(checkpoints)),
                 f"run_learner({learner.label!r}, rounds={rounds}) on an environment with {n_leaves} leaves "
                 f"({'one-hot' if onehot else 'linear'} reward model of dimension {d})",
                 "use fewer rounds, a smaller environment, or features (a linear model)")
    arrays = env_arrays(env)
    if optimal_value is None:
        optimal_value = exact.solve(env, beta).value
    queries = _queries(learner, rounds)
    width = 5 + learner.extra_uniforms(n_leaves, d)
    columns = tuple(metrics.METRIC_COLUMNS)
    cst = _constants(learner, onehot, d, queries, float(env.r_max), beta, float(optimal_value), width)
    st = _new_state(env, arrays, learner, onehot, n_blocks, d, checkpoints, columns)
    capacity = min(queries, int(env.n_contexts) * n_leaves * max(n_leaves - 1, 1) // 2)
    table = mle.new_pair_table(capacity, n_blocks, int(env.n_contexts), n_leaves, d, onehot)
    view = _all_slot_view(arrays)
    rng = np.random.Generator(np.random.PCG64(as_seed_sequence(seed)))
    for x in range(arrays.leaf_logref.shape[0]):
        loop.policy_of_context(arrays, st, cst, x)  # pi_hat^(1) = pi_ref (r_hat = 0)
    st.scalars[loop.S_VALUE] = loop.total_value(arrays, st)
    st.scalars[loop.S_BEST] = optimal_value - st.scalars[loop.S_VALUE]

    if learner.is_offline:
        _run_offline(learner, queries, rng, arrays, st, cst, table, view, checkpoints, chunk_rounds, d, env, beta)
    else:
        if checkpoints[0] == 0:
            loop.record_metrics(0, 0, arrays, st, cst, view)
            st.next_checkpoint[0] = 1
        per_round = learner.batch_size * width
        block = max(1, min(chunk_rounds, UNIFORM_BUDGET // per_round))
        t = 1
        while t <= rounds:
            n = min(block, rounds - t + 1)
            started = time.perf_counter()
            loop.run_rounds(t, rng.random((n, per_round)), arrays, st, cst, table, view)
            if on_chunk is not None:
                on_chunk(t, t + n - 1, time.perf_counter() - started)
            t += n
    _fill_view(view, arrays, st.policy_reward, beta)
    state = RewardModelState(theta=st.theta, rhat=st.rhat, policy_reward=st.policy_reward, inverse=st.inverse,
                             factor=st.factor, qdiag=st.qdiag, table=table, onehot=onehot,
                             newton_refreshes=int(st.scalars[loop.S_REFRESHES]))
    return RunResult(learner, st.metrics, columns, view, arrays, env, beta, float(optimal_value), st.counters.copy(),
                     float(st.scalars[loop.S_VALUE]), None, state, None)


def _run_offline(learner: PessimisticMLE, n_pairs: int, rng, arrays, st, cst, table, view, checkpoints,
                 chunk_rounds: int, d: int, env: TokenMDP, beta: float) -> None:
    """All ``n_pairs`` pairs from ``pi_ref`` (block by block: one stream), one fit, the lower
    confidence bound, one row copied to every checkpoint (``round`` = the checkpoint)."""
    block = max(1, min(chunk_rounds, UNIFORM_BUDGET // cst.width))
    first = 0
    while first < n_pairs:
        n = min(block, n_pairs - first)
        loop.collect_offline(rng.random((n, cst.width)), arrays, st, cst, table)
        first += n
    loop.refit(arrays, st, cst, table, 0)  # Newton from theta = 0 on every block with data; r_hat
    for x in range(arrays.leaf_logref.shape[0]):
        loop.refresh_rewards(arrays, st, cst, x)
    width = learner.pessimism_width(d, float(env.r_max))
    st.policy_reward[:] = st.rhat - width * np.sqrt(np.maximum(st.qdiag, 0.0))
    for x in range(arrays.leaf_logref.shape[0]):
        loop.policy_of_context(arrays, st, cst, x)
    st.scalars[loop.S_VALUE] = loop.total_value(arrays, st)
    loop.record_metrics(0, 0, arrays, st, cst, view)
    row = st.metrics[0].copy()
    round_column = st.colidx[loop.KNOWN_METRICS.index("round")]
    for i, t in enumerate(checkpoints):
        st.metrics[i] = row
        if round_column >= 0:
            st.metrics[i, round_column] = t


__all__ = ["run_reward_model", "RewardModelState", "estimate_reward_model_bytes", "model_dimensions"]
