"""Reward-model explorers (issue 12) against online DPO: throughput and per-round cost.

Case: ``linear_bandit(16, 1024)`` (d = 16, 1,024 arms, one context), beta = 0.05, the default
settings of every learner; online DPO is ``make_learner("online_dpo")`` (tabular class) on the
same environment. Medians over seeds, after a warm-up run so numba compilation is excluded.

  1. rounds/s of a whole run of T rounds (pessimistic_mle: one offline fit on T pairs, pairs/s);
  2. per-round cost (microseconds) of the block of rounds containing t = 10^3 and t = 10^4
     (blocks of 100 rounds), and its ratio to online DPO's at the same t.

What a round costs (K arms, d features, P distinct pairs so far): every learner refits the MLE
(about two passes over the data, O(P + K d) each: the rewards of the arms, one sigmoid per pair)
and recomputes pi_hat exactly on all K arms (O(K d)); on top, MaxInP's rule is O(K^2 d) (every
arm stays a candidate under the paper's radius: the Gram matrix of the whitened arms), CoLSTIM's
O(K d) plus K Gumbel draws, Thompson EE up to 20 posterior draws of O(K d), Thompson BAI O(K d^2).

Usage: python benchmarks/bench_reward_models.py [--quick] [--seeds N] [--learners a,b,...]
"""
from __future__ import annotations

import argparse
import statistics
import time

from xposim.envs import linear_bandit
from xposim.learners import make_learner, run_learner

BETA = 0.05
LEARNERS = ["online_dpo", "passive_mle", "maxinp", "colstim", "thompson_ee", "thompson_bai", "pessimistic_mle"]
BLOCK = 100


def timed(env, name: str, rounds: int, seed: int, marks=()) -> tuple[float, dict[int, float]]:
    """Wall time of one run and the per-round cost (us) of the blocks containing ``marks``."""
    costs: dict[int, float] = {}

    def record(first: int, last: int, seconds: float) -> None:
        for mark in marks:
            if first <= mark <= last:
                costs[mark] = 1e6 * seconds / (last - first + 1)

    started = time.perf_counter()
    run_learner(env, make_learner(name), BETA, rounds, checkpoints=[rounds], seed=seed, chunk_rounds=BLOCK,
                on_chunk=record)
    return time.perf_counter() - started, costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="t up to 10^3 only, 2 seeds (about a minute)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per cell (default 3, quick 2)")
    parser.add_argument("--learners", default=",".join(LEARNERS), help="comma-separated learner names")
    args = parser.parse_args()
    names = [n.strip() for n in args.learners.split(",") if n.strip()]
    seeds = args.seeds or (2 if args.quick else 3)
    horizon = 10**3 if args.quick else 10**4
    marks = [m for m in (10**3, 10**4) if m <= horizon]
    throughput_rounds = 300 if args.quick else 1000
    env = linear_bandit(16, 1024, seed=0)

    rates, costs = {}, {}
    for name in names:
        run_learner(env, make_learner(name), BETA, 3, seed=0)  # warm-up: compile
        rates[name] = statistics.median(throughput_rounds / timed(env, name, throughput_rounds, s)[0]
                                        for s in range(seeds))
        if name == "pessimistic_mle":
            continue  # offline: one fit, no per-round cost
        per_seed = [timed(env, name, horizon, s, marks)[1] for s in range(seeds)]
        costs[name] = {m: statistics.median(c[m] for c in per_seed) for m in marks}

    print(f"\nlinear_bandit(d=16, arms=1024), beta={BETA}, medians over {seeds} seeds "
          f"(numba compilation excluded; a shared machine: compare ratios, not absolute numbers)")
    print(f"\n1. throughput over {throughput_rounds} rounds (pessimistic_mle: one fit on that many pairs)")
    print(f"{'learner':18s}{'rounds/s':>12s}{'vs online_dpo':>15s}")
    base = rates.get("online_dpo")
    for name in names:
        ratio = f"{rates[name] / base:14.2f}x" if base else f"{'-':>15s}"
        print(f"{name:18s}{rates[name]:12.0f}{ratio}")
    print(f"\n2. per-round cost in microseconds (block of {BLOCK} rounds containing t), ratio to online DPO's")
    print(f"{'learner':18s}" + "".join(f"{'t=' + str(m):>12s}{'ratio':>9s}" for m in marks))
    for name, cost in costs.items():
        cells = []
        for m in marks:
            ratio = cost[m] / costs["online_dpo"][m] if "online_dpo" in costs else float("nan")
            cells.append(f"{cost[m]:12.0f}{ratio:8.1f}x")
        print(f"{name:18s}" + "".join(cells))


if __name__ == "__main__":
    main()
