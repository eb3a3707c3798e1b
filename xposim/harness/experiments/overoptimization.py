"""``overoptimization`` (E8): DPO over-optimizes offline, chiPO does not (THEORY 6.3; Huang et al. 2024).

Instance (:func:`xposim.envs.headroom_bandit`, a reconstruction: the paper's own instance for its
Proposition A.1 could not be retrieved here): covered arms with rewards in ``[0, 0.5]``, rare
zero-reward arms at every scale ``2^-k`` of ``pi_ref``, and the classes' box ``[0, R_max]``. Three
*variants* of the same arms differ only in the box:

* ``headroom`` (``R_max = 2``): a rare bad arm that wins its one comparison by luck can be fitted
  *above* the best covered arm; DPO's link ``e^{f/beta}`` turns that into mass, chiPO's does not;
* ``no_headroom`` (``R_max = 0.5``, negative control): a lucky arm can at most tie;
* ``wide_box`` (``R_max = 32``, negative control): nearly free logits; chiPO's link is linear for
  large arguments, so it should fail too (the pessimism is the class and the box together).

Offline learners see ``n`` pairs from ``pi_ref`` with Bradley–Terry labels, ``n`` in
``dataset_sizes`` (nested datasets per seed), for every ``beta`` of a grid; ``chipo`` runs on its
realizable class (``tabular_chi``), ``dpo`` on the exponential-tilt class; ``chipo:tabular`` is
chiPO's loss on DPO's class (what xposim's ``chipo`` was before); ``dpo:token_logit`` and
``chipo:token_logit`` run on free softmax logits (the token-logit class, ``|z| <= B`` with its
realizable default ``B``: the free-logit controls); ``pessimistic_mle`` is the
two-stage baseline (a Bradley–Terry MLE with a lower confidence bound, Zhu, Jordan, Jiao 2023, mapped
to ``pi_ref e^{r_lcb/beta}``). Metric (the paper's): the
unregularized regret ``max r - E_{pi_hat}[r]``. ``beta`` is tuned per ``n`` (the grid value with the
lowest mean regret over seeds).

Predictions:

* ``E8:dpo-tuned-rate`` — with headroom, DPO's tuned regret decays no faster than ``~ 1/log n``:
  log-log slope above -0.25;
* ``E8:chipo-tuned-rate`` — chiPO's decays like ``1/sqrt n``: slope at or below -0.4;
* ``E8:dpo-not-monotone`` — at the smallest ``beta`` DPO's regret rises with more data somewhere;
* ``E8:no-separation-without-headroom`` — without headroom, chiPO's slope is not steeper than DPO's;
* ``E8:free-logit-chipo-fails`` — on free logits (``chipo:token_logit``) chiPO's slope is above -0.4:
  the pessimism comes from chiPO's class with the box, not from its loss alone.

Slopes are fitted over ``n >= fit_min_size``; intervals are seed bootstraps that re-tune ``beta``
in every resample (:func:`xposim.harness.stats.bootstrap_tuned_slope`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xposim.harness.experiments import common
from xposim.harness.experiments.base import Experiment, register_experiment

#: The box ``[0, R_max]`` of each variant (the arms are the same).
VARIANT_R_MAX = {"no_headroom": None, "headroom": 2.0, "wide_box": 32.0}
#: Learners an E8 point may name: a learner, optionally ``:`` a policy class.
LEARNERS = ("dpo", "chipo", "chipo:tabular", "chipo:tabular_chi", "dpo:tabular", "dpo:token_logit",
            "chipo:token_logit", "pessimistic_mle")


def split_learner(label: str) -> tuple[str, str | None]:
    """``"chipo:tabular"`` -> ``("chipo", "tabular")``; ``"dpo"`` -> ``("dpo", None)`` (its default class)."""
    name, _, policy_class = label.partition(":")
    return name, (policy_class or None)


def make_env(point: dict[str, Any]):
    from xposim.envs import headroom_bandit

    covered_max = float(point["covered_reward_max"])
    r_max = VARIANT_R_MAX[point["variant"]]
    return headroom_bandit(int(point["n_covered"]), covered_max, tuple(point["rare_exponents"]),
                           int(point["rare_per_scale"]), covered_max if r_max is None else r_max)


def points(settings: dict[str, Any]) -> list[dict[str, Any]]:
    keys = ("n_covered", "covered_reward_max", "rare_exponents", "rare_per_scale", "dataset_sizes")
    return [{"variant": variant, "learner": learner, "beta": float(beta), **{k: settings[k] for k in keys}}
            for variant in settings["variants"] for learner in settings["learners"] for beta in settings["betas"]]


def cell(point: dict[str, Any], seed: np.random.SeedSequence) -> pd.DataFrame:
    env = make_env(point)
    name, policy_class = split_learner(point["learner"])
    sizes = sorted(int(n) for n in point["dataset_sizes"])
    frame = common.run_one(env, name, point["beta"], sizes[-1], seed, sizes, offline_sizes=sizes,
                           policy_class=policy_class)
    frame["learner"] = point["learner"]
    frame["regret"] = float(np.max(env.trajectory_rewards)) - frame["expected_reward"]
    return frame


# ----------------------------------------------------------------------------- analysis
def regret_cube(results: pd.DataFrame, variant: str, learner: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(betas, sizes, regret (seeds, betas, sizes))`` of one variant and learner (seeds with every cell)."""
    sub = results[(results["variant"] == variant) & (results["learner"] == learner)]
    wide = sub.pivot_table(index="seed", columns=["beta", "queries"], values="regret", aggfunc="first").dropna()
    betas = np.array(sorted(set(wide.columns.get_level_values(0))), float)
    sizes = np.array(sorted(set(wide.columns.get_level_values(1))), float)
    cube = np.stack([wide[b].reindex(columns=sizes).to_numpy(float) for b in betas], axis=1)
    return betas, sizes, cube


