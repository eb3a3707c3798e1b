import math

import numpy as np
import pytest
from scipy.special import expit, log_expit
from scipy.special import logsumexp as scipy_logsumexp

from xposim import numerics

pytestmark = pytest.mark.fast

Z = np.array([-1e308, -800.0, -40.0, -1.0, -1e-12, 0.0, 1e-12, 1.0, 40.0, 800.0, 1e308])


def test_log_sigmoid_matches_scipy_and_is_finite():
    got = np.array([numerics.log_sigmoid(z) for z in Z])
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, log_expit(Z), rtol=1e-14, atol=0)
    np.testing.assert_allclose(numerics.log_sigmoid_np(Z), log_expit(Z), rtol=1e-14, atol=0)


def test_sigmoid_and_softplus():
    got = np.array([numerics.sigmoid(z) for z in Z])
    np.testing.assert_allclose(got, expit(Z), rtol=1e-14, atol=0)
    assert numerics.softplus(0.0) == pytest.approx(math.log(2.0), abs=1e-15)
    assert numerics.softplus(1000.0) == pytest.approx(1000.0, rel=1e-15)


def test_logsumexp_and_logaddexp():
    rng = np.random.default_rng(0)
    for scale in (1e-3, 1.0, 1e3, 1e6):
        v = rng.normal(size=17) * scale
        assert numerics.logsumexp(v) == pytest.approx(scipy_logsumexp(v), rel=1e-13, abs=1e-13)
    v = np.array([-np.inf, 0.0, -np.inf])
    assert numerics.logsumexp(v) == 0.0
    assert numerics.logsumexp(np.array([-np.inf, -np.inf])) == -np.inf
    assert numerics.logaddexp(-np.inf, 3.0) == 3.0
    assert numerics.logaddexp(2.0, 3.0) == pytest.approx(np.logaddexp(2.0, 3.0), rel=1e-15)
    w = np.array([1.0, 2.0, 3.0])
    lse = numerics.log_softmax_inplace(w)
    assert lse == pytest.approx(scipy_logsumexp([1.0, 2.0, 3.0]), rel=1e-15)
    assert np.exp(w).sum() == pytest.approx(1.0, abs=1e-15)
