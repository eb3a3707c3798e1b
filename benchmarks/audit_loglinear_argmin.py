"""Is the log-linear class's local argmin the global one? An audit of XPO rounds (issue #11 item 4).

XPO (Algorithm 1) on a linear bandit with the log-linear class, the plain loop
:func:`xposim.reference.loglinear_scipy.reference_xpo_loop` around the class's own kernel: each round samples ``tau ~ pi_theta``, ``tau~ ~ pi_ref``, a Bradley–Terry label,
and solves the round objective by the class's default local solver (projected Newton from the
previous ``theta``: :func:`xposim.policies.loglinear.loglinear_projected_newton`), which is what the
learners' loop plays. Every ``--every`` rounds the round is also solved by the certified numpy
branch-and-bound (:func:`xposim.reference.loglinear_certified_numpy.certified_minimize_loglinear`,
relative gap 1e-9), and the local value is compared with the proven lower bound.

Prints, per ``(d, alpha)``: rounds audited, certified, the local solver at the certified minimum
(within 1e-9 relative), the largest relative excess of the local value over the bound, and the median
branch-and-bound boxes and seconds per certificate.

    .venv/bin/python benchmarks/audit_loglinear_argmin.py                 # ~3 min on one core
    .venv/bin/python benchmarks/audit_loglinear_argmin.py --dims 2 --alphas 0.1 --seeds 1
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from xposim.envs import linear_bandit
from xposim.policies import loglinear as ll
from xposim.reference.loglinear_certified_numpy import CERTIFIED, certified_minimize_loglinear
from xposim.reference.loglinear_scipy import reference_xpo_loop


def audit_run(dim: int, alpha: float, seed: int, rounds: int, every: int, arms: int, beta: float):
    """One XPO run; returns ``[(certified, local_value, lower, value, boxes, seconds), ...]``."""
    env = linear_bandit(dim, arms, seed=seed)
    features = np.ascontiguousarray(env.features)
    logref = np.ascontiguousarray(env.trajectory_ref_logprobs)
    radius = float(np.linalg.norm(env.reward_parameter))
    work = ll.new_loglinear_work(arms, dim)
    out = []

    def local_solve(theta, data, loss):  # the class's default: projected Newton from the previous theta
        theta = theta.copy()
        n_terms = float(data.pair_weight.sum() + data.bonus_count.sum())
        value = ll.loglinear_projected_newton(theta, features, logref, data, loss, radius, n_terms, 1e-10, 200, work)[0]
        return theta, value

    def audit(t, theta, local_value, data, loss):
        if t % every == 0:
            started = time.perf_counter()
            cert = certified_minimize_loglinear(features, logref, data, loss, radius, warm=theta)
            out.append((cert.status == CERTIFIED, local_value, cert.lower, cert.value, cert.nodes,
                        time.perf_counter() - started))

    reference_xpo_loop(env, beta, alpha, rounds, seed, radius, solve=local_solve, after_round=audit)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.01, 0.1])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--arms", type=int, default=16)
    parser.add_argument("--beta", type=float, default=0.1)
    args = parser.parse_args()
    print(f"XPO, linear_bandit(d, {args.arms}), beta = {args.beta}, {args.rounds} rounds, audited every "
          f"{args.every}; {args.seeds} seeds")
    print(f"{'d':>3} {'alpha':>7} {'audited':>8} {'certified':>10} {'local at min':>13} {'max excess':>11} "
          f"{'boxes (med)':>12} {'s (med)':>8}")
    for dim in args.dims:
        for alpha in args.alphas:
            rows = [row for seed in range(args.seeds)
                    for row in audit_run(dim, alpha, seed, args.rounds, args.every, args.arms, args.beta)]
            certified = [r for r in rows if r[0]]
            at_min = sum(r[1] <= r[3] + 1e-9 * max(1.0, abs(r[3])) for r in certified)
            excess = max(((r[1] - r[2]) / max(1.0, abs(r[2])) for r in rows), default=float("nan"))
            print(f"{dim:>3} {alpha:>7g} {len(rows):>8} {len(certified):>10} {at_min:>13} {excess:>11.2e} "
                  f"{np.median([r[4] for r in rows]):>12.0f} {np.median([r[5] for r in rows]):>8.2f}")


if __name__ == "__main__":
    main()
