"""One round's argmin of the tabular class from explicit data, certified: :func:`solve_round_objective`.

A round of Algorithm 1 on the tabular class solves, context by context (contexts are separable),

    min_{f in [0, R_max]^K}  sum_{i != j} W_ij pair_loss(l_i, l_j) + sum_i M_i bonus_loss(log pi_f(i))
    log pi_f(i) = log pi_ref(i) + f_i / beta - log sum_j pi_ref(j) e^{f_j / beta},   l_i = log pi_f(i) - log pi_ref_loss(i)

over the ``K`` responses of one context, with ``W_ij`` the number of times response ``i`` was
preferred to ``j`` and ``M_i`` the number of bonus samples of ``i`` (Algorithm 1: ``tau~ ~ pi_ref``).
This function builds that objective from the counts and returns the global minimizer with a proven
lower bound (:mod:`xposim.policies.tabular.certified`), so any round of any run can be checked:
``result.store`` and ``result.engine_state.bonus_count`` of :func:`xposim.learners.run_learner` hold
the counts (in slot coordinates).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from xposim.losses.kinds import BONUS_KINDS, PAIR_CHIPO, PAIR_IPO, PAIR_KINDS, bonus_kind, pair_kind
from xposim.validation import check_nonnegative, check_positive

#: Solver methods of :func:`solve_round_objective`.
METHODS = ("certified", "local")


@dataclasses.dataclass(frozen=True)
class RoundSolution:
    """The argmin of one context's round objective (:func:`solve_round_objective`)."""

    values: np.ndarray
    """``f`` per response, ``(K,)`` in ``[0, R_max]`` (the class parameters; defined up to the class's
    invariances: a common shift when no box bound is active)."""
    policy: np.ndarray
    """``pi_f`` per response, ``(K,)``, sums to 1."""
    value: float
    """The objective at ``values``."""
    lower_bound: float
    """A proven lower bound on the minimum over the box (``-inf`` when none: method ``"local"`` on a
    non-convex objective, or a kind the certificate does not cover)."""
    status: str
    """``"certified"`` (``value - lower_bound <= relative_gap * max(1, |value|)``), ``"node_limit"``
    (budget exhausted; bound still valid), ``"unsupported"`` (no bound for this kind) or ``"local"``."""
    nodes: int
    """Relaxations solved by the branch-and-bound."""

    @property
    def gap(self) -> float:
        """``(value - lower_bound) / max(1, |value|)`` (``inf`` without a bound)."""
        if self.lower_bound == -math.inf:
            return math.inf
        return max(self.value - self.lower_bound, 0.0) / max(1.0, abs(self.value))


