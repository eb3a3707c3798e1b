"""Tests of xposim.losses (THEORY.md 4.1-4.5) against the numpy reference, finite differences,
closed-form reductions and the sign conventions of THEORY 4.5 "Pitfalls"."""
from __future__ import annotations

import math

import numpy as np
import pytest

from xposim import losses as L
from xposim.reference import losses_numpy as ref
from xposim.seeding import make_rng

PAIRS = ["dpo", "ipo", "chipo"]
BONUSES = ["none", "xpo", "vpo", "selm", "popo", "copo"]
DOWN_BONUSES = ["xpo", "vpo", "selm", "popo"]  # push log pi(y) down
EPS = np.finfo(np.float64).eps
TINY = 1e-290  # absolute floor: results this small are subnormal-range, relative error meaningless
fast = pytest.mark.fast


# ------------------------------------------------------------------------------------ helpers
def scalar_pair(name, lc, lr, beta, param, hessian=False):
    """Apply the jitted scalar dispatcher element by element."""
    fn = L.pair_loss_hessian if hessian else L.pair_loss
    kind = L.pair_kind(name)
    out = np.array([fn(kind, float(a), float(b), float(bt), float(p))
                    for a, b, bt, p in np.broadcast(lc, lr, beta, param)])
    return out[:, 0], out[:, 1], out[:, 2]


def scalar_bonus(name, logp, logp_ref, alpha, beta, weight, hessian=False):
    kind = L.bonus_kind(name)
    if hessian:
        return np.array([L.bonus_loss_hessian(kind, float(a), float(b), float(al), float(bt), float(w))
                         for a, b, al, bt, w in np.broadcast(logp, logp_ref, alpha, beta, weight)])
    out = np.array([L.bonus_loss(kind, float(a), float(b), float(al), float(bt), float(w))
                    for a, b, al, bt, w in np.broadcast(logp, logp_ref, alpha, beta, weight)])
    return out[:, 0], out[:, 1]


def log_uniform(rng, lo, hi, n):
    return 10.0 ** rng.uniform(np.log10(lo), np.log10(hi), n)


def extreme_pairs(rng, n):
    """Log-ratios with |l| up to 1e3 (several magnitudes, exact ties, near ties), beta in [1e-4, 1e4]."""
    mag = log_uniform(rng, 1e-6, 1e3, n) * rng.choice([-1.0, 1.0], n)
    lc = mag.copy()
    lr = log_uniform(rng, 1e-6, 1e3, n) * rng.choice([-1.0, 1.0], n)
    tie = rng.random(n) < 0.15
    lr[tie] = lc[tie]
    near = (rng.random(n) < 0.15) & ~tie
    lr[near] = lc[near] + rng.normal(size=near.sum()) * 1e-6
    lc[:8] = [1e3, -1e3, 0.0, 1e3, -1e3, 700.0, 300.0, -1e3]
    lr[:8] = [-1e3, 1e3, 0.0, 1e3, -1e3, 700.0, 300.0, -1e3]
    beta = log_uniform(rng, 1e-4, 1e4, n)
    return lc, lr, beta


def pair_param_for(name, rng, n):
    if name == "ipo":
        return log_uniform(rng, 1e-4, 1e4, n)
    if name == "chipo":
        return log_uniform(rng, 0.1, 10.0, n)
    return np.zeros(n)


def assert_close(got, want, rtol=1e-12, atol=TINY, what=""):
    got, want = np.asarray(got), np.asarray(want)
    ok = np.abs(got - want) <= rtol * np.abs(want) + atol
    if not np.all(ok):
        i = np.flatnonzero(~ok)[:5]
        raise AssertionError(f"{what}: mismatch at {i}: got {got[i]}, want {want[i]}")


