"""``alpha`` (E5): the bonus weight ablation — U-shape at fixed ``T``, best ``alpha ∝ beta / sqrt(T)``.

Per ``(beta, alpha/beta ratio, seed)`` one XPO run with the constant ``alpha = ratio * beta``
records the average regret ``(1/T) sum_{t<=T} (J(pi*) - J(pi^(t)))`` at every ``T`` of the grid
(the quantity whose bound is U-shaped in ``alpha``, THEORY 6.1). ``ratio = 0`` (no bonus: DPO
with asymmetric sampling) is included as the left end.

Measured, per ``(beta, T)``: the mean average regret over seeds for each ratio and the best ratio
(argmin over the positive ratios, refined by a parabola in ``log alpha`` through the minimum and its
neighbours). Predictions:

* U-shape at the largest ``T`` (per beta): the minimum is interior (not at ``ratio = 0`` nor at the
  largest ratio) and both ends are higher than the minimum beyond their 95% intervals;
* best ``alpha`` vs ``T``: log-log slope ``-1/2`` (bootstrap over seeds);
* best ``alpha`` vs ``beta`` at the largest ``T``: log-log slope ``+1`` (bootstrap over seeds).

A minimum on the edge of the grid makes the scaling predictions inconclusive. Setting
``xpo_champion_starts``: XPO's argmin also tries the champion starts of
:class:`~xposim.policies.solving.SolverSettings` (closer to the exact argmin).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xposim.harness.experiments import common
from xposim.harness.experiments.base import Experiment, register_experiment

ENV_KEYS = ("n_contexts", "vocab_size", "horizon", "env_seed")


def points(settings: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for beta in settings["betas"]:
        for ratio in settings["alpha_ratios"]:
            point = {"env": settings["env"], **{k: settings[k] for k in ENV_KEYS}, "n_arms": settings["n_arms"],
                     "good_arm_ref_prob": settings["good_arm_ref_prob"], "beta": beta, "alpha_ratio": ratio,
                     "rounds": max(settings["horizons"]), "grid": sorted(settings["horizons"])}
            if settings["xpo_champion_starts"] and ratio > 0:
                point["champion_starts"] = True  # (only when set: the default solver's cells keep their ids)
            out.append(point)
    return out


def cell(point: dict[str, Any], seed: np.random.SeedSequence) -> pd.DataFrame:
    env = common.make_env(point)
    overrides = common.learner_overrides(point)
    frame = common.run_one(env, "xpo", point["beta"], point["rounds"], seed, point["grid"],
                           alpha=point["alpha_ratio"] * point["beta"], **overrides)
    frame["average_regret"] = frame["cumulative_regret"] / frame["round"]
    return frame.reset_index(drop=True)


def best_ratio(ratios: np.ndarray, means: np.ndarray) -> tuple[float, str]:
    """Argmin over the positive ratios, refined by a parabola in ``log ratio`` through the minimum
    and its neighbours; ``where`` is ``'interior'``, ``'low edge'`` or ``'high edge'``."""
    positive = ratios > 0
    r, m = ratios[positive], means[positive]
    i = int(np.argmin(m))
    if i == 0:
        return float(r[0]), "low edge"
    if i == r.size - 1:
        return float(r[-1]), "high edge"
    x = np.log(r[i - 1:i + 2])
    a, b, _ = np.polyfit(x, m[i - 1:i + 2], 2)
    vertex = -b / (2 * a) if a > 0 else x[1]
    return float(np.exp(np.clip(vertex, x[0], x[2]))), "interior"


def _wide(results: pd.DataFrame, beta: float, T: int) -> pd.DataFrame:
    sub = results[(results["beta"] == beta) & (results["round"] == T)]
    return sub.pivot_table(index="seed", columns="alpha_ratio", values="average_regret", aggfunc="first").dropna()


def analyze(results: pd.DataFrame, settings: dict[str, Any], directory: Path) -> dict[str, Any]:
    from xposim.harness import plots, stats
    from xposim.harness.verdicts import prediction_record
    from xposim.seeding import make_rng

    betas = sorted(set(results["beta"]))
    horizons = sorted(int(t) for t in set(results["round"]) if t > 0)
    T_max = horizons[-1]
    predictions, table, curves = [], [], []
    best: dict[tuple[float, int], tuple[float, str]] = {}
    for beta in betas:
        for T in horizons:
            wide = _wide(results, beta, T)
            ratios = wide.columns.to_numpy(float)
            means = wide.mean().to_numpy()
            best[(beta, T)] = best_ratio(ratios, means)
            for ratio, col in wide.items():
                iv = stats.mean_interval(col.to_numpy())
                table.append({"beta": beta, "T": T, "alpha_ratio": ratio, "alpha": ratio * beta,
                              "average_regret": iv.estimate, "low": iv.low, "high": iv.high})
            if T in (horizons[0], T_max):
                pos = ratios > 0
                ivs = [stats.mean_interval(wide[c].to_numpy()) for c in wide.columns]
                # one colour per beta (shared with its theory line), solid at the largest T
                # the legend names each beta once (its solid curve); line style says T (legend entries below)
                curves.append(plots.Curve(f"β = {beta:g}" if T == T_max else f"_β = {beta:g}, T = {T}",
                                          ratios[pos] * beta, means[pos],
                                          np.array([v.low for v in ivs])[pos], np.array([v.high for v in ivs])[pos],
                                          color=plots.color_for("", betas.index(beta)),
                                          linestyle="-" if T == T_max else "--"))
        # U-shape at the largest T
        wide = _wide(results, beta, T_max)
        ratios = wide.columns.to_numpy(float)
        ivs = {c: stats.mean_interval(wide[c].to_numpy()) for c in wide.columns}
        i_min = int(np.argmin([ivs[c].estimate for c in wide.columns]))
        c_min = wide.columns[i_min]
        left, right = wide.columns[0], wide.columns[-1]
        interior = 0 < i_min < len(wide.columns) - 1
        if not interior:
            verdict = "not held"
        elif ivs[left].low > ivs[c_min].high and ivs[right].low > ivs[c_min].high:
            verdict = "held"
        else:
            verdict = "inconclusive"
        predictions.append(prediction_record(
            f"E5-U:beta={beta:g}", f"average regret at T = {T_max} is U-shaped in alpha (beta = {beta:g})",
            float(c_min) * beta, None, None, "interior minimum", verdict,
            rule="held if the minimum over the alpha grid (alpha = 0 included) is interior and both ends exceed it "
                 "beyond the 95% t-intervals; not held if the minimum is at an end", unit="best alpha on the grid",
            detail=f"average regret: alpha=0 {ivs[left].estimate:.4f}, best alpha={float(c_min) * beta:.3g} "
                   f"{ivs[c_min].estimate:.4f}, alpha={float(right) * beta:.3g} {ivs[right].estimate:.4f}"))
    # scaling of the best alpha: bootstrap over seeds
    seeds = sorted(set(results["seed"]))
    rng = make_rng(0)
    cache = {(beta, T): _wide(results, beta, T) for beta in betas for T in horizons}

    def slopes(rows) -> tuple[float, float]:
        vs_T, vs_beta = [], []
        for beta in betas:
            xs, ys = [], []
            for T in horizons:
                w = cache[(beta, T)].loc[rows] if rows is not None else cache[(beta, T)]
                r, _ = best_ratio(w.columns.to_numpy(float), w.mean().to_numpy())
                xs.append(T)
                ys.append(r * beta)
            vs_T.append(stats.loglog_slope(xs, ys).slope if len(xs) > 1 else math.nan)
        if len(betas) > 1:
            ys = []
            for beta in betas:
                w = cache[(beta, T_max)].loc[rows] if rows is not None else cache[(beta, T_max)]
                ys.append(best_ratio(w.columns.to_numpy(float), w.mean().to_numpy())[0] * beta)
            vs_beta.append(stats.loglog_slope(betas, ys).slope)
        return float(np.nanmean(vs_T)), (float(vs_beta[0]) if vs_beta else math.nan)

    point_T, point_beta = slopes(None)
    draws = np.array([slopes(list(rng.choice(seeds, size=len(seeds)))) for _ in range(200)])
    edges = sorted({f"beta={b:g},T={t}: {w}" for (b, t), (_, w) in best.items() if w != "interior"})
    for name, value, column, predicted, covariate in (("T", point_T, 0, -0.5, "T"),
                                                       ("beta", point_beta, 1, 1.0, "beta")):
        if not math.isfinite(value):
            continue
        low, high = np.quantile(draws[:, column], [0.025, 0.975])
        if edges:
            verdict = "inconclusive"
        else:
            verdict = "held" if low <= predicted <= high else "not held"
        predictions.append(prediction_record(
            f"E5-best-vs-{name}", f"the best alpha scales like {covariate}^{predicted:g}", value, float(low),
            float(high), predicted, verdict,
            rule="held if the 95% bootstrap-over-seeds interval of the log-log slope contains the prediction; "
                 "inconclusive when a best alpha sits on the edge of the grid", unit=f"log-log slope vs {covariate}",
            detail=("best alpha on the grid edge at " + "; ".join(edges)) if edges else
            "best alpha interior everywhere"))
    grid = np.array(sorted(r for r in settings["alpha_ratios"] if r > 0))
    figures = plots.curve_plot(
        directory, "alpha_ablation", "E5: XPO average regret vs bonus weight α (constant in the run)", "α",
        "average regret (1/T)Σ J(π*) − J(π_t) (mean, 95% t-band)", curves,
        [plots.Line("theory: best α ∝ β/√T, one dotted line per β through its best α" if i == 0 else f"_theory β = {b:g}",
                    [best[(b, T_max)][0] * b] * 2, [min(c.mean.min() for c in curves), max(c.mean.max() for c in curves)],
                    ":", plots.color_for("", i)) for i, b in enumerate(betas)]
        + [plots.Line(f"T = {T_max} (solid)", [], [], "-", "gray")]
        + ([plots.Line(f"T = {horizons[0]} (dashed)", [], [], "--", "gray")] if horizons[0] != T_max else []),
        logx=True, logy=True,
        note=f"Solid: T = {T_max}; dashed: T = {horizons[0]}. α = 0 (no bonus) is not drawn on the log axis; its value is "
             "in the table and the U-shape verdict. " + common.solver_note(settings)
             + f" Ratios α/β on the grid: {', '.join(f'{r:g}' for r in grid)}.")
    best_rows = [{"beta": b, "T": t, "best_alpha": r * b, "best_ratio": r, "where": w} for (b, t), (r, w) in best.items()]
    return {"predictions": predictions, "figures": figures, "tables": {"best_alpha": best_rows, "average_regret": table}}


def check(settings: dict[str, Any]) -> None:
    if settings["env"] not in ("random", "bandit"):
        raise ValueError(f"setting 'env' must be 'random' or 'bandit', got {settings['env']!r}")
    if not settings["betas"] or min(settings["betas"]) <= 0:
        raise ValueError(f"setting 'betas' must be numbers > 0, got {settings['betas']}")
    ratios = settings["alpha_ratios"]
    if len([r for r in ratios if r > 0]) < 3 or min(ratios) < 0 or sorted(ratios) != ratios:
        raise ValueError("setting 'alpha_ratios' must be increasing, >= 0, with at least three positive values")
    if len(settings["horizons"]) < 1 or min(settings["horizons"]) < 1:
        raise ValueError(f"setting 'horizons' must be integers >= 1, got {settings['horizons']}")
    common.check_champion_setting(settings)
    if not 0 < settings["good_arm_ref_prob"] < 1 or settings["n_arms"] < 2:
        raise ValueError("settings need n_arms >= 2 and 0 < good_arm_ref_prob < 1")


ALPHA = register_experiment(Experiment(
    name="alpha",
    predictions=("E5",),
    description="alpha ablation: U-shape of XPO's average regret in alpha; best alpha ~ beta/sqrt(T)",
    quick={"env": "bandit", "n_arms": 8, "good_arm_ref_prob": 0.02, "n_contexts": 1, "vocab_size": 2, "horizon": 2,
           "env_seed": 123, "betas": [0.1, 0.2], "alpha_ratios": [0.0, 0.001, 0.01, 0.1, 1.0, 10.0],
           "horizons": [64, 256, 1024], "xpo_champion_starts": False, "seeds": 8},
    full={"env": "bandit", "n_arms": 8, "good_arm_ref_prob": 0.02, "n_contexts": 1, "vocab_size": 2, "horizon": 2,
          "env_seed": 123, "betas": [0.05, 0.1, 0.2, 0.4],
          "alpha_ratios": [0.0, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0],
          "horizons": [64, 256, 1024, 4096, 16384], "xpo_champion_starts": False, "seeds": 32},
    points=points, cell=cell, analyze=analyze, check=check,
))
