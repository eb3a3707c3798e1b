import math

import pytest

from xposim import theory

pytestmark = pytest.mark.fast


def _round_sig(x: float, digits: int) -> float:
    return float(f"{x:.{digits}g}")


@pytest.mark.parametrize(
    # THEORY.md 6.2 table, each entry compared at the precision it is printed with
    # (value, significant digits); pi*(a) at beta = 0.02 is printed as "≈1".
    "beta, ref_a, star_a, gap, threshold",
    [
        (0.02, (1.9e-3, 2), (1.0, 3), (0.374, 3), (259, 3)),
        (0.05, (8.2e-2, 2), (0.9995, 4), (0.334, 3), (6.1, 2)),
        (0.10, (0.29, 2), (0.98, 2), (0.233, 3), (1.75, 3)),
    ],
)
def test_two_arm_summary_matches_theory_table(beta, ref_a, star_a, gap, threshold):
    s = theory.two_arm_instance_summary(beta)
    for key, (printed, digits) in [
        ("ref_prob_good", ref_a), ("optimal_prob_good", star_a), ("gap", gap), ("threshold", threshold)
    ]:
        assert _round_sig(s[key], digits) == pytest.approx(printed, rel=1e-12), key


def test_gap_exceeds_eighth_only_for_small_beta():
    assert theory.two_arm_instance_summary(0.18)["gap"] > 1 / 8
    assert theory.two_arm_instance_summary(0.25)["gap"] < 1 / 8


def test_bound_shapes():
    kw = dict(coverability=2.0, r_max=1.0, v_max=1.0, log_class_size=math.log(10))
    b1 = theory.xpo_suboptimality_bound(1e4, log_power=0.0, **kw)
    b2 = theory.xpo_suboptimality_bound(4e4, log_power=0.0, **kw)
    # 1/sqrt(T) up to the log(T) inside log(|Pi| T / delta).
    assert 0.5 < b2 / b1 < 0.56
    c1 = theory.xpo_suboptimality_bound(1e4, **{**kw, "coverability": 8.0}, log_power=0.0)
    assert c1 / b1 == pytest.approx(2.0, rel=1e-12)
    n1 = theory.xpo_sample_complexity(0.1, **kw)
    assert theory.xpo_sample_complexity(0.05, **kw) / n1 == pytest.approx(4.0, rel=1e-12)
    a1 = theory.xpo_alpha(0.1, 1e4, **kw)
    assert theory.xpo_alpha(0.2, 1e4, **kw) / a1 == pytest.approx(2.0, rel=1e-12)


def test_alpha_schedule_and_miss_probability():
    s = theory.alpha_schedule(constant=2.0, beta=0.1, horizon=100)
    assert s(1) == s(50) == pytest.approx(0.02)
    anytime = theory.alpha_schedule(constant=1.0, beta=0.1)
    assert anytime(4) == pytest.approx(0.05)
    p = theory.online_dpo_miss_probability(0.02, 100)
    assert p == pytest.approx((1 - math.exp(-1 / 0.16)) ** 200, rel=1e-12)
    assert 0.6 < p < 0.7


@pytest.mark.parametrize(
    "call",
    [
        lambda: theory.separation_threshold(0.0),
        lambda: theory.xpo_alpha(-1.0, 10, 1.0, 1.0, 1.0, 1.0),
        lambda: theory.xpo_suboptimality_bound(10, 1.0, 1.0, 1.0, 1.0, delta=1.5),
        lambda: theory.alpha_schedule(constant=1.0, beta=0.1, horizon=0),
        lambda: theory.alpha_schedule(constant=1.0, beta=0.1)(0),
    ],
)
def test_bad_input_names_argument(call):
    with pytest.raises(ValueError, match=r"(beta|delta|horizon|round)"):
        call()


