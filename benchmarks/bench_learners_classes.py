"""Benchmark of the parametric policy classes under the learner engine: XPO with the log-linear class.

Instance: ``linear_bandit(d=16, n_arms=1024, seed=0)``, ``beta = 0.1``, constant ``alpha = 1e-3``,
Bradley–Terry labels, the default ``SolverSettings`` (tolerance 1e-8, no restarts).

1. Rounds per second over ``T`` rounds, one run per seed (median over seeds): the engine
   (:func:`xposim.learners.runner.run_learner` with :class:`xposim.policies.loglinear.LogLinearClass`,
   numba projected Newton on the ball) against the plain numpy + scipy loop
   :func:`xposim.reference.loglinear_scipy.reference_xpo_loop` (SLSQP per round, warm-started,
   ``ftol=1e-15``; fewer seeds, it is slow). Ratio = engine / reference.
2. Per-round cost at round ``t`` (10^3, 10^4; 10^5 in full mode), one seed: the engine's median
   wall time between consecutive rounds in a window of +-``WINDOW`` rounds around ``t`` (everything
   a round does: sampling, labels, bookkeeping, argmin, exact J), and the reference's cost of the
   same round's argmin: :func:`solve_loglinear_scipy` on the data the engine had at round ``t``,
   warm-started from the engine's previous iterate (median of 3), which is a lower bound on a
   reference round. Also printed: distinct stored pairs, Newton iterations per round.
3. For information, the token-logit class (:class:`xposim.policies.token_logit.TokenLogitClass`)
   under the engine: XPO on ``random_token_mdp(4, A=4, H=4)``, rounds per second (no reference).

Usage: ``python benchmarks/bench_learners_classes.py [--quick]``; ``--quick``: T = 200, 8 engine seeds,
2 reference seeds, t up to 10^4 (about a minute). Full: T = 1000, 64 engine seeds, 8 reference
seeds, t up to 10^5.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from xposim.envs import linear_bandit, random_token_mdp
from xposim.learners.registry import make_learner
from xposim.learners.runner import run_learner
from xposim.policies.leaf_data import gather_problem_data, loss_parameters
from xposim.policies.loglinear import LogLinearClass
from xposim.policies.token_logit import TokenLogitClass
from xposim.reference.loglinear_scipy import reference_xpo_loop, solve_loglinear_scipy

DIM = 16
ARMS = 1024
BETA = 0.1
ALPHA = 1e-3
WINDOW = 50


class TimedLogLinearClass(LogLinearClass):
    """:class:`LogLinearClass` that stamps the wall clock at every solve and captures chosen rounds' data."""

    def __init__(self, capture_rounds=()):
        super().__init__()
        self.stamps: list[float] = []
        self.newton: list[int] = []
        self.capture_rounds = set(capture_rounds)
        self.captured: dict[int, tuple] = {}

    def solve(self, problem, state, view, contexts, **unused):
        t = len(self.stamps) + 1
        if t in self.capture_rounds:
            self.captured[t] = (state.theta.copy(), gather_problem_data(problem, view, None),
                                loss_parameters(problem), int(problem.store.n_edges[0]))
        self.stamps.append(time.perf_counter())
        before = int(problem.counters[3])
        super().solve(problem, state, view, contexts)
        self.newton.append(int(problem.counters[3]) - before)


def engine_rounds_per_second(env, rounds: int, seeds: int) -> list[float]:
    learner = make_learner("xpo", alpha=ALPHA)
    run_learner(env, learner, BETA, 3, seed=0, policy_class=LogLinearClass())  # warm-up (compilation)
    rates = []
    for seed in range(seeds):
        start = time.perf_counter()
        run_learner(env, learner, BETA, rounds, seed=seed, checkpoints=[rounds], policy_class=LogLinearClass())
        rates.append(rounds / (time.perf_counter() - start))
    return rates


def token_logit_rounds_per_second(rounds: int, seeds: int) -> list[float]:
    env = random_token_mdp(4, 4, 4, seed=0)
    learner = make_learner("xpo", alpha=ALPHA)
    run_learner(env, learner, BETA, 3, seed=0, policy_class=TokenLogitClass())  # warm-up (compilation)
    rates = []
    for seed in range(seeds):
        start = time.perf_counter()
        run_learner(env, learner, BETA, rounds, seed=seed, checkpoints=[rounds], policy_class=TokenLogitClass())
        rates.append(rounds / (time.perf_counter() - start))
    return rates


