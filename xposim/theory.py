"""Closed-form predictions of the theory, to draw beside measured curves.

References are to *Exploratory Preference Optimization* (Xie et al., 2024; arXiv 2405.21046).
The *shape* of every bound here is stated by the paper; the exact constants and the power of the
logarithms are **reconstructed** ([R] in THEORY.md), so they are parameters (``constant``,
``log_power``) whose defaults are a documented choice, not the paper's numbers. A measured curve
lying below a bound with ``constant=1`` is evidence that the bound is loose (a result), not a bug.
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


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _non_negative(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _probability(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return value


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
    bound does not degrade as ``beta -> 0``.
    """
    rounds = _positive("rounds", rounds)
    coverability = _positive("coverability", coverability)
    r_max = _positive("r_max", r_max)
    v_max = _non_negative("v_max", v_max)
    log_class_size = _non_negative("log_class_size", log_class_size)
    delta = _probability("delta", delta)
    constant = _positive("constant", constant)
    log_power = _non_negative("log_power", log_power)
    polylog = max(1.0, math.log(rounds)) ** log_power
    scale = (v_max + r_max) * math.exp(2.0 * r_max)
    return constant * scale * math.sqrt(coverability * _log_term(log_class_size, rounds, delta) * polylog / rounds)


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

    ``T(eps) = constant * (V_max + R_max)^2 e^{4 R_max} C_cov log(|Pi| / delta) / eps^2``.
    """
    epsilon = _positive("epsilon", epsilon)
    coverability = _positive("coverability", coverability)
    r_max = _positive("r_max", r_max)
    v_max = _non_negative("v_max", v_max)
    log_class_size = _non_negative("log_class_size", log_class_size)
    delta = _probability("delta", delta)
    constant = _positive("constant", constant)
    log_term = max(1.0, log_class_size - math.log(delta))
    return constant * (v_max + r_max) ** 2 * math.exp(4.0 * r_max) * coverability * log_term / epsilon**2


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
    scales with ``beta`` (prediction E5).
    """
    beta = _positive("beta", beta)
    rounds = _positive("rounds", rounds)
    coverability = _positive("coverability", coverability)
    r_max = _positive("r_max", r_max)
    v_max = _non_negative("v_max", v_max)
    log_class_size = _non_negative("log_class_size", log_class_size)
    delta = _probability("delta", delta)
    constant = _positive("constant", constant)
    scale = (v_max + r_max) * math.exp(2.0 * r_max)
    return constant * beta / scale * math.sqrt(_log_term(log_class_size, rounds, delta) / (coverability * rounds))


@dataclass(frozen=True)
class alpha_schedule:
    """``alpha(t) = constant * beta / sqrt(horizon)``, the ``c beta / sqrt(T)`` shape of Theorem 3.1.

    With ``horizon=None`` the schedule is anytime: ``alpha(t) = constant * beta / sqrt(t)``.
    Calling the schedule with the round index ``t >= 1`` returns ``alpha(t)``.
    """

    constant: float
    beta: float
    horizon: int | None = None

    def __post_init__(self) -> None:
        _positive("constant", self.constant)
        _positive("beta", self.beta)
        if self.horizon is not None and (int(self.horizon) != self.horizon or self.horizon < 1):
            raise ValueError(f"horizon must be an integer >= 1 or None, got {self.horizon!r}")

    def __call__(self, t: int) -> float:
        if t < 1:
            raise ValueError(f"round index t must be >= 1, got {t!r}")
        return self.constant * self.beta / math.sqrt(self.horizon if self.horizon is not None else t)


def separation_threshold(beta: float) -> float:
    """Proposition 2.1's horizon ``(1/2) exp(1/(8 beta))`` [P]: up to this many rounds online DPO
    stays at suboptimality ``>= 1/8`` with constant probability on the two-arm instance."""
    beta = _positive("beta", beta)
    return 0.5 * math.exp(1.0 / (8.0 * beta))


def online_dpo_miss_probability(beta: float, rounds: int, draws_per_round: int = 2) -> float:
    """Probability that online DPO never draws the good arm in ``rounds`` rounds on the two-arm
    instance while its iterate stays at ``pi_ref``: ``(1 - pi_ref(a))^(draws_per_round * rounds)``
    with ``pi_ref(a) = exp(-1/(8 beta))`` (the mechanism of Proposition 2.1; until the good arm is
    drawn every pair is ``(b, b)``, whose DPO loss is constant)."""
    beta = _positive("beta", beta)
    if int(rounds) != rounds or rounds < 0:
        raise ValueError(f"rounds must be a non-negative integer, got {rounds!r}")
    p_good = math.exp(-1.0 / (8.0 * beta))
    return math.exp(draws_per_round * rounds * math.log1p(-p_good))


def two_arm_instance_summary(beta: float) -> dict[str, float]:
    """Closed-form quantities of the Proposition 2.1 instance (``r(a) = 1``, ``r(b) = 1/2``,
    ``pi_ref(a) = exp(-1/(8 beta))``), computed in the log domain:

    * ``ref_prob_good``: ``pi_ref(a)``;
    * ``optimal_prob_good``: ``pi*_beta(a) = sigma(log pi_ref(a) - log pi_ref(b) + 1/(2 beta))``;
    * ``gap``: ``J(pi*) - J(pi_ref) = beta * KL(pi_ref || pi*)`` (THEORY 2.1.2);
    * ``threshold``: ``(1/2) exp(1/(8 beta))``.

    The exact solver (:func:`xposim.solve`) reproduces these numbers; this function exists so the
    harness can draw predictions without building an environment.
    """
    beta = _positive("beta", beta)
    log_a = -1.0 / (8.0 * beta)
    log_b = math.log(-math.expm1(log_a))
    # log pi*(a), log pi*(b) via a two-term log-softmax of log pi_ref + r / beta.
    za, zb = log_a + 1.0 / beta, log_b + 0.5 / beta
    m = max(za, zb)
    log_norm = m + math.log(math.exp(za - m) + math.exp(zb - m))
    log_star_a, log_star_b = za - log_norm, zb - log_norm
    p_a, p_b = math.exp(log_a), math.exp(log_b)
    kl = p_a * (log_a - log_star_a) + p_b * (log_b - log_star_b)
    return {
        "beta": beta,
        "ref_prob_good": p_a,
        "optimal_prob_good": math.exp(log_star_a),
        "gap": beta * kl,
        "threshold": separation_threshold(beta),
    }
