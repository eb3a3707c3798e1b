"""Statistics of the harness: confidence intervals, censored sample complexity, fitted exponents.

* :func:`mean_interval` — Student-t interval of a mean; :func:`bootstrap_interval` — percentile
  bootstrap of any statistic (seeded ``numpy.random.Generator`` from :mod:`xposim.seeding`).
* :func:`kaplan_meier`, :func:`km_quantile` — the product-limit estimator
  ``S(t) = prod_{t_i <= t} (1 - d_i / n_i)`` (``d_i`` events at time ``t_i``, ``n_i`` runs still at
  risk just before ``t_i``; events at a tie precede censorings) and its quantiles. Censored runs
  are never dropped; a quantile that ``S`` never reaches is reported as ``inf`` ("censored").
* :func:`queries_to_threshold` — per run, the number of queries until a metric first falls
  below a threshold, censored at the last checkpoint.
* :func:`linear_fit`, :func:`loglog_slope`, :func:`bootstrap_slope` — OLS slopes with t-intervals
  and a bootstrap over seeds; :func:`growth_exponent` fits ``log T = a + b / (8 beta)``, so
  ``b = 1`` is growth like ``e^{1/(8 beta)}`` (Proposition 2.1) and ``b = 0`` is flat.
* :func:`censored_quantile_trend` — the same fit on Kaplan–Meier quantiles of censored runs,
  with a bootstrap over runs.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.special import stdtrit as _t_quantile

from xposim.seeding import SeedLike, make_rng

__all__ = [
    "Interval",
    "mean_interval",
    "bootstrap_interval",
    "mean_band",
    "TunedCurve",
    "tuned_curve",
    "bootstrap_tuned_slope",
    "bootstrap_tuned_slope_difference",
    "SurvivalCurve",
    "kaplan_meier",
    "km_quantile",
    "km_quantile_interval",
    "queries_to_threshold",
    "SlopeFit",
    "linear_fit",
    "loglog_slope",
    "bootstrap_slope",
    "growth_exponent",
    "censored_quantile_trend",
    "QuantileTrend",
]


def _level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return level


def _finite_1d(values, argument: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"{argument} must contain at least one value")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{argument} must be finite (got NaN or inf)")
    return array


# ----------------------------------------------------------------------------- intervals
@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval ``[low, high]`` at ``level``."""

    estimate: float
    low: float
    high: float
    level: float
    n: int
    method: str

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def mean_interval(values, level: float = 0.95) -> Interval:
    """Mean with the Student-t interval ``mean +- t_{n-1, (1+level)/2} s / sqrt(n)``.

    With one value the interval is ``(-inf, inf)``; with zero spread it is the point.
    """
    level = _level(level)
    x = _finite_1d(values, "values")
    n = x.size
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, -math.inf, math.inf, level, 1, "t")
    half = float(_t_quantile(n - 1, 0.5 + level / 2.0) * x.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, level, n, "t")


def bootstrap_interval(
    values,
    statistic: Callable[[np.ndarray], float] = np.mean,
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: SeedLike = 0,
) -> Interval:
    """Percentile bootstrap interval of ``statistic`` (resampling ``values`` with replacement,
    draws from ``make_rng(seed)``)."""
    level = _level(level)
    x = _finite_1d(values, "values")
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be an integer >= 1, got {n_resamples!r}")
    rng = make_rng(seed)
    index = rng.integers(0, x.size, size=(int(n_resamples), x.size))
    draws = np.array([statistic(x[row]) for row in index], dtype=np.float64)
    low, high = np.quantile(draws, [0.5 - level / 2.0, 0.5 + level / 2.0])
    return Interval(float(statistic(x)), float(low), float(high), level, int(x.size), "bootstrap")


def mean_band(frame: pd.DataFrame, by: Sequence[str], x: str, y: str, level: float = 0.95) -> pd.DataFrame:
    """Per group and ``x``, the mean of ``y`` over rows (seeds) with its t-interval.

    Returns columns ``by + [x, 'mean', 'low', 'high', 'n']`` sorted by ``by`` and ``x``; a group
    with a single seed has an infinite band (drawn as no band).
    """
    rows = []
    for key, group in frame.groupby(list(by) + [x], sort=True):
        values = group[y].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        interval = mean_interval(values, level)
        key = key if isinstance(key, tuple) else (key,)
        rows.append((*key, interval.estimate, interval.low, interval.high, interval.n))
    return pd.DataFrame(rows, columns=list(by) + [x, "mean", "low", "high", "n"])


