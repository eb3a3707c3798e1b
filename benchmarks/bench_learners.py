"""Learner throughput: rounds per second of every learner, against the plain numpy + scipy loop.

Cases (tabular class):
  (a) bandit64   one context, 64 arms            random_token_mdp(1, 64, 1)
  (b) tree       4 contexts, vocabulary 4, H = 5  random_token_mdp(4, 4, 5)   (1024 leaves per context)
  (c) linear     linear bandit, d = 16, 1024 arms linear_bandit(16, 1024)

Tables (medians over seeds, after a warm-up run so numba compilation is excluded):
  1. rounds/s of every learner on every case (per seed, single thread) and the aggregate
     throughput of the 2-worker sweep;
  2. XPO vs xposim.reference.learners_numpy.reference_run (L-BFGS-B every round, warm-started,
     tolerance 1e-8 on the per-sample projected gradient), same seeds, same rounds: ratio over whole
     runs, and (2b) per-round cost in a late window (rounds 4001-5000) once the data have piled up;
  3. per-round cost of XPO and online DPO at t = 10^3, 10^4, 10^5 (flat in t?);
  4. threads vs processes for a 64-seed sweep; with --sweep the full 64-seed 10^5-round sweep;
  6. XPO's argmin (issue #11): the certified default (each solve starts from the context's kept search)
     against the certified search from the root every round (reuse_search=False), the warm-start
     local solver and champion starts, on one context with K = 4, 16, 64 arms (random_token_mdp(1, K, 1))
     and on random_token_mdp(4, 4, 5): per-round cost at t = 10^3 and 10^4 (the round's chunk of 100),
     whole-run time, the share of solves certified (1 - uncertified / solves) and the largest certified
     gap. The search from the root and champion starts are run only to --champion-rounds, and not at
     K = 64 with --quick (their per-round cost grows steeply with K; the table says where a cell was
     not run).

Usage: python benchmarks/bench_learners.py [--quick] [--sweep] [--sections 1,2,3,4,6] [--seeds N]
"""
from __future__ import annotations

import argparse
import concurrent.futures as futures
import statistics
import time

import numpy as np

from xposim.envs import linear_bandit, random_token_mdp
from xposim.learners import make_learner, run_learner
from xposim.policies.solving import COUNTER_SOLVES
from xposim.reference.learners_numpy import reference_run
from xposim.simulation import simulate

BETA = 0.05
LEARNERS = ["xpo", "online_dpo", "online_dpo_greedy", "xpo_historical", "xpo_batch", "xpo_trl", "dpo", "ipo", "chipo",
            "vpo", "selm", "popo", "se_popo", "copo",
            # the reward-model explorers of issue #12 (per-round cost in t: benchmarks/bench_reward_models.py)
            "maxinp", "colstim", "thompson_ee", "thompson_bai", "passive_mle"]


def cases():
    return {
        "bandit64": random_token_mdp(1, 64, 1, seed=0),
        "tree": random_token_mdp(4, 4, 5, seed=0),
        "linear": linear_bandit(16, 1024, seed=0),
    }


def timed_run(env, name, rounds, seed):
    started = time.perf_counter()
    result = run_learner(env, make_learner(name), BETA, rounds, checkpoints=[rounds], seed=seed)
    return time.perf_counter() - started, result


def throughput_table(envs, rounds, seeds, workers):
    spec = ", ".join(f"{case} {t}" for case, t in rounds.items())
    print(f"\n1. rounds/s per seed (median over {seeds} seeds; rounds: {spec}; one thread per seed, {workers} "
          f"threads; xpo_batch has 8 queries per round; dpo and chipo are offline: one argmin on that many pairs)")
    header = f"{'learner':18s}" + "".join(f"{c:>14s}" for c in envs)
    print(header)
    rows = {}
    for name in LEARNERS:
        cells = []
        for case, env in envs.items():
            t = rounds[case]
            timed_run(env, name, 5, 0)  # warm-up (compilation)
            with futures.ThreadPoolExecutor(workers) as pool:
                times = list(pool.map(lambda s: timed_run(env, name, t, s)[0], range(seeds)))
            rate = statistics.median(t / x for x in times)
            rows[(name, case)] = rate
            cells.append(f"{rate:14.0f}")
        print(f"{name:18s}" + "".join(cells))
    return rows