# -------------------------------------------------------------------- kernels vs numpy reference
@pytest.mark.parametrize("name", PAIRS)
def test_pair_kernels_match_reference_on_extreme_inputs(name):
    rng = make_rng(11)
    n = 600
    lc, lr, beta = extreme_pairs(rng, n)
    param = pair_param_for(name, rng, n)
    got = scalar_pair(name, lc, lr, beta, param)
    want = ref.pair_loss(name, lc, lr, beta, param)
    for g, w, what in zip(got, want, ("loss", "d_chosen", "d_rejected")):
        assert not np.any(np.isnan(g)), f"{name} {what} has NaN"
        exact_ok = np.isfinite(w)
        assert np.all(np.isfinite(g[exact_ok])), f"{name} {what} not finite where the exact value is"
        assert_close(g[exact_ok], w[exact_ok], what=f"{name} {what}")
    if name != "chipo":
        assert all(np.all(np.isfinite(g)) for g in got)
    else:
        # only an unclipped pair with beta e^l beyond float64 may overflow (ties at l ~ 1e3)
        bad = ~np.isfinite(got[1]) | ~np.isfinite(got[2])
        assert np.all(lc[bad] == lr[bad]) and np.all(lc[bad] + np.log(beta[bad]) > 700.0)
        assert np.all(np.isfinite(got[0]))
        assert np.mean(got[1] == 0.0) > 0.3  # the clip is active on many extreme pairs


@pytest.mark.parametrize("name", PAIRS)
def test_pair_hessians_match_reference(name):
    rng = make_rng(12)
    n = 600
    lc, lr, beta = extreme_pairs(rng, n)
    param = pair_param_for(name, rng, n)
    got = scalar_pair(name, lc, lr, beta, param, hessian=True)
    want = ref.pair_loss_hessian(name, lc, lr, beta, param)
    if name == "chipo":
        # d2/dl_c^2 is a difference of two terms; compare relative to their size
        u = ref.chipo_margin(lc, lr, beta)
        with np.errstate(over="ignore"):
            scale = (beta * (1 + np.exp(lc))) ** 2 * 0.25 + beta * np.exp(lc)
    for k, (g, w) in enumerate(zip(got, want)):
        assert not np.any(np.isnan(g))
        ok = np.isfinite(w)
        if name == "chipo" and k == 0:
            ok &= np.isfinite(scale)
            assert np.all(np.abs(g[ok] - w[ok]) <= 1e-12 * scale[ok] + TINY)
        else:
            assert_close(g[ok], w[ok], what=f"{name} hessian {k}")
    if name == "chipo":
        clipped = np.abs(u) > 2 * param
        assert clipped.sum() > 50 and all(np.all(g[clipped] == 0.0) for g in got)


@pytest.mark.parametrize("name", BONUSES)
def test_bonus_kernels_match_reference_on_extreme_inputs(name):
    rng = make_rng(13)
    n = 600
    logp = -log_uniform(rng, 1e-6, 1e3, n)
    logp_ref = -log_uniform(rng, 1e-6, 1e3, n)
    logp_ref[:50] = logp[:50]
    alpha = log_uniform(rng, 1e-6, 1e2, n)
    beta = log_uniform(rng, 1e-4, 1e4, n)
    weight = log_uniform(rng, 1e-3, 1e1, n)
    loss, d = scalar_bonus(name, logp, logp_ref, alpha, beta, weight)
    d2 = scalar_bonus(name, logp, logp_ref, alpha, beta, weight, hessian=True)
    w_loss, w_d = ref.bonus_loss(name, logp, logp_ref, alpha, beta, weight)
    w_d2 = ref.bonus_loss_hessian(name, logp, logp_ref, alpha, beta, weight)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(d)) and np.all(np.isfinite(d2))
    # the reference's sigma(x) - 1/2 loses digits near x = 0 (kernel uses tanh(x/2)/2): its
    # absolute rounding error is a few eps times the bonus' natural scale
    scale = {"popo": (alpha / beta, alpha, alpha * beta)}.get(name, (0.0, 0.0, 0.0))
    assert_close(loss, w_loss, atol=4 * EPS * scale[0] + TINY, what=f"{name} loss")
    assert_close(d, w_d, atol=4 * EPS * scale[1] + TINY, what=f"{name} d_logp")
    assert_close(d2, w_d2, atol=4 * EPS * scale[2] + TINY, what=f"{name} d2_logp")


