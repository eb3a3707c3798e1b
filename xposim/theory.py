"""Closed-form predictions of the theory, to draw beside measured curves.

References are to *Exploratory Preference Optimization* (Xie et al., 2024; arXiv 2405.21046).
The *shape* of every bound here is stated by the paper; the exact constants and the power of the
logarithms are **reconstructed** ([R] in THEORY.md), so they are parameters (``constant``,
``log_power``) whose defaults are a documented choice, not the paper's numbers. A measured curve
lying below a bound with ``constant=1`` is evidence that the bound is loose (a result), not a bug.

Every formula is evaluated in the log domain: a value beyond float64 (for example
``e^{2 R_max}`` with ``R_max = 1000``) comes back as ``inf`` (a vacuous bound, an unreachable
horizon), a value below it as ``0.0``; no function raises ``OverflowError`` or returns NaN.
Arguments that are not finite numbers in their range are a ``ValueError`` naming the argument.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "xpo_suboptimality_bound",
    "xpo_sample_complexity",
    "xpo_alpha",
    "alpha_schedule",
    "separation_threshold",
    "two_arm_instance_summary",
    "online_dpo_miss_probability",
]


def _float(name: str, value: float, allowed: str) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond float64
        raise ValueError(f"{name} must be {allowed}, got an integer too large for float64") from None


def _positive(name: str, value: float) -> float:
    value = _float(name, value, "a finite number > 0")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _non_negative(name: str, value: float) -> float:
    value = _float(name, value, "a finite number >= 0")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _probability(name: str, value: float) -> float:
    value = _float(name, value, "in (0, 1)")
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return value


def _whole(name: str, value, low: int):
    """``value`` if it is an integer (an ``int`` or an integral finite float) ``>= low``."""
    try:
        whole = int(value) == value
    except (OverflowError, ValueError, TypeError):  # inf, nan, not a number
        whole = False
    if not whole or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def _exp(x: float) -> float:
    """``e^x``, ``inf`` when it exceeds float64 (``math.exp`` raises ``OverflowError`` there)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf



def _log_term(log_class_size: float, rounds: float, delta: float) -> float:
    """``log(|Pi| T / delta)`` computed as ``log|Pi| + log T - log delta`` (never below 1)."""
    return max(1.0, log_class_size + math.log(rounds) - math.log(delta))


def xpo_suboptimality_bound(
    rounds: float,
    coverability: float,
    r_max: float,
    v_max: float,
    log_class_size: float,
    delta: float = 0.05,
    constant: float = 1.0,
    log_power: float = 1.0,
) -> float:
    """Theorem 3.1 (XPO), shape [P], constants [R].

    ``J(pi*) - J(pi_hat) <= constant * (V_max + R_max) e^{2 R_max}
    * sqrt(C_cov * log(|Pi| T / delta) * log(T)^log_power / T)``.

    ``log_class_size`` is ``log|Pi|`` for a finite class (a covering number's log otherwise).
    ``log_power`` stands for the unspecified ``polylog(T)`` factor. No ``exp(1/beta)`` appears: the
    bound does not degrade as ``beta -> 0``. Computed as the exponential of the sum of the logs of
    the factors; ``inf`` when the bound exceeds float64 (e.g. ``R_max = 1000``: ``e^{2000}``).
    """
    rounds = _positive("rounds", rounds)
    coverability = _positive("coverability", coverability)
    r_max = _positive("r_max", r_max)
    v_max = _non_negative("v_max", v_max)
    log_class_size = _non_negative("log_class_size", log_class_size)
    delta = _probability("delta", delta)
    constant = _positive("constant", constant)
    log_power = _non_negative("log_power", log_power)
    log_polylog = log_power * math.log(max(1.0, math.log(rounds)))
    log_scale = math.log(v_max + r_max) + 2.0 * r_max
    log_root = 0.5 * (math.log(coverability) + math.log(_log_term(log_class_size, rounds, delta)) + log_polylog
                      - math.log(rounds))
    return _exp(math.log(constant) + log_scale + log_root)