def reference_table(envs, ref_rounds, seeds):
    print(f"\n2. XPO (alpha = 0.01) vs plain numpy + scipy L-BFGS-B loop, same seeds and rounds "
          f"(median over {seeds} seeds)")
    print(f"{'case':10s}{'rounds':>8s}{'engine r/s':>14s}{'numpy r/s':>12s}{'ratio':>10s}")
    for case, env in envs.items():
        t = ref_rounds[case]
        engine_rates, ref_rates = [], []
        run_learner(env, make_learner("xpo", alpha=0.01), BETA, 3, seed=0)
        for seed in range(seeds):
            started = time.perf_counter()
            run_learner(env, make_learner("xpo", alpha=0.01), BETA, t, checkpoints=[t], seed=seed)
            engine_rates.append(t / (time.perf_counter() - started))
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
            uniforms = rng.random((t, 5))
            started = time.perf_counter()
            reference_run(env, BETA, t, uniforms, alpha=0.01, record_every=10**9)
            ref_rates.append(t / (time.perf_counter() - started))
        e, r = statistics.median(engine_rates), statistics.median(ref_rates)
        print(f"{case:10s}{t:8d}{e:14.0f}{r:12.1f}{e / r:10.0f}x")


def late_window_table(env, first, last):
    """Per-round cost in rounds ``first..last`` of one run (after the data have piled up), both loops."""
    print(f"\n2b. bandit64, per-round cost in rounds {first}-{last} (seed 0), both loops from round 1")
    print(f"{'alpha':>10s}{'engine us':>12s}{'numpy us':>12s}{'ratio':>10s}")
    for alpha in (0.01, 5 * BETA / last**0.5):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(0)))
        uniforms = rng.random((last, 5))
        seconds = []
        reference_run(env, BETA, last, uniforms, alpha=alpha, record_every=10**9, round_seconds=seconds)
        ref = sum(seconds[first - 1:last]) / (last - first + 1)
        chunks = {}

        def record(a, b, s):
            if a >= first and b <= last:
                chunks[a] = s

        run_learner(env, make_learner("xpo", alpha=alpha), BETA, last, checkpoints=[last], seed=0,
                    chunk_rounds=last - first + 1, on_chunk=record)
        eng = sum(chunks.values()) / (last - first + 1)
        print(f"{alpha:10.4g}{eng * 1e6:12.1f}{ref * 1e6:12.0f}{ref / eng:10.0f}x")


def flatness_table(env, horizon):
    print(f"\n3. per-round cost (microseconds) of the round containing t, bandit64, one seed, chunks of 1000 rounds")
    marks = [m for m in (10**3, 10**4, 10**5) if m <= horizon]
    print(f"{'learner':12s}" + "".join(f"{'t=' + str(m):>12s}" for m in marks))
    for name in ("xpo", "online_dpo"):
        costs = {}

        def record(first, last, seconds):
            for m in marks:
                if first <= m <= last:
                    costs[m] = 1e6 * seconds / (last - first + 1)

        run_learner(env, make_learner(name), BETA, horizon, checkpoints=[horizon], seed=0, chunk_rounds=1000,
                    on_chunk=record)
        print(f"{name:12s}" + "".join(f"{costs[m]:12.1f}" for m in marks))


def executor_table(env, rounds, seeds):
    print(f"\n4. {seeds}-seed sweep of XPO on bandit64, {rounds} rounds, 2 workers: threads vs processes")
    for executor in ("threads", "processes"):
        started = time.perf_counter()
        simulate(env, "xpo", BETA, rounds, seeds=seeds, checkpoints=[rounds], workers=2, executor=executor)
        wall = time.perf_counter() - started
        print(f"{executor:10s} wall {wall:7.1f} s   aggregate {seeds * rounds / wall:9.0f} rounds/s")


SOLVERS = {"certified": {}, "from root": {"reuse_search": False}, "local": {"argmin": "local"},
           "champion": {"argmin": "local", "champion_starts": True}}


def argmin_run(env, solver, rounds, seed, marks):
    """One XPO run (alpha = 0.01) with ``solver``: (whole seconds, {t: per-round us}, uncertified, solves, gap)."""
    from xposim.learners.config import SolverSettings

    costs = {}

    def record(first, last, seconds):
        for m in marks:
            if first <= m <= last:
                costs[m] = 1e6 * seconds / (last - first + 1)

    learner = make_learner("xpo", alpha=0.01, solver=SolverSettings(**SOLVERS[solver]))
    started = time.perf_counter()
    result = run_learner(env, learner, BETA, rounds, checkpoints=[rounds], seed=seed, chunk_rounds=100,
                         on_chunk=record)
    wall = time.perf_counter() - started
    row = dict(zip(result.columns, result.metrics[-1]))
    return wall, costs, row["uncertified_solves"], int(result.counters[COUNTER_SOLVES]), row["max_certified_gap"]