# ---------------------------------------------------------------------------- finite differences
def moderate_pairs(rng, n, name):
    lc = rng.uniform(-2, 2, n)
    lr = rng.uniform(-2, 2, n)
    beta = log_uniform(rng, 0.1, 3.0, n)
    param = {"ipo": log_uniform(rng, 0.1, 10.0, n), "chipo": np.full(n, 50.0)}.get(name, np.zeros(n))
    return lc, lr, beta, param


def central_difference(f, x, rel_step=1e-6):
    step = rel_step * np.maximum(1.0, np.abs(x))
    return (f(x + step) - f(x - step)) / (2 * step)


@pytest.mark.parametrize("name", PAIRS)
def test_pair_derivatives_by_finite_differences(name):
    rng = make_rng(21)
    lc, lr, beta, param = moderate_pairs(rng, 60, name)
    loss, dc, dr = scalar_pair(name, lc, lr, beta, param)
    cc, cr, rr = scalar_pair(name, lc, lr, beta, param, hessian=True)
    fd_dc = central_difference(lambda x: scalar_pair(name, x, lr, beta, param)[0], lc)
    fd_dr = central_difference(lambda x: scalar_pair(name, lc, x, beta, param)[0], lr)
    fd_cc = central_difference(lambda x: scalar_pair(name, x, lr, beta, param)[1], lc)
    fd_cr = central_difference(lambda x: scalar_pair(name, lc, x, beta, param)[1], lr)
    fd_rc = central_difference(lambda x: scalar_pair(name, x, lr, beta, param)[2], lc)
    fd_rr = central_difference(lambda x: scalar_pair(name, lc, x, beta, param)[2], lr)
    for got, fd in ((dc, fd_dc), (dr, fd_dr), (cc, fd_cc), (cr, fd_cr), (cr, fd_rc), (rr, fd_rr)):
        np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-7 * (1 + np.max(np.abs(got))))
    assert np.any(np.abs(dc) > 1e-3)  # the test exercised non-trivial gradients


