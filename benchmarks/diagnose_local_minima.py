"""How often the tabular XPO argmin misses a lower objective: a diagnostic, not a timing.

The XPO objective of the tabular class is non-convex (THEORY 3: the bonus's ``-log Z`` part is
concave), and the per-round solver is a local method from a warm start. For each instance, seed and
round ``T`` this script replays the run up to ``T`` (same seed: the same data), takes the data of
the final round and minimizes that round's objective again with an independent solver
(``scipy.optimize`` L-BFGS-B on :func:`xposim.reference.learners_numpy.tabular_objective`, every
leaf a variable) from many starts: the solver's own solution, one "champion" start per leaf (that
leaf at ``R_max``, every other leaf at 0) and ``--random-starts`` uniform starts. The lowest value
found is the *reference*; the table reports how often and by how much each solver setting's
solution lies above it (``above ref``, ``gap``), the median suboptimality ``J(pi*) - J(pi)`` of the
solver's solution (``subopt``) and of the reference minimizer (``ref subopt``: what the exact
argmin of that round's objective would play), and which kind of start found the lower value.

Solver settings compared, each on its own trajectory: ``warm`` (the default: warm start only),
``warm+8`` (eight extra uniform restarts per solve, ``SolverSettings(restarts=8)``) and
``champion`` (``SolverSettings(champion_starts=True)``: one start per response at ``R_max``). XPO
with ``alpha = 0.01`` (the alpha of the coverage and separation experiments).

    .venv/bin/python benchmarks/diagnose_local_minima.py            # ~1-2 min on 2 cores
"""
from __future__ import annotations

import argparse

import numpy as np

from xposim import exact
from xposim.envs import two_arm_lower_bound
from xposim.envs import hidden_arm_bandit
from xposim.learners import make_learner, run_learner
from xposim.policies.solving import SolverSettings
from xposim.reference.learners_numpy import scipy_argmin, tabular_objective


def round_data(result) -> dict:
    """The objective's data after the run's last round, per leaf (one context)."""
    view, store, engine = result.view, result.store, result.engine_state
    n_leaves = result.arrays.leaf_logref.shape[1]
    slots = view.slot_leaf[0, : view.n_slots[0]]
    weights = np.zeros((n_leaves, n_leaves))
    for e in range(int(store.n_edges[0])):
        weights[slots[store.edge_chosen[e]], slots[store.edge_rejected[e]]] += store.edge_weight[e]
    counts = np.zeros(n_leaves)
    counts[slots] = engine.bonus_count[0, : len(slots)]
    chosen, rejected = np.nonzero(weights)
    logref = np.asarray(result.arrays.leaf_logref[0], dtype=np.float64)
    return dict(log_ref_weight=logref, chosen=chosen, rejected=rejected, pair_weight=weights[chosen, rejected],
                bonus_count=counts, bonus_weight=np.ones(n_leaves), loss_ref_logp=logref, pair="dpo",
                pair_param=float(result.env.r_max), bonus="xpo", alpha=float(result.learner.alpha),
                beta=float(result.beta))


def leaf_values(result) -> np.ndarray:
    """The run's final iterate as leaf values (shifted so the largest is ``R_max``)."""
    values = result.beta * (result.leaf_logprobs()[0] - result.arrays.leaf_logref[0])
    return values - values.max() + result.env.r_max


def suboptimality(env, beta: float, values: np.ndarray) -> float:
    logp = env.trajectory_ref_logprobs[0] + values / beta
    logp = logp - np.logaddexp.reduce(logp)
    p = np.exp(logp)
    rewards = env.trajectory_rewards[0]
    value = float(np.sum(p * (rewards - beta * (logp - env.trajectory_ref_logprobs[0]))))
    return exact.solve(env, beta).value - value