# ----------------------------------------------------------------------------- survival
@dataclass(frozen=True)
class SurvivalCurve:
    """Kaplan–Meier curve: ``survival[i] = S(times[i])`` just after the distinct event time ``times[i]``."""

    times: np.ndarray
    survival: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray
    n: int
    n_censored: int
    max_time: float

    def at(self, t: float) -> float:
        """``S(t)`` (a step function, right-continuous, ``S = 1`` before the first event)."""
        i = int(np.searchsorted(self.times, t, side="right"))
        return 1.0 if i == 0 else float(self.survival[i - 1])


def _durations(durations, observed) -> tuple[np.ndarray, np.ndarray]:
    t = _finite_1d(durations, "durations")
    if np.any(t < 0):
        raise ValueError("durations must be >= 0")
    e = np.asarray(observed).ravel()
    if e.shape != t.shape:
        raise ValueError(f"observed must have one flag per duration ({t.size}), got {e.size}")
    if e.dtype != bool:
        if not np.all((e == 0) | (e == 1)):
            raise ValueError("observed must be booleans (True = event seen, False = censored)")
        e = e.astype(bool)
    return t, e


def kaplan_meier(durations, observed) -> SurvivalCurve:
    """Kaplan–Meier estimate of ``S(t) = P(T > t)`` from right-censored durations.

    ``observed[i]`` is True when run ``i`` reached the event at ``durations[i]`` and False when it
    was censored there (the event had not happened by then).
    """
    t, e = _durations(durations, observed)
    event_times, events = np.unique(t[e], return_counts=True)
    at_risk = (t.size - np.searchsorted(np.sort(t), event_times, side="left")).astype(np.int64)
    events = events.astype(np.int64)
    survival = np.cumprod(1.0 - events / at_risk) if event_times.size else np.empty(0)
    return SurvivalCurve(event_times, survival, at_risk, events, int(t.size), int((~e).sum()), float(t.max()))


def km_quantile(curve: SurvivalCurve, q: float = 0.5) -> float:
    """Smallest event time ``t`` with ``S(t) <= 1 - q`` (``q = 0.5``: the median); ``inf`` when the
    curve never gets there (the quantile is censored: it exceeds ``curve.max_time``)."""
    q = float(q)
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q!r}")
    hit = np.nonzero(curve.survival <= 1.0 - q + 1e-12)[0]
    return float(curve.times[hit[0]]) if hit.size else math.inf


def km_quantile_interval(
    durations, observed, q: float = 0.5, level: float = 0.95, n_resamples: int = 1000, seed: SeedLike = 0
) -> Interval:
    """KM quantile with a percentile bootstrap interval over runs (bounds may be ``inf``:
    censored). The estimate is ``inf`` when the quantile itself is censored."""
    level = _level(level)
    t, e = _durations(durations, observed)
    estimate = km_quantile(kaplan_meier(t, e), q)
    rng = make_rng(seed)
    index = rng.integers(0, t.size, size=(int(n_resamples), t.size))
    draws = np.array([km_quantile(kaplan_meier(t[row], e[row]), q) for row in index])
    low, high = _inf_quantiles(draws, level)
    return Interval(estimate, low, high, level, int(t.size), "km-bootstrap")


