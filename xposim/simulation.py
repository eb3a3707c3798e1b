"""``xposim.simulation``: :func:`simulate`, many learners x many seeds, exact metrics, one tidy table.

``xposim.simulate`` is the function (re-exported by the package); this module is ``simulation``.

Each (learner, seed) pair is an independent job (:func:`xposim.learners.run_learner`) driven by
the seed's ``SeedSequence`` child of the root seed (:func:`xposim.seeding.spawn_seeds`), so the
table is identical bit for bit for any ``workers`` and any execution order. Every learner gets the
same child for the same seed (common random numbers across learners).

Parallelism: jobs run in a thread pool; the round loop is a numba function compiled with
``nogil=True``, so threads run truly in parallel and share the compiled code. Measured with
``benchmarks/bench_learners.py`` (2 cores, 64 seeds x 10^4 rounds of XPO on a 64-arm bandit):
threads 35.4 s, process pool 44.7 s (each process pays imports, numba cache loads and result
pickling). ``executor="processes"`` is available; numba ``prange`` was not used (it would need
all seeds' states batched in one call).
"""
from __future__ import annotations

import concurrent.futures as futures
import os
import sys
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from xposim import exact
from xposim.columns import METRIC_COLUMNS, RUN_COLUMNS, metrics_table
from xposim.envs.token_mdp import TokenMDP
from xposim.learners.config import LearnerConfig
from xposim.learners.registry import make_learner
from xposim.learners.runner import (
    announce_compilation,
    check_beta,
    check_checkpoints,
    check_rounds,
    estimate_run_bytes,
    resolve_policy_class,
    run_learner,
)
from xposim.resources import check_memory
from xposim.seeding import SeedLike, as_seed_sequence, child_seed

#: Columns of the table returned by :func:`simulate`, in order: the learner and seed, then the
#: checkpoint metrics (:mod:`xposim.columns`, the vocabulary of every table xposim writes).
COLUMNS = RUN_COLUMNS + METRIC_COLUMNS


def _resolve_learners(learners) -> list[LearnerConfig]:
    if isinstance(learners, (str, LearnerConfig)):
        learners = [learners]
    if not isinstance(learners, Iterable):
        raise ValueError(f"learners must be a learner name, a LearnerConfig or a list of them, got {learners!r}")
    out = []
    for item in learners:
        if isinstance(item, str):
            out.append(make_learner(item))
        elif isinstance(item, LearnerConfig):
            out.append(item)
        else:
            raise ValueError(f"every learner must be a name or a LearnerConfig, got {item!r}")
    if not out:
        raise ValueError("learners must not be empty")
    labels = [learner.label for learner in out]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"learner labels must be unique (set name=...); duplicated: {duplicates}")
    return out


def _resolve_classes(policy_class, configs: Sequence[LearnerConfig]) -> dict:
    """``{learner label: PolicyClass}`` from :func:`simulate`'s ``policy_class`` argument."""
    if isinstance(policy_class, dict):
        labels = {learner.label for learner in configs}
        unknown = sorted(str(key) for key in policy_class if key not in labels)
        if unknown:
            raise ValueError(f"policy_class: no learner is labelled {unknown} (learners: {sorted(labels)})")
        return {learner.label: resolve_policy_class(policy_class.get(learner.label, learner.default_policy_class))
                for learner in configs}
    if policy_class is None:
        return {learner.label: resolve_policy_class(learner.default_policy_class) for learner in configs}
    shared = resolve_policy_class(policy_class)
    return {learner.label: shared for learner in configs}


