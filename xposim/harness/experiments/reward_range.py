"""``reward_range`` (E6): how samples-to-eps grow with the reward range ``R_max``.

Instance: a random contextual bandit (:func:`xposim.envs.random_token_mdp`, ``H = 1``, fixed
``env_seed``) whose rewards are drawn in ``[0, R_max]`` — the same instance scaled by ``R_max``,
so Bradley–Terry labels get sharper as ``R_max`` grows. ``beta`` is scaled with ``R_max``
(``beta = beta_per_unit_reward * R_max``) so that ``pi*`` stays the same policy and only the
label noise and the theory's ``e^{2 R_max}`` factor change.

Measured: queries until the suboptimality falls below ``eps_fraction`` of ``pi_ref``'s (KM
quantile, censored at the budget) and the fit ``log T = a + b (2 R_max)`` — ``b = 1`` is growth
like ``e^{2 R_max}`` (Theorem 3.1's factor). Predictions: XPO's ``b <= 1`` (no faster than
``e^{2 R_max}``); POPO's (bounded sigmoid bonus) grows more slowly than XPO's. Setting
``xpo_champion_starts``: the bonus learners' argmin also tries the champion starts of
:class:`~xposim.policies.solving.SolverSettings`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xposim.harness.experiments import common
from xposim.harness.experiments.base import Experiment, register_experiment


def points(settings: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for r_max in settings["r_maxes"]:
        for learner in settings["learners"]:
            out.append(common.mark_champion_starts(
                {"env": "random", "n_contexts": settings["n_contexts"], "vocab_size": settings["n_arms"],
                 "horizon": 1, "env_seed": settings["env_seed"], "r_max": r_max,
                 "beta": settings["beta_per_unit_reward"] * r_max, "learner": learner,
                 "rounds": settings["rounds"], "checkpoints_per_decade": settings["checkpoints_per_decade"]},
                settings))
    return out


def cell(point: dict[str, Any], seed: np.random.SeedSequence) -> pd.DataFrame:
    env = common.make_env(point)
    checkpoints = common.checkpoint_grid(point["rounds"], point["checkpoints_per_decade"])
    return common.run_one(env, point["learner"], point["beta"], point["rounds"], seed, checkpoints,
                          **common.learner_overrides(point))


def analyze(results: pd.DataFrame, settings: dict[str, Any], directory: Path) -> dict[str, Any]:
    from xposim.harness import plots
    from xposim.harness.verdicts import prediction_record

    hits = common.relative_hits(results, ["r_max", "learner"], settings["eps_fraction"])
    covariate = {r: 2.0 * r for r in sorted(set(hits["r_max"]))}
    predictions, series, table, trends = [], [], [], {}
    for learner in [l for l in settings["learners"] if l in set(hits["learner"])]:
        h = hits[hits["learner"] == learner]
        values, trend = common.quantile_trend(h, "r_max", covariate, log_covariate=False)
        trends[learner] = trend
        series.append(common.trend_series(learner, values, trend, {v: covariate[v] for v in values}, False))
        for v, q, c in zip(values, trend.quantiles, trend.censored):
            table.append({"learner": learner, "r_max": v, "beta": settings["beta_per_unit_reward"] * v,
                          "quantile": trend.q, "queries_to_eps": q, "censored": bool(c)})
        if learner.startswith("xpo"):
            predictions.append(common.trend_record(
                f"E6:{learner}", f"{learner}'s samples-to-eps grow no faster than e^(2 R_max) (Thm 3.1)", trend,
                "below", 1.0, "b in T ∝ e^{b·2R_max}", common.trend_detail(values, trend, "R_max")))
    if "popo" in trends and "xpo" in trends and trends["popo"].fit is not None and trends["xpo"].fit is not None:
        p, x = trends["popo"].fit, trends["xpo"].fit
        verdict = "held" if p.high < x.low else ("not held" if p.low > x.high else "inconclusive")
        predictions.append(prediction_record(
            "E6:popo<xpo", "POPO's samples-to-eps grow more slowly in R_max than XPO's", p.slope - x.slope,
            p.low - x.high, p.high - x.low, "< 0", verdict,
            rule="held if POPO's 95% interval of b lies entirely below XPO's; not held if entirely above; the "
                 "reported interval is the conservative difference of the two intervals", unit="b(POPO) − b(XPO)",
            detail=f"b(POPO) = {p.slope:.2f} [{p.low:.2f}, {p.high:.2f}], b(XPO) = {x.slope:.2f} "
                   f"[{x.low:.2f}, {x.high:.2f}]"))
    r = np.array(sorted(covariate))
    anchor = min((s.y[0] for s in series), default=1.0)
    overlays = [plots.Line("theory: ∝ e^{2 R_max} (Thm 3.1 factor)", 2 * r, anchor * np.exp(2 * r - 2 * r[0]), "--",
                           "black")]
    figures = plots.scaling_plot(
        directory, "reward_range", f"E6: queries until suboptimality < {settings['eps_fraction']:g}·gap(π_ref)",
        "2·R_max (reward range)", "queries (Kaplan–Meier quantile)", series, overlays, logx=False, logy=True,
        note=f"beta = {settings['beta_per_unit_reward']:g}·R_max keeps π* fixed; only the label sharpness changes. "
             + common.solver_note(settings))
    return {"predictions": predictions, "figures": figures, "tables": {"queries_to_eps": table}}


def check(settings: dict[str, Any]) -> None:
    common.check_champion_setting(settings)
    if len(settings["r_maxes"]) < 2 or min(settings["r_maxes"]) <= 0:
        raise ValueError(f"setting 'r_maxes' needs at least two values > 0, got {settings['r_maxes']}")
    if settings["beta_per_unit_reward"] <= 0 or not 0 < settings["eps_fraction"] < 1:
        raise ValueError("settings need beta_per_unit_reward > 0 and 0 < eps_fraction < 1")
    if settings["n_arms"] < 2 or settings["n_contexts"] < 1 or settings["rounds"] < 1 or settings["env_seed"] < 0:
        raise ValueError("settings need n_arms >= 2, n_contexts >= 1, rounds >= 1, env_seed >= 0")
    if settings["checkpoints_per_decade"] < 1:
        raise ValueError("setting 'checkpoints_per_decade' must be >= 1")
    if not settings["learners"]:
        raise ValueError("setting 'learners' must not be empty")
    common.learner_label_check(settings["learners"])


REWARD_RANGE = register_experiment(Experiment(
    name="reward_range",
    predictions=("E6",),
    description="reward range: XPO's samples-to-eps grow no faster than e^{2 R_max}; POPO's more slowly",
    quick={"r_maxes": [1.0, 2.0, 3.0], "beta_per_unit_reward": 0.2, "n_arms": 6, "n_contexts": 1, "env_seed": 7,
           "learners": ["xpo", "popo"], "rounds": 2000, "eps_fraction": 0.2, "checkpoints_per_decade": 20,
           "xpo_champion_starts": False, "seeds": 12},
    full={"r_maxes": [0.5, 1.0, 2.0, 3.0, 4.0, 5.0], "beta_per_unit_reward": 0.2, "n_arms": 6, "n_contexts": 1,
          "env_seed": 7, "learners": ["xpo", "popo", "online_dpo"], "rounds": 30000, "eps_fraction": 0.2,
          "checkpoints_per_decade": 20, "xpo_champion_starts": False, "seeds": 48},
    points=points, cell=cell, analyze=analyze, check=check,
))