def target_regrets(point: dict[str, Any], beta: float) -> tuple[float, float]:
    """Exact regrets of ``pi*_beta`` (DPO's target) and ``pi*_mix`` (chiPO's) on the point's instance."""
    from xposim import exact
    from xposim.mixed_chi2 import solve_mixed_chi2

    env = make_env(point)
    best = float(np.max(env.trajectory_rewards))
    kl_optimum = exact.evaluate(env, exact.solve(env, beta).policy, beta).reward
    return best - kl_optimum, best - solve_mixed_chi2(env, beta).evaluation.reward


#: Colours of the learners in the figures (chiPO over DPO's class gets its own).
COLOURS = {"dpo": "#7f7f7f", "chipo": "#2ca02c", "chipo:tabular": "#bcbd22", "chipo:tabular_chi": "#2ca02c",
           "dpo:tabular": "#7f7f7f", "dpo:token_logit": "#1f77b4", "chipo:token_logit": "#17becf",
           "pessimistic_mle": "#9467bd"}
VARIANT_TITLES = {"headroom": "headroom (R_max = 2)", "no_headroom": "no headroom (R_max = 0.5)",
                  "wide_box": "wide box (R_max = 32)"}


def _reference_lines(curves) -> list:
    """``1/log n`` and ``1/sqrt n`` through the highest first point of ``curves``."""
    from xposim.harness import plots

    if not curves or len(curves[0].x) < 2:
        return []
    y0 = float(np.nanmax([c.mean[0] for c in curves]))
    grid = np.geomspace(float(curves[0].x[0]), float(curves[0].x[-1]), 30)
    return [plots.Line("∝ 1/log n", grid, y0 * np.log(grid[0]) / np.log(grid), "--", "black"),
            plots.Line("∝ 1/√n", grid, y0 * np.sqrt(grid[0] / grid), ":", "black")]