def _resolve_seeds(seeds) -> Sequence[int]:
    """The seed indices: ``range(n)`` for a count (never materialized), or the validated list."""
    if isinstance(seeds, (bool, np.bool_)):
        raise ValueError(f"seeds must be a positive int (a count) or a list of non-negative ints, got {seeds!r}")
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise ValueError(f"seeds (a count) must be >= 1, got {seeds!r}")
        return range(int(seeds))
    try:
        values = [int(s) for s in seeds]
    except (TypeError, ValueError):
        raise ValueError(f"seeds must be a positive int (a count) or a list of non-negative ints, got {seeds!r}") from None
    if not values or any(v < 0 for v in values) or any(v != s for v, s in zip(values, seeds)):
        raise ValueError(f"seeds must be a non-empty list of non-negative ints, got {seeds!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"seeds must be distinct, got {seeds!r}")
    return values


#: Bytes of the result table per row and column (the engine's rows, the per-run frames and the
#: concatenated table coexist at the end) and per job (seed sequence, futures, bookkeeping).
_BYTES_PER_CELL = 3 * 8
_BYTES_PER_JOB = 4096


def estimate_simulate_bytes(env: TokenMDP, configs: Sequence[LearnerConfig], rounds: int, n_seeds: int,
                            n_checkpoints: int, workers: int) -> int:
    """Bytes :func:`simulate` needs: the runs in flight plus every run's rows of the final table."""
    n_jobs = len(configs) * n_seeds
    in_flight = min(workers, n_jobs)
    per_run = max(estimate_run_bytes(env, c, rounds, n_checkpoints) for c in configs)
    table = n_jobs * (n_checkpoints * len(COLUMNS) * _BYTES_PER_CELL + _BYTES_PER_JOB)
    return in_flight * per_run + table


def _job(env, learner, beta, rounds, checkpoints, seed_index, seed_sequence, policy_class, optimal_value):
    result = run_learner(env, learner, beta, rounds, checkpoints=checkpoints, seed=seed_sequence,
                         policy_class=policy_class, optimal_value=optimal_value)
    return learner.label, seed_index, result.metrics


def simulate(
    env: TokenMDP,
    learners,
    beta: float,
    rounds: int,
    seeds: int | Sequence[int] = 8,
    checkpoints: Sequence[int] | None = None,
    workers: int | None = None,
    policy_class=None,
    root_seed: SeedLike = 0,
    executor: str = "threads",
    progress: bool | None = None,
) -> pd.DataFrame:
    """Run every learner for every seed on ``env`` and return the tidy metrics table.

    Parameters
    ----------
    env : the environment (:class:`~xposim.envs.TokenMDP`).
    learners : a name (``"xpo"``), a :class:`~xposim.learners.LearnerConfig`, or a list of them
        (labels must be unique: ``make_learner("xpo", name="xpo_a0.1", alpha=0.1)``).
    beta : KL coefficient ``> 0`` of the objective ``J_beta`` (THEORY 2).
    rounds : number of rounds ``T >= 1`` (queries = rounds * batch_size; offline learners use
        ``rounds`` pairs unless ``n_pairs`` is set).
    seeds : an int ``n`` (seed indices ``0..n-1``) or a list of distinct non-negative seed indices;
        seed index ``i`` uses child ``i`` of ``SeedSequence(root_seed)``.
    checkpoints : rounds at which rows are recorded (ints in ``[0, rounds]``); default a log-spaced
        grid with ``0`` (``pi^(1) = pi_ref``), ``1`` and ``rounds``.
    workers : parallel jobs (default ``os.cpu_count()``); results do not depend on it.
    policy_class : one class for every learner (a name in
        :data:`~xposim.learners.runner.POLICY_CLASS_NAMES` or a :class:`~xposim.policies.PolicyClass`
        instance); a dict ``{learner label: class}`` (learners not in it use their default); or
        ``None`` (default): every learner on its own ``default_policy_class`` (``"tabular"``; chiPO
        on its realizable class ``"tabular_chi"``).
    root_seed : root of the seed tree.
    executor : ``"threads"`` (default) or ``"processes"``.
    progress : a tqdm bar of finished runs on stderr (``None``: only when stderr is a terminal).

    Returns
    -------
    ``pandas.DataFrame`` with one row per (learner, seed, checkpoint round) and the columns
    :data:`COLUMNS`: ``queries`` (preference labels so far), ``kl_regularized_value`` =
    ``J_beta(pi^(t+1))`` (the policy after ``round`` rounds), ``suboptimality`` =
    ``J_beta(pi*) - J_beta(pi^(t+1))`` (exact), ``best_iterate_suboptimality`` (min over
    ``pi^(1..t+1)``), ``average_iterate_suboptimality`` (the uniform mixture of the played iterates
    ``pi^(1..t)``), ``cumulative_regret`` (``sum_{s<=t} batch (J* - J(pi^(s)))``; NaN for offline
    learners), ``kl_to_ref``, ``expected_reward``, ``argmax_regret``
    (``E_x[max_tau r - r(greedy(pi)(x))]``, greedy = temperature-0 token policy, ties to the lowest
    token), ``solver_failures`` / ``solver_disagreements`` (cumulative counts of argmins that hit
    the iteration cap / whose multi-starts disagreed), ``uncertified_solves`` (cumulative count of
    argmins of a non-convex objective returned without a certificate of global optimality: the
    certified solver's node budget ran out, or a local method was used) and ``max_certified_gap``
    (largest ``(value - proven lower bound) / max(1, |value|)`` of the argmins so far; 0 when all
    were certified or convex, ``inf`` when a local method solved a non-convex objective).
    """
    if not isinstance(env, TokenMDP):
        raise ValueError(f"env must be an xposim.envs.TokenMDP, got {type(env).__name__}")
    beta = check_beta(beta)
    rounds = check_rounds(rounds)
    configs = _resolve_learners(learners)
    seed_indices = _resolve_seeds(seeds)
    checkpoints = check_checkpoints(checkpoints, rounds)
    classes = _resolve_classes(policy_class, configs)
    for learner in configs:  # fail early, before any job starts
        pclass = classes[learner.label]
        pclass.validate(env)
        plan = learner.plan(env.r_max, rounds)
        if plan.mode != 0 and not pclass.supports_gradient_steps:
            raise ValueError(f"learner {learner.label!r} uses mode='trl', which policy class {pclass.name!r} does not support")
        pclass.check_learner(learner, plan, env)
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1 or None, got {workers!r}")
    if executor not in ("threads", "processes"):
        raise ValueError(f"executor must be 'threads' or 'processes', got {executor!r}")
    check_memory(estimate_simulate_bytes(env, configs, rounds, len(seed_indices), len(checkpoints), workers),
                 f"simulate with {len(configs)} learner(s) x {len(seed_indices)} seed(s) x {len(checkpoints)} "
                 f"checkpoint(s)", "use fewer seeds, checkpoints or workers")
    root = as_seed_sequence(root_seed)
    for pclass in classes.values():
        announce_compilation(pclass)
    optimal_value = exact.solve(env, beta).value
    jobs = [
        (env, learner, beta, rounds, checkpoints, i, child_seed(root, i), classes[learner.label], optimal_value)
        for learner in configs
        for i in seed_indices
    ]
    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if progress is None else bool(progress)
    with tqdm(total=len(jobs), desc="simulate", unit="run", disable=not show, file=sys.stderr) as bar:
        if workers == 1 or len(jobs) == 1:
            results = []
            for job in jobs:
                results.append(_job(*job))
                bar.update(1)
        else:
            pool_type = futures.ThreadPoolExecutor if executor == "threads" else futures.ProcessPoolExecutor
            with pool_type(max_workers=min(workers, len(jobs))) as pool:
                pending = [pool.submit(_job, *job) for job in jobs]
                for done in futures.as_completed(pending):
                    done.result()  # a failed job raises here, at once
                    bar.update(1)
                results = [f.result() for f in pending]
    table = pd.concat([metrics_table(metrics, label, seed_index) for label, seed_index, metrics in results],
                      ignore_index=True)
    return table[list(COLUMNS)]
