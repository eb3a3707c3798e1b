"""The shared argument checks (xposim.validation): one message format, booleans are not numbers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from xposim.validation import check_int, check_nonnegative, check_open_probability, check_positive


@pytest.mark.fast
def test_checks_convert_and_refuse_with_the_argument_named():
    assert check_positive(np.float32(0.5), "beta") == 0.5 and type(check_positive(2, "beta")) is float
    assert check_nonnegative(0, "alpha") == 0.0
    assert check_int(np.int64(3), "rounds", 1) == 3 and type(check_int(np.int64(3), "rounds", 1)) is int
    assert check_open_probability(0.25, "p") == 0.25
    for bad in (0.0, -1.0, math.inf, math.nan, True, "1", None):
        with pytest.raises(ValueError, match=r"^beta must be a finite real number > 0, got "):
            check_positive(bad, "beta")
    for bad in (-1e-300, math.nan, np.bool_(False)):
        with pytest.raises(ValueError, match=r"^alpha must be a finite real number >= 0, got "):
            check_nonnegative(bad, "alpha")
    for bad in (0, 1.0, True, "2"):
        with pytest.raises(ValueError, match=r"^rounds must be an integer >= 1, got "):
            check_int(bad, "rounds", 1)
    for bad in (1.0, 0.0, 2.0):
        with pytest.raises(ValueError, match=r"^p must "):
            check_open_probability(bad, "p")