def analyze(results: pd.DataFrame, settings: dict[str, Any], directory: Path) -> dict[str, Any]:
    from xposim.harness import plots, stats
    from xposim.harness.verdicts import interval_verdict, prediction_record

    fit_min = int(settings["fit_min_size"])
    slopes: dict[tuple[str, str], Any] = {}
    cubes: dict[tuple[str, str], tuple] = {}
    targets: dict[tuple[str, float], tuple[float, float]] = {}
    tuned_rows, fixed_rows = [], []
    regret_curves: dict[str, list] = {}
    beta_curves: dict[str, list] = {}
    fixed_curves = []
    variants = [v for v in settings["variants"] if v in set(results["variant"])]
    for variant in variants:
        for learner in [lr for lr in settings["learners"] if lr in set(results["learner"])]:
            betas, sizes, cube = cubes[variant, learner] = regret_cube(results, variant, learner)
            if cube.shape[0] < 2:
                continue
            tuned = stats.tuned_curve(cube)
            fit = sizes >= fit_min
            slope = ""
            if fit.sum() >= 2:
                s = slopes[variant, learner] = stats.bootstrap_tuned_slope(sizes[fit], cube[:, :, fit], seed=0)
                slope = f": slope {s.slope:.2f} [{s.low:.2f}, {s.high:.2f}]"
            colour = COLOURS.get(learner, plots.color_for(learner))
            regret_curves.setdefault(variant, []).append(
                plots.Curve(learner + slope, sizes, tuned.mean, tuned.low, tuned.high, color=colour))
            beta_curves.setdefault(variant, []).append(plots.Curve(learner, sizes, betas[tuned.index], color=colour))
            point = {**settings, "variant": variant}
            for j, n in enumerate(sizes):
                beta = float(betas[tuned.index[j]])
                if (variant, beta) not in targets:  # the same beta is tuned for many (learner, n)
                    targets[variant, beta] = target_regrets(point, beta)
                star_beta, star_mix = targets[variant, beta]
                tuned_rows.append({"variant": variant, "learner": learner, "dataset_size": int(n),
                                   "tuned_beta": float(betas[tuned.index[j]]), "regret": float(tuned.mean[j]),
                                   "low": float(tuned.low[j]), "high": float(tuned.high[j]), "seeds": cube.shape[0],
                                   "regret_pi_star_beta": star_beta, "regret_pi_star_mix": star_mix})
            if variant == "headroom":
                means = cube[:, 0, :].mean(axis=0)
                iv = [stats.mean_interval(cube[:, 0, j]) for j in range(sizes.size)]
                fixed_curves.append(plots.Curve(f"{learner} at β = {betas[0]:g}", sizes, means,
                                                np.array([i.low for i in iv]), np.array([i.high for i in iv]),
                                                color=colour))
                fixed_rows += [{"learner": learner, "beta": float(betas[0]), "dataset_size": int(n),
                                "regret": float(means[j]), "low": iv[j].low, "high": iv[j].high}
                               for j, n in enumerate(sizes)]
    predictions = _predictions(cubes, settings, slopes, prediction_record, interval_verdict)
    x_label = "dataset size n (pairs from π_ref)"
    y_label = "max r − E_π̂[r] at the tuned β (mean, 95% t-band)"
    note = (f"β tuned per n on the grid {min(settings['betas']):g}..{max(settings['betas']):g} "
            f"({len(settings['betas'])} values); slopes over n >= {fit_min}, seed bootstrap re-tuning β per resample")
    figures = []
    if "headroom" in regret_curves:
        figures += plots.panels_plot(
            directory, "overoptimization", "E8: offline learners with headroom, β tuned per n",
            [plots.Panel(f"regret, {VARIANT_TITLES['headroom']}", x_label, y_label, regret_curves["headroom"],
                         _reference_lines(regret_curves["headroom"])),
             plots.Panel("tuned β (lowest mean regret on the grid)", "dataset size n", "β", beta_curves["headroom"])],
            note=note)
    controls = [v for v in variants if v != "headroom" and v in regret_curves]
    if controls:
        figures += plots.panels_plot(
            directory, "overoptimization_controls", "E8: negative controls, β tuned per n",
            [plots.Panel(f"regret, {VARIANT_TITLES.get(v, v)}", x_label, y_label, regret_curves[v],
                         _reference_lines(regret_curves[v])) for v in controls], note=note)
    if fixed_curves:
        figures += plots.curve_plot(
            directory, "overoptimization_fixed_beta", f"E8: regret at the smallest β = {min(settings['betas']):g} "
            "(headroom)", "dataset size n", "max r − E_π̂[r] (mean, 95% t-band)", fixed_curves, logy=False)
    return {"predictions": predictions, "figures": figures,
            "tables": {"tuned_regret": tuned_rows, "fixed_beta_regret": fixed_rows,
                       "slopes": [{"variant": v, "learner": lr, "slope": s.slope, "low": s.low, "high": s.high,
                                   "fit_min_size": fit_min} for (v, lr), s in slopes.items()]}}


