"""``practice`` (E9): XPO as the paper states it against XPO as practice runs it (trl's
``XPOTrainer``, under ``trl.experimental`` since trl 0.29 dropped the ``trl.trainer`` alias): the
difference measured, not assumed.

Variants (THEORY 4.4): ``xpo`` — paper mode (argmin over all data, Bradley–Terry labels,
temperature 1); ``xpo_trl`` — trl mode (one projected gradient step on the fresh batch, argmax
labels with ties to the first sample, ``alpha = 1e-5``, both responses sampled at temperature 0.9
and scored at 1);
``xpo_paper_argmax`` (paper mode with argmax labels) and ``xpo_trl_bt`` (trl mode with BT labels)
separate the two main changes. Instances: the Proposition 2.1 two-arm instance and a random
token MDP.

Measured per variant and instance: the final suboptimality, best-iterate suboptimality and average
regret at ``T``; the prediction record is the paired (over seeds) difference of the final
best-iterate suboptimality from paper mode, with its t-interval. Verdict: *held* when the
difference is measured with a finite interval (the prediction is that it is measured, not its
sign); the detail says which mode is better and whether the difference is significant. Setting
``xpo_champion_starts``: the paper-mode argmin also tries the champion starts of
:class:`~xposim.policies.solving.SolverSettings` (trl mode takes gradient steps: unaffected).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xposim.harness.experiments import common
from xposim.harness.experiments.base import Experiment, register_experiment

ENVS = ("two_arm", "random")
#: Figure labels of the variants (the tables keep the learner ids).
DISPLAY_NAMES = {"xpo": "paper mode (argmin, BT labels)", "xpo_trl": "trl mode (one step, argmax labels)",
                 "xpo_paper_argmax": "paper mode, argmax labels", "xpo_trl_bt": "trl mode, BT labels"}


def points(settings: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for env in settings["envs"]:
        for learner in settings["learners"]:
            point = {"env": env, "beta": settings["two_arm_beta"] if env == "two_arm" else settings["random_beta"],
                     "learner": learner, "rounds": settings["rounds"], "learning_rate": settings["learning_rate"],
                     "checkpoints_per_decade": settings["checkpoints_per_decade"]}
            if env == "random":
                point.update(n_contexts=settings["n_contexts"], vocab_size=settings["vocab_size"],
                             horizon=settings["horizon"], env_seed=settings["env_seed"])
            out.append(common.mark_champion_starts(point, settings))
    return out


def cell(point: dict[str, Any], seed: np.random.SeedSequence) -> pd.DataFrame:
    env = common.make_env(point)
    checkpoints = common.checkpoint_grid(point["rounds"], point["checkpoints_per_decade"])
    overrides = {"learning_rate": point["learning_rate"]} if "trl" in point["learner"] else {}
    overrides.update(common.learner_overrides(point))
    frame = common.run_one(env, point["learner"], point["beta"], point["rounds"], seed, checkpoints, **overrides)
    frame["average_regret"] = frame["cumulative_regret"] / frame["round"].clip(lower=1)
    return frame


def analyze(results: pd.DataFrame, settings: dict[str, Any], directory: Path) -> dict[str, Any]:
    from xposim.harness import plots, stats
    from xposim.harness.verdicts import prediction_record

    predictions, figures, table = [], [], []
    for env in [e for e in settings["envs"] if e in set(results["env"])]:
        sub = results[results["env"] == env]
        T = int(sub["round"].max())
        last = sub[sub["round"] == T]
        for learner, g in last.groupby("learner", sort=False):
            row = {"env": env, "learner": learner, "T": T}
            for metric in ("suboptimality", "best_iterate_suboptimality", "average_regret", "argmax_regret"):
                iv = stats.mean_interval(g[metric].to_numpy())
                row[metric] = iv.estimate
                row[metric + "_half_width"] = (iv.high - iv.low) / 2
            table.append(row)
        wide = last.pivot_table(index="seed", columns="learner", values="best_iterate_suboptimality",
                                aggfunc="first").dropna()
        for learner in [l for l in settings["learners"] if l != "xpo" and l in wide.columns]:
            if "xpo" not in wide.columns:
                break
            diff = (wide[learner] - wide["xpo"]).to_numpy()
            iv = stats.mean_interval(diff)
            finite = np.isfinite(iv.low) and np.isfinite(iv.high)
            if not finite:
                sign = "not measurable (one seed)"
            elif iv.low > 0:
                sign = f"{learner} is worse than paper mode (significant)"
            elif iv.high < 0:
                sign = f"{learner} is better than paper mode (significant)"
            else:
                sign = "no significant difference"
            predictions.append(prediction_record(
                f"E9:{learner}-xpo@{env}", f"{learner} vs paper-mode XPO on {env}: difference in final best-iterate "
                f"suboptimality at T = {T}, measured", iv.estimate, iv.low, iv.high, "measured",
                "held" if finite else "inconclusive",
                rule="held when the paired difference over seeds has a finite 95% t-interval (the prediction is that "
                     "the difference is measured, not its sign)", unit=f"{learner} − xpo", detail=sign))
        band = stats.mean_band(sub[sub["round"] > 0], ["learner"], "queries", "suboptimality")
        curves = [plots.Curve(DISPLAY_NAMES.get(l, l), g["queries"], g["mean"], g["low"], g["high"])
                  for l, g in band.groupby("learner", sort=False)]
        figures += plots.curve_plot(directory, f"practice_{env}", f"E9 on {env}: XPO paper mode vs trl mode",
                                    "queries (preference labels)", "J(π*) − J(π_t) (mean, 95% t-band)", curves,
                                    logx=True, logy=True,
                                    note="paper: argmin over all data, BT labels; trl: one gradient step per fresh "
                                         "pair, argmax labels, alpha = 1e-5, temperature 0.9. "
                                         + common.solver_note(settings))
    return {"predictions": predictions, "figures": figures, "tables": {"final": table}}


def check(settings: dict[str, Any]) -> None:
    common.check_champion_setting(settings)
    if not settings["envs"] or any(e not in ENVS for e in settings["envs"]):
        raise ValueError(f"setting 'envs' must list environments among {', '.join(ENVS)}, got {settings['envs']}")
    if "xpo" not in settings["learners"]:
        raise ValueError("setting 'learners' must include 'xpo' (paper mode, the baseline of every difference)")
    common.learner_label_check(settings["learners"])
    if settings["rounds"] < 1 or settings["learning_rate"] <= 0 or settings["checkpoints_per_decade"] < 1:
        raise ValueError("settings need rounds >= 1, learning_rate > 0, checkpoints_per_decade >= 1")
    if settings["two_arm_beta"] <= 0 or settings["random_beta"] <= 0:
        raise ValueError("settings need two_arm_beta > 0 and random_beta > 0")


_COMMON = {"envs": ["two_arm", "random"], "learners": ["xpo", "xpo_trl", "xpo_paper_argmax", "xpo_trl_bt"],
           "two_arm_beta": 0.05, "random_beta": 0.25, "n_contexts": 2, "vocab_size": 2, "horizon": 2,
           "env_seed": 123, "learning_rate": 0.1, "checkpoints_per_decade": 8, "xpo_champion_starts": False}
PRACTICE = register_experiment(Experiment(
    name="practice",
    predictions=("E9",),
    description="practice vs paper: trl-mode XPO (SGD step, argmax labels, alpha 1e-5) vs paper-mode XPO, measured",
    quick={**_COMMON, "rounds": 1000, "seeds": 8},
    full={**_COMMON, "rounds": 20000, "seeds": 32},
    points=points, cell=cell, analyze=analyze, check=check,
))
