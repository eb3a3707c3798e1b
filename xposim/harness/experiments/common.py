"""Shared pieces of the learner experiments: environments by name, learners by label, one run.

A cell runs ONE learner for ONE seed (``xposim.learners.run_learner``) and returns the tidy
metric columns of the ``xposim.simulate`` contract (``learner, round, queries,
kl_regularized_value, suboptimality, best_iterate_suboptimality, average_iterate_suboptimality,
cumulative_regret, kl_to_ref, expected_reward, argmax_regret``); the runner adds the cell id,
seed (index) and settings. Offline learners are trained once per dataset size (nested datasets:
the first ``n`` pairs of a seed are the same for every size), so their "checkpoints" are sizes.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from xposim.columns import METRIC_COLUMNS, with_dtypes

#: Harness labels that are not registry names: label -> (registry name, fixed overrides).
LABELS: dict[str, tuple[str, dict[str, Any]]] = {
    "xpo_alpha0": ("xpo", {"alpha": 0.0}),
    "xpo_paper_argmax": ("xpo", {"labels": "argmax"}),
    "xpo_trl_bt": ("xpo_trl", {"labels": "bradley_terry"}),
}



def learner_label_check(labels: Sequence[str], setting: str = "learners") -> None:
    """``ValueError`` naming the first label that is neither a harness label nor a learner name."""
    from xposim.learners import learner_names

    from xposim.plugins import is_reference

    known = set(learner_names()) | set(LABELS)
    for label in labels:
        if is_reference(label):
            try:
                make_learner_for(label)  # import the factory now: a bad reference fails before any cell
            except ValueError as error:
                raise ValueError(f"setting '{setting}': {error}") from None
        elif label not in known:
            raise ValueError(f"setting '{setting}': unknown learner {label!r} (known: {', '.join(sorted(known))}, "
                             "or a reference 'package.module:function')")


def make_learner_for(label: str, **overrides: Any):
    """The learner config of harness label ``label`` (named ``label`` in tables)."""
    import dataclasses

    from xposim.learners import make_learner

    name, fixed = LABELS.get(label, (label, {}))
    return dataclasses.replace(make_learner(name, **{**overrides, **fixed}), name=label)


def mark_champion_starts(point: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """With the ``xpo_champion_starts`` setting, mark the points whose learner solves a bonus
    objective in paper mode (XPO, POPO, ...: where champion starts matter). The key is added only
    when set, so the default solver's cells keep their ids."""
    if settings.get("xpo_champion_starts", False):
        learner = make_learner_for(point["learner"])
        if learner.has_bonus and learner.mode == "paper":
            point["champion_starts"] = True
    return point