def _predictions(cubes, settings, slopes, prediction_record, interval_verdict) -> list[dict[str, Any]]:
    """The verdicts from the ``(betas, sizes, regret cube)`` of every (variant, learner) and their slopes."""
    from xposim.harness import stats
    from xposim.seeding import make_rng

    out = []
    rule_slope = ("log-log slope of the tuned mean regret over n >= {m}; 95% seed bootstrap with β re-tuned in "
                  "every resample; held if the interval lies {side}, not held if it lies on the other side, "
                  "else inconclusive").format
    fit_min = int(settings["fit_min_size"])
    rate_predictions = [  # (learner, id, statement, predicted, verdict bound, side)
        ("dpo", "E8:dpo-tuned-rate", "with headroom, DPO's tuned regret decays no faster than ~1/log n (slope > -0.25)",
         "> -0.25", {"at_least": -0.25}, "above -0.25"),
        ("chipo", "E8:chipo-tuned-rate", "with headroom, chiPO's tuned regret decays like 1/sqrt(n) (slope <= -0.4)",
         "<= -0.4", {"at_most": -0.4}, "at or below -0.4"),
        ("chipo:token_logit", "E8:free-logit-chipo-fails",
         "on free logits (token-logit class) chiPO loses its rate: tuned slope above -0.4",
         "> -0.4", {"at_least": -0.4}, "above -0.4")]
    for learner, prediction_id, statement, predicted, bound, side in rate_predictions:
        if ("headroom", learner) in slopes:
            s = slopes["headroom", learner]
            out.append(prediction_record(prediction_id, statement, s.slope, s.low, s.high, predicted,
                                         interval_verdict(s.low, s.high, **bound), rule=rule_slope(m=fit_min, side=side),
                                         unit="log-log slope"))
    if ("headroom", "dpo") in cubes:
        betas, sizes, cube = cubes["headroom", "dpo"]
        curve = cube[:, 0, :]
        rng = make_rng(1)

        def rise(rows: np.ndarray) -> float:
            mean = curve[rows].mean(axis=0)
            return float(np.max(mean[1:] - np.minimum.accumulate(mean)[:-1]))

        seeds = np.arange(curve.shape[0])
        draws = np.array([rise(rng.choice(seeds, size=seeds.size)) for _ in range(2000)])
        low, high = np.quantile(draws, [0.025, 0.975])
        out.append(prediction_record(
            "E8:dpo-not-monotone", f"at beta = {betas[0]:g} DPO's regret rises with more data somewhere",
            rise(seeds), float(low), float(high), "> 0", "held" if low > 0 else "not held",
            rule="largest rise of the mean regret above its running minimum over smaller n; held if the 95% "
                 "seed-bootstrap interval lies above 0 (the rise is >= 0 by construction, so otherwise not held)",
            unit="regret"))
    if ("no_headroom", "dpo") in slopes and ("no_headroom", "chipo") in slopes:
        betas, sizes, dpo = cubes["no_headroom", "dpo"]
        _, _, chipo = cubes["no_headroom", "chipo"]
        n = min(dpo.shape[0], chipo.shape[0])
        fit = sizes >= fit_min
        difference = stats.bootstrap_tuned_slope_difference(sizes[fit], dpo[:n][:, :, fit], chipo[:n][:, :, fit], seed=0)
        out.append(prediction_record(
            "E8:no-separation-without-headroom",
            "without headroom chiPO's tuned rate is not steeper than DPO's (slope(DPO) - slope(chiPO) <= 0)",
            difference.estimate, difference.low, difference.high, "<= 0",
            "not held" if difference.low > 0 else "held",
            rule="slope difference over n >= {m}, seeds resampled jointly (β re-tuned for both); not held if its "
                 "95% interval lies above 0 (chiPO significantly steeper), held otherwise".format(m=fit_min),
            unit="log-log slope difference"))
    return out


def check(settings: dict[str, Any]) -> None:
    if not settings["betas"] or min(settings["betas"]) <= 0:
        raise ValueError(f"setting 'betas' must be numbers > 0, got {settings['betas']}")
    if len(settings["dataset_sizes"]) < 2 or min(settings["dataset_sizes"]) < 1:
        raise ValueError("setting 'dataset_sizes' needs at least two sizes >= 1")
    for variant in settings["variants"]:
        if variant not in VARIANT_R_MAX:
            raise ValueError(f"setting 'variants': {variant!r} is not one of {list(VARIANT_R_MAX)}")
    for learner in settings["learners"]:
        if learner not in LEARNERS:
            raise ValueError(f"setting 'learners': {learner!r} is not one of {list(LEARNERS)}")
    if settings["fit_min_size"] < 1:
        raise ValueError(f"setting 'fit_min_size' must be >= 1, got {settings['fit_min_size']}")
    make_env({**settings, "variant": "headroom"})  # the instance's own checks, before any cell runs


_INSTANCE = {"n_covered": 8, "covered_reward_max": 0.5, "rare_exponents": list(range(5, 19)), "rare_per_scale": 2}

OVEROPTIMIZATION = register_experiment(Experiment(
    name="overoptimization",
    predictions=("E8",),
    description="over-optimization: with headroom, DPO's tuned regret decays like 1/log n, chiPO's like 1/sqrt n",
    quick={"variants": ["headroom", "no_headroom"], "learners": ["dpo", "chipo"],
           "betas": [0.01, 0.03, 0.1, 0.3], "dataset_sizes": [64, 256, 1024, 4096], "fit_min_size": 64,
           "seeds": 8, **_INSTANCE},
    full={"variants": ["headroom", "no_headroom", "wide_box"],
          "learners": ["dpo", "chipo", "chipo:tabular", "dpo:token_logit", "chipo:token_logit", "pessimistic_mle"],
          "betas": [float(b) for b in np.round(np.geomspace(0.004, 1.0, 13), 5)],
          "dataset_sizes": [2 ** k for k in range(6, 17)], "fit_min_size": 256, "seeds": 24, **_INSTANCE},
    points=points, cell=cell, analyze=analyze, check=check,
))
