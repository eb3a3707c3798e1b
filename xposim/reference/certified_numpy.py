"""Plain numpy + scipy reference of :mod:`xposim.policies.tabular.certified` (tests and benchmarks only).

The same mathematics, written independently and slowly: the objective from
:func:`xposim.reference.learners_numpy.tabular_objective`, the affine-bonus decomposition
``F = P(v) + sum_j kappa_j x_j + K0 - c log Z``, the secant relaxation
``R = P + sum_j kappa_j x_j + K0 - c log S`` minimized by ``scipy.optimize.minimize(L-BFGS-B)``, the
Frank–Wolfe node bound, the same exact reductions (no-data variables at ``hi``, endpoint branching
of variables in no pair, the face rule), the same incumbents (warm start, best champion vertex
improved by single flips, relaxation points), the same branching rules (largest relaxation gap;
bisection of intervals wider than 2 e-folds, else the relaxation point clipped to the middle 80%;
max-split of nodes whose relaxation point is 5 e-folds below the face), best-first search with
``heapq``. It omits the kernel's reduced-cost tightening (an acceleration: it only removes parts
of a node where ``F`` exceeds the incumbent), so node counts differ. Local polish is L-BFGS-B on
``F`` (:func:`~xposim.reference.learners_numpy.scipy_argmin`).

Also :func:`audit_problem`: a round-problem of XPO on a K-armed bandit (one context), built the way
issue #11's audit built them (XPO's own sampling, Bradley–Terry labels, one rare arm), with the
local solver passed in, so this module does not depend on the numba kernels.

A problem is a dict with ``n, k`` (variables; ``k`` slots, then ``g`` if ``n > k``), ``lw, lref,
mcount, bweight (n,)``, ``edge_a, edge_b, edge_w (E,)``, ``pair_kind, pair_param, bonus_kind,
alpha, beta, lo, hi`` (kinds as ``xposim.losses.kinds`` codes).
"""
from __future__ import annotations

import heapq
import math

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

from xposim.reference import losses_numpy as L
from xposim.reference.learners_numpy import BONUS_NAMES, PAIR_NAMES, scipy_argmin, tabular_objective

CERTIFIED, NODE_LIMIT, UNSUPPORTED = 0, 1, 2
_EPS = 2.0**-52


def objective_args(problem: dict) -> dict:
    """Keyword arguments of :func:`tabular_objective` / :func:`scipy_argmin` for ``problem``."""
    n = problem["n"]
    return dict(log_ref_weight=problem["lw"][:n], chosen=problem["edge_a"], rejected=problem["edge_b"],
                pair_weight=problem["edge_w"], bonus_count=problem["mcount"][:n], bonus_weight=problem["bweight"][:n],
                loss_ref_logp=problem["lref"][:n], pair=PAIR_NAMES[problem["pair_kind"]],
                pair_param=problem["pair_param"], bonus=BONUS_NAMES[problem["bonus_kind"]], alpha=problem["alpha"],
                beta=problem["beta"])


def objective(problem: dict, v: np.ndarray) -> float:
    """``F(v)``."""
    return tabular_objective(np.asarray(v, dtype=np.float64), **objective_args(problem))[0]


def decomposition(problem: dict) -> tuple[np.ndarray, float, float, np.ndarray]:
    """``(kappa, c, K0, degree)``: ``sum_j m_j bonus_j = K0 + sum_j kappa_j log pi(j)``, pair degree per variable."""
    n, k = problem["n"], problem["k"]
    kappa = np.zeros(n)
    k0 = 0.0
    name = BONUS_NAMES[problem["bonus_kind"]]
    m = problem["mcount"][:n].astype(np.float64).copy()
    m[k:] = 0.0
    if name != "none":
        used = m > 0
        if np.any(used):
            loss0, d = L.bonus_loss(name, np.zeros(used.sum()), problem["lref"][:n][used], problem["alpha"],
                                    problem["beta"], problem["bweight"][:n][used])
            kappa[used] = m[used] * d
            k0 = float(np.sum(m[used] * loss0))
    degree = np.zeros(n, dtype=np.int64)
    ok = (problem["edge_w"] != 0) & (problem["edge_a"] != problem["edge_b"])
    np.add.at(degree, problem["edge_a"][ok], 1)
    np.add.at(degree, problem["edge_b"][ok], 1)
    return kappa, float(kappa.sum()), k0, degree