def xpo_sample_complexity(
    epsilon: float,
    coverability: float,
    r_max: float,
    v_max: float,
    log_class_size: float,
    delta: float = 0.05,
    constant: float = 1.0,
) -> float:
    """Theorem 3.1's sample complexity, shape [P], constant [R], logs of ``T`` dropped:

    ``T(eps) = constant * (V_max + R_max)^2 e^{4 R_max} C_cov log(|Pi| / delta) / eps^2``

    (log domain; ``inf`` beyond float64).
    """
    epsilon = _positive("epsilon", epsilon)
    coverability = _positive("coverability", coverability)
    r_max = _positive("r_max", r_max)
    v_max = _non_negative("v_max", v_max)
    log_class_size = _non_negative("log_class_size", log_class_size)
    delta = _probability("delta", delta)
    constant = _positive("constant", constant)
    log_term = max(1.0, log_class_size - math.log(delta))
    return _exp(math.log(constant) + 2.0 * math.log(v_max + r_max) + 4.0 * r_max + math.log(coverability)
                + math.log(log_term) - 2.0 * math.log(epsilon))


def xpo_alpha(
    beta: float,
    rounds: float,
    coverability: float,
    r_max: float,
    v_max: float,
    log_class_size: float,
    delta: float = 0.05,
    constant: float = 1.0,
) -> float:
    """The tuned bonus weight of Theorem 3.1, shape [P], constant [R]:

    ``alpha = constant * beta / ((V_max + R_max) e^{2 R_max}) * sqrt(log(|Pi| T / delta) / (C_cov T))``.

    It is proportional to ``beta / sqrt(T)``: the best ``alpha`` shrinks like ``1/sqrt(T)`` and
    scales with ``beta`` (prediction E5). Log domain: ``0.0`` when ``e^{2 R_max}`` exceeds float64.
    """
    beta = _positive("beta", beta)
    rounds = _positive("rounds", rounds)
    coverability = _positive("coverability", coverability)
    r_max = _positive("r_max", r_max)
    v_max = _non_negative("v_max", v_max)
    log_class_size = _non_negative("log_class_size", log_class_size)
    delta = _probability("delta", delta)
    constant = _positive("constant", constant)
    log_scale = math.log(v_max + r_max) + 2.0 * r_max
    log_root = 0.5 * (math.log(_log_term(log_class_size, rounds, delta)) - math.log(coverability) - math.log(rounds))
    return _exp(math.log(constant) + math.log(beta) - log_scale + log_root)


@dataclass(frozen=True)
class alpha_schedule:
    """``alpha(t) = constant * beta / sqrt(horizon)``, the ``c beta / sqrt(T)`` shape of Theorem 3.1.

    With ``horizon=None`` the schedule is anytime: ``alpha(t) = constant * beta / sqrt(t)``.
    Calling the schedule with the round index ``t >= 1`` returns ``alpha(t)`` (``horizon`` and
    ``t`` may be integers beyond float64).
    """

    constant: float
    beta: float
    horizon: int | None = None

    def __post_init__(self) -> None:
        _positive("constant", self.constant)
        _positive("beta", self.beta)
        if self.horizon is not None:
            try:
                _whole("horizon", self.horizon, 1)
            except ValueError:
                raise ValueError(f"horizon must be an integer >= 1 or None, got {self.horizon!r}") from None

    def __call__(self, t: int) -> float:
        try:
            t_ok = math.isfinite(t) and t >= 1
        except OverflowError:  # an int beyond float64
            t_ok = t >= 1
        except TypeError:
            t_ok = False
        if not t_ok:
            raise ValueError(f"round index t must be a finite number >= 1, got {t!r}")
        n = self.horizon if self.horizon is not None else t
        try:
            root = math.sqrt(n)
        except OverflowError:  # an int beyond float64: sqrt(n) = e^{log(n)/2} (math.log takes such ints)
            root = _exp(0.5 * math.log(n))
        return self.constant * self.beta / root


