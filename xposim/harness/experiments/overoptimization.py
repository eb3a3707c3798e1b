"""``overoptimization`` (E8): offline DPO against chiPO as the dataset grows, at small ``beta``.

Instance: a random contextual bandit with a peaked reference (``Dirichlet(ref_concentration)``
per context: some responses are rare under ``pi_ref``). Offline learners are trained on ``n``
pairs from ``pi_ref`` for every ``n`` of a grid (nested datasets per seed). Measured: the true
expected reward ``E_{pi_hat}[r]`` of the learned policy (and its suboptimality).

Predictions (THEORY 6.3 / E8): at the smallest ``beta``,

* DPO's true reward *collapses* with more data: its reward at the largest ``n`` is below its best
  reward over ``n`` (bootstrap over seeds; the best-over-``n`` is re-picked in each resample);
* chiPO does not: its true reward at the largest ``n`` exceeds DPO's (paired over seeds,
  t-interval).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xposim.harness.experiments import common
from xposim.harness.experiments.base import Experiment, register_experiment


def points(settings: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"beta": beta, "learner": learner, "n_arms": settings["n_arms"], "n_contexts": settings["n_contexts"],
             "env_seed": settings["env_seed"], "ref_concentration": settings["ref_concentration"],
             "sizes": settings["dataset_sizes"]}
            for beta in settings["betas"] for learner in settings["learners"]]


def make_env(point: dict[str, Any]):
    from xposim.envs import random_token_mdp

    return random_token_mdp(int(point["n_contexts"]), int(point["n_arms"]), 1, seed=int(point["env_seed"]),
                            ref_concentration=float(point["ref_concentration"]))


def cell(point: dict[str, Any], seed: np.random.SeedSequence) -> pd.DataFrame:
    env = make_env(point)
    sizes = sorted(point["sizes"])
    return common.run_one(env, point["learner"], point["beta"], sizes[-1], seed, sizes, offline_sizes=sizes)


def analyze(results: pd.DataFrame, settings: dict[str, Any], directory: Path) -> dict[str, Any]:
    from xposim import exact
    from xposim.harness import plots, stats
    from xposim.harness.verdicts import interval_verdict, prediction_record
    from xposim.seeding import make_rng

    betas = sorted(set(results["beta"]))
    beta_min = betas[0]
    n_max = int(results["queries"].max())
    env = make_env({**settings, "sizes": settings["dataset_sizes"]})
    predictions = []
    band = stats.mean_band(results, ["beta", "learner"], "queries", "expected_reward")
    styles = ["-", "--", "-.", ":"]
    curves = [plots.Curve(f"{learner} (β = {beta:g})", g["queries"], g["mean"], g["low"], g["high"],
                          linestyle=styles[betas.index(beta) % len(styles)])
              for (beta, learner), g in band.groupby(["beta", "learner"], sort=True)]
    overlays = [plots.Line(f"E_π*[r] at β = {b:g} (exact)", [band["queries"].min(), n_max],
                           [exact.evaluate(env, exact.solve(env, b).policy, b).reward] * 2, "--", plots.color_for("", i + 3))
                for i, b in enumerate(betas)]
    overlays.append(plots.Line("E_π_ref[r] (exact)", [band["queries"].min(), n_max],
                               [exact.evaluate(env, env.ref_probs, beta_min).reward] * 2, ":", "grey"))
    figures = plots.curve_plot(directory, "overoptimization", "E8: true reward of offline DPO and chiPO vs dataset size",
                               "dataset size n (preference pairs from π_ref)", "E_π̂[r] (mean, 95% t-band)", curves,
                               overlays, logx=True, logy=False)
    sub = results[results["beta"] == beta_min]
    wide = sub.pivot_table(index="seed", columns=["learner", "queries"], values="expected_reward",
                           aggfunc="first").dropna()
    if "dpo" in set(sub["learner"]):
        dpo = wide["dpo"]
        rng = make_rng(0)
        seeds = dpo.index.to_numpy()

        def drop(rows: np.ndarray) -> float:
            mean = dpo.loc[rows].mean()
            return float(mean.iloc[-1] - mean.max())

        draws = np.array([drop(rng.choice(seeds, size=seeds.size)) for _ in range(1000)])
        low, high = np.quantile(draws, [0.025, 0.975])
        value = drop(seeds)
        best_n = int(dpo.mean().idxmax())
        predictions.append(prediction_record(
            f"E8:dpo-collapse@beta={beta_min:g}", f"offline DPO's true reward collapses with more data at beta = {beta_min:g}",
            value, float(low), float(high), "< 0", "held" if high < 0 else "not held",
            rule="held if the 95% bootstrap interval of (reward at the largest n) − (best reward over n) lies below 0 "
                 "(the difference is <= 0 by construction, so otherwise not held)",
            unit="reward change", detail=f"best mean reward at n = {best_n}, {dpo.mean().max():.4f}; at n = {n_max}: "
                                         f"{dpo.mean().iloc[-1]:.4f}"))
    if {"dpo", "chipo"} <= set(sub["learner"]):
        diff = wide[("chipo", n_max)] - wide[("dpo", n_max)]
        iv = stats.mean_interval(diff.to_numpy())
        predictions.append(prediction_record(
            f"E8:chipo>dpo@beta={beta_min:g}", f"chiPO's true reward at n = {n_max} exceeds DPO's at beta = {beta_min:g}",
            iv.estimate, iv.low, iv.high, "> 0", interval_verdict(iv.low, iv.high, at_least=0.0),
            rule="held if the 95% paired t-interval (over seeds) of the reward difference lies above 0; not held if "
                 "below; else inconclusive", unit="reward difference"))
    table = band.rename(columns={"queries": "dataset_size", "mean": "expected_reward", "n": "seeds"}).to_dict(orient="records")
    return {"predictions": predictions, "figures": figures, "tables": {"true_reward": table}}


def check(settings: dict[str, Any]) -> None:
    if not settings["betas"] or min(settings["betas"]) <= 0:
        raise ValueError(f"setting 'betas' must be numbers > 0, got {settings['betas']}")
    if len(settings["dataset_sizes"]) < 2 or min(settings["dataset_sizes"]) < 1:
        raise ValueError("setting 'dataset_sizes' needs at least two sizes >= 1")
    if settings["n_arms"] < 2 or settings["n_contexts"] < 1 or settings["ref_concentration"] <= 0:
        raise ValueError("settings need n_arms >= 2, n_contexts >= 1, ref_concentration > 0")
    for learner in settings["learners"]:
        if learner not in ("dpo", "offline_dpo", "chipo", "ipo"):
            raise ValueError(f"setting 'learners': {learner!r} is not an offline learner (dpo, chipo, ipo)")


OVEROPTIMIZATION = register_experiment(Experiment(
    name="overoptimization",
    predictions=("E8",),
    description="over-optimization: offline DPO's true reward collapses at small beta with more data; chiPO's does not",
    quick={"betas": [0.02, 0.2], "learners": ["dpo", "chipo"], "n_arms": 32, "n_contexts": 2, "env_seed": 11,
           "ref_concentration": 0.3, "dataset_sizes": [16, 64, 256, 1024], "seeds": 8},
    full={"betas": [0.01, 0.03, 0.1, 0.3], "learners": ["dpo", "chipo"], "n_arms": 64, "n_contexts": 4,
          "env_seed": 11, "ref_concentration": 0.3,
          "dataset_sizes": [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384], "seeds": 32},
    points=points, cell=cell, analyze=analyze, check=check,
))