def pair_part(problem: dict, v: np.ndarray) -> tuple[float, np.ndarray, float, float]:
    """``P(v)`` in difference form, its gradient, the sum of |terms| and the sum of |gradient terms|."""
    beta = problem["beta"]
    y = problem["lw"][: problem["n"]] - problem["lref"][: problem["n"]] + v / beta
    a, b, w = problem["edge_a"], problem["edge_b"], problem["edge_w"]
    grad = np.zeros_like(v)
    if len(a) == 0:
        return 0.0, grad, 0.0, 0.0
    loss, dc, dr = L.pair_loss(PAIR_NAMES[problem["pair_kind"]], y[a], y[b], beta, problem["pair_param"])
    np.add.at(grad, a, w * dc / beta)
    np.add.at(grad, b, w * dr / beta)
    gmag = float(np.sum(np.abs(w * dc / beta)) + np.sum(np.abs(w * dr / beta)))
    return float(np.sum(w * loss)), grad, float(np.sum(np.abs(w * loss))), gmag


def log_secants(problem: dict, lower: np.ndarray, upper: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, float]:
    """Centred ``log s_j(v_j) - x_c`` of the secants of ``e^{x_j}`` over ``[lower_j, upper_j]``, and ``x_c``."""
    beta = problem["beta"]
    n = problem["n"]
    x_up = problem["lw"][:n] + upper / beta
    xc = float(np.max(x_up))
    width = upper - lower
    out = x_up - xc
    wide = width > 0
    t = np.clip((v[wide] - lower[wide]) / width[wide], 0.0, 1.0)
    with np.errstate(divide="ignore"):
        out[wide] += np.logaddexp(np.log(t), np.log1p(-t) - width[wide] / beta)
    return out, xc


def relaxation(problem: dict, lower: np.ndarray, upper: np.ndarray, v: np.ndarray,
               parts: tuple) -> tuple[float, np.ndarray, float]:
    """``R(v)`` on the box, its gradient and the magnitude for :func:`margin` (sum of |terms| plus the
    largest width times the sum of |gradient terms|; ``parts`` from :func:`decomposition`)."""
    kappa, c, k0, _ = parts
    beta = problem["beta"]
    n = problem["n"]
    lsec, xc = log_secants(problem, lower, upper, v)
    log_s = float(logsumexp(lsec))
    width = upper - lower
    x_up = problem["lw"][:n] + upper / beta - xc
    slope = np.zeros(n)
    wide = width > 0
    slope[wide] = -np.expm1(-width[wide] / beta) / width[wide] * np.exp(x_up[wide] - log_s)
    p_val, p_grad, p_mag, p_gmag = pair_part(problem, v)
    lin = kappa * (problem["lw"][:n] + v / beta - xc)
    value = p_val + float(np.sum(lin)) + k0 - c * log_s
    grad = p_grad + kappa / beta - c * slope
    gmag = p_gmag + float(np.sum(np.abs(kappa / beta)) + np.sum(np.abs(c * slope)))
    mag = p_mag + float(np.sum(np.abs(lin))) + abs(k0) + abs(c * log_s) + float(np.max(width)) * gmag
    return value, grad, mag


def frank_wolfe(v, grad, lower, upper) -> tuple[float, float]:
    m = np.minimum(grad * (lower - v), grad * (upper - v))
    return float(np.sum(m)), float(np.sum(np.abs(m)))


def margin(problem: dict, magnitude: float) -> float:
    return 16.0 * (problem["n"] + len(problem["edge_a"]) + 8) * _EPS * magnitude


