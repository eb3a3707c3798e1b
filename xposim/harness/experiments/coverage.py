"""``coverage`` (E4): samples-to-eps scale with coverability for XPO, with concentrability for passive methods.

Instances: one-context bandits with a hidden good arm (:func:`xposim.envs.hidden_arm_bandit`: arm 0
has reward ``R_max`` and reference probability ``p``, the other ``K - 1`` arms ``R_max/2``).
Two sweeps separate the two coefficients of the tabular class (both computed exactly,
:func:`xposim.coverage.coverability_box_class` / :func:`~xposim.coverage.concentrability_box_class`):

* ``arms``: ``K`` varies with a uniform reference (``p = 1/K``): ``C_cov ≈ K`` (and ``C_conc ≈ K``);
* ``rarity``: ``K = 2`` and ``p`` varies: ``C_cov ≈ 2`` stays, ``C_conc ≈ 1/p`` grows.

Measured: queries until the suboptimality falls below ``eps_fraction`` times that of
``pi_ref`` (KM quantile over seeds, censored at the budget), and its log-log slope against
``C_cov`` (arms sweep) and ``C_conc`` (rarity sweep). Predictions: XPO's need grows linearly in
``C_cov`` (slope 1 in the arms sweep) and stays flat when only ``C_conc`` grows (rarity sweep);
online DPO's need grows with ``C_conc`` (slope 1 in the rarity sweep).

Setting ``xpo_champion_starts``: XPO's per-round argmin also tries the champion starts of
:class:`~xposim.policies.solving.SolverSettings` (closer to the exact argmin the theorem assumes; its
cost grows with the number of arms, a K = 64 run of 30,000 rounds takes ~10 minutes).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xposim.harness.experiments import common
from xposim.harness.experiments.base import Experiment, register_experiment


def points(settings: dict[str, Any]) -> list[dict[str, Any]]:
    base = {"env": "bandit", "beta": settings["beta"], "rounds": settings["rounds"],
            "checkpoints_per_decade": settings["checkpoints_per_decade"]}
    grid = [("arms", k, 1.0 / k) for k in settings["arms"]]
    grid += [("rarity", 2, p) for p in settings["good_arm_ref_probs"]]
    out = []
    for sweep, k, p in grid:
        for learner in settings["learners"]:
            point = {**base, "sweep": sweep, "n_arms": k, "good_arm_ref_prob": p, "learner": learner}
            out.append(common.add_xpo_options(point, settings))
    return out


def cell(point: dict[str, Any], seed: np.random.SeedSequence) -> pd.DataFrame:
    env = common.make_env(point)
    overrides = common.learner_overrides(point)
    checkpoints = common.checkpoint_grid(point["rounds"], point["checkpoints_per_decade"])
    return common.run_one(env, point["learner"], point["beta"], point["rounds"], seed, checkpoints, **overrides)


def coefficients(point: dict[str, Any]) -> tuple[float, float]:
    """``(C_cov, C_conc)`` of the tabular class on the point's instance."""
    from xposim.coverage import concentrability_box_class, coverability_box_class

    env = common.make_env(point)
    return float(coverability_box_class(env, point["beta"])), float(concentrability_box_class(env, point["beta"]))


