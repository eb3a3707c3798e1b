"""Preference oracles: formulas, extremes, sampling frequencies, numba path, factory."""
import math

import numpy as np
import pytest
from scipy.special import expit, ndtr

from xposim.oracles import (
    ARGMAX_CODE,
    BRADLEY_TERRY_CODE,
    PROBIT_CODE,
    Argmax,
    BradleyTerry,
    PreferenceOracle,
    Probit,
    first_wins_code,
    make_oracle,
    oracle_from_code,
    preference_probability_code,
)

pytestmark = pytest.mark.fast

R1 = np.array([0.0, 1.0, 0.5, -3.0, 1e6, -1e6, 1e300, 0.25, 2.0])
R2 = np.array([0.0, 0.5, 1.0, 2.0, -1e6, 1e6, -1e300, 0.25, 2.0 + 1e-12])
ORACLES = [BradleyTerry(), BradleyTerry(temperature=0.3), Argmax(), Probit(), Probit(scale=2.5)]


def test_probabilities_match_the_formulas():
    np.testing.assert_allclose(BradleyTerry().preference_probability(R1, R2), expit(R1 - R2), rtol=1e-14, atol=0)
    np.testing.assert_allclose(
        BradleyTerry(temperature=0.3).preference_probability(R1, R2), expit((R1 - R2) / 0.3), rtol=1e-14, atol=0
    )
    np.testing.assert_allclose(Probit(scale=2.5).preference_probability(R1, R2), ndtr((R1 - R2) / 2.5), rtol=1e-14)
    assert BradleyTerry().preference_probability(1.0, 0.0) == pytest.approx(1 / (1 + math.exp(-1.0)), rel=1e-15)
    assert Probit().preference_probability(1.0, 0.0) == pytest.approx(0.5 * math.erfc(-1 / math.sqrt(2)), rel=1e-15)
    expected_argmax = (R1 >= R2).astype(float)
    assert np.array_equal(Argmax().preference_probability(R1, R2), expected_argmax)


@pytest.mark.parametrize("oracle", ORACLES, ids=repr)
def test_extremes_are_finite_and_symmetric(oracle):
    p = oracle.preference_probability(R1, R2)
    assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))
    assert p[4] == 1.0 and p[5] == 0.0  # huge reward differences saturate exactly
    if not isinstance(oracle, Argmax):
        q = oracle.preference_probability(R2, R1)
        np.testing.assert_allclose(p + q, 1.0, rtol=0, atol=1e-15)
        assert p[0] == 0.5
    # broadcasting over arrays of rewards
    assert oracle.preference_probability(np.zeros((3, 1)), np.zeros(4)).shape == (3, 4)
    with pytest.raises(ValueError, match="rewards r1 and r2 must be finite"):
        oracle.preference_probability([np.nan], [0.0])
    assert isinstance(oracle, PreferenceOracle)


def test_argmax_ties_go_to_the_first_response():
    rewards = np.array([0.0, 0.3, 1.0])
    assert np.all(Argmax().preference_probability(rewards, rewards) == 1.0)
    assert np.all(Argmax().sample(np.random.default_rng(0), rewards, rewards))
    assert not Argmax().sample(np.random.default_rng(0), 0.0, 1e-300)
    assert first_wins_code(ARGMAX_CODE, 0.0, 0.5, 0.5, 0.999999)


@pytest.mark.parametrize("oracle", [BradleyTerry(), BradleyTerry(temperature=2.0), Probit(scale=0.7)], ids=repr)
def test_sample_frequencies(oracle):
    rng = np.random.default_rng(2024)
    n = 200_000
    gaps = np.array([-2.0, -0.5, 0.0, 0.3, 1.5])
    for gap in gaps:
        labels = oracle.sample(rng, np.full(n, gap), np.zeros(n))
        assert labels.dtype == np.bool_ and labels.shape == (n,)
        p = float(oracle.preference_probability(gap, 0.0))
        # 5 standard errors: a false alarm has probability < 1e-6 per check
        assert abs(labels.mean() - p) <= 5.0 * math.sqrt(p * (1 - p) / n)


def test_sample_is_determined_by_the_generator():
    oracle = BradleyTerry()
    r1, r2 = np.linspace(-1, 1, 50), np.zeros(50)
    a = oracle.sample(np.random.default_rng(9), r1, r2)
    b = oracle.sample(np.random.default_rng(9), r1, r2)
    assert np.array_equal(a, b)
    u = np.random.default_rng(9).random(50)
    assert np.array_equal(a, u < oracle.preference_probability(r1, r2))


@pytest.mark.parametrize("oracle", ORACLES, ids=repr)
def test_numba_code_path_agrees(oracle):
    rng = np.random.default_rng(1)
    r1 = np.concatenate([R1, rng.normal(size=200) * 3])
    r2 = np.concatenate([R2, rng.normal(size=200) * 3])
    vectorized = oracle.preference_probability(r1, r2)
    scalar = np.array([preference_probability_code(oracle.code, oracle.parameter, a, b) for a, b in zip(r1, r2)])
    np.testing.assert_allclose(scalar, vectorized, rtol=1e-13, atol=1e-300)
    u = np.random.default_rng(5).random(r1.shape)
    jitted_labels = np.array([first_wins_code(oracle.code, oracle.parameter, a, b, w) for a, b, w in zip(r1, r2, u)])
    assert np.array_equal(jitted_labels, oracle.sample(np.random.default_rng(5), r1, r2))
    assert oracle_from_code(oracle.code, oracle.parameter) == oracle


def test_codes_and_factory():
    assert {BradleyTerry().code, Argmax().code, Probit().code} == {BRADLEY_TERRY_CODE, ARGMAX_CODE, PROBIT_CODE}
    assert make_oracle("bt") == BradleyTerry() and make_oracle("bradley_terry", temperature=2.0) == BradleyTerry(2.0)
    assert make_oracle("argmax") == Argmax() and make_oracle("Probit", scale=3.0) == Probit(3.0)
    with pytest.raises(ValueError, match=r"oracle name must be one of \['argmax', 'bradley_terry', 'bt', 'probit'\]"):
        make_oracle("plackett")
    with pytest.raises(ValueError, match="bad parameters"):
        make_oracle("argmax", temperature=1.0)
    for bad in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="temperature must be a finite real number > 0"):
            BradleyTerry(temperature=bad)
        with pytest.raises(ValueError, match="scale must be a finite real number > 0"):
            Probit(scale=bad)
    with pytest.raises(ValueError, match="oracle code must be one of"):
        oracle_from_code(7, 1.0)
    with pytest.raises(ValueError, match="unknown oracle code"):
        preference_probability_code(7, 1.0, 0.0, 0.0)
