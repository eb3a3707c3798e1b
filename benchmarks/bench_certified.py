"""Certified global argmin of the tabular XPO round objective against the local solver: time and quality.

Round-problems as in issue #11's audit: XPO (Algorithm 1: DPO pairs ``(pi_t, pi_ref)``, bonus
``alpha log pi(tau~)``) on a K-armed bandit with one rare arm (mass 0.02), Bradley–Terry labels,
``beta`` in {0.03, 0.1, 0.3}, ``R_max`` in {1, 3}, ``alpha`` log-uniform on ``[1e-3, 1]``, after 20, 100 or
500 rounds of XPO's own sampling (each round solved by projected Newton from the previous point;
:func:`xposim.reference.certified_numpy.audit_problem`). For each K and problem, the last round's
objective is solved by

* ``local``: ``projected_newton`` from the warm start (the previous round's point; today's default);
* ``champions``: ``projected_newton`` from the warm start and from every champion vertex (one
  variable at ``R_max``, the others at 0), the lowest value (``SolverSettings(champion_starts=True)``);
* ``certified``: :func:`xposim.policies.tabular.certified.certified_minimize` from the warm start.

Columns: median / max wall time per solve (each solve repeated ``--repeat`` times, the fastest
kept; Python call overhead of a few microseconds included), the share of solves at the global
minimum (value within 1e-9 relative of the certified value, counted over certified problems), the
certified share, median / max branch-and-bound nodes and the largest relative gap left.

    .venv/bin/python benchmarks/bench_certified.py              # ~1-3 min on 2 cores
    .venv/bin/python benchmarks/bench_certified.py --instances 8 --arms 3 6
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from xposim.policies.tabular import certified as C
from xposim.policies.tabular import projected_newton
from xposim.reference.certified_numpy import audit_problem, workspace_of

DENSE_LIMIT = 128


def load(problem: dict):
    return workspace_of(problem, DENSE_LIMIT)


def args_of(problem: dict) -> tuple:
    return (len(problem["edge_a"]), problem["pair_kind"], problem["pair_param"], problem["bonus_kind"],
            problem["alpha"], problem["beta"], problem["lo"], problem["hi"],
            max(1.0, float(problem["edge_w"].sum() + problem["mcount"].sum())))


def local(problem: dict, ws, start: np.ndarray) -> tuple[float, np.ndarray]:
    n_edges, pk, pp, bk, alpha, beta, lo, hi, scale = args_of(problem)
    v = np.zeros(problem["n"] + 1)
    v[: problem["n"]] = start
    value, _, _ = projected_newton(problem["n"], problem["k"], v, ws, n_edges, pk, pp, bk, alpha, beta, lo, hi, scale,
                                   1e-8, 200, DENSE_LIMIT)
    return value, v[: problem["n"]]


def champions(problem: dict, ws, warm: np.ndarray) -> float:
    n, hi, lo = problem["n"], problem["hi"], problem["lo"]
    best = local(problem, ws, warm)[0]
    for j in range(n):
        best = min(best, local(problem, ws, np.where(np.arange(n) == j, hi, lo))[0])
    return best


def certified(problem: dict, ws, bb, warm: np.ndarray, max_nodes: int) -> tuple[float, float, int, int]:
    n_edges, pk, pp, bk, alpha, beta, lo, hi, scale = args_of(problem)
    v = np.zeros(problem["n"] + 1)
    v[: problem["n"]] = warm
    return C.certified_minimize(problem["n"], problem["k"], v, ws, bb, n_edges, pk, pp, bk, alpha, beta, lo, hi,
                                scale, 1e-8, 200, DENSE_LIMIT, 1e-9, max_nodes)


def timed(function, repeat: int):
    best = np.inf
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def problems(n_arms: int, count: int, seed: int) -> list[tuple[dict, np.ndarray]]:
    rng = np.random.default_rng([seed, n_arms])
    out = []
    for _ in range(count):
        beta = float(rng.choice([0.03, 0.1, 0.3]))
        r_max = float(rng.choice([1.0, 3.0]))
        alpha = float(10 ** rng.uniform(-3, 0))
        rounds = int(rng.choice([20, 100, 500]))
        problem, warm, _ = audit_problem(rng, n_arms, rounds, beta, r_max, alpha,
                                         lambda p, w: local(p, load(p), w)[1].copy())
        out.append((problem, warm))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arms", type=int, nargs="+", default=[3, 6, 16, 64])
    parser.add_argument("--instances", type=int, default=16)
    parser.add_argument("--max-nodes", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # compile outside the timings
    warm_problem, warm_start = problems(3, 1, 12345)[0]
    bb = C.new_certificate_workspace(max(args.arms) + 1, args.max_nodes)
    certified(warm_problem, load(warm_problem), bb, warm_start, args.max_nodes)
    champions(warm_problem, load(warm_problem), warm_start)

    header = (f"{'K':>3} {'solves':>6} | {'local ms':>15} {'at min':>6} | {'champions ms':>15} {'at min':>6} | "
              f"{'certified ms':>17} {'cert.':>6} {'nodes':>13} {'max gap':>8}")
    print(header)
    print("-" * len(header))
    for n_arms in args.arms:
        rows = {"local": [], "champions": [], "certified": []}
        at_min = {"local": 0, "champions": 0}
        n_certified = 0
        nodes = []
        gaps = []
        for problem, warm in problems(n_arms, args.instances, args.seed):
            ws = load(problem)
            t_local, (v_local, _) = timed(lambda: local(problem, ws, warm), args.repeat)
            t_champ, v_champ = timed(lambda: champions(problem, ws, warm), args.repeat)
            t_cert, (value, bound, status, n_nodes) = timed(lambda: certified(problem, ws, bb, warm, args.max_nodes),
                                                            1 if n_arms >= 16 else args.repeat)
            rows["local"].append(t_local)
            rows["champions"].append(t_champ)
            rows["certified"].append(t_cert)
            nodes.append(n_nodes)
            gaps.append((value - bound) / max(1.0, abs(value)))
            if status == C.CERTIFIED:
                n_certified += 1
                tol = 1e-9 * max(1.0, abs(value))
                at_min["local"] += v_local <= value + tol
                at_min["champions"] += v_champ <= value + tol

        def ms(times):
            return f"{1e3 * np.median(times):6.3f} / {1e3 * np.max(times):6.1f}"

        count = len(nodes)
        print(f"{n_arms:3d} {count:6d} | {ms(rows['local']):>15} {at_min['local']:3d}/{n_certified:<2d} | "
              f"{ms(rows['champions']):>15} {at_min['champions']:3d}/{n_certified:<2d} | "
              f"{ms(rows['certified']):>17} {n_certified:3d}/{count:<2d} "
              f"{int(np.median(nodes)):6d} / {max(nodes):5d} {max(gaps):8.1e}")
    print("\nms: median / max wall time per solve; at min: solves at the certified global minimum (1e-9 relative)"
          " among the certified problems; nodes: median / max relaxations of the branch-and-bound;"
          f" max gap: largest (value - lower bound) / max(1, |value|) (budget {args.max_nodes} nodes).")


if __name__ == "__main__":
    main()