def argmin_table(seeds, rounds, champion_rounds, workers, quick=False):
    marks = [m for m in (10**3, 10**4) if m <= rounds]
    envs = {f"K={k}": random_token_mdp(1, k, 1, seed=0) for k in (4, 16, 64)}
    envs["tree(4,4,5)"] = random_token_mdp(4, 4, 5, seed=0)
    print(f"\n6. XPO (alpha = 0.01, beta = {BETA}) argmin: certified vs local vs champion starts; median over {seeds} "
          f"seeds of per-round cost (us) in the chunk of 100 rounds ending at t, and of the whole run "
          f"({rounds} rounds; champion starts {champion_rounds}); certified share = solves with a proof / solves")
    head = f"{'case':12s}{'solver':11s}" + "".join(f"{'us@t=' + str(m):>12s}" for m in marks)
    print(head + f"{'run s':>9s}{'certified':>11s}{'max gap':>10s}{'x local@' + str(marks[-1]):>14s}")
    for case, env in envs.items():
        local_cost = None
        for solver in ("local", "certified", "from root", "champion"):
            horizon = rounds if solver in ("local", "certified") else min(rounds, champion_rounds)
            if quick and case == "K=64" and solver in ("from root", "champion"):
                print(f"{case:12s}{solver:11s}" + "".join(f"{'not run':>12s}" for _ in marks))
                continue
            argmin_run(env, solver, 3, 0, [])  # warm-up (compilation)
            with futures.ThreadPoolExecutor(workers) as pool:
                runs = list(pool.map(lambda s: argmin_run(env, solver, horizon, s, marks), range(seeds)))
            cells = []
            for m in marks:
                values = [r[1][m] for r in runs if m in r[1]]
                cells.append(f"{statistics.median(values):12.1f}" if values else f"{'not run':>12s}")
            last = [r[1][marks[-1]] for r in runs if marks[-1] in r[1]]
            if solver == "local":
                local_cost = statistics.median(last)
            ratio = f"{statistics.median(last) / local_cost:13.1f}x" if last and local_cost else f"{'':>14s}"
            share = 1.0 - sum(r[2] for r in runs) / max(sum(r[3] for r in runs), 1)
            gap = max(r[4] for r in runs)
            print(f"{case:12s}{solver:11s}" + "".join(cells) + f"{statistics.median(r[0] for r in runs):9.1f}"
                  f"{share:11.2%}{gap:10.1e}{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer seeds and rounds (about a minute)")
    parser.add_argument("--sweep", action="store_true", help="also time the 64-seed 10^5-round XPO sweep on bandit64")
    parser.add_argument("--sections", default="1,2,3,4", help="comma-separated tables to run (default 1,2,3,4; "
                        "6 is the argmin comparison)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds of section 6 (default 64, quick 4)")
    parser.add_argument("--workers", type=int, default=2, help="threads of section 6 (default 2)")
    parser.add_argument("--champion-rounds", type=int, default=None,
                        help="rounds of the champion-start runs of section 6 (default 1100, quick 1100)")
    args = parser.parse_args()
    sections = {int(x) for x in args.sections.split(",") if x.strip()}
    envs = cases()
    if args.quick:
        if 1 in sections:
            throughput_table(envs, {"bandit64": 2000, "tree": 500, "linear": 300}, seeds=4, workers=2)
        if 2 in sections:
            reference_table(envs, {"bandit64": 200, "tree": 30, "linear": 20}, seeds=2)
            late_window_table(envs["bandit64"], 1501, 2000)
        if 3 in sections:
            flatness_table(envs["bandit64"], 10**4)
        if 4 in sections:
            executor_table(envs["bandit64"], 2000, 8)
        if 6 in sections:
            argmin_table(args.seeds or 4, 1100, args.champion_rounds or 1100, workers=args.workers, quick=True)
    else:
        if 1 in sections:
            throughput_table(envs, {"bandit64": 10**4, "tree": 1000, "linear": 1000}, seeds=64, workers=2)
        if 2 in sections:
            reference_table(envs, {"bandit64": 1000, "tree": 40, "linear": 100}, seeds=3)
            late_window_table(envs["bandit64"], 4001, 5000)
        if 3 in sections:
            flatness_table(envs["bandit64"], 10**5)
        if 4 in sections:
            executor_table(envs["bandit64"], 10**4, 64)
        if 6 in sections:
            argmin_table(args.seeds or 64, 10**4, args.champion_rounds or 1100, workers=args.workers)
    if args.sweep:
        started = time.perf_counter()
        simulate(envs["bandit64"], "xpo", BETA, 10**5, seeds=64, workers=2)
        wall = time.perf_counter() - started
        print(f"\n5. full sweep: XPO, bandit64, 64 seeds x 10^5 rounds, 2 threads: {wall:.0f} s "
              f"({64 * 10**5 / wall:.0f} rounds/s)")


if __name__ == "__main__":
    main()