def node_bound(problem: dict, lower: np.ndarray, upper: np.ndarray, start: np.ndarray,
               parts: tuple) -> tuple[float, np.ndarray]:
    """Proven lower bound of ``F`` on the box: Frank–Wolfe bound of ``R`` at its L-BFGS-B minimizer."""
    scale = max(1.0, float(np.sum(problem["edge_w"]) + np.sum(problem["mcount"][: problem["k"]])))
    x0 = np.clip(start, lower, upper)
    free = upper > lower

    def fun(z):
        v = lower.copy()
        v[free] = z
        value, grad, _ = relaxation(problem, lower, upper, v, parts)
        return value / scale, grad[free] / scale

    v = x0.copy()
    if np.any(free):
        result = minimize(fun, x0[free], jac=True, method="L-BFGS-B", bounds=list(zip(lower[free], upper[free])),
                          options={"ftol": 1e-15, "gtol": 1e-13, "maxiter": 2000, "maxcor": 30})
        v[free] = np.clip(result.x, lower[free], upper[free])
    value, grad, mag = relaxation(problem, lower, upper, v, parts)
    fw, fw_mag = frank_wolfe(v, grad, lower, upper)
    return value + fw - margin(problem, mag + fw_mag), v


def choose_branch(problem: dict, lower: np.ndarray, upper: np.ndarray, v: np.ndarray, parts: tuple,
                  endpoint: np.ndarray) -> tuple[int, float]:
    """Largest relaxation gap ``c (s_j - e^{x_j}) / S`` (fallback: largest possible secant error)."""
    _, c, _, _ = parts
    beta = problem["beta"]
    n = problem["n"]
    lsec, xc = log_secants(problem, lower, upper, v)
    log_s = float(logsumexp(lsec))
    width = upper - lower
    x = problem["lw"][:n] + v / beta - xc
    gap = np.where(width > 0, c * (np.exp(lsec - log_s) - np.exp(x - log_s)), 0.0)
    if np.max(gap) > 0:
        j = int(np.argmax(gap))
    else:
        top = problem["lw"][:n] + upper / beta - xc
        score = np.where(width > 0, np.exp(top - log_s) * -np.expm1(-width / beta) + 1e-300 * width, -1.0)
        j = int(np.argmax(score))
        if score[j] < 0:
            return -1, 0.0
    if endpoint[j]:
        return j, math.nan
    if width[j] / beta > 2.0:
        return j, float(lower[j] + 0.5 * width[j])
    return j, float(np.clip(v[j], lower[j] + 0.1 * width[j], lower[j] + 0.9 * width[j]))


def polish(problem: dict, start: np.ndarray) -> tuple[np.ndarray, float]:
    """L-BFGS-B on ``F`` over the whole box from ``start``."""
    n = problem["n"]
    scale = max(1.0, float(np.sum(problem["edge_w"]) + np.sum(problem["mcount"][: problem["k"]])))
    point, value = scipy_argmin(np.asarray(start, dtype=np.float64)[:n], problem["lo"], problem["hi"], scale, 1e-12,
                                **objective_args(problem))
    return point, value


