"""``selftest``: a harness check with a known answer, no learners needed.

Each cell flips a ``p``-coin ``flips`` times and records the running mean's absolute error at
geometric checkpoints. The prediction (the Monte Carlo rate) is ``E|mean_n - p| ~ n^{-1/2}``:
a log-log slope of ``-1/2``. Settings ``sleep`` (seconds per cell) and ``fail_p`` (cells with
this ``p`` raise) exist to test the runner's progress, resumption and failure handling.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xposim.harness.experiments.base import Experiment, register_experiment
from xposim.harness.verdicts import prediction_record
from xposim.seeding import make_rng


def points(settings: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"p": p, "flips": settings["flips"], "sleep": settings["sleep"], "fail": p == settings["fail_p"]}
            for p in settings["p"]]


def cell(point: dict[str, Any], seed: np.random.SeedSequence) -> pd.DataFrame:
    if point["fail"]:
        raise RuntimeError(f"selftest cell with p={point['p']} fails on purpose (fail_p)")
    if point["sleep"] > 0:
        time.sleep(point["sleep"])
    rng = make_rng(seed)
    flips = rng.random(point["flips"]) < point["p"]
    running = np.cumsum(flips) / np.arange(1, flips.size + 1)
    checkpoints = np.unique(np.geomspace(1, flips.size, num=min(20, flips.size)).astype(np.int64))
    return pd.DataFrame({
        "queries": checkpoints,
        "estimate": running[checkpoints - 1],
        "abs_error": np.abs(running[checkpoints - 1] - point["p"]),
    })


def analyze(results: pd.DataFrame, settings: dict[str, Any], directory: Path) -> dict[str, Any]:
    from xposim.harness import plots, stats

    band = stats.mean_band(results, ["p"], "queries", "abs_error")
    curves = [plots.Curve(f"p = {p:g}", g["queries"], g["mean"], g["low"], g["high"]) for p, g in band.groupby("p")]
    pooled = results[results["queries"] >= 10].groupby("queries")["abs_error"].mean()
    fit = stats.loglog_slope(pooled.index.to_numpy(float), np.maximum(pooled.to_numpy(), 1e-12))
    x = pooled.index.to_numpy(float)
    overlay = plots.Line("theory: sqrt(p(1-p) 2/(pi n)) at p = 1/2", x, np.sqrt(0.25 * 2 / (math.pi * x)))
    figures = plots.curve_plot(directory, "selftest_error", "Monte Carlo error of a coin's running mean",
                               "flips n", "mean |estimate - p| over seeds", curves, [overlay])
    verdict = "held" if (fit.low > -0.75 and fit.high < -0.25) else "not held"
    record = prediction_record(
        "S1", "the running mean's error decays like n^(-1/2)", fit.slope, fit.low, fit.high, -0.5, verdict,
        rule="held when the 95% OLS interval of the log-log slope lies within (-0.75, -0.25)", unit="log-log slope",
    )
    return {"predictions": [record], "figures": figures,
            "tables": {"error_by_flips": band.to_dict(orient="records")}}


def check(settings: dict[str, Any]) -> None:
    if settings["flips"] < 2:
        raise ValueError(f"setting 'flips' must be >= 2, got {settings['flips']}")
    if not settings["p"] or any(not 0.0 <= p <= 1.0 for p in settings["p"]):
        raise ValueError(f"setting 'p' must be a non-empty list of probabilities in [0, 1], got {settings['p']}")
    if settings["sleep"] < 0:
        raise ValueError(f"setting 'sleep' must be >= 0, got {settings['sleep']}")


SELFTEST = register_experiment(Experiment(
    name="selftest",
    predictions=("S1",),
    description="harness self-test: Monte Carlo error of a coin's mean ~ n^-1/2 (no learners; known answer)",
    quick={"p": [0.3, 0.5, 0.7], "flips": 2000, "sleep": 0.0, "fail_p": -1.0, "seeds": 4},
    full={"p": [0.1, 0.3, 0.5, 0.7, 0.9], "flips": 100000, "sleep": 0.0, "fail_p": -1.0, "seeds": 32},
    points=points, cell=cell, analyze=analyze, check=check, needs_learners=False,
))
