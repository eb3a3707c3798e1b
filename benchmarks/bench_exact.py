"""Benchmark of the exact solver: soft value iteration (``exact.solve``) and policy evaluation
(``exact.evaluate``) against the plain-numpy reference (``xposim.reference.exact_numpy``).

Trees from 10^3 to ~10^7 leaves (one context, A = 2 and A = 4). Every timing is the median over
repeats after a warm-up call (numba compilation, cached property ``env.log_ref_probs``).
Columns: leaves; numpy and numba medians (seconds); ratio numpy/numba; leaves per second of the
numba path; peak extra memory of one call (tracemalloc, separate untimed call; outputs
included) in units of one tree array ``n_contexts * n_states * A * 8`` bytes. Numba-internal
allocations are invisible to tracemalloc, which is why every buffer of the numba path is
allocated by the Python wrapper.

Usage: ``python benchmarks/bench_exact.py [--quick]`` (``--quick``: up to ~10^5 leaves).
Building the largest environments (validation of the TokenMDP) dominates the run time.
"""
from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

from xposim import exact
from xposim.envs import random_token_mdp
from xposim.reference import exact_numpy

BETA = 0.1
FULL_SIZES = [(2, 10), (2, 14), (2, 17), (2, 20), (2, 23), (4, 5), (4, 8), (4, 10), (4, 12)]
QUICK_SIZES = [(2, 10), (2, 14), (2, 17), (4, 5), (4, 8)]


def median_seconds(call, repeats: int) -> float:
    call()  # warm-up (compilation, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_extra_memory(call) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    before, _ = tracemalloc.get_traced_memory()
    result = call()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return peak - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small trees only (~10 s)")
    args = parser.parse_args()
    sizes = QUICK_SIZES if args.quick else FULL_SIZES

    header = (
        f"{'task':<9}{'A':>3}{'H':>4}{'leaves':>12}{'numpy s':>11}{'numba s':>11}{'ratio':>8}"
        f"{'leaves/s':>11}{'mem numba':>11}{'mem numpy':>11}"
    )
    print(f"beta = {BETA}; medians; memory = peak extra bytes / tree array bytes")
    print(header)
    print("-" * len(header))
    for vocab_size, horizon in sizes:
        env = random_token_mdp(1, vocab_size, horizon, seed=0, reward="dense")
        tree_bytes = env.ref_probs.nbytes
        repeats = 3 if env.n_leaves >= 10**6 else 7
        ref, log_ref, rewards = env.ref_probs, env.log_ref_probs, env.rewards
        solution = exact.solve(env, BETA)
        tasks = {
            "solve": (
                lambda: exact.solve(env, BETA),
                lambda: exact_numpy.soft_value_iteration_numpy(ref, log_ref, rewards, BETA),
            ),
            "evaluate": (
                lambda: exact.evaluate(env, solution.policy, BETA),
                lambda: exact_numpy.policy_reward_and_kl_numpy(solution.policy, ref, rewards),
            ),
        }
        for task, (numba_call, numpy_call) in tasks.items():
            numba_s = median_seconds(numba_call, repeats)
            numpy_s = median_seconds(numpy_call, repeats)
            numba_mem = peak_extra_memory(numba_call) / tree_bytes
            numpy_mem = peak_extra_memory(numpy_call) / tree_bytes
            print(
                f"{task:<9}{vocab_size:>3}{horizon:>4}{env.n_leaves:>12,}{numpy_s:>11.4g}{numba_s:>11.4g}"
                f"{numpy_s / numba_s:>8.1f}{env.n_leaves / numba_s:>11.3g}{numba_mem:>11.2f}{numpy_mem:>11.2f}",
                flush=True,
            )
        del env, solution, tasks


if __name__ == "__main__":
    main()