def certified_minimize(problem: dict, warm: np.ndarray, relative_gap: float = 1e-9,
                       max_nodes: int = 20000) -> tuple[float, float, int, int, np.ndarray]:
    """The reference branch-and-bound; returns ``(value, lower_bound, status, nodes, point)``."""
    n, lo, hi = problem["n"], problem["lo"], problem["hi"]
    warm = np.clip(np.asarray(warm, dtype=np.float64)[:n], lo, hi)
    best_point = warm.copy()
    best = objective(problem, warm)

    def offer(point, do_polish):
        nonlocal best, best_point
        value = objective(problem, point)
        if value < best:
            best, best_point = value, np.array(point, dtype=np.float64)
        if do_polish:
            point2, value2 = polish(problem, point)
            if value2 < best:
                best, best_point = value2, point2

    supported = problem["pair_kind"] in (0, 1) and problem["bonus_kind"] in (0, 1, 2, 3, 5)
    if not supported:
        offer(warm, True)
        for j in range(n):
            offer(np.where(np.arange(n) == j, hi, lo), True)
        return best, -math.inf, UNSUPPORTED, 0, best_point
    parts = decomposition(problem)
    kappa, c, k0, degree = parts
    if not c > 0:
        point, value = polish(problem, warm)
        if value < best:
            best, best_point = value, point
        own, grad, mag = _exact(problem, best_point, parts)
        fw, fw_mag = frank_wolfe(best_point, grad, np.full(n, lo), np.full(n, hi))
        bound = own + fw - margin(problem, mag + fw_mag)
        status = CERTIFIED if best - bound <= relative_gap * max(1.0, abs(best)) else NODE_LIMIT
        return best, bound, status, 0, best_point
    top = (degree == 0) & (kappa == 0)
    endpoint = (degree == 0) & (kappa != 0)
    start = warm.copy()
    start[top] = hi
    offer(start, True)
    champions = []
    for j in [-1] + list(range(n)):
        if j >= 0 and top[j]:
            continue
        point = np.where((np.arange(n) == j) | top, hi, lo).astype(np.float64)
        champions.append((objective(problem, point), j, point))
    vertex_value, _, vertex = min(champions, key=lambda item: (item[0], item[1]))
    while True:  # flip one variable between lo and hi while that lowers F
        flips = []
        for j in np.flatnonzero(~top):
            point = vertex.copy()
            point[j] = lo if vertex[j] == hi else hi
            flips.append((objective(problem, point), j, point))
        if not flips or min(flips, key=lambda item: (item[0], item[1]))[0] >= vertex_value:
            break
        vertex_value, _, vertex = min(flips, key=lambda item: (item[0], item[1]))
    offer(vertex, True)

    prune = lambda: 0.5 * relative_gap * max(1.0, abs(best))  # noqa: E731
    heap: list = []
    pruned_min = math.inf
    nodes = 0
    sequence = 0

    def evaluate(lower, upper, start_point, parent_bound):
        nonlocal nodes, sequence, pruned_min
        bound, point = node_bound(problem, lower, upper, start_point, parts)
        nodes += 1
        bound = max(bound, parent_bound)
        if objective(problem, point) < best:
            offer(point, True)
        branch, split = choose_branch(problem, lower, upper, point, parts, endpoint)
        if branch >= 0 and np.all(point[upper >= hi] <= hi - 5.0 * problem["beta"]):
            split = math.inf  # max-split
        if bound >= best - prune() or branch < 0:
            pruned_min = min(pruned_min, bound)
        else:
            heapq.heappush(heap, (bound, sequence, lower, upper, point, branch, split))
        sequence += 1

    def face_rule(lower, upper):
        at_top = np.flatnonzero(upper >= hi)
        if len(at_top) == 0:
            return False  # no point of the face max v = hi
        if len(at_top) == 1:
            lower[at_top[0]] = hi
        return True

    root_lower = np.where(top, hi, lo).astype(np.float64)
    root_upper = np.full(n, hi, dtype=np.float64)
    face_rule(root_lower, root_upper)
    evaluate(root_lower, root_upper, best_point.copy(), -math.inf)
    while heap:
        if heap[0][0] >= best - prune():
            pruned_min = min(pruned_min, heap[0][0])
            heapq.heappop(heap)
            continue
        bound, _, lower, upper, point, j, split = heap[0]
        if split == math.inf:
            children = []
            for i in np.flatnonzero((upper >= hi) & (lower < hi)):
                child_lower = lower.copy()
                child_lower[i] = hi
                children.append((child_lower, upper.copy()))
        else:
            children = []
            for side in range(2):
                child_lower, child_upper = lower.copy(), upper.copy()
                if math.isnan(split):
                    if side == 0:
                        child_upper[j] = lower[j]
                    else:
                        child_lower[j] = upper[j]
                elif side == 0:
                    child_upper[j] = split
                else:
                    child_lower[j] = split
                children.append((child_lower, child_upper))
        if nodes + len(children) > max_nodes:
            break
        heapq.heappop(heap)
        for child_lower, child_upper in children:
            if face_rule(child_lower, child_upper):
                evaluate(child_lower, child_upper, point, bound)
    lower_bound = min([pruned_min] + [item[0] for item in heap])
    status = CERTIFIED if best - lower_bound <= relative_gap * max(1.0, abs(best)) else NODE_LIMIT
    return best, lower_bound, status, nodes, best_point