def _inf_quantiles(draws: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile bounds of draws that may contain ``+inf`` (order statistics, no interpolation
    across infinity)."""
    s = np.sort(draws)
    lo = s[int(math.floor((0.5 - level / 2.0) * (s.size - 1)))]
    hi = s[int(math.ceil((0.5 + level / 2.0) * (s.size - 1)))]
    return float(lo), float(hi)


def queries_to_threshold(
    frame: pd.DataFrame,
    threshold: float,
    metric: str = "suboptimality",
    by: Sequence[str] = ("learner",),
    run: Sequence[str] = ("seed",),
    time: str = "queries",
) -> pd.DataFrame:
    """Per run, the first ``time`` (queries) at which ``metric < threshold``.

    A run whose metric never falls below the threshold is *censored* at its last checkpoint
    (``observed=False``): it is kept, not dropped. Event times are resolved to the checkpoint grid
    (the first checkpoint at or after the true crossing). Returns columns
    ``by + run + [time, 'observed', 'budget']``.
    """
    keys = list(by) + list(run)
    rows = []
    for key, group in frame.groupby(keys, sort=True):
        group = group.sort_values(time)
        below = group[metric].to_numpy() < threshold
        times = group[time].to_numpy()
        key = key if isinstance(key, tuple) else (key,)
        if below.any():
            rows.append((*key, float(times[np.argmax(below)]), True, float(times[-1])))
        else:
            rows.append((*key, float(times[-1]), False, float(times[-1])))
    return pd.DataFrame(rows, columns=keys + [time, "observed", "budget"])


# ----------------------------------------------------------------------------- slopes
@dataclass(frozen=True)
class SlopeFit:
    """A fitted slope with its interval (``method``: ``'ols'`` t-interval or ``'bootstrap'``)."""

    slope: float
    intercept: float
    low: float
    high: float
    level: float
    n_points: int
    r_squared: float
    method: str

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def linear_fit(x, y, level: float = 0.95) -> SlopeFit:
    """OLS ``y = intercept + slope x`` with the t-interval ``slope +- t_{n-2} se(slope)``
    (``se = sqrt(SSR/(n-2) / sum (x - xbar)^2)``); with two points the interval is infinite."""
    level = _level(level)
    x = _finite_1d(x, "x")
    y = _finite_1d(y, "y")
    if x.size != y.size:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if x.size < 2 or np.ptp(x) == 0:
        raise ValueError("a slope needs at least two distinct x values")
    xm, ym = x.mean(), y.mean()
    sxx = float(((x - xm) ** 2).sum())
    slope = float(((x - xm) * (y - ym)).sum() / sxx)
    intercept = float(ym - slope * xm)
    residual = y - intercept - slope * x
    ssr = float((residual**2).sum())
    sst = float(((y - ym) ** 2).sum())
    r2 = 1.0 - ssr / sst if sst > 0 else 1.0
    n = x.size
    if n == 2:
        return SlopeFit(slope, intercept, -math.inf, math.inf, level, n, r2, "ols")
    half = float(_t_quantile(n - 2, 0.5 + level / 2.0) * math.sqrt(ssr / (n - 2) / sxx))
    return SlopeFit(slope, intercept, slope - half, slope + half, level, n, r2, "ols")


def _positive(values, argument: str) -> np.ndarray:
    array = _finite_1d(values, argument)
    if np.any(array <= 0):
        raise ValueError(f"{argument} must be > 0 for a log-log fit")
    return array


def loglog_slope(x, y, level: float = 0.95) -> SlopeFit:
    """OLS slope of ``log y`` on ``log x`` with its t-interval (a power law ``y ~ x^slope``)."""
    return linear_fit(np.log(_positive(x, "x")), np.log(_positive(y, "y")), level)


def bootstrap_slope(
    x,
    y_by_seed,
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: SeedLike = 0,
    log_x: bool = True,
    log_y: bool = True,
) -> SlopeFit:
    """Slope of the seed-averaged curve with a bootstrap over seeds.

    ``y_by_seed`` has shape ``(n_seeds, len(x))``; each resample draws seeds with replacement,
    averages their curves and refits (log-log by default). Returns the fit of the full average
    with the percentile interval of the resampled slopes.
    """
    level = _level(level)
    x = _finite_1d(x, "x")
    y = np.asarray(y_by_seed, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != x.size:
        raise ValueError(f"y_by_seed must have shape (n_seeds, {x.size}), got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("y_by_seed must be finite")
    fx = np.log(_positive(x, "x")) if log_x else x

    def fit(curve: np.ndarray) -> tuple[float, float, float]:
        fy = np.log(np.maximum(curve, np.finfo(float).tiny)) if log_y else curve
        f = linear_fit(fx, fy, level)
        return f.slope, f.intercept, f.r_squared

    slope, intercept, r2 = fit(y.mean(axis=0))
    rng = make_rng(seed)
    index = rng.integers(0, y.shape[0], size=(int(n_resamples), y.shape[0]))
    draws = np.array([fit(y[row].mean(axis=0))[0] for row in index])
    low, high = np.quantile(draws, [0.5 - level / 2.0, 0.5 + level / 2.0])
    return SlopeFit(slope, intercept, float(low), float(high), level, int(x.size), r2, "bootstrap")


@dataclass(frozen=True)
class TunedCurve:
    """Per ``x``: the setting with the lowest seed-mean (``index``), that mean and its t-interval."""

    index: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def _check_cube(cube, argument: str = "y_by_seed_setting") -> np.ndarray:
    array = np.asarray(cube, dtype=np.float64)
    if array.ndim != 3 or min(array.shape) < 1:
        raise ValueError(f"{argument} must have shape (n_seeds, n_settings, n_x), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{argument} must be finite")
    return array


def tuned_curve(y_by_seed_setting, level: float = 0.95) -> TunedCurve:
    """The curve ``min over settings of the seed mean`` (e.g. regret with ``beta`` tuned per ``n``).

    ``y_by_seed_setting`` has shape ``(n_seeds, n_settings, n_x)``; the interval of each point is the
    t-interval of the chosen setting's seeds (it ignores the selection; the slope intervals of
    :func:`bootstrap_tuned_slope` re-select in every resample).
    """
    cube = _check_cube(y_by_seed_setting)
    means = cube.mean(axis=0)
    index = np.argmin(means, axis=0)
    intervals = [mean_interval(cube[:, index[j], j], level) for j in range(cube.shape[2])]
    return TunedCurve(index, means[index, np.arange(cube.shape[2])], np.array([i.low for i in intervals]),
                      np.array([i.high for i in intervals]))


def _tuned_loglog_slope(fx: np.ndarray, cube: np.ndarray) -> float:
    curve = cube.mean(axis=0).min(axis=0)
    return linear_fit(fx, np.log(np.maximum(curve, np.finfo(float).tiny))).slope


def bootstrap_tuned_slope(x, y_by_seed_setting, level: float = 0.95, n_resamples: int = 2000,
                          seed: SeedLike = 0) -> SlopeFit:
    """Log-log slope of :func:`tuned_curve` in ``x`` with a seed bootstrap that re-tunes the setting
    in every resample (the percentile interval of the resampled slopes)."""
    level = _level(level)
    fx = np.log(_positive(x, "x"))
    cube = _check_cube(y_by_seed_setting)
    if cube.shape[2] != fx.size:
        raise ValueError(f"y_by_seed_setting must have {fx.size} x values, got {cube.shape[2]}")
    curve = cube.mean(axis=0).min(axis=0)
    full = linear_fit(fx, np.log(np.maximum(curve, np.finfo(float).tiny)))
    index = make_rng(seed).integers(0, cube.shape[0], size=(int(n_resamples), cube.shape[0]))
    draws = np.array([_tuned_loglog_slope(fx, cube[row]) for row in index])
    low, high = np.quantile(draws, [0.5 - level / 2.0, 0.5 + level / 2.0])
    return SlopeFit(full.slope, full.intercept, float(low), float(high), level, int(fx.size), full.r_squared,
                    "bootstrap")


def bootstrap_tuned_slope_difference(x, first, second, level: float = 0.95, n_resamples: int = 2000,
                                     seed: SeedLike = 0) -> Interval:
    """``slope(first) - slope(second)`` of two :func:`tuned_curve` s measured on the same seeds (same
    first axis), with a bootstrap resampling the seeds jointly and re-tuning both."""
    level = _level(level)
    fx = np.log(_positive(x, "x"))
    a, b = _check_cube(first, "first"), _check_cube(second, "second")
    if a.shape[0] != b.shape[0] or a.shape[2] != fx.size or b.shape[2] != fx.size:
        raise ValueError(f"first and second need the same seeds and {fx.size} x values, got {a.shape} and {b.shape}")
    estimate = _tuned_loglog_slope(fx, a) - _tuned_loglog_slope(fx, b)
    index = make_rng(seed).integers(0, a.shape[0], size=(int(n_resamples), a.shape[0]))
    draws = np.array([_tuned_loglog_slope(fx, a[row]) - _tuned_loglog_slope(fx, b[row]) for row in index])
    low, high = np.quantile(draws, [0.5 - level / 2.0, 0.5 + level / 2.0])
    return Interval(float(estimate), float(low), float(high), level, int(a.shape[0]), "bootstrap")


def growth_exponent(betas, values, level: float = 0.95) -> SlopeFit:
    """Fit ``log value = a + b / (8 beta)``: ``b = 1`` is growth like ``e^{1/(8 beta)}``
    (Proposition 2.1's horizon), ``b = 0`` is flat in ``beta``."""
    betas = _positive(betas, "betas")
    return linear_fit(1.0 / (8.0 * betas), np.log(_positive(values, "values")), level)


@dataclass(frozen=True)
class QuantileTrend:
    """Fit of a KM quantile of censored run times against a covariate (see
    :func:`censored_quantile_trend`)."""

    fit: SlopeFit | None
    ols: SlopeFit | None
    q: float
    covariate: np.ndarray
    quantiles: np.ndarray
    censored: np.ndarray
    budgets: np.ndarray
    censored_resample_fraction: float
    low: np.ndarray | None = None
    """Per covariate value: the bootstrap percentile interval of the quantile (``inf`` where a
    resample's quantile is censored); ``None`` when fewer than two values are observed."""
    high: np.ndarray | None = None


def censored_quantile_trend(
    covariate: Sequence[float],
    durations: Sequence[Sequence[float]],
    observed: Sequence[Sequence[bool]],
    q: float = 0.5,
    log_covariate: bool = False,
    level: float = 0.95,
    n_resamples: int = 1000,
    seed: SeedLike = 0,
) -> QuantileTrend:
    """Slope of ``log KM-quantile_q(T)`` against ``covariate`` (or ``log covariate``).

    ``durations[j]``/``observed[j]`` are the runs at ``covariate[j]``. The point fit needs the
    quantile observed (not censored) at two or more covariate values; censored groups are left
    out of the point fit and reported in ``censored``. The interval is a bootstrap over runs
    within each group; in a resample where a group's quantile is censored it is replaced by that
    group's longest follow-up (a lower bound on it) and the fraction of such group-resamples is
    reported as ``censored_resample_fraction``. Times are clamped to ``>= 1`` before the log.
    """
    level = _level(level)
    cov = _finite_1d(covariate, "covariate")
    if len(durations) != cov.size or len(observed) != cov.size:
        raise ValueError("durations and observed need one group per covariate value")
    groups = [_durations(t, e) for t, e in zip(durations, observed)]
    fx_all = np.log(_positive(cov, "covariate")) if log_covariate else cov
    quantiles = np.array([km_quantile(kaplan_meier(t, e), q) for t, e in groups])
    budgets = np.array([t.max() for t, _ in groups])
    censored = ~np.isfinite(quantiles)
    quantiles = np.where(censored, quantiles, np.maximum(quantiles, 1.0))
    keep = ~censored
    if keep.sum() < 2 or np.ptp(fx_all[keep]) == 0:
        return QuantileTrend(None, None, q, cov, quantiles, censored, budgets, math.nan)
    ols = linear_fit(fx_all[keep], np.log(quantiles[keep]), level)
    rng = make_rng(seed)
    slopes = []
    n_censored_draws = 0
    draws = np.empty((int(n_resamples), len(groups)))  # per group, inf where censored
    for i in range(int(n_resamples)):
        values = []
        for j, ((t, e), budget) in enumerate(zip(groups, budgets)):
            row = rng.integers(0, t.size, size=t.size)
            value = km_quantile(kaplan_meier(t[row], e[row]), q)
            draws[i, j] = max(value, 1.0)
            if not math.isfinite(value):
                n_censored_draws += 1
                value = budget
            values.append(max(value, 1.0))
        values = np.array(values)[keep]
        slopes.append(linear_fit(fx_all[keep], np.log(values), level).slope)
    low, high = np.quantile(slopes, [0.5 - level / 2.0, 0.5 + level / 2.0])
    fit = SlopeFit(ols.slope, ols.intercept, float(low), float(high), level, int(keep.sum()), ols.r_squared,
                   "bootstrap")
    bounds = np.array([_inf_quantiles(draws[:, j], level) for j in range(len(groups))])
    return QuantileTrend(fit, ols, q, cov, quantiles, censored, budgets,
                         n_censored_draws / (n_resamples * len(groups)), bounds[:, 0], bounds[:, 1])