def add_xpo_options(point: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Put the XPO settings of an experiment into an XPO point: ``alpha`` (the ``xpo_alpha``
    setting) and the champion-start mark (:func:`mark_champion_starts`). Other learners' points
    are returned unchanged."""
    learner = point["learner"]
    if learner.startswith("xpo") and learner != "xpo_alpha0":
        point["alpha"] = settings["xpo_alpha"]
        mark_champion_starts(point, settings)
    return point


def learner_overrides(point: dict[str, Any]) -> dict[str, Any]:
    """Learner config overrides of a point: ``alpha`` and, with champion starts, the solver."""
    overrides: dict[str, Any] = {"alpha": point["alpha"]} if "alpha" in point else {}
    if point.get("champion_starts"):
        from xposim.policies.solving import SolverSettings

        overrides["solver"] = SolverSettings(champion_starts=True)
    return overrides


def log_class_note(grows_with: str) -> str:
    """Detail appended to a coverage-slope record: Theorem 3.1's bound is ``C_cov log|Pi|``, and
    ``log|Pi|`` grows too when the class grows with the swept size (``grows_with`` says how)."""
    return f"; Thm 3.1's bound C_cov·log|Pi| also grows with log|Pi| ∝ {grows_with}, so it allows a slope up to 2"


def solver_note(settings: dict[str, Any]) -> str:
    """Which argmin the bonus learners used, for figure notes."""
    if settings.get("xpo_champion_starts", False):
        return "Bonus learners' argmin: warm start plus champion starts."
    return ("Bonus learners' argmin: the certified global solver on the tabular class (the default; a solve "
            "without a certificate is counted in the tables' uncertified_solves).")


def check_champion_setting(settings: dict[str, Any]) -> None:
    if not isinstance(settings["xpo_champion_starts"], bool):
        raise ValueError(f"setting 'xpo_champion_starts' must be true or false, got {settings['xpo_champion_starts']!r}")


def make_env(point: dict[str, Any]):
    """The environment of a sweep point, built by :func:`xposim.envs.make_env`.

    The experiments' short kinds map the point's keys onto a library instance: ``two_arm``
    (``beta``), ``needle`` (``needle_vocab``, ``needle_horizon``, ``beta``), ``random``
    (``n_contexts``, ``vocab_size``, ``horizon``, ``env_seed``, ``r_max``), ``bandit`` (``n_arms``,
    ``good_arm_ref_prob``, ``r_max``). A point with ``env_params`` (the ``sweep`` experiment), or any
    other ``point['env']``, names a registered environment or a reference ``"package.module:function"``
    built with those parameters.
    """
    from xposim import envs

    kind = point["env"]
    if "env_params" in point:  # a registered name or a reference with its own parameters
        return envs.make_env(kind, **dict(point["env_params"]))
    if kind == "two_arm":
        return envs.make_env("two_arm_lower_bound", beta=float(point["beta"]))
    if kind == "needle":
        return envs.make_env("needle", vocab_size=int(point.get("needle_vocab", 2)),
                             horizon=int(point.get("needle_horizon", 3)), beta=float(point["beta"]))
    if kind == "random":
        return envs.make_env("random_token_mdp", n_contexts=int(point["n_contexts"]),
                             vocab_size=int(point["vocab_size"]), horizon=int(point["horizon"]),
                             seed=int(point["env_seed"]), r_max=float(point.get("r_max", 1.0)))
    if kind == "bandit":
        return envs.make_env("hidden_arm_bandit", n_arms=int(point["n_arms"]),
                             good_arm_ref_prob=float(point["good_arm_ref_prob"]), r_max=float(point.get("r_max", 1.0)))
    return envs.make_env(kind)


def checkpoint_grid(rounds: int, per_decade: int) -> np.ndarray:
    """Round 0, then about ``per_decade`` log-spaced rounds per decade up to ``rounds``."""
    from xposim.learners import default_checkpoints

    return default_checkpoints(int(rounds), per_decade=int(per_decade))


def _alpha_at(learner, beta: float, rounds: int, checkpoint_rounds: np.ndarray) -> np.ndarray:
    """The ``alpha`` column of a run: the bonus weight of the argmin of each checkpoint's round
    (round 0, ``pi_ref``: that of round 1); 0 for learners without a bonus, never NaN."""
    from xposim.learners.config import AlphaBlocks

    blocks = AlphaBlocks(learner.resolved_alpha(), beta, rounds)
    return np.array([blocks.block(min(max(int(t), 1), rounds), 1)[0] for t in checkpoint_rounds], dtype=np.float64)


def run_one(env, label: str, beta: float, rounds: int, seed: np.random.SeedSequence,
            checkpoints: Sequence[int] | None = None, policy_class: Any = None,
            optimal_value: float | None = None, offline_sizes: Sequence[int] | None = None,
            **overrides: Any) -> pd.DataFrame:
    """One learner, one seed: the metric columns at the checkpoints (offline learners: one
    training per dataset size in ``offline_sizes``, default the checkpoints). ``policy_class``
    ``None``: the learner's own default class."""
    from xposim.learners import run_learner

    from xposim import exact

    learner = make_learner_for(label, **overrides)
    checkpoints = checkpoint_grid(rounds, 8) if checkpoints is None else np.asarray(checkpoints, dtype=np.int64)
    if optimal_value is None:
        optimal_value = exact.solve(env, beta).value
    if learner.is_offline:
        sizes = [int(n) for n in (checkpoints if offline_sizes is None else offline_sizes) if n >= 1]
        rows = []
        for n in sizes:
            result = run_learner(env, learner, beta, n, checkpoints=[n], seed=seed, policy_class=policy_class,
                                 optimal_value=optimal_value)
            rows.append(result.metrics[-1])
        metrics, columns = np.array(rows), result.columns
    else:
        result = run_learner(env, learner, beta, int(rounds), checkpoints=checkpoints, seed=seed,
                             policy_class=policy_class, optimal_value=optimal_value)
        metrics, columns = result.metrics, result.columns
    frame = pd.DataFrame(metrics, columns=list(columns))[list(METRIC_COLUMNS)]
    frame.insert(0, "learner", label)
    frame["alpha"] = _alpha_at(learner, beta, int(rounds), frame["round"].to_numpy())
    return with_dtypes(frame)



# ----------------------------------------------------------------------------- samples-to-eps
def relative_hits(results: pd.DataFrame, by: Sequence[str], fraction: float,
                  metric: str = "suboptimality") -> pd.DataFrame:
    """Queries until ``metric`` first falls below ``fraction`` times its value at round 0
    (``pi^(1) = pi_ref``), per run, censored at the last checkpoint (see
    :func:`xposim.harness.stats.queries_to_threshold`). Returns ``by + ['seed', 'queries',
    'observed', 'budget', 'threshold']``."""
    from xposim.harness import stats

    frames = []
    for key, group in results.groupby(list(by), sort=False):
        start = group.loc[group["round"] == 0, metric]
        if start.empty:
            raise ValueError(f"relative thresholds need the round-0 row; group {key} has none")
        threshold = fraction * float(start.mean())
        hits = stats.queries_to_threshold(group, threshold, metric, by=list(by), run=("seed",))
        hits["threshold"] = threshold
        frames.append(hits)
    return pd.concat(frames, ignore_index=True)


def quantile_trend(hits: pd.DataFrame, group: str, covariate: dict, log_covariate: bool,
                   quantiles: Sequence[float] = (0.5, 0.25), n_resamples: int = 500):
    """Fit ``log T_q`` against the covariate of each value of ``hits[group]`` (a
    :class:`~xposim.harness.stats.QuantileTrend`): the KM median, or the next quantile when the
    median is censored at some value or in more than 5% of the bootstrap resamples."""
    from xposim.harness import stats

    values = [v for v in covariate if v in set(hits[group])]
    durations = [hits.loc[hits[group] == v, "queries"].to_numpy() for v in values]
    observed = [hits.loc[hits[group] == v, "observed"].to_numpy() for v in values]
    xs = [covariate[v] for v in values]
    trend = None
    for q in quantiles:
        trend = stats.censored_quantile_trend(xs, durations, observed, q=q, log_covariate=log_covariate,
                                              n_resamples=n_resamples, seed=0)
        if trend.fit is not None and not trend.censored.any() and trend.censored_resample_fraction <= 0.05:
            break
    return values, trend


def trend_detail(values, trend, name: str) -> str:
    """One line: the quantile at each covariate value and the censoring."""
    qname = "median" if trend.q == 0.5 else f"{trend.q:g}-quantile"
    parts = ", ".join(f"{v}: {'censored' if not math.isfinite(t) else f'{t:.0f}'}"
                      for v, t in zip(values, trend.quantiles))
    out = f"{qname} queries-to-eps by {name} ({parts}); {int(trend.censored.sum())} of {len(values)} censored"
    if trend.ols is not None:
        out += f"; OLS interval [{trend.ols.low:.2f}, {trend.ols.high:.2f}]"
    return out


def trend_record(prediction_id: str, statement: str, trend, rule: str, predicted: float, unit: str,
                 detail: str) -> dict[str, Any]:
    """A prediction record for a fitted trend with the verdict of ``rule``:
    ``'contains'`` (the interval contains ``predicted``), ``'flat'`` (the interval lies below 1/2;
    above 1/2: not held), ``'passive'`` (above 0 and reaching ``predicted``; below it: not held),
    ``'below'`` (the interval lies at or below ``predicted``; above it: not held)."""
    from xposim.harness.verdicts import prediction_record

    fit = trend.fit if trend is not None else None
    texts = {
        "contains": f"held if the 95% bootstrap interval contains {predicted:g}, not held if it excludes it",
        "flat": "held if every quantile is observed and the 95% bootstrap interval lies below 1/2, "
                "not held if it lies above 1/2",
        "passive": f"held if the 95% bootstrap interval lies above 0 and reaches {predicted:g}, "
                   f"not held if it lies below {predicted:g}",
        "below": f"held if the 95% bootstrap interval lies at or below {predicted:g}, not held if above",
    }
    if fit is None:
        verdict = "inconclusive"
    elif rule == "contains":
        verdict = "held" if fit.low <= predicted <= fit.high else "not held"
    elif rule == "flat":
        if fit.low > 0.5:
            verdict = "not held"
        elif fit.high < 0.5 and not trend.censored.any():
            verdict = "held"
        else:
            verdict = "inconclusive"
    elif rule == "passive":
        verdict = "not held" if fit.high < predicted else ("held" if fit.low > 0 else "inconclusive")
    elif rule == "below":
        verdict = "held" if fit.high <= predicted else ("not held" if fit.low > predicted else "inconclusive")
    else:  # pragma: no cover
        raise ValueError(f"unknown rule {rule!r}")
    return prediction_record(prediction_id, statement, None if fit is None else fit.slope,
                             None if fit is None else fit.low, None if fit is None else fit.high, predicted, verdict,
                             rule=texts[rule], unit=unit, detail=detail)


def power_lines(series, shapes) -> list:
    """Theory lines ``anchor (x / x_0)^power`` over the series' x range, through the lowest measured point
    (``shapes``: ``(label, power, line style, colour)``); none without two x values and a finite y."""
    from xposim.harness import plots

    ys = [y for s in series for y in np.asarray(s.y, float) if np.isfinite(y)]
    xs = np.unique(np.concatenate([np.asarray(s.x, float) for s in series])) if series else np.array([])
    if not ys or xs.size < 2:
        return []
    grid = np.geomspace(xs.min(), xs.max(), 20)
    return [plots.Line(label, grid, min(ys) * (grid / grid[0]) ** power, style, colour)
            for label, power, style, colour in shapes]


def trend_series(label: str, values, trend, covariate: dict, log_covariate: bool):
    """A :class:`~xposim.harness.plots.ScalingSeries` of the trend's quantiles with their bootstrap
    intervals and its fitted line; the label names the quantile (the median, or the 0.25-quantile when
    :func:`quantile_trend` fell back to it)."""
    from xposim.harness import plots

    label = f"{label} ({'median' if trend.q == 0.5 else f'{trend.q:g}-quantile'})"
    x = np.array([covariate[v] for v in values], float)
    y = np.where(trend.censored, trend.budgets, trend.quantiles)
    fit_line = None
    if trend.fit is not None:
        grid = np.geomspace(x.min(), x.max(), 40) if log_covariate else np.linspace(x.min(), x.max(), 40)
        fx = np.log(grid) if log_covariate else grid
        fit_line = plots.Line(f"{label} fit: slope {trend.fit.slope:.2f} [{trend.fit.low:.2f}, {trend.fit.high:.2f}]",
                              grid, np.exp(trend.fit.intercept + trend.fit.slope * fx), ":", "series")
    return plots.ScalingSeries(label, x, y, trend.low, trend.high, trend.censored, fit=fit_line)