def _exact(problem: dict, v: np.ndarray, parts: tuple) -> tuple[float, np.ndarray, float]:
    """``F`` in the decomposed form, its gradient and the magnitude for :func:`margin` (convex certificate)."""
    kappa, c, k0, _ = parts
    beta = problem["beta"]
    n = problem["n"]
    x = problem["lw"][:n] + v / beta
    xc = float(np.max(x))
    log_z = float(logsumexp(x - xc))
    p = np.exp(x - xc - log_z)
    p_val, p_grad, p_mag, p_gmag = pair_part(problem, v)
    lin = kappa * (x - xc)
    value = p_val + float(np.sum(lin)) + k0 - c * log_z
    grad = p_grad + (kappa - c * p) / beta
    gmag = p_gmag + float(np.sum(np.abs(kappa) + np.abs(c * p))) / beta
    mag = p_mag + float(np.sum(np.abs(lin))) + abs(k0) + abs(c * log_z) + (problem["hi"] - problem["lo"]) * gmag
    return value, grad, mag


# =============================================================================== audit-style problems
def audit_problem(rng: np.random.Generator, n_arms: int, rounds: int, beta: float, r_max: float, alpha: float,
                  local_solver, rare_mass: float = 0.02) -> tuple[dict, np.ndarray, np.ndarray]:
    """The last round-problem of XPO (Algorithm 1, DPO pairs ``(pi_t, pi_ref)``, bonus ``alpha log pi(tau~)``)
    on a ``n_arms``-armed bandit, one context, after ``rounds`` rounds.

    ``pi_ref``: Dirichlet(1) over the arms with one rare arm of mass ``rare_mass``; rewards uniform
    on ``[0, r_max]``; labels Bradley–Terry ``sigma(r_1 - r_2)``. Variables are the arms observed so
    far (slots, in order of first observation) and ``g`` for the unobserved ones, as in the
    engine; a new slot starts at ``g``'s value. ``local_solver(problem, v) -> v'`` solves each round
    from the previous round's point (the warm start). Returns ``(problem, warm, local)``: the last
    round's problem, its warm start and the local solver's answer.
    """
    mass = rng.dirichlet(np.ones(n_arms - 1)) * (1.0 - rare_mass)
    rare = int(rng.integers(n_arms))
    pi_ref = np.insert(mass, rare, rare_mass)
    rewards = rng.uniform(0.0, r_max, size=n_arms)
    slot_of = -np.ones(n_arms, dtype=np.int64)
    arms: list[int] = []
    values: list[float] = []
    g = r_max / 2.0
    pairs: dict[tuple[int, int], float] = {}
    counts: dict[int, float] = {}
    problem = warm = None
    for _ in range(rounds):
        arm_value = np.array([values[slot_of[a]] if slot_of[a] >= 0 else g for a in range(n_arms)])
        logits = np.log(pi_ref) + arm_value / beta
        policy = np.exp(logits - logsumexp(logits))
        first = int(rng.choice(n_arms, p=policy / policy.sum()))
        second = int(rng.choice(n_arms, p=pi_ref))
        for arm in (first, second):
            if slot_of[arm] < 0:
                slot_of[arm] = len(arms)
                arms.append(arm)
                values.append(g)
        first_wins = rng.random() < 1.0 / (1.0 + math.exp(-(rewards[first] - rewards[second])))
        chosen, rejected = (first, second) if first_wins else (second, first)
        if chosen != rejected:
            key = (int(slot_of[chosen]), int(slot_of[rejected]))
            pairs[key] = pairs.get(key, 0.0) + 1.0
        counts[int(slot_of[second])] = counts.get(int(slot_of[second]), 0.0) + 1.0
        k = len(arms)
        unobserved = [a for a in range(n_arms) if slot_of[a] < 0]
        n = k + (1 if unobserved else 0)
        lw = np.array([math.log(pi_ref[a]) for a in arms]
                      + ([math.log(pi_ref[unobserved].sum())] if unobserved else []))
        lref = lw.copy()
        if unobserved:
            lref[k] = 0.0
        mcount = np.array([counts.get(s, 0.0) for s in range(k)] + [0.0] * (n - k))
        keys = sorted(pairs)
        problem = dict(n=n, k=k, lw=lw, lref=lref, mcount=mcount, bweight=np.ones(n),
                       edge_a=np.array([a for a, _ in keys], dtype=np.int64),
                       edge_b=np.array([b for _, b in keys], dtype=np.int64),
                       edge_w=np.array([pairs[key] for key in keys], dtype=np.float64),
                       pair_kind=0, pair_param=r_max, bonus_kind=1, alpha=alpha, beta=beta, lo=0.0, hi=r_max)
        warm = np.array(values + ([g] if unobserved else []), dtype=np.float64)
        solution = np.asarray(local_solver(problem, warm), dtype=np.float64)
        values = list(solution[:k])
        if unobserved:
            g = float(solution[k])
    return problem, warm, np.array(values + ([g] if problem["n"] > problem["k"] else []))