def analyze(results: pd.DataFrame, settings: dict[str, Any], directory: Path) -> dict[str, Any]:
    from xposim.harness import plots

    hits = common.relative_hits(results, ["sweep", "n_arms", "good_arm_ref_prob", "learner"], settings["eps_fraction"])
    hits["instance"] = list(zip(hits["n_arms"], hits["good_arm_ref_prob"]))
    coeffs = {inst: coefficients({"env": "bandit", "beta": settings["beta"], "n_arms": inst[0],
                                  "good_arm_ref_prob": inst[1]}) for inst in sorted(set(hits["instance"]))}
    predictions, figures, table = [], [], []
    plans = [("arms", 0, "C_cov", {"xpo": ("contains", 1.0, "grows linearly in C_cov (Thm 3.1)")}),
             ("rarity", 1, "C_conc", {"xpo": ("flat", 0.0, "stays flat when only C_conc grows"),
                                      "online_dpo": ("passive", 1.0, "grows with C_conc (passive exploration)")})]
    for sweep, index, coefficient, expectations in plans:
        sub = hits[hits["sweep"] == sweep]
        series = []
        for learner in [l for l in settings["learners"] if l in set(sub["learner"])]:
            h = sub[sub["learner"] == learner]
            covariate = {inst: coeffs[inst][index] for inst in sorted(set(h["instance"]))}
            values, trend = common.quantile_trend(h, "instance", covariate, log_covariate=True)
            series.append(common.trend_series(learner, values, trend, covariate, True))
            for v, q, c in zip(values, trend.quantiles, trend.censored):
                table.append({"sweep": sweep, "learner": learner, "n_arms": v[0], "good_arm_ref_prob": v[1],
                              "C_cov": coeffs[v][0], "C_conc": coeffs[v][1], "quantile": trend.q,
                              "queries_to_eps": q, "censored": bool(c)})
            rule, predicted, text = expectations.get(learner, ("passive" if learner in ("online_dpo", "dpo") else
                                                               "contains", 1.0, f"grows with {coefficient}"))
            predictions.append(common.trend_record(
                f"E4:{learner}@{sweep}", f"{learner}'s samples-to-eps {text} ({sweep} sweep)", trend, rule,
                predicted, f"log-log slope vs {coefficient}", common.trend_detail(values, trend, "(K, p)")
                + (common.log_class_note("K (the box class has one value per arm)") if (learner, sweep) == ("xpo", "arms") else "")))
        figures += plots.scaling_plot(
            directory, f"coverage_{sweep}",
            f"E4 {sweep} sweep: queries until suboptimality < {settings['eps_fraction']:g}·gap(π_ref)",
            f"{coefficient} of the tabular class (exact)", "queries (Kaplan–Meier quantile)", series,
            common.power_lines(series, [("theory: linear in the coefficient", 1, "--", "black")]
                               + ([("Thm 3.1 bound with log|Π| ∝ K: ∝ C_cov²", 2, "-.", "gray")]
                                  if sweep == "arms" else [])),
            note=common.solver_note(settings))
    return {"predictions": predictions, "figures": figures, "tables": {"queries_to_eps": table}}


def check(settings: dict[str, Any]) -> None:
    if settings["beta"] <= 0:
        raise ValueError(f"setting 'beta' must be > 0, got {settings['beta']}")
    if len(settings["arms"]) < 2 or min(settings["arms"]) < 2:
        raise ValueError(f"setting 'arms' needs at least two values >= 2, got {settings['arms']}")
    if len(settings["good_arm_ref_probs"]) < 2 or not all(0 < p < 1 for p in settings["good_arm_ref_probs"]):
        raise ValueError(f"setting 'good_arm_ref_probs' needs at least two values in (0, 1), got {settings['good_arm_ref_probs']}")
    if not 0 < settings["eps_fraction"] < 1:
        raise ValueError(f"setting 'eps_fraction' must be in (0, 1), got {settings['eps_fraction']}")
    common.check_champion_setting(settings)
    if settings["rounds"] < 1 or settings["checkpoints_per_decade"] < 1 or settings["xpo_alpha"] < 0:
        raise ValueError("settings need rounds >= 1, checkpoints_per_decade >= 1, xpo_alpha >= 0")
    if not settings["learners"]:
        raise ValueError("setting 'learners' must not be empty")
    common.learner_label_check(settings["learners"])


COVERAGE = register_experiment(Experiment(
    name="coverage",
    predictions=("E4",),
    description="samples-to-eps vs coverability (XPO, ~linear) and concentrability (online DPO) on hidden-arm bandits",
    quick={"beta": 0.05, "arms": [2, 4, 8, 16], "good_arm_ref_probs": [0.1, 0.03, 0.01], "learners": ["xpo", "online_dpo"],
           "rounds": 2000, "eps_fraction": 0.25, "xpo_alpha": 0.01, "xpo_champion_starts": False,
           "checkpoints_per_decade": 20, "seeds": 12},
    full={"beta": 0.05, "arms": [2, 4, 8, 16, 32, 64], "good_arm_ref_probs": [0.1, 0.03, 0.01, 0.003, 0.001],
          "learners": ["xpo", "online_dpo"], "rounds": 30000, "eps_fraction": 0.25, "xpo_alpha": 0.01,
          "xpo_champion_starts": False,
          "checkpoints_per_decade": 20, "seeds": 48},
    points=points, cell=cell, analyze=analyze, check=check,
))