def separation_threshold(beta: float) -> float:
    """Proposition 2.1's horizon ``(1/2) exp(1/(8 beta))`` [P]: up to this many rounds online DPO
    stays at suboptimality ``>= 1/8`` with constant probability on the two-arm instance.
    ``inf`` when it exceeds float64 (``beta`` below about ``1.76e-4``)."""
    beta = _positive("beta", beta)
    return 0.5 * _exp(0.125 / beta)


def online_dpo_miss_probability(beta: float, rounds: int, draws_per_round: int = 2) -> float:
    """Probability that online DPO never draws the good arm in ``rounds`` rounds on the two-arm
    instance while its iterate stays at ``pi_ref``: ``(1 - pi_ref(a))^(draws_per_round * rounds)``
    with ``pi_ref(a) = exp(-1/(8 beta))`` (the mechanism of Proposition 2.1; until the good arm is
    drawn every pair is ``(b, b)``, whose DPO loss is constant).

    Computed as ``exp(n log(1 - pi_ref(a)))`` with ``n = draws_per_round * rounds`` (an exact
    integer, possibly beyond float64) and ``log(1 - pi_ref(a))`` from ``log1p`` or ``expm1``,
    whichever is exact at ``beta``."""
    beta = _positive("beta", beta)
    try:
        _whole("rounds", rounds, 0)
    except ValueError:
        raise ValueError(f"rounds must be a non-negative integer, got {rounds!r}") from None
    _whole("draws_per_round", draws_per_round, 0)
    log_good = -0.125 / beta
    p_good = math.exp(log_good)
    log_miss = math.log1p(-p_good) if p_good < 0.5 else math.log(-math.expm1(log_good))  # log(1 - pi_ref(a)) < 0
    draws = int(draws_per_round) * int(rounds)
    if draws == 0 or log_miss == 0.0:  # no draw, or pi_ref(a) below float64's smallest number
        return 1.0
    try:
        return _exp(float(draws) * log_miss)
    except OverflowError:  # more draws than float64 holds: the miss probability underflows
        return 0.0


def two_arm_instance_summary(beta: float) -> dict[str, float]:
    """Closed-form quantities of the Proposition 2.1 instance (``r(a) = 1``, ``r(b) = 1/2``,
    ``pi_ref(a) = exp(-1/(8 beta))``), computed in the log domain:

    * ``ref_prob_good``: ``pi_ref(a)``;
    * ``optimal_prob_good``: ``pi*_beta(a) = sigma(d)`` with
      ``d = log pi_ref(a) - log pi_ref(b) + 1/(2 beta) = 3/(8 beta) - log pi_ref(b)``;
    * ``gap``: ``J(pi*) - J(pi_ref) = beta * KL(pi_ref || pi*)`` (THEORY 2.1.2), evaluated as
      ``beta log Z - E_ref[r]`` with ``Z = sum_y pi_ref(y) e^{r(y)/beta}``, which simplifies to
      ``3/8 - pi_ref(a)/2 + beta * log(1 + e^{-d})`` (no ``1/beta`` left to overflow as
      ``beta -> 0``, where the gap tends to ``3/8``; clipped at ``0`` against rounding as
      ``beta -> inf``);
    * ``threshold``: ``(1/2) exp(1/(8 beta))`` (``inf`` beyond float64).

    The exact solver (:func:`xposim.solve`) reproduces these numbers; this function exists so the
    harness can draw predictions without building an environment.
    """
    beta = _positive("beta", beta)
    log_a = -0.125 / beta  # log pi_ref(a) = -1/(8 beta); -inf only for subnormal beta (pi_ref(a) = 0 then)
    log_b = math.log(-math.expm1(log_a))  # log pi_ref(b) = log(1 - pi_ref(a))
    d = 0.375 / beta - log_b  # > 0; inf when 3/(8 beta) exceeds float64
    softplus_minus_d = math.log1p(math.exp(-d))  # log(1 + e^{-d}) = -log pi*(a)
    p_a = math.exp(log_a)
    return {
        "beta": beta,
        "ref_prob_good": p_a,
        "optimal_prob_good": math.exp(-softplus_minus_d),
        "gap": max(0.0, 0.375 - 0.5 * p_a + beta * softplus_minus_d),
        "threshold": separation_threshold(beta),
    }