def _probabilities(name: str, values, size: int | None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or (size is not None and array.shape[0] != size) or array.shape[0] < 1:
        expected = f"({size},)" if size is not None else "(K,) with K >= 1"
        raise ValueError(f"{name} must have shape {expected}, got {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0.0):
        raise ValueError(f"{name} must hold finite probabilities >= 0")
    if abs(array.sum() - 1.0) > 1e-9:
        raise ValueError(f"{name} must sum to 1 (within 1e-9), sums to {array.sum()!r}")
    return array


def _counts(name: str, values, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0.0):
        raise ValueError(f"{name} must hold finite counts >= 0")
    return array


def solve_round_objective(
    ref_probs,
    wins,
    bonus_counts,
    beta: float,
    alpha: float,
    r_max: float = 1.0,
    pair_loss: str = "dpo",
    bonus: str = "xpo",
    *,
    pair_param: float | None = None,
    loss_ref_probs=None,
    bonus_weights=None,
    warm_start=None,
    method: str = "certified",
    relative_gap: float = 1e-9,
    max_nodes: int = 4000,
    tolerance: float = 1e-8,
) -> RoundSolution:
    """The argmin of one context's round objective of the tabular class (module docstring).

    Parameters
    ----------
    ref_probs : ``pi_ref`` over the ``K`` responses of the context, ``(K,)``, sums to 1. Responses of
        probability 0 cannot be in any pair or bonus count; they keep ``pi_f = 0``.
    wins : ``(K, K)`` counts, ``wins[i, j]`` = times response ``i`` was preferred to ``j`` (diagonal ignored).
    bonus_counts : ``(K,)`` bonus samples per response (``M_i``).
    beta, alpha, r_max : the KL coefficient (``> 0``), the bonus weight (``>= 0``) and the box's top (``> 0``).
    pair_loss, bonus : kinds by name (``dpo``, ``ipo``, ``chipo``; ``xpo``, ``vpo``, ``selm``, ``popo``,
        ``copo``, ``none``).
    pair_param : IPO's ``tau`` (required for ``ipo``) or chiPO's clip (default ``r_max``).
    loss_ref_probs : the loss reference ``pi_ref_loss`` (SELM's previous iterate); default ``ref_probs``.
    bonus_weights : COPO's per-response weights (default 1).
    warm_start : initial ``f`` (default ``R_max / 2`` everywhere, i.e. ``pi_f = pi_ref``).
    method : ``"certified"`` (branch-and-bound with a proven lower bound) or ``"local"`` (projected
        Newton from the warm start only).
    relative_gap, max_nodes : the certificate's tolerance and node budget.
    tolerance : the local solver's per-sample projected-gradient tolerance.
    """
    from xposim.policies.tabular.certified import (
        CERTIFIED,
        STATUS_NAMES,
        certified_minimize,
        new_certificate_workspace,
    )
    from xposim.policies.tabular.newton import projected_newton
    from xposim.policies.tabular.objective import context_objective
    from xposim.policies.tabular.state import new_workspace

    ref = _probabilities("ref_probs", ref_probs, None)
    size = ref.shape[0]
    win_counts = _counts("wins", wins, (size, size))
    bonus_count = _counts("bonus_counts", bonus_counts, (size,))
    beta = check_positive(beta, "beta")
    alpha = check_nonnegative(alpha, "alpha")
    r_max = check_positive(r_max, "r_max")
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    pair_code = pair_kind(pair_loss)
    bonus_code = bonus_kind(bonus)
    if pair_code == PAIR_IPO:
        if pair_param is None:
            raise ValueError("pair_param (IPO's tau > 0) is required for pair_loss='ipo'")
        param = check_positive(pair_param, "pair_param")
    elif pair_code == PAIR_CHIPO:
        param = check_positive(r_max if pair_param is None else pair_param, "pair_param")
    else:
        param = 0.0 if pair_param is None else float(pair_param)
    loss_ref = ref if loss_ref_probs is None else _probabilities("loss_ref_probs", loss_ref_probs, size)
    weights = np.ones(size) if bonus_weights is None else _counts("bonus_weights", bonus_weights, (size,))
    possible = ref > 0.0
    np.fill_diagonal(win_counts, 0.0)
    used = (win_counts.sum(axis=0) + win_counts.sum(axis=1) + bonus_count) > 0.0
    if np.any(used & ~possible):
        raise ValueError("wins and bonus_counts may involve only responses with ref_probs > 0")
    if np.any(used & (loss_ref <= 0.0)):
        raise ValueError("wins and bonus_counts may involve only responses with loss_ref_probs > 0")
    start = np.full(size, r_max / 2.0) if warm_start is None else np.asarray(warm_start, dtype=np.float64)
    if start.shape != (size,) or not np.all(np.isfinite(start)) or np.any(start < 0.0) or np.any(start > r_max):
        raise ValueError(f"warm_start must be ({size},) values in [0, r_max] = [0, {r_max}]")

    # the variables: the possible responses (pi_f = 0 on the others)
    index = np.flatnonzero(possible)
    n = index.shape[0]
    edges = [(a, b, win_counts[index[a], index[b]]) for a in range(n) for b in range(n)
             if a != b and win_counts[index[a], index[b]] > 0.0]
    ws = new_workspace(n, max(len(edges), 1), max(n, 1))
    for e, (a, b, w) in enumerate(edges):
        ws.edge_a[e], ws.edge_b[e], ws.edge_w[e] = a, b, w
    log_loss_ref = np.log(loss_ref[index]) - math.log(loss_ref[index].sum())
    for j in range(n):
        ws.lw[j] = math.log(ref[index[j]])
        ws.lref[j] = log_loss_ref[j]
        ws.mcount[j] = bonus_count[index[j]]
        ws.bweight[j] = weights[index[j]]
        ws.v[j] = start[index[j]]
    scale = max(float(win_counts.sum() + bonus_count.sum()), 1.0)
    n_edges = len(edges)
    value, _, _ = projected_newton(n, n, ws.v, ws, n_edges, pair_code, param, bonus_code, alpha, beta, 0.0, r_max,
                                   scale, tolerance, 200, max(n, 1))
    lower, status, nodes = -math.inf, "local", 0
    if method == "certified":
        budget = int(max_nodes)
        value, lower, code, nodes = certified_minimize(
            n, n, ws.v, ws, new_certificate_workspace(n, budget), n_edges, pair_code, param, bonus_code, alpha,
            beta, 0.0, r_max, scale, tolerance, 200, max(n, 1), float(relative_gap), budget)
        status = STATUS_NAMES[code] if code in STATUS_NAMES else str(code)
        assert (code == CERTIFIED) == (status == "certified")
    value, _ = context_objective(n, n, ws.v, ws, n_edges, pair_code, param, bonus_code, alpha, beta)
    values = np.full(size, r_max)
    values[index] = ws.v[:n]
    policy = np.zeros(size)
    policy[index] = np.exp(ws.logp[:n])
    return RoundSolution(values=values, policy=policy, value=float(value), lower_bound=float(lower), status=status,
                         nodes=int(nodes))


__all__ = ["RoundSolution", "solve_round_objective", "METHODS", "PAIR_KINDS", "BONUS_KINDS"]
