"""``linear`` (E7): linear bandits — XPO's need scales with the dimension, not with the number of
arms nor with ``1/pi_ref(a*)``; online DPO's grows with ``1/pi_ref(a*)``.

Instances: :func:`xposim.envs.linear_bandit` (``r = <theta*, phi>``; the best arm of each context
gets reference probability ``p``), learned in the log-linear class
(:class:`xposim.policies.loglinear.LogLinearClass`, realizable). Three one-factor sweeps around a
base point ``(d, n_arms, p)``: ``d``, ``n_arms`` and ``p``.

Measured: queries until the suboptimality falls below ``eps_fraction`` of ``pi_ref``'s (KM
quantile, censored at the budget) and its log-log slope against ``d``, ``n_arms`` and ``1/p``.
Predictions (THEORY E7): XPO's need grows ~linearly in ``d`` (``C_cov <= d``; the bootstrap
interval of the slope contains 1 — the same rule as E4's ``C_cov`` sweep; Theorem 3.1's bound
``C_cov log|Pi|`` with ``log|Pi| ∝ d`` would allow up to 2, which the detail reports), is flat in
``n_arms`` and in ``1/p`` (interval below 1/2); online DPO grows with ``1/p`` (interval above 0,
reaching 1).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xposim.harness.experiments import common
from xposim.harness.experiments.base import Experiment, register_experiment

SWEEPS = {"d": "dims", "n_arms": "arm_counts", "inverse_p": "optimal_arm_ref_probs"}


def points(settings: dict[str, Any]) -> list[dict[str, Any]]:
    base = {"d": settings["d"], "n_arms": settings["n_arms"], "p": settings["optimal_arm_ref_prob"]}
    grid = [("d", {**base, "d": d}) for d in settings["dims"]]
    grid += [("n_arms", {**base, "n_arms": k}) for k in settings["arm_counts"]]
    grid += [("inverse_p", {**base, "p": p}) for p in settings["optimal_arm_ref_probs"]]
    out = []
    for sweep, inst in grid:
        for learner in settings["learners"]:
            point = {"sweep": sweep, **inst, "env_seed": settings["env_seed"], "n_contexts": settings["n_contexts"],
                     "beta": settings["beta"], "learner": learner, "rounds": settings["rounds"],
                     "checkpoints_per_decade": settings["checkpoints_per_decade"]}
            if learner.startswith("xpo") and learner != "xpo_alpha0":
                point["alpha"] = settings["xpo_alpha"]
            out.append(point)
    return out


def make_linear_env(point: dict[str, Any]):
    from xposim.envs import linear_bandit

    return linear_bandit(int(point["d"]), int(point["n_arms"]), seed=int(point["env_seed"]),
                         n_contexts=int(point["n_contexts"]), optimal_arm_ref_prob=float(point["p"]))


def cell(point: dict[str, Any], seed: np.random.SeedSequence) -> pd.DataFrame:
    from xposim.policies.loglinear import LogLinearClass

    env = make_linear_env(point)
    overrides = {"alpha": point["alpha"]} if "alpha" in point else {}
    checkpoints = common.checkpoint_grid(point["rounds"], point["checkpoints_per_decade"])
    return common.run_one(env, point["learner"], point["beta"], point["rounds"], seed, checkpoints,
                          policy_class=LogLinearClass(), **overrides)


def analyze(results: pd.DataFrame, settings: dict[str, Any], directory: Path) -> dict[str, Any]:
    from xposim.harness import plots

    hits = common.relative_hits(results, ["sweep", "d", "n_arms", "p", "learner"], settings["eps_fraction"])
    expectations = {("xpo", "d"): ("contains", 1.0, "grows ~linearly in d (C_cov <= d, Thm 3.1)"),
                    ("xpo", "n_arms"): ("flat", 0.0, "is flat in the number of arms"),
                    ("xpo", "inverse_p"): ("flat", 0.0, "is flat in 1/pi_ref(a*)"),
                    ("online_dpo", "inverse_p"): ("passive", 1.0, "grows with 1/pi_ref(a*)")}
    predictions, figures, table = [], [], []
    for sweep in ("d", "n_arms", "inverse_p"):
        sub = hits[hits["sweep"] == sweep].copy()
        if sub.empty:
            continue
        sub["level"] = sub["d"] if sweep == "d" else (sub["n_arms"] if sweep == "n_arms" else 1.0 / sub["p"])
        covariate = {v: float(v) for v in sorted(set(sub["level"]))}
        series = []
        for learner in [l for l in settings["learners"] if l in set(sub["learner"])]:
            h = sub[sub["learner"] == learner]
            values, trend = common.quantile_trend(h, "level", covariate, log_covariate=True)
            series.append(common.trend_series(learner, values, trend, covariate, True))
            for v, q, c in zip(values, trend.quantiles, trend.censored):
                table.append({"sweep": sweep, "learner": learner, "level": v, "quantile": trend.q,
                              "queries_to_eps": q, "censored": bool(c)})
            if (learner, sweep) in expectations:
                rule, predicted, text = expectations[(learner, sweep)]
                predictions.append(common.trend_record(
                    f"E7:{learner}@{sweep}", f"{learner}'s samples-to-eps {text} (linear bandit)", trend, rule,
                    predicted, f"log-log slope vs {sweep}", common.trend_detail(values, trend, sweep)
                    + (common.log_class_note("d (a ball in R^d)") if (learner, sweep) == ("xpo", "d") else "")))
        label = {"d": "feature dimension d", "n_arms": "number of arms", "inverse_p": "1 / π_ref(a*)"}[sweep]
        figures += plots.scaling_plot(
            directory, f"linear_{sweep}", f"E7 linear bandit: queries until suboptimality < "
            f"{settings['eps_fraction']:g}·gap(π_ref), vs {label}", label, "queries (Kaplan–Meier quantile)", series,
            theory_lines(sweep, series),
            note=f"base point d = {settings['d']}, arms = {settings['n_arms']}, p = {settings['optimal_arm_ref_prob']:g}; "
                 "log-linear policy class (realizable)")
    return {"predictions": predictions, "figures": figures, "tables": {"queries_to_eps": table}}


def theory_lines(sweep: str, series) -> list:
    """Theorem 3.1's shapes through the lowest measured point: linear in ``d`` (``C_cov <= d``) and
    ``d^2`` (with ``log|Pi| ∝ d``) for the ``d`` sweep; flat for the other two (XPO's prediction)."""
    if sweep == "d":
        return common.power_lines(series, [("theory: linear in d (C_cov ≤ d)", 1, "--", "black"),
                                           ("Thm 3.1 bound with log|Π| ∝ d: ∝ d²", 2, "-.", "gray")])
    return common.power_lines(series, [("theory (XPO): flat", 0, "--", "black")])


def check(settings: dict[str, Any]) -> None:
    if min(settings["dims"] + [settings["d"]]) < 2 or min(settings["arm_counts"] + [settings["n_arms"]]) < 2:
        raise ValueError("settings need every d >= 2 and every number of arms >= 2")
    probs = settings["optimal_arm_ref_probs"] + [settings["optimal_arm_ref_prob"]]
    if not all(0 < p < 1 for p in probs):
        raise ValueError(f"settings 'optimal_arm_ref_prob(s)' must lie in (0, 1), got {probs}")
    for key in SWEEPS.values():
        if len(set(settings[key])) < 2:
            raise ValueError(f"setting '{key}' needs at least two distinct values")
    if settings["beta"] <= 0 or not 0 < settings["eps_fraction"] < 1 or settings["rounds"] < 1:
        raise ValueError("settings need beta > 0, 0 < eps_fraction < 1, rounds >= 1")
    if settings["n_contexts"] < 1 or settings["env_seed"] < 0 or settings["xpo_alpha"] < 0:
        raise ValueError("settings need n_contexts >= 1, env_seed >= 0, xpo_alpha >= 0")
    if not settings["learners"]:
        raise ValueError("setting 'learners' must not be empty")
    common.learner_label_check(settings["learners"])


LINEAR = register_experiment(Experiment(
    name="linear",
    predictions=("E7",),
    description="linear bandit (log-linear class): XPO's need scales with d, not arms or 1/pi_ref(a*); online DPO's with 1/pi_ref(a*)",
    quick={"d": 4, "n_arms": 16, "optimal_arm_ref_prob": 0.01, "dims": [2, 4, 8], "arm_counts": [8, 32],
           "optimal_arm_ref_probs": [0.1, 0.01], "n_contexts": 1, "env_seed": 7, "beta": 0.1,
           "learners": ["xpo", "online_dpo"], "rounds": 1000, "eps_fraction": 0.3, "xpo_alpha": 0.01,
           "checkpoints_per_decade": 16, "seeds": 8},
    full={"d": 4, "n_arms": 32, "optimal_arm_ref_prob": 0.01, "dims": [2, 4, 8, 16], "arm_counts": [8, 32, 128, 512],
          "optimal_arm_ref_probs": [0.1, 0.03, 0.01, 0.003, 0.001], "n_contexts": 1, "env_seed": 7, "beta": 0.1,
          "learners": ["xpo", "online_dpo"], "rounds": 20000, "eps_fraction": 0.3, "xpo_alpha": 0.01,
          "checkpoints_per_decade": 16, "seeds": 32},
    points=points, cell=cell, analyze=analyze, check=check,
))
