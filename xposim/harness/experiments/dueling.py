"""``dueling`` (E10): XPO's implicit exploration against the reward-model explorers of the
dueling-bandit field (issue #12).

Instances: linear bandits (:func:`xposim.envs.linear_bandit`, ``r = <theta*, phi>``, the best arm
at reference probability ``p``) for each ``d`` of ``dims``, and the hidden-arm tabular bandit
(:func:`xposim.envs.hidden_arm_bandit`). Learners: XPO (log-linear class on the linear bandits,
tabular class with the certified argmin on the hidden-arm bandit), online DPO, and the reward-model
explorers MaxInP, CoLSTIM, Thompson sampling in its explore–exploit and best-arm-identification
modes, and the passive MLE (:mod:`xposim.learners.reward_models`; their regret notions:
``docs/theory.md`` section 8).

Measured per run: the cumulative dueling regret of the queried pairs against the queries ``T``,
and the queries until the KL-regularized suboptimality falls below ``eps_fraction`` of
``pi_ref``'s (Kaplan–Meier median, censored at the budget). Predictions (each read from a 95%
bootstrap-over-seeds interval):

* ``E10-T:<learner>@<instance>`` — a reward-model explorer's cumulative dueling regret grows like
  ``sqrt(T)`` up to logarithms: the log-log slope over ``T >= fit_from`` is at most
  ``1/2 + 1/log(T_mid)`` (one logarithmic factor's local slope at the fit's middle ``T``; the
  bounds are ``O~(d sqrt(T))``). XPO draws its second response from ``pi_ref``, so its dueling
  regret is linear by design (online DPO draws both from its policy): XPO and online DPO are
  measured, not judged, on this regret.
* ``E10-d:<learner>`` — the same regret at the budget grows at most linearly in ``d`` (the
  ``d sqrt(T)`` bounds): log-log slope in ``d`` at most 1.
* ``E10-need`` — XPO's sample need is within a constant factor of the best reward-model
  explorer's (the paper's claim that implicit exploration suffices): the log of the ratio of the
  medians does not grow with ``d`` (slope of ``log ratio`` in ``log d`` below 1/2: held; above 0
  with the whole interval: not held), the ratios themselves reported per instance.

The figure of each instance draws the regret curves with the reference shapes ``sqrt(d T)`` and
``d sqrt(T)`` and the lower bound ``Omega(d sqrt(T))`` of linear dueling bandits (Bengs, Saha and
Hüllermeier 2022), all with constant 1 — the papers leave the constants open [R].
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xposim.harness.experiments import common
from xposim.harness.experiments.base import Experiment, register_experiment

#: Learners that fit a Bradley–Terry reward model and choose the pair to query (issue #12).
EXPLORERS = ("maxinp", "colstim", "thompson_ee", "thompson_bai")


def instance_name(point: dict[str, Any]) -> str:
    return f"linear d={point['d']}" if point["env"] == "linear" else f"hidden-arm K={point['n_arms']}"


def points(settings: dict[str, Any]) -> list[dict[str, Any]]:
    instances = [{"env": "linear", "d": d, "n_arms": settings["linear_arms"], "p": settings["optimal_arm_ref_prob"],
                  "env_seed": settings["env_seed"]} for d in settings["dims"]]
    if settings["hidden_arm"]:
        instances.append({"env": "bandit", "n_arms": settings["hidden_arms"],
                          "good_arm_ref_prob": settings["good_arm_ref_prob"]})
    out = []
    for instance in instances:
        for learner in settings["learners"]:
            point = {**instance, "beta": settings["beta"], "learner": learner, "rounds": settings["rounds"],
                     "checkpoints_per_decade": settings["checkpoints_per_decade"]}
            if learner == "xpo":
                point["alpha"] = settings["xpo_alpha"]
            out.append(point)
    return out


def cell(point: dict[str, Any], seed: np.random.SeedSequence) -> pd.DataFrame:
    checkpoints = common.checkpoint_grid(point["rounds"], point["checkpoints_per_decade"])
    overrides = {"alpha": point["alpha"]} if "alpha" in point else {}
    if point["env"] == "linear":
        from xposim.envs import linear_bandit
        from xposim.policies.loglinear import LogLinearClass

        env = linear_bandit(int(point["d"]), int(point["n_arms"]), seed=int(point["env_seed"]),
                            optimal_arm_ref_prob=float(point["p"]))
        policy_class: Any = LogLinearClass()
    else:
        env = common.make_env(point)
        policy_class = "tabular"
    frame = common.run_one(env, point["learner"], point["beta"], point["rounds"], seed, checkpoints,
                           policy_class=policy_class, **overrides)
    frame["instance"] = instance_name(point)
    frame["d"] = int(point["d"]) if point["env"] == "linear" else 0  # 0: not a linear instance
    return frame


def reference_shapes(T: np.ndarray, d: float) -> list[tuple[str, np.ndarray, Any]]:
    """``(label, values, line style)`` of the reference curves drawn beside the regret (constant 1 [R])."""
    return [(f"√(dT) (upper-bound shape, constant 1 [R])", np.sqrt(d * T), (0, (5, 3))),
            (f"d√T: bounds of MaxInP / CoLSTIM, and the Ω(d√T) lower bound (constant 1 [R])", d * np.sqrt(T),
             (0, (1, 2)))]


def analyze(results: pd.DataFrame, settings: dict[str, Any], directory: Path) -> dict[str, Any]:
    from xposim.harness import plots, stats
    from xposim.harness.verdicts import interval_verdict, prediction_record

    predictions, figures, fits, needs = [], [], [], []
    instances = list(dict.fromkeys(results["instance"]))
    at_budget: dict[str, dict[float, np.ndarray]] = {}
    for instance in instances:
        sub = results[(results["instance"] == instance) & (results["round"] > 0)]
        band = stats.mean_band(sub, ["learner"], "queries", "dueling_regret")
        curves = [plots.Curve(learner, g["queries"], g["mean"], g["low"], g["high"])
                  for learner, g in band.groupby("learner", sort=False)]
        T = np.geomspace(max(1.0, float(band["queries"].min())), float(band["queries"].max()), 40)
        d_of_instance = float(sub["d"].iloc[0])
        d = d_of_instance or 1.0
        overlays = [plots.Line(label, T, values, style, "gray") for label, values, style in reference_shapes(T, d)]
        for learner in [l for l in settings["learners"] if l in set(sub["learner"])]:
            runs = sub[(sub["learner"] == learner) & (sub["queries"] >= settings["fit_from"])]
            wide = runs.pivot_table(index="seed", columns="queries", values="dueling_regret", aggfunc="first").dropna()
            if d_of_instance > 0 and len(wide):
                at_budget.setdefault(learner, {})[d] = wide.iloc[:, -1].to_numpy(float)
            x = wide.columns.to_numpy(float)
            if learner not in EXPLORERS:
                continue
            if x.size < 3 or len(wide) < 2:
                predictions.append(prediction_record(
                    f"E10-T:{learner}@{instance}", f"{learner}'s cumulative dueling regret grows like √T (up to logs)",
                    None, None, None, 0.5, "inconclusive", rule="needs >= 3 grid points >= fit_from and >= 2 seeds"))
                continue
            boot = stats.bootstrap_slope(x, np.maximum(wide.to_numpy(float), 1e-12), n_resamples=500, seed=0)
            allowed = 0.5 + 1.0 / math.log(math.sqrt(x.min() * x.max()))
            fits.append({"instance": instance, "learner": learner, "slope": boot.slope, "low": boot.low,
                         "high": boot.high, "allowed": allowed, "seeds": int(len(wide))})
            predictions.append(prediction_record(
                f"E10-T:{learner}@{instance}", f"{learner}'s cumulative dueling regret grows like √T up to a log "
                f"factor ({instance})", boot.slope, boot.low, boot.high, allowed,
                interval_verdict(boot.low, boot.high, at_most=allowed),
                rule="held if the 95% bootstrap interval of the log-log slope in T (T >= fit_from) lies at or below "
                     "1/2 + 1/log(T_mid) (one log factor's local slope); not held if above; else inconclusive",
                unit="log-log slope in T", detail=f"fit on {x.size} points, T in [{x.min():.0f}, {x.max():.0f}]"))
        figures += plots.curve_plot(
            directory, "dueling_" + instance.replace(" ", "_").replace("=", ""),
            f"E10 {instance}: cumulative dueling regret vs queries (β = {settings['beta']:g})",
            "queries T (preference labels)", "Σ (Δ(τ) + Δ(τ~))/2 (mean over seeds, 95% t-band)", curves, overlays,
            note="XPO draws τ~ from π_ref: its dueling regret is linear by design (compare its sample need in "
                 "the table). " + ("XPO's argmin on the linear bandit: the log-linear class's local "
                 "solver (no certificate)." if d_of_instance > 0 else common.solver_note(settings)))
    # growth in d of each explorer's regret at the budget
    for learner in [l for l in EXPLORERS if l in at_budget and len(at_budget[l]) >= 2]:
        dims = sorted(at_budget[learner])
        runs = min(len(at_budget[learner][d]) for d in dims)  # seeds x dims, bootstrapped over seeds
        fit = stats.bootstrap_slope(dims, np.column_stack([np.maximum(at_budget[learner][d][:runs], 1e-12)
                                                           for d in dims]), n_resamples=500, seed=0)
        predictions.append(prediction_record(
            f"E10-d:{learner}", f"{learner}'s cumulative dueling regret at the budget grows at most linearly in d",
            fit.slope, fit.low, fit.high, 1.0, interval_verdict(fit.low, fit.high, at_most=1.0),
            rule="held if the 95% bootstrap interval of the log-log slope in d lies at or below 1 (the d√T bounds); "
                 "not held if above", unit="log-log slope in d", detail=f"d = {', '.join(f'{d:g}' for d in dims)}"))
    # sample need: XPO against the best reward-model explorer, per instance
    hits = common.relative_hits(results, ["instance", "learner"], settings["eps_fraction"])
    ratios = {}
    for instance in instances:
        medians = {}
        for learner, h in hits[hits["instance"] == instance].groupby("learner", sort=False):
            iv = stats.km_quantile_interval(h["queries"], h["observed"], 0.5, n_resamples=300, seed=0)
            medians[learner] = iv.estimate
            needs.append({"instance": instance, "learner": learner, "median_queries": iv.estimate, "low": iv.low,
                          "high": iv.high, "censored": not math.isfinite(iv.estimate)})
        explorers = {l: m for l, m in medians.items() if l in EXPLORERS}
        if "xpo" in medians and explorers:
            best = min(explorers, key=lambda l: explorers[l])
            ratios[instance] = (medians["xpo"] / explorers[best] if math.isfinite(explorers[best]) else math.nan,
                                best)
    dim_of = results.groupby("instance")["d"].first()
    linear = [(float(dim_of[i]), r) for i, (r, _) in ratios.items() if dim_of[i] > 0 and math.isfinite(r) and r > 0]
    detail = "; ".join(f"{i}: XPO / {b} = {r:.3g}" for i, (r, b) in ratios.items())
    if len(linear) >= 2:
        dims, values = zip(*linear)
        slope = stats.loglog_slope(dims, values)
        verdict = "held" if slope.high < 0.5 else ("not held" if slope.low > 0 else "inconclusive")
        predictions.append(prediction_record(
            "E10-need", "XPO's sample need is within a constant factor of the best reward-model explorer's (it does "
            "not grow with d)", slope.slope, slope.low, slope.high, 0.0, verdict,
            rule="held if the 95% interval of the log-log slope of the ratio of medians (XPO / best explorer) in d lies "
                 "below 1/2; not held if it lies above 0; else inconclusive", unit="log-log slope of the ratio in d",
            detail=detail))
    else:
        predictions.append(prediction_record(
            "E10-need", "XPO's sample need is within a constant factor of the best reward-model explorer's", None,
            None, None, 0.0, "inconclusive", rule="needs the median observed at two or more values of d",
            detail=detail or "no ratio observed"))
    return {"predictions": predictions, "figures": figures,
            "tables": {"regret_slopes": fits, "queries_to_eps": needs}}


def check(settings: dict[str, Any]) -> None:
    if not settings["dims"] or min(settings["dims"]) < 1:
        raise ValueError(f"setting 'dims' must be integers >= 1, got {settings['dims']}")
    if settings["linear_arms"] < 2 or settings["hidden_arms"] < 2:
        raise ValueError("settings 'linear_arms' and 'hidden_arms' must be >= 2")
    for key in ("optimal_arm_ref_prob", "good_arm_ref_prob", "eps_fraction"):
        if not 0 < settings[key] < 1:
            raise ValueError(f"setting '{key}' must be in (0, 1), got {settings[key]}")
    if settings["beta"] <= 0 or settings["rounds"] < 1 or settings["xpo_alpha"] < 0 or settings["fit_from"] < 1:
        raise ValueError("settings need beta > 0, rounds >= 1, xpo_alpha >= 0, fit_from >= 1")
    if not settings["learners"]:
        raise ValueError("setting 'learners' must not be empty")
    common.learner_label_check(settings["learners"])


_LEARNERS = ["xpo", "online_dpo", "maxinp", "colstim", "thompson_ee", "thompson_bai", "passive_mle"]
DUELING = register_experiment(Experiment(
    name="dueling",
    predictions=("E10",),
    description="XPO vs reward-model explorers (MaxInP, CoLSTIM, Thompson): dueling regret ~ √T, growth in d, "
                "XPO's sample need within a constant of the best explorer's",
    quick={"dims": [2, 4], "linear_arms": 32, "optimal_arm_ref_prob": 0.01, "env_seed": 7, "hidden_arm": True,
           "hidden_arms": 8, "good_arm_ref_prob": 0.02, "beta": 0.1, "learners": _LEARNERS, "rounds": 1000,
           "xpo_alpha": 0.01, "eps_fraction": 0.3, "fit_from": 100, "checkpoints_per_decade": 12, "seeds": 8},
    full={"dims": [2, 4, 8, 16], "linear_arms": 64, "optimal_arm_ref_prob": 0.01, "env_seed": 7, "hidden_arm": True,
          "hidden_arms": 16, "good_arm_ref_prob": 0.02, "beta": 0.1, "learners": _LEARNERS, "rounds": 100_000,
          "xpo_alpha": 0.01, "eps_fraction": 0.3, "fit_from": 1000, "checkpoints_per_decade": 12, "seeds": 32},
    points=points, cell=cell, analyze=analyze, check=check,
))
