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