def reference_rounds_per_second(env, rounds: int, seeds: int) -> list[float]:
    radius = float(np.linalg.norm(env.reward_parameter))
    rates = []
    for seed in range(seeds):
        start = time.perf_counter()
        reference_xpo_loop(env, BETA, ALPHA, rounds, seed, radius)
        rates.append(rounds / (time.perf_counter() - start))
    return rates


def per_round_costs(env, targets: list[int]) -> list[tuple]:
    cls = TimedLogLinearClass(capture_rounds=targets)
    last = max(targets) + WINDOW + 1
    result = run_learner(env, make_learner("xpo", alpha=ALPHA), BETA, last, seed=0, checkpoints=[last],
                         policy_class=cls)
    print(f"(run to t = {last}: solves {result.counters[0]}, failures {result.counters[1]}, "
          f"disagreements {result.counters[2]}, final suboptimality {result.optimal_value - result.final_value:.4f})")
    stamps = np.array(cls.stamps)
    gaps = np.diff(stamps)  # gaps[i] = time of round i + 1 (from its solve to the next solve)
    radius = float(np.linalg.norm(env.reward_parameter))
    rows = []
    for t in targets:
        window = [i for i in range(max(0, t - WINDOW), min(len(gaps), t + WINDOW)) if (i + 1) not in cls.capture_rounds]
        engine_cost = float(np.median(gaps[window]))
        newton = float(np.mean([cls.newton[i] for i in window]))
        theta, data, loss, n_edges = cls.captured[t]
        times = []
        for _ in range(3):
            start = time.perf_counter()
            solve_loglinear_scipy(theta, env.features, env.trajectory_ref_logprobs, data, loss, radius)
            times.append(time.perf_counter() - start)
        rows.append((t, n_edges, newton, engine_cost, statistics.median(times)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T = 200, fewer seeds, t up to 10^4 (~1 min)")
    args = parser.parse_args()
    rounds = 200 if args.quick else 1000
    engine_seeds = 8 if args.quick else 64
    reference_seeds = 2 if args.quick else 8
    targets = [1000, 10_000] if args.quick else [1000, 10_000, 100_000]
    env = linear_bandit(DIM, ARMS, seed=0)

    print(f"XPO, log-linear class, linear_bandit(d={DIM}, arms={ARMS}), beta={BETA}, alpha={ALPHA}, T={rounds}")
    engine = engine_rounds_per_second(env, rounds, engine_seeds)
    reference = reference_rounds_per_second(env, rounds, reference_seeds)
    e_med, r_med = statistics.median(engine), statistics.median(reference)
    print(f"{'path':<34}{'seeds':>6}{'median rounds/s':>17}{'min':>10}{'max':>10}")
    print(f"{'engine (numba projected Newton)':<34}{engine_seeds:>6}{e_med:>17.1f}{min(engine):>10.1f}{max(engine):>10.1f}")
    print(f"{'reference (numpy + scipy SLSQP)':<34}{reference_seeds:>6}{r_med:>17.1f}{min(reference):>10.1f}"
          f"{max(reference):>10.1f}")
    print(f"ratio engine / reference (medians): {e_med / r_med:.1f}x")
    tl_rates = token_logit_rounds_per_second(rounds, min(engine_seeds, 8))
    print(f"token-logit class, XPO on random_token_mdp(4 contexts, A=4, H=4), engine only: median "
          f"{statistics.median(tl_rates):.1f} rounds/s over {len(tl_rates)} seeds (no reference loop)")
    print()
    print("per-round cost at round t (one seed)")
    print(f"{'t':>8}{'distinct pairs':>16}{'Newton it/round':>17}{'engine ms/round':>17}{'scipy argmin ms':>17}{'ratio':>8}")
    for t, n_edges, newton, engine_cost, scipy_cost in per_round_costs(env, targets):
        print(f"{t:>8}{n_edges:>16}{newton:>17.2f}{1e3 * engine_cost:>17.3f}{1e3 * scipy_cost:>17.2f}"
              f"{scipy_cost / engine_cost:>8.1f}")


if __name__ == "__main__":
    main()