@pytest.mark.parametrize("name", BONUSES)
def test_bonus_derivatives_by_finite_differences(name):
    rng = make_rng(22)
    n = 60
    logp = rng.uniform(-8, -0.01, n)
    logp_ref = rng.uniform(-8, -0.01, n)
    alpha, beta, weight = log_uniform(rng, 0.01, 3, n), log_uniform(rng, 0.1, 3, n), rng.uniform(0, 2, n)
    _, d = scalar_bonus(name, logp, logp_ref, alpha, beta, weight)
    d2 = scalar_bonus(name, logp, logp_ref, alpha, beta, weight, hessian=True)
    fd = central_difference(lambda x: scalar_bonus(name, x, logp_ref, alpha, beta, weight)[0], logp)
    fd2 = central_difference(lambda x: scalar_bonus(name, x, logp_ref, alpha, beta, weight)[1], logp)
    np.testing.assert_allclose(d, fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(d2, fd2, rtol=1e-6, atol=1e-8)
    # logp_ref is not a parameter, but SELM / POPO read it: their loss must move with it
    fd_ref = central_difference(lambda x: scalar_bonus(name, logp, x, alpha, beta, weight)[0], logp_ref)
    if name in ("selm", "popo"):
        np.testing.assert_allclose(fd_ref, -d, rtol=1e-6, atol=1e-8)
    else:
        assert np.all(fd_ref == 0.0)


# ------------------------------------------------------------------------------------ reductions
@fast
@pytest.mark.parametrize("beta", [1e-4, 0.1, 1.0, 7.0, 1e4])
@pytest.mark.parametrize("level", [-1e3, -3.0, 0.0, 2.5])
def test_dpo_at_zero_margin(beta, level):
    loss, dc, dr = L.dpo_pair(level, level, beta)
    assert loss == pytest.approx(math.log(2.0), rel=1e-15)
    assert dc == pytest.approx(-beta / 2, rel=1e-15)
    assert dr == pytest.approx(beta / 2, rel=1e-15)
    cc, cr, rr = L.dpo_pair_hessian(level, level, beta)
    assert cc == pytest.approx(beta**2 / 4, rel=1e-15) and cr == -cc and rr == cc


@fast
@pytest.mark.parametrize("bonus", BONUSES)
def test_alpha_zero_gives_pure_dpo(bonus):
    rng = make_rng(31)
    lc, lr = rng.normal(size=7), rng.normal(size=7)
    logp, logp_ref = -rng.exponential(size=7), -rng.exponential(size=7)
    spec = L.LossSpec(pair="dpo", bonus=bonus, beta=0.5, alpha=0.0)
    b_loss, b_d = spec.bonus_loss_and_grad(logp, logp_ref, bonus_weights=np.ones(7) if bonus == "copo" else None)
    assert b_loss == 0.0 and np.all(b_d == 0.0)
    p_loss, p_dc, p_dr = spec.pair_loss_and_grad(lc, lr)
    want = ref.dpo_pair(lc, lr, 0.5)
    assert p_loss == pytest.approx(want[0].sum(), rel=1e-14)
    np.testing.assert_allclose(p_dc, want[1], rtol=1e-14)
    np.testing.assert_allclose(p_dr, want[2], rtol=1e-14)


@fast
@pytest.mark.parametrize("tau", [1e-3, 0.1, 1.0, 25.0])
def test_ipo_minimum_at_half_inverse_tau(tau):
    target = 1.0 / (2.0 * tau)
    base = -0.37
    loss, dc, dr = L.ipo_pair(base + target, base, tau)
    assert loss == pytest.approx(0.0, abs=1e-20 + 1e-28 * target**2)
    assert abs(dc) <= 1e-14 * target and abs(dr) <= 1e-14 * target
    gaps = target + np.linspace(-3, 3, 61)
    values = [L.ipo_pair(base + g, base, tau)[0] for g in gaps]
    assert int(np.argmin(values)) == 30
    assert all(v > 0 for i, v in enumerate(values) if i != 30)
    assert L.ipo_pair_hessian(0.0, 0.0, tau) == (2.0, -2.0, 2.0)


@fast
def test_chipo_is_flat_where_clipped():
    r_max = 1.5
    cases = [(3.0, -3.0, 1.0), (-3.0, 3.0, 1.0), (1e3, -1e3, 1e4), (-1e3, 1e3, 1e-4), (710.0, 0.0, 1e-4),
             (0.5, -4.0, 2.0)]
    for lc, lr, beta in cases:
        u = L.chipo_margin(lc, lr, beta)
        assert abs(u) > 2 * r_max
        loss, dc, dr = L.chipo_pair(lc, lr, beta, r_max)
        assert dc == 0.0 and dr == 0.0
        assert L.chipo_pair_hessian(lc, lr, beta, r_max) == (0.0, 0.0, 0.0)
        assert loss == pytest.approx(math.log1p(math.exp(-math.copysign(2 * r_max, u))), rel=1e-15)
        # the loss really is locally constant there
        assert L.chipo_pair(lc * (1 + 1e-6) + 1e-6, lr, beta, r_max)[0] == loss
    # inside the clip the gradient is not zero
    loss, dc, dr = L.chipo_pair(0.1, 0.0, 1.0, r_max)
    assert dc < 0.0 < dr


@fast
def test_chipo_equals_dpo_shape_for_small_ratios():
    # z -> 0 (l -> -inf): phi(z) = z + log z ~ log z, so chiPO -> DPO when unclipped
    loss_c, dc_c, dr_c = L.chipo_pair(-40.0, -40.7, 0.8, 100.0)
    loss_d, dc_d, dr_d = L.dpo_pair(-40.0, -40.7, 0.8)
    assert loss_c == pytest.approx(loss_d, rel=1e-12)
    assert dc_c == pytest.approx(dc_d, rel=1e-12) and dr_c == pytest.approx(dr_d, rel=1e-12)


# ---------------------------------------------------------------------------- sign conventions
@fast
@pytest.mark.parametrize("name", BONUSES[1:])
def test_bonus_gradient_step_direction(name):
    rng = make_rng(41)
    logp, logp_ref = -rng.uniform(0.1, 5, 9), -rng.uniform(0.1, 5, 9)
    alpha, beta, lr = 0.3, 0.7, 1e-3
    w = np.full(9, 0.8)
    params = {"bonus_weights": w} if name == "copo" else {}
    loss, d = L.bonus_loss_and_grad(name, logp, logp_ref, alpha, beta, **params)
    stepped = logp - lr * d
    new_loss, _ = L.bonus_loss_and_grad(name, stepped, logp_ref, alpha, beta, **params)
    assert new_loss < loss  # a descent step
    if name in DOWN_BONUSES:
        assert np.all(d > 0) and np.all(stepped < logp)  # pushes pi DOWN on the sampler's y
    else:
        assert np.all(d < 0) and np.all(stepped > logp)  # COPO pushes pi UP


@fast
def test_bonus_scales_differ_as_documented():
    logp, logp_ref, alpha, beta = -2.3, -1.1, 0.4, 0.25
    xpo = L.xpo_bonus(logp, alpha)
    assert L.vpo_bonus(logp, alpha, beta) == pytest.approx(L.xpo_bonus(logp, alpha * beta))
    assert xpo[0] == pytest.approx(alpha * logp) and xpo[1] == alpha
    selm = L.selm_bonus(logp, logp_ref, alpha, beta)
    assert selm[0] == pytest.approx(L.vpo_bonus(logp, alpha, beta)[0] - alpha * beta * logp_ref)
    assert L.copo_bonus(logp, alpha, 2.0) == pytest.approx((-2 * alpha * logp, -2 * alpha))


@fast
def test_popo_bonus_is_bounded():
    alpha = 0.9
    for beta in (1e-4, 0.3, 1.0, 1e4):
        bound = alpha / (2 * beta)
        for l_y in (-1e3, -5.0, -1e-9, 0.0, 1e-9, 5.0, 1e3):
            loss, d = L.popo_bonus(l_y - 2.0, -2.0, alpha, beta)
            assert -bound <= loss <= bound and 0.0 <= d <= alpha / 4
        assert L.popo_bonus(-2.0 + 1e3 / beta, -2.0, alpha, beta)[0] == pytest.approx(bound, rel=1e-12)
        assert L.popo_bonus(-2.0 - 1e3 / beta, -2.0, alpha, beta)[0] == pytest.approx(-bound, rel=1e-12)
        assert L.popo_bonus(-2.0, -2.0, alpha, beta) == (0.0, alpha / 4)


# --------------------------------------------------------------------------------------- batches
@pytest.mark.parametrize("name", PAIRS)
def test_pair_batch_is_weighted_sum_of_scalar_calls(name):
    rng = make_rng(51)
    n = 40
    lc, lr, beta, param = moderate_pairs(rng, n, name)
    beta_s, param_s = float(beta[0]), float(param[0])
    weights = rng.integers(0, 4, n).astype(np.float64)
    weights[:3] = 0.0
    lc[:3] = lr[:3] = 1e3  # chiPO derivatives overflow here: zero weight must silence them
    out_c, out_r = np.full(n, np.nan), np.full(n, np.nan)
    total = L.pair_loss_batch(L.pair_kind(name), lc, lr, weights, beta_s, param_s, out_c, out_r)
    loss, dc, dr = scalar_pair(name, lc[3:], lr[3:], beta_s, param_s)
    assert total == pytest.approx(np.sum(weights[3:] * loss), rel=1e-13)
    np.testing.assert_array_equal(out_c[:3], 0.0)
    np.testing.assert_array_equal(out_r[:3], 0.0)
    np.testing.assert_allclose(out_c[3:], weights[3:] * dc, rtol=1e-15)
    np.testing.assert_allclose(out_r[3:], weights[3:] * dr, rtol=1e-15)
    h = [np.full(n, np.nan) for _ in range(3)]
    L.pair_loss_hessian_batch(L.pair_kind(name), lc, lr, weights, beta_s, param_s, *h)
    want_h = scalar_pair(name, lc[3:], lr[3:], beta_s, param_s, hessian=True)
    for got, want in zip(h, want_h):
        np.testing.assert_array_equal(got[:3], 0.0)
        np.testing.assert_allclose(got[3:], weights[3:] * want, rtol=1e-15)
    # the Python API is the same computation on any shape
    api = L.pair_loss_and_grad(name, lc.reshape(5, 8), lr.reshape(5, 8), beta_s, weights.reshape(5, 8),
                               **({"tau_ipo": param_s} if name == "ipo" else {"r_max": param_s} if name == "chipo" else {}))
    assert api[0] == total and api[1].shape == (5, 8)
    np.testing.assert_array_equal(api[1].ravel(), out_c)
    np.testing.assert_array_equal(api[2].ravel(), out_r)


@pytest.mark.parametrize("name", BONUSES)
def test_bonus_batch_is_weighted_sum_of_scalar_calls(name):
    rng = make_rng(52)
    n = 40
    logp, logp_ref = -rng.exponential(3, n), -rng.exponential(3, n)
    weights = rng.integers(0, 4, n).astype(np.float64)
    weights[:2] = 0.0
    bonus_w = rng.uniform(0, 2, n)
    alpha, beta = 0.6, 1.7
    out = np.full(n, np.nan)
    total = L.bonus_loss_batch(L.bonus_kind(name), logp, logp_ref, weights, bonus_w, alpha, beta, out)
    loss, d = scalar_bonus(name, logp, logp_ref, alpha, beta, bonus_w)
    assert total == pytest.approx(np.sum(weights * loss), rel=1e-13, abs=1e-300)
    np.testing.assert_allclose(out, weights * d, rtol=1e-15)
    assert np.all(out[:2] == 0.0)
    d2 = np.full(n, np.nan)
    L.bonus_loss_hessian_batch(L.bonus_kind(name), logp, logp_ref, weights, bonus_w, alpha, beta, d2)
    np.testing.assert_allclose(d2, weights * scalar_bonus(name, logp, logp_ref, alpha, beta, bonus_w, True),
                               rtol=1e-15)
    params = {"bonus_weights": bonus_w} if name == "copo" else {}
    api_loss, api_d = L.bonus_loss_and_grad(name, logp, logp_ref, alpha, beta, weights, **params)
    assert api_loss == total
    np.testing.assert_array_equal(api_d, out)
    np.testing.assert_array_equal(L.bonus_loss_hessian_arrays(name, logp, logp_ref, alpha, beta, weights, **params), d2)


@fast
def test_zero_weight_contributes_nothing_small():
    lc = np.array([1e3, 0.2])
    lr = np.array([1e3, -0.1])
    out_c, out_r = np.empty(2), np.empty(2)
    total = L.pair_loss_batch(L.PAIR_CHIPO, lc, lr, np.array([0.0, 2.0]), 1.0, 3.0, out_c, out_r)
    loss, dc, dr = L.chipo_pair(0.2, -0.1, 1.0, 3.0)
    assert total == pytest.approx(2 * loss, rel=1e-15)
    assert out_c[0] == 0.0 and out_r[0] == 0.0 and out_c[1] == pytest.approx(2 * dc, rel=1e-15)


# ------------------------------------------------------------------------------- bad input / API
@fast
@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"beta": 0.0}, "beta"), ({"beta": -1.0}, "beta"), ({"beta": math.nan}, "beta"),
        ({"beta": math.inf}, "beta"), ({"beta": "big"}, "beta"), ({"weights": [1.0, -1.0]}, "weights"),
        ({"weights": [1.0]}, "weights"), ({"l_rejected": [0.0, 1.0, 2.0]}, "l_rejected"),
        ({"l_chosen": [math.inf, 0.0]}, "l_chosen"), ({"l_rejected": [0.0, math.nan]}, "l_rejected"),
        ({"name": "kto"}, "chipo"), ({"tau_ipo": 1.0}, "tau_ipo"),
    ],
)
def test_pair_api_errors_name_the_argument(kwargs, word):
    args = {"name": "dpo", "l_chosen": [0.0, 1.0], "l_rejected": [0.5, 0.0], "beta": 1.0, "weights": None}
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        L.pair_loss_and_grad(**args)


