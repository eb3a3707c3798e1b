"""Statistics of the harness against known answers: t and bootstrap intervals, Kaplan–Meier by
hand, censored sample complexity, OLS / bootstrap slopes on synthetic power laws."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from xposim.harness import stats
from xposim.seeding import make_rng

pytestmark = pytest.mark.fast


def test_mean_interval_is_the_student_t_interval():
    x = make_rng(1).normal(3.0, 2.0, size=11)
    got = stats.mean_interval(x, 0.9)
    low, high = scipy_stats.t.interval(0.9, df=10, loc=x.mean(), scale=scipy_stats.sem(x))
    assert got.estimate == pytest.approx(x.mean(), rel=1e-14)
    assert (got.low, got.high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
    single = stats.mean_interval([2.5])
    assert single.estimate == 2.5 and single.low == -math.inf and single.high == math.inf
    with pytest.raises(ValueError, match="finite"):
        stats.mean_interval([1.0, float("nan")])


def test_t_interval_covers_the_true_mean_at_its_nominal_rate():
    rng = make_rng(2)
    hits = sum(stats.mean_interval(rng.normal(1.0, 1.0, size=8)).contains(1.0) for _ in range(2000))
    # 95% nominal; binomial sd over 2000 trials is 0.5%: 4 sd either side.
    assert 0.93 <= hits / 2000 <= 0.97


def test_bootstrap_interval_is_seeded_and_agrees_with_t_interval_for_normal_data():
    x = make_rng(3).normal(0.0, 1.0, size=400)
    a = stats.bootstrap_interval(x, seed=5)
    b = stats.bootstrap_interval(x, seed=5)
    assert (a.low, a.high) == (b.low, b.high)
    t = stats.mean_interval(x)
    assert a.low < x.mean() < a.high
    assert (a.high - a.low) == pytest.approx(t.high - t.low, rel=0.15)
    median = stats.bootstrap_interval(x, statistic=np.median, seed=1)
    assert median.estimate == np.median(x)


def test_kaplan_meier_matches_hand_computation():
    # durations 1 2 2 3 4 5, censored at the second 2 and at 4
    t = [1, 2, 2, 3, 4, 5]
    e = [True, True, False, True, False, True]
    curve = stats.kaplan_meier(t, e)
    s1 = Fraction(5, 6)
    s2 = s1 * (1 - Fraction(1, 5))  # 5 at risk at t=2 (the censored one counts), 1 event
    s3 = s2 * (1 - Fraction(1, 3))  # at risk at t=3: durations 3, 4, 5
    s5 = s3 * (1 - Fraction(1, 1))  # at risk at t=5: only the 5
    assert list(curve.times) == [1, 2, 3, 5]
    assert list(curve.at_risk) == [6, 5, 3, 1] and list(curve.events) == [1, 1, 1, 1]
    assert np.allclose(curve.survival, [float(s) for s in (s1, s2, s3, s5)], rtol=0, atol=1e-15)
    assert curve.at(2.5) == pytest.approx(float(s2)) and curve.at(0.5) == 1.0
    assert stats.km_quantile(curve, 0.5) == 3  # S(2) = 2/3 > 1/2 >= S(3) = 4/9
    assert stats.km_quantile(curve, 0.25) == 2  # S(1) = 5/6 > 3/4 >= S(2)
    assert curve.n_censored == 2


def test_kaplan_meier_agrees_with_scipy_ecdf_on_censored_data():
    # scipy's product-limit estimator is the reference; ours is kept because the bootstraps call it
    # thousands of times and scipy's costs several times more per call
    rng = make_rng(11)
    for k in range(300):
        n = int(rng.integers(1, 30))
        t = rng.integers(0, 12, n).astype(float) * (1.0 if k % 2 else 1.37)
        e = rng.random(n) < rng.random()
        if not e.any():
            continue
        curve = stats.kaplan_meier(t, e)
        reference = scipy_stats.ecdf(scipy_stats.CensoredData(uncensored=t[e], right=t[~e])).sf
        at = np.searchsorted(reference.quantiles, curve.times)
        assert np.array_equal(reference.quantiles[at], curve.times)
        np.testing.assert_allclose(curve.survival, reference.probabilities[at], rtol=0, atol=1e-15)


def test_kaplan_meier_without_censoring_is_the_empirical_quantile():
    x = make_rng(4).integers(1, 50, size=37).astype(float)
    curve = stats.kaplan_meier(x, np.ones(x.size, bool))
    for q in (0.1, 0.25, 0.5, 0.9):
        assert stats.km_quantile(curve, q) == np.quantile(x, q, method="inverted_cdf")


def test_censored_median_is_reported_as_infinite_not_dropped():
    curve = stats.kaplan_meier([5, 7, 10, 10, 10], [True, False, False, False, False])
    assert stats.km_quantile(curve, 0.5) == math.inf
    assert stats.km_quantile(curve, 0.1) == 5
    interval = stats.km_quantile_interval([5, 7, 10, 10, 10], [True, False, False, False, False], seed=0,
                                          n_resamples=200)
    assert interval.estimate == math.inf and interval.high == math.inf


def test_kaplan_meier_recovers_exponential_median_under_random_censoring():
    rng = make_rng(6)
    life = rng.exponential(10.0, size=4000)
    censor = rng.exponential(20.0, size=4000)
    t = np.minimum(life, censor)
    curve = stats.kaplan_meier(t, life <= censor)
    true_median = 10.0 * math.log(2.0)
    assert stats.km_quantile(curve, 0.5) == pytest.approx(true_median, rel=0.06)
    # dropping censored runs would be biased low by far more than that
    assert np.median(t[life <= censor]) < 0.8 * true_median


def test_queries_to_threshold_first_crossing_and_censoring():
    frame = pd.DataFrame({
        "learner": ["a"] * 4 + ["a"] * 4,
        "seed": [0] * 4 + [1] * 4,
        "queries": [0, 10, 20, 40] * 2,
        "suboptimality": [0.5, 0.2, 0.05, 0.3, 0.5, 0.4, 0.3, 0.2],
    })
    out = stats.queries_to_threshold(frame, 0.125).set_index("seed")
    assert out.loc[0, "queries"] == 20 and bool(out.loc[0, "observed"])
    assert out.loc[1, "queries"] == 40 and not bool(out.loc[1, "observed"]) and out.loc[1, "budget"] == 40


def test_linear_fit_matches_scipy_linregress():
    rng = make_rng(7)
    x = np.linspace(0, 5, 30)
    y = 2.0 + 0.7 * x + rng.normal(0, 0.3, size=x.size)
    fit = stats.linear_fit(x, y, 0.95)
    ref = scipy_stats.linregress(x, y)
    half = scipy_stats.t.ppf(0.975, x.size - 2) * ref.stderr
    assert fit.slope == pytest.approx(ref.slope, rel=1e-12)
    assert fit.intercept == pytest.approx(ref.intercept, rel=1e-12)
    assert (fit.low, fit.high) == (pytest.approx(ref.slope - half, rel=1e-10), pytest.approx(ref.slope + half, rel=1e-10))
    assert fit.r_squared == pytest.approx(ref.rvalue**2, rel=1e-12)
    assert fit.low < 0.7 < fit.high


def test_loglog_slope_of_an_exact_power_law():
    x = np.geomspace(10, 1e4, 12)
    fit = stats.loglog_slope(x, 3.0 * x**-0.5)
    assert fit.slope == pytest.approx(-0.5, abs=1e-12)
    assert math.exp(fit.intercept) == pytest.approx(3.0, rel=1e-10)
    assert fit.high - fit.low < 1e-9
    with pytest.raises(ValueError, match="> 0"):
        stats.loglog_slope([1, 2], [1, 0])


def test_bootstrap_slope_over_seeds_covers_the_true_exponent():
    rng = make_rng(8)
    x = np.geomspace(10, 1e4, 10)
    curves = np.exp(rng.normal(0, 0.2, size=(16, 1))) * 5.0 * x**-1.0 * np.exp(rng.normal(0, 0.05, size=(16, 10)))
    fit = stats.bootstrap_slope(x, curves, seed=0, n_resamples=500)
    assert fit.low < -1.0 < fit.high and fit.high - fit.low < 0.2
    assert fit.method == "bootstrap"


def test_growth_exponent_of_exp_one_over_8beta():
    betas = np.array([0.05, 0.03, 0.02, 0.015, 0.0125])
    fit = stats.growth_exponent(betas, 0.35 * np.exp(1.0 / (8.0 * betas)))
    assert fit.slope == pytest.approx(1.0, abs=1e-12)
    assert math.exp(fit.intercept) == pytest.approx(0.35, rel=1e-10)
    flat = stats.growth_exponent(betas, np.full(betas.size, 40.0))
    assert flat.slope == pytest.approx(0.0, abs=1e-12)


def test_censored_quantile_trend_recovers_exponential_growth_and_flags_censoring():
    rng = make_rng(9)
    betas = np.array([0.05, 0.03, 0.02, 0.015])
    budget = 3000
    durations, observed = [], []
    for beta in betas:
        # time of the first success of a p = exp(-1/(8 beta)) coin: median ~ ln2 e^{1/(8 beta)}
        first = rng.geometric(math.exp(-1.0 / (8.0 * beta)), size=200).astype(float)
        durations.append(np.minimum(first, budget))
        observed.append(first <= budget)
    trend = stats.censored_quantile_trend(1.0 / (8.0 * betas), durations, observed, q=0.5, n_resamples=300, seed=1)
    assert not trend.censored.any()
    assert trend.fit.low < 1.0 < trend.fit.high
    assert abs(trend.fit.slope - 1.0) < 0.15
    # a budget below the largest median censors it: that group leaves the point fit, flagged
    capped = [np.minimum(d, 1000.0) for d in durations]
    flags = [d < 1000.0 for d in capped]
    trend2 = stats.censored_quantile_trend(1.0 / (8.0 * betas), capped, flags, q=0.5, n_resamples=100, seed=1)
    assert list(trend2.censored) == [False, False, False, True]
    assert trend2.fit.n_points == 3
    # per-point intervals: the bootstrap percentile interval of each group's quantile, around its estimate;
    # a censored point's upper end is infinite
    for j in range(betas.size):
        assert trend.low[j] <= trend.quantiles[j] <= trend.high[j]
    assert np.isfinite(trend.high[:3]).all()  # (the last median, ~2,870, is near the 3,000 budget)
    assert trend2.high[3] == math.inf and np.isfinite(trend2.high[:3]).all()
    true_median = math.log(2) * np.exp(1.0 / (8.0 * betas[:2]))
    assert (trend.low[:2] < true_median).all() and (true_median < trend.high[:2]).all()


def test_tuned_curve_and_its_slopes():
    from xposim.harness.stats import bootstrap_tuned_slope, bootstrap_tuned_slope_difference, tuned_curve

    x = np.array([100.0, 1000.0, 10000.0])
    rng = np.random.default_rng(0)
    best = x ** -0.5
    # setting k is best at x index k; the others are worse by a factor 2
    cube = np.stack([np.where(np.arange(3) == k, best, 2 * best) for k in range(3)])[None].repeat(12, axis=0)
    cube = cube * (1 + 0.01 * rng.standard_normal(cube.shape))
    tuned = tuned_curve(cube)
    np.testing.assert_array_equal(tuned.index, [0, 1, 2])
    np.testing.assert_allclose(tuned.mean, best, rtol=0.02)
    assert np.all(tuned.low <= tuned.mean) and np.all(tuned.mean <= tuned.high)
    fit = bootstrap_tuned_slope(x, cube, n_resamples=300)
    assert fit.low <= fit.slope <= fit.high and fit.slope == pytest.approx(-0.5, abs=0.01) and fit.high < -0.45
    slower = cube * (x / x[0]) ** 0.3
    difference = bootstrap_tuned_slope_difference(x, slower, cube, n_resamples=300)
    assert difference.estimate == pytest.approx(0.3, abs=0.01) and difference.low > 0.25
    with pytest.raises(ValueError, match="shape"):
        tuned_curve(cube[0])
    with pytest.raises(ValueError, match="same seeds"):
        bootstrap_tuned_slope_difference(x, cube, cube[:5])
