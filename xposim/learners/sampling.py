"""The samplers of the round (:class:`~xposim.learners.plan.Sampler`): every draw is an inverse-CDF
lookup with one uniform the caller drew, so a run is the same bit for bit with and without numba.
"""
from __future__ import annotations

import math

import numpy as np

from xposim._jit import internal_kernel
from xposim.learners.plan import Sampler
from xposim.learners.state import EngineState
from xposim.numerics import NEG_INF
from xposim.policies.arrays import EnvArrays
from xposim.policies.view import IterateView, view_sample, view_sample_rest, view_sample_tempered


@internal_kernel
def cdf_search(cdf: np.ndarray, u: float) -> int:
    """Smallest index ``i`` with ``cdf[i] > u`` (inverse CDF; zero-probability entries are skipped)."""
    lo = 0
    hi = cdf.shape[0] - 1
    if u >= cdf[hi]:
        # rounding: return the last entry with positive probability
        while hi > 0 and cdf[hi - 1] == cdf[hi]:
            hi -= 1
        return hi
    while lo < hi:
        mid = (lo + hi) // 2
        if cdf[mid] > u:
            hi = mid
        else:
            lo = mid + 1
    return lo


@internal_kernel
def _sample_weighted_view(view: IterateView, x: int, u: float, slot_weight: np.ndarray,
                          rest_coefficient: float) -> int:
    """Draw from weights ``slot_weight[s]`` (linear) on the slots and ``rest_coefficient * pi_ref`` on the rest."""
    n = view.n_slots[x]
    root = view.rest_tree[x, 1]
    rest_mass = rest_coefficient * math.exp(root) if root > NEG_INF else 0.0
    total = rest_mass
    for s in range(n):
        total += slot_weight[s]
    target = u * total
    acc = 0.0
    last = -1
    for s in range(n):
        w = slot_weight[s]
        if w <= 0.0:
            continue
        acc += w
        last = s
        if target < acc:
            return view.slot_leaf[x, s]
    if rest_mass > 0.0:
        return view_sample_rest(view, x, (target - acc) / rest_mass)
    return view.slot_leaf[x, last]


@internal_kernel
def _historical_weights(view: IterateView, eng: EngineState, x: int, t: float, out: np.ndarray) -> float:
    """Mixture weights of ``pi^(1..t)`` on the slots of ``x`` (unnormalized sums); returns the rest coefficient."""
    pending = t - eng.hist_time[x]
    lz = view.log_partition[x]
    for s in range(view.n_slots[x]):
        out[s] = eng.hist_slot[x, s] + pending * math.exp(view.slot_logw[x, s] - lz)
    return eng.hist_rest[x] + pending * math.exp(view.rest_logscale[x] - lz)


@internal_kernel
def draw_response(code: int, arrays: EnvArrays, view: IterateView, eng: EngineState, x: int, u: float,
                  temperature: float, t: int, weights: np.ndarray) -> int:
    """A leaf of context ``x`` from sampler ``code`` (a :class:`~xposim.learners.plan.Sampler`) with the uniform ``u``."""
    if code == Sampler.POLICY:
        if temperature == 1.0:
            return view_sample(view, x, u)
        return view_sample_tempered(view, x, u, temperature, arrays.vocab_size, arrays.horizon, eng.scratch)
    if code == Sampler.REFERENCE:  # pi_ref at the plan's token temperature (trl samples both responses at 0.9)
        return cdf_search(eng.reference_cdf[x], u)
    if code == Sampler.GREEDY:
        return view_sample_tempered(view, x, u, 0.0, arrays.vocab_size, arrays.horizon, eng.scratch)
    if code == Sampler.HISTORICAL:
        coefficient = _historical_weights(view, eng, x, float(t), weights)
        return _sample_weighted_view(view, x, u, weights, coefficient)
    if code == Sampler.FROZEN:
        for s in range(view.n_slots[x]):
            weights[s] = math.exp(eng.frozen_logp[x, s])
        return _sample_weighted_view(view, x, u, weights, math.exp(eng.frozen_offset[x]))
    if code == Sampler.BEHAVIOUR:
        return cdf_search(eng.behaviour_cdf[x], u)
    raise ValueError("unknown sampler code")


__all__ = ["cdf_search", "draw_response"]