@fast
def test_pair_parameter_errors():
    for bad in (None, 0.0, -2.0, math.nan):
        with pytest.raises(ValueError, match="tau_ipo"):
            L.pair_loss_and_grad("ipo", [0.0], [0.0], 1.0, tau_ipo=bad)
        with pytest.raises(ValueError, match="r_max"):
            L.pair_loss_and_grad("chipo", [0.0], [0.0], 1.0, r_max=bad)
    with pytest.raises(ValueError, match="r_max"):
        L.pair_loss_and_grad("chipo", [0.0], [0.0], 1.0)
    with pytest.raises(ValueError, match="overflow"):
        L.pair_loss_and_grad("chipo", [1e3], [1e3], 1.0, r_max=1.0)
    with pytest.raises(ValueError, match="beta"):
        L.pair_loss_batch(L.PAIR_DPO, np.zeros(2), np.zeros(2), np.ones(2), -1.0, 0.0, np.empty(2), np.empty(2))
    with pytest.raises(ValueError, match="weights"):
        L.pair_loss_batch(L.PAIR_DPO, np.zeros(2), np.zeros(2), -np.ones(2), 1.0, 0.0, np.empty(2), np.empty(2))
    with pytest.raises(ValueError, match="l_rejected"):
        L.pair_loss_batch(L.PAIR_DPO, np.zeros(2), np.zeros(3), np.ones(2), 1.0, 0.0, np.empty(2), np.empty(2))