def workspace_of(problem: dict, dense_limit: int = 16):
    """A tabular-solver Workspace holding ``problem`` (as :func:`audit_problem` returns it; fields filled
    directly, as the solver's loader does): what the numba kernels take."""
    from xposim.policies.tabular.state import new_workspace

    n, e = problem["n"], len(problem["edge_a"])
    ws = new_workspace(n, max(e, 1), dense_limit)
    ws.lw[:n] = problem["lw"]
    ws.lref[:n] = problem["lref"]
    ws.mcount[:n] = problem["mcount"]
    ws.bweight[:n] = problem["bweight"]
    ws.edge_a[:e] = problem["edge_a"]
    ws.edge_b[:e] = problem["edge_b"]
    ws.edge_w[:e] = problem["edge_w"]
    return ws


# =============================================================================== the kept search (frontier)
def change_lower_bound(old: dict, new: dict, lower: np.ndarray, upper: np.ndarray) -> float:
    """``sum of the least values over the box [lower, upper] of the terms of F_new - F_old`` (no rounding margin):
    the bound :func:`xposim.policies.tabular.frontier.leaf_change_bound` computes, written independently.

    Edges are matched by their ``(chosen, rejected)`` responses; each changed pair term's least value over
    the box is at one of the two corners spanning its margin (or 0 if the loss's minimum lies between
    them); ``kappa_j log pi_j`` at the corner that makes ``log pi_j`` smallest (``kappa_j > 0``) or largest.
    """
    n, beta = new["n"], new["beta"]
    kappa_old, _, k0_old, _ = decomposition(old)
    kappa_new, _, k0_new, _ = decomposition(new)
    total = k0_new - k0_old
    weights: dict[tuple[int, int], float] = {}
    for a, b, w in zip(new["edge_a"], new["edge_b"], new["edge_w"]):
        weights[(int(a), int(b))] = weights.get((int(a), int(b)), 0.0) + float(w)
    for a, b, w in zip(old["edge_a"], old["edge_b"], old["edge_w"]):
        weights[(int(a), int(b))] = weights.get((int(a), int(b)), 0.0) - float(w)
    name = PAIR_NAMES[new["pair_kind"]]
    base = new["lw"][:n] - new["lref"][:n]
    for (a, b), dw in weights.items():
        if dw == 0.0 or a == b:
            continue
        ends = []
        for va, vb in ((lower[a], upper[b]), (upper[a], lower[b])):
            loss, d_chosen, _ = L.pair_loss(name, np.array([base[a] + va / beta]), np.array([base[b] + vb / beta]),
                                            beta, new["pair_param"])
            ends.append((float(loss[0]), float(d_chosen[0])))
        (low, d_low), (high, d_high) = ends
        if dw > 0:
            extreme = min(low, high) if d_low * d_high >= 0 else 0.0
        else:
            extreme = max(low, high)
        total += dw * extreme
    x_low = new["lw"][:n] + lower[:n] / beta
    x_high = new["lw"][:n] + upper[:n] / beta
    for j in range(n):
        dk = kappa_new[j] - kappa_old[j]
        if dk == 0.0:
            continue
        if dk > 0:  # smallest log pi_j
            x = x_high.copy()
            x[j] = x_low[j]
        else:  # largest
            x = x_low.copy()
            x[j] = x_high[j]
        total += dk * float(x[j] - logsumexp(x))
    return float(total)
