"""One verdict per prediction: the record written to ``summary.json``.

A record holds the prediction's id and statement, the measured value with its interval, the
predicted value, and a verdict: ``"held"``, ``"not held"`` or ``"inconclusive"`` (too little
data, a censored quantity, or an interval that straddles the predicted boundary — see each
record's ``rule``). ``held`` is True, False or None accordingly.
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["prediction_record", "interval_verdict", "VERDICTS"]

VERDICTS = ("held", "not held", "inconclusive")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def prediction_record(
    prediction_id: str,
    statement: str,
    measured: float | None,
    low: float | None,
    high: float | None,
    predicted: float | str | None,
    verdict: str,
    rule: str,
    unit: str = "",
    detail: str = "",
    level: float = 0.95,
) -> dict[str, Any]:
    """A summary.json record; infinite bounds are written as the strings ``"inf"``/``"-inf"``."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    return {
        "id": prediction_id,
        "prediction": statement,
        "measured": {"value": _clean(measured), "low": _clean(low), "high": _clean(high), "level": level,
                     "unit": unit},
        "predicted": _clean(predicted),
        "verdict": verdict,
        "held": {"held": True, "not held": False, "inconclusive": None}[verdict],
        "rule": rule,
        "detail": detail,
    }


def interval_verdict(low: float, high: float, *, at_most: float | None = None, at_least: float | None = None) -> str:
    """Verdict of ``value <= at_most`` (or ``>= at_least``) from a confidence interval: held if the
    whole interval satisfies it, not held if the whole interval violates it, else inconclusive."""
    if (at_most is None) == (at_least is None):
        raise ValueError("give exactly one of at_most, at_least")
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (low, high)):
        return "inconclusive"
    if at_most is not None:
        if high <= at_most:
            return "held"
        if low > at_most:
            return "not held"
        return "inconclusive"
    if low >= at_least:
        return "held"
    if high < at_least:
        return "not held"
    return "inconclusive"