@fast
def test_bonus_api_errors_name_the_argument():
    ok = dict(logp=[-1.0, -2.0], logp_ref=[-1.5, -0.5], alpha=0.1, beta=1.0)
    cases = [
        ({"alpha": -0.1}, "alpha"), ({"alpha": math.inf}, "alpha"), ({"beta": 0.0}, "beta"),
        ({"logp": [-1.0, -math.inf]}, "logp"), ({"logp_ref": [-1.0]}, "logp_ref"),
        ({"weights": [1.0, -2.0]}, "weights"), ({"name": "ucb"}, "xpo"),
    ]
    for change, word in cases:
        args = {"name": "selm", **ok, **change}
        with pytest.raises(ValueError, match=word):
            L.bonus_loss_and_grad(**args)
    with pytest.raises(ValueError, match="logp_ref"):
        L.bonus_loss_and_grad("popo", [-1.0], None, 0.1, 1.0)
    assert L.bonus_loss_and_grad("xpo", [-1.0], None, 0.1, 1.0)[0] == pytest.approx(-0.1)
    with pytest.raises(ValueError, match="bonus_weights"):
        L.bonus_loss_and_grad("copo", [-1.0], None, 0.1, 1.0)
    with pytest.raises(ValueError, match="bonus_weights"):
        L.bonus_loss_and_grad("copo", [-1.0], None, 0.1, 1.0, bonus_weights=[-1.0])
    with pytest.raises(ValueError, match="bonus_weights"):
        L.bonus_loss_and_grad("xpo", [-1.0], None, 0.1, 1.0, bonus_weights=[1.0])
    with pytest.raises(ValueError, match="alpha"):
        L.bonus_loss_batch(L.BONUS_XPO, np.zeros(1), np.zeros(1), np.ones(1), np.ones(1), -1.0, 1.0, np.empty(1))
    with pytest.raises(ValueError, match="bonus_weights"):
        L.bonus_loss_batch(L.BONUS_COPO, np.zeros(1), np.zeros(1), np.ones(1), -np.ones(1), 1.0, 1.0, np.empty(1))


