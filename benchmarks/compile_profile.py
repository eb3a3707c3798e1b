"""Where numba's compile time goes on a first run: per kernel and signature, from numba's
``numba:compile`` events (issue #9).

Runs one :func:`xposim.simulate` (default: XPO on ``two_arm_lower_bound(0.05)``, 1000 rounds, 2
seeds) in this process and prints the wall time, then the kernels compiled, each with its
inclusive compile time (its callees compiled inside it are included) and the number of
signatures numba compiled for it: a kernel compiled several times (a literal argument, an
omitted default) is listed separately at the end. Point ``NUMBA_CACHE_DIR`` at an empty
directory for a cold measurement (xposim keeps its kernels under it, by code fingerprint)::

    NUMBA_CACHE_DIR=$(mktemp -d) .venv/bin/python benchmarks/compile_profile.py
    NUMBA_CACHE_DIR=$(mktemp -d) .venv/bin/python benchmarks/compile_profile.py --learners xpo dpo maxinp
"""
from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict

from numba.core import event

import xposim as xs


def compile_times(recorder) -> dict[tuple[str, str], list[float]]:
    """``{(kernel, signature): [inclusive compile seconds, ...]}`` from a ``numba:compile`` recorder."""
    started: dict[tuple[str, str], list[float]] = defaultdict(list)
    durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    for timestamp, record in recorder.buffer:
        function = record.data["dispatcher"].py_func
        key = (f"{function.__module__}.{function.__qualname__}", str(record.data["args"]))
        if record.is_start:
            started[key].append(timestamp)
        else:
            durations[key].append(timestamp - started[key].pop())
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", nargs="+", default=["xpo"])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--top", type=int, default=15, help="kernels to list (by inclusive compile time)")
    args = parser.parse_args()
    env = xs.envs.two_arm_lower_bound(0.05)
    with event.install_recorder("numba:compile") as recorder:
        started = time.perf_counter()
        xs.simulate(env, args.learners, 0.05, args.rounds, seeds=2, workers=1)
        wall = time.perf_counter() - started
    durations = compile_times(recorder)
    print(f"simulate({args.learners}) on {env.name}: {wall:.1f} s wall, {len(durations)} kernel signatures compiled")
    rows = sorted(((max(seconds), key) for key, seconds in durations.items()), reverse=True)
    print(f"\n{'inclusive s':>11}  kernel")
    for seconds, (kernel, _) in rows[:args.top]:
        print(f"{seconds:11.2f}  {kernel}")
    counts = Counter(kernel for kernel, _ in durations)
    repeated = {kernel: n for kernel, n in counts.items() if n > 1}
    if repeated:
        print("\ncompiled for more than one signature:")
        for kernel, n in sorted(repeated.items(), key=lambda item: -item[1]):
            print(f"{n:11d}x {kernel}")


if __name__ == "__main__":
    main()