def test_formulas_beyond_float64_return_inf_or_zero_never_overflow():
    """e^{2 R_max}, e^{4 R_max}, e^{1/(8 beta)}, eps^-2, polylog^power beyond float64: inf (a vacuous
    bound / unreachable horizon) or 0.0, never OverflowError, ZeroDivisionError or NaN."""
    assert theory.xpo_suboptimality_bound(100, 1.0, 1000.0, 1.0, 1.0) == math.inf
    assert theory.xpo_suboptimality_bound(1e6, 1.0, 1.0, 1.0, 1.0, log_power=1e4) == math.inf
    assert theory.xpo_suboptimality_bound(100, 1.0, 1e308, 1e308, 1.0) == math.inf
    assert theory.xpo_sample_complexity(0.1, 1.0, 1000.0, 1.0, 1.0) == math.inf
    assert theory.xpo_sample_complexity(1e-200, 1.0, 1.0, 1.0, 1.0) == math.inf
    assert theory.xpo_sample_complexity(0.1, 1.0, 1.0, 1e200, 1.0) == math.inf
    assert theory.xpo_alpha(0.1, 100, 1.0, 1000.0, 1.0, 1.0) == 0.0
    assert theory.separation_threshold(1e-4) == math.inf
    assert theory.alpha_schedule(1.0, 0.1, horizon=10**400)(1) == pytest.approx(1e-201, rel=1e-12)
    assert theory.alpha_schedule(1.0, 0.1)(10**400) == pytest.approx(1e-201, rel=1e-12)
    assert theory.online_dpo_miss_probability(0.1, 10**400) == 0.0
    assert theory.online_dpo_miss_probability(1e-5, 10**400) == 1.0  # pi_ref(a) = e^{-12500} is 0.0 in float64
    # beta -> 0: pi*(a) -> 1, gap -> 3/8 (THEORY 6.2), threshold beyond float64; beta -> inf: pi* = pi_ref
    for beta in (1e-4, 1e-309, 5e-324):
        s = theory.two_arm_instance_summary(beta)
        assert s == {"beta": beta, "ref_prob_good": 0.0, "optimal_prob_good": 1.0, "gap": 0.375, "threshold": math.inf}
    s = theory.two_arm_instance_summary(1e308)
    assert s["ref_prob_good"] == s["optimal_prob_good"] == 1.0 and 0.0 <= s["gap"] < 1e-12 and s["threshold"] == 0.5


def test_log_domain_formulas_equal_the_direct_products():
    """Where the direct products are representable they agree with the log-domain evaluation."""
    kw = dict(coverability=3.0, r_max=2.0, v_max=1.5, log_class_size=4.0, delta=0.1, constant=0.7)
    log_term = kw["log_class_size"] + math.log(1e4) - math.log(0.1)
    direct = 0.7 * 3.5 * math.exp(4.0) * math.sqrt(3.0 * log_term * math.log(1e4) ** 1.5 / 1e4)
    assert theory.xpo_suboptimality_bound(1e4, **kw, log_power=1.5) == pytest.approx(direct, rel=1e-13)
    direct = 0.7 * 3.5**2 * math.exp(8.0) * 3.0 * (4.0 - math.log(0.1)) / 0.05**2
    assert theory.xpo_sample_complexity(0.05, **kw) == pytest.approx(direct, rel=1e-13)
    direct = 0.7 * 0.2 / (3.5 * math.exp(4.0)) * math.sqrt(log_term / (3.0 * 1e4))
    assert theory.xpo_alpha(0.2, 1e4, **kw) == pytest.approx(direct, rel=1e-13)


@pytest.mark.parametrize("beta", [0.05, 0.1, 0.3, 1.0, 3.0])
def test_two_arm_gap_is_beta_times_kl(beta):
    """gap = beta KL(pi_ref || pi*) from the two probabilities, and pi*(a) = sigma(log-odds)."""
    s = theory.two_arm_instance_summary(beta)
    p, q = s["ref_prob_good"], s["optimal_prob_good"]
    kl = p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
    assert s["gap"] == pytest.approx(beta * kl, rel=1e-9)
    log_odds = math.log(p / (1 - p)) + 0.5 / beta
    assert q == pytest.approx(1 / (1 + math.exp(-log_odds)), rel=1e-14)


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: theory.alpha_schedule(constant=1.0, beta=0.1, horizon=math.inf), "horizon"),
        (lambda: theory.alpha_schedule(constant=1.0, beta=0.1)(math.nan), "round index t"),
        (lambda: theory.online_dpo_miss_probability(0.1, math.inf), "rounds"),
        (lambda: theory.online_dpo_miss_probability(0.1, math.nan), "rounds"),
        (lambda: theory.online_dpo_miss_probability(0.1, 10, draws_per_round=-1), "draws_per_round"),
        (lambda: theory.xpo_suboptimality_bound(10**400, 1.0, 1.0, 1.0, 1.0), "rounds"),
    ],
)
def test_non_finite_or_out_of_range_arguments_are_value_errors(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()