@fast
def test_kind_registry():
    assert [L.pair_kind(n) for n in PAIRS] == [L.PAIR_DPO, L.PAIR_IPO, L.PAIR_CHIPO]
    assert [L.bonus_kind(n) for n in BONUSES] == [L.BONUS_NONE, L.BONUS_XPO, L.BONUS_VPO, L.BONUS_SELM,
                                                  L.BONUS_POPO, L.BONUS_COPO]
    assert L.pair_kind("DPO") == L.PAIR_DPO and L.bonus_kind(L.BONUS_POPO) == L.BONUS_POPO
    with pytest.raises(ValueError, match=r"\['chipo', 'dpo', 'ipo'\]"):
        L.pair_kind("sigmoid")
    with pytest.raises(ValueError, match="copo"):
        L.bonus_kind(17)
    with pytest.raises(ValueError):
        L.pair_loss(7, 0.0, 0.0, 1.0, 1.0)
    with pytest.raises(ValueError):
        L.bonus_loss(-1, 0.0, 0.0, 1.0, 1.0, 1.0)


@fast
def test_loss_spec_of_a_learner_follows_the_table():
    from xposim.learners import loss_spec

    rows = {"dpo": ("dpo", "none"), "online_dpo": ("dpo", "none"), "ipo": ("ipo", "none"),
            "chipo": ("chipo", "none"), "xpo": ("dpo", "xpo"), "vpo": ("dpo", "vpo"),
            "selm": ("dpo", "selm"), "popo": ("dpo", "popo"), "copo": ("dpo", "copo")}
    for learner, (pair, bonus) in rows.items():
        extra = {"tau_ipo": 0.2} if pair == "ipo" else {"r_max": 2.0} if pair == "chipo" else {}
        alpha = None if bonus == "none" else 0.05
        spec = loss_spec(learner, beta=0.3, alpha=alpha, **extra)
        assert (spec.pair, spec.bonus) == (pair, bonus)
        assert spec.pair_kind == L.pair_kind(pair) and spec.bonus_kind == L.bonus_kind(bonus)
        assert spec.pair_param == extra.get("tau_ipo", extra.get("r_max", 0.0))
    spec = loss_spec("XPO", beta=0.3, alpha=0.05)
    with pytest.raises(Exception):
        spec.alpha = 1.0  # frozen
    with pytest.raises(ValueError, match="alpha"):
        loss_spec("xpo", beta=0.3)
    with pytest.raises(ValueError, match="alpha"):
        loss_spec("dpo", beta=0.3, alpha=0.1)
    with pytest.raises(ValueError, match="tau_ipo"):
        loss_spec("ipo", beta=0.3)
    with pytest.raises(ValueError, match="r_max"):
        loss_spec("dpo", beta=0.3, r_max=1.0)
    with pytest.raises(ValueError, match="beta"):
        loss_spec("dpo", beta=0.0)
    with pytest.raises(ValueError, match="online_dpo"):
        loss_spec("rlhf", beta=0.3)