def reference_starts(mine: np.ndarray, r_max: float, rng: np.random.Generator,
                     n_random: int) -> list[tuple[str, np.ndarray]]:
    """The starts of the reference multistart: the solver's point, one champion start per leaf
    (that leaf at ``R_max``, the others at 0) and ``n_random`` uniform starts."""
    n = len(mine)
    starts = [("own", mine)]
    starts += [("champion", np.where(np.arange(n) == j, r_max, 0.0)) for j in range(n)]
    starts += [("random", v) for v in rng.uniform(0.0, r_max, size=(n_random, n))]
    return starts


def reference_minimum(data: dict, r_max: float, starts: list[tuple[str, np.ndarray]]) -> tuple[float, np.ndarray, str]:
    """The lowest objective over L-BFGS-B runs from ``starts`` (``(kind, vector)`` pairs): value, point, kind."""
    n_terms = max(1.0, float(data["pair_weight"].sum() + data["bonus_count"].sum()))
    best, best_point, best_kind = np.inf, None, ""
    for kind, start in starts:
        point, value = scipy_argmin(start, 0.0, r_max, n_terms, 1e-10, **data)
        if best_point is None or value < best - 1e-9 * max(1.0, abs(best)):
            best, best_point, best_kind = value, point, kind
    return best, best_point, best_kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--random-starts", type=int, default=16)
    args = parser.parse_args()
    instances = [
        ("two-arm (Prop 2.1), beta 0.02", two_arm_lower_bound(0.02), 0.02, [5, 20, 100]),
        ("hidden arm K = 8, beta 0.05", hidden_arm_bandit(8, 1 / 8), 0.05, [100, 500]),
        ("hidden arm K = 16, beta 0.05", hidden_arm_bandit(16, 1 / 16), 0.05, [500, 2000]),
    ]
    rows = []
    for name, env, beta, rounds_list in instances:
        for rounds in rounds_list:
            stats = {}
            for label, settings in (("warm", SolverSettings()), ("warm+8", SolverSettings(restarts=8)),
                                    ("champion", SolverSettings(champion_starts=True))):
                above, gaps, subopts, reference_subopts, kinds = 0, [], [], [], []
                for seed in range(args.seeds):
                    result = run_learner(env, make_learner("xpo", alpha=0.01, solver=settings), beta, rounds,
                                         checkpoints=[rounds], seed=seed)
                    data = round_data(result)
                    mine = leaf_values(result)
                    own_value = tabular_objective(mine, **data)[0]
                    starts = reference_starts(mine, env.r_max, np.random.default_rng(seed), args.random_starts)
                    best, point, kind = reference_minimum(data, env.r_max, starts)
                    if own_value <= best:
                        best, point, kind = own_value, mine, "own"
                    gap = own_value - best
                    if gap > 1e-6 * max(1.0, abs(best)):
                        above += 1
                        kinds.append(kind)
                    gaps.append(gap)
                    subopts.append(suboptimality(env, beta, mine))
                    reference_subopts.append(suboptimality(env, beta, point))
                stats[label] = (above, float(np.median(gaps)), float(np.max(gaps)), float(np.median(subopts)),
                                float(np.median(reference_subopts)),
                                ",".join(f"{k}:{kinds.count(k)}" for k in sorted(set(kinds))) or "-")
            rows.append((name, rounds, stats))
    print(f"{'instance':30s} {'T':>5s} {'setting':9s} {'above ref':>9s} {'median gap':>10s} {'max gap':>8s} "
          f"{'subopt':>7s} {'ref subopt':>10s}  lower found by")
    for name, rounds, stats in rows:
        for label, (above, median_gap, max_gap, subopt, reference_subopt, kinds) in stats.items():
            print(f"{name:30s} {rounds:5d} {label:9s} {above:4d}/{args.seeds:<4d} {median_gap:10.3g} {max_gap:8.3g} "
                  f"{subopt:7.4f} {reference_subopt:10.4f}  {kinds}")


if __name__ == "__main__":
    main()
