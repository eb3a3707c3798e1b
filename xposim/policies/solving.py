"""What every per-round argmin shares: the problem it reads, its settings, counters, status codes
and line-search constants, and the bookkeeping of multi-start solves.
"""
from __future__ import annotations

import math
from collections import namedtuple
from dataclasses import dataclass

import numpy as np
from numba import njit

from xposim._jit import internal_kernel
from xposim.losses.kinds import BONUS_POPO, BONUS_SELM, BONUS_VPO, BONUS_XPO, PAIR_CHIPO

#: Armijo sufficient-decrease constant of every line search.
ARMIJO = 1e-4
#: Relative objective noise tolerated by a line search (rounding of sums of ``N`` terms).
OBJECTIVE_NOISE = 64.0 * 2.220446049250313e-16

#: ``SolverSettings.argmin`` choices.
ARGMIN_METHODS = ("certified", "local")

# solver status codes
STATUS_CONVERGED = 0
STATUS_MAX_ITERATIONS = 1
STATUS_LINE_SEARCH = 2

# status counters (int64 array ``counters`` of the SolveProblem)
COUNTER_SOLVES = 0
COUNTER_FAILURES = 1
COUNTER_DISAGREEMENTS = 2
COUNTER_NEWTON_ITERATIONS = 3
COUNTER_IMPROVED = 4
#: argmins of a non-convex objective returned without a certificate of global optimality
COUNTER_UNCERTIFIED = 5
N_COUNTERS = 6

SolveProblem = namedtuple(
    "SolveProblem",
    [
        "store",  # PairStore
        "bonus_count",  # (nc, L) M[x, slot]
        "bonus_weight",  # (nc, L) per-slot bonus weight (COPO's c / sqrt(N)); 1 otherwise
        "loss_ref_logp",  # (nc, L) log pi_ref_loss of each slot
        "pair_kind",  # int PAIR_*
        "pair_param",  # float tau_ipo (IPO) or r_max (chiPO)
        "bonus_kind",  # int BONUS_*
        "alpha",  # float
        "beta",  # float
        "changed",  # (nc,) bool out: the iterate of x changed
        "counters",  # (N_COUNTERS,) int64 in/out
        "batch_context",  # (B,) int64 the round's new data (paper mode): contexts,
        "batch_chosen",  # (B,) chosen slots,
        "batch_rejected",  # (B,) rejected slots,
        "batch_bonus",  # (B,) bonus slots (-1: none)
        "n_batch",  # int number of new pairs (0: unknown, no incremental shortcut)
        "reference_drift",  # bool the loss reference changed since the last solve
        "largest_gap",  # (1,) float64 in/out: largest relative optimality gap of an argmin so far
    ],
)
SolveProblem.__doc__ = """What a class's argmin reads (paper mode): all the data of the run so far, the round's new
data (``batch_*``, ``n_batch``), the loss settings, and where to report (``changed``, ``counters``).

``store`` holds every pair; ``bonus_count[x, s]`` / ``bonus_weight[x, s]`` the bonus samples per slot;
``loss_ref_logp[x, s]`` the loss reference ``log pi_ref_loss`` per slot (the environment's ``pi_ref``
or, for SELM, the previous iterate). Counters: ``COUNTER_*`` indices. ``largest_gap[0]``: the largest
``(value - lower bound) / max(1, |value|)`` of the argmins so far (``inf`` for an argmin without a lower
bound, i.e. a local method on a non-convex objective)."""


@dataclass(frozen=True)
class SolverSettings:
    """Settings of the per-round argmin (projected Newton, see :mod:`xposim.policies.tabular`).

    Attributes
    ----------
    tolerance : stop when ``max_j |v_j - P[v_j - grad_j / N]| <= tolerance``, ``P`` the projection
        on the box and ``N`` the number of loss terms of the context (pairs plus bonus samples):
        the projected gradient of the *per-sample* objective, so the position accuracy does not
        depend on how much data there is. Default ``1e-8``.
    max_iterations : cap on Newton iterations per solve; a solve that hits it is counted as a
        failure in the ``solver_failures`` column. Default 200.
    restarts : extra starting points per solve besides the warm start (non-convex objectives:
        THEORY 3); start ``j`` is uniform in the box from a pool drawn once per run. The lowest
        objective wins (ties to the warm start); solves whose starts disagree by more than
        ``disagreement_tolerance`` (relative objective) are counted in ``solver_disagreements``.
    disagreement_tolerance : relative objective gap for counting a disagreement. Default ``1e-9``.
    champion_starts : tabular class only. When the bonus is active, every solve also starts from
        each *champion* point — one response (or the unobserved aggregate) at ``R_max``, all others
        at 0 — besides the warm start. The XPO objective's local minima sit at such vertices (the
        bonus's ``-log Z`` term is concave), and the warm start alone can keep one the data no
        longer support (``benchmarks/diagnose_local_minima.py``). Costs one Newton solve per
        observed response per round. Default False (the warm-start solver).
    dense_limit : the Newton system is solved by a (modified) Cholesky factorization when the
        number of free variables is at most this, by preconditioned truncated conjugate gradients
        above it. Default 128.
    argmin : ``"certified"`` (default): where the class has a global solver with a certificate
        (the tabular class: :mod:`xposim.policies.tabular.certified`), every argmin of a non-convex
        objective is the global minimum with a proven lower bound within ``certificate_gap``, or is
        counted in ``uncertified_solves`` with its gap in ``max_certified_gap``. ``"local"``: the
        local method only (warm start, plus ``champion_starts`` / ``restarts`` if set); each non-convex
        solve is then counted uncertified with an infinite gap. Classes without a certified solver
        (log-linear, token-logit) always solve locally and report so.
    certificate_gap : relative gap ``(value - lower bound) / max(1, |value|)`` at which a solve is
        certified. Default ``1e-9``.
    max_nodes : branch-and-bound budget (relaxations solved) per certified solve; a solve that
        exhausts it keeps its best point and proven bound and is counted uncertified. Default 4000.
    reuse_search : tabular class, certified argmin. Keep each context's last search (its leaves with
        their proven bounds) and start the next solve from it: a round adds a few terms, whose least
        value on a leaf's box moves the leaf's bound, and only the leaves that no longer clear the
        new incumbent are searched again (:mod:`xposim.policies.tabular.frontier`). The answer is the
        same certified global minimum either way. Default True; False searches from the root every
        solve.
    """

    tolerance: float = 1e-8
    max_iterations: int = 200
    restarts: int = 0
    disagreement_tolerance: float = 1e-9
    dense_limit: int = 128
    champion_starts: bool = False
    argmin: str = "certified"
    certificate_gap: float = 1e-9
    max_nodes: int = 4000
    reuse_search: bool = True

    def __post_init__(self) -> None:
        if self.argmin not in ARGMIN_METHODS:
            raise ValueError(f"argmin must be one of {list(ARGMIN_METHODS)}, got {self.argmin!r}")
        g = self.certificate_gap
        if isinstance(g, bool) or not (isinstance(g, (int, float)) and math.isfinite(g) and g > 0):
            raise ValueError(f"certificate_gap must be a finite real number > 0, got {g!r}")
        if isinstance(self.max_nodes, bool) or not isinstance(self.max_nodes, (int, np.integer)) or self.max_nodes < 1:
            raise ValueError(f"max_nodes must be an integer >= 1, got {self.max_nodes!r}")
        if not isinstance(self.champion_starts, (bool, np.bool_)):
            raise ValueError(f"champion_starts must be True or False, got {self.champion_starts!r}")
        if not isinstance(self.reuse_search, (bool, np.bool_)):
            raise ValueError(f"reuse_search must be True or False, got {self.reuse_search!r}")
        if not (isinstance(self.tolerance, (int, float)) and math.isfinite(self.tolerance) and self.tolerance > 0):
            raise ValueError(f"tolerance must be a finite real number > 0, got {self.tolerance!r}")
        for name, minimum in (("max_iterations", 1), ("restarts", 0), ("dense_limit", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        d = self.disagreement_tolerance
        if not (isinstance(d, (int, float)) and math.isfinite(d) and d >= 0):
            raise ValueError(f"disagreement_tolerance must be a finite real number >= 0, got {d!r}")


@internal_kernel
def improves_on(candidate: float, incumbent: float, disagreement_tolerance: float) -> bool:
    """Multi-start rule: a start replaces the incumbent only if lower by more than
    ``disagreement_tolerance * max(1, |incumbent|)`` (ties go to the incumbent, the warm start first)."""
    return candidate < incumbent - disagreement_tolerance * max(1.0, abs(incumbent))


@internal_kernel
def values_disagree(a: float, b: float, reference: float, disagreement_tolerance: float) -> bool:
    """Two starts disagree if their objectives differ by more than ``disagreement_tolerance * max(1, |reference|)``."""
    return abs(a - b) > disagreement_tolerance * max(1.0, abs(reference))


def record_solve(counters: np.ndarray, iterations: int, converged: bool, disagreement: bool, improved: bool) -> None:
    """Add one multi-start solve's outcome to the ``counters`` of a :class:`SolveProblem` (Python side).

    ``COUNTER_NEWTON_ITERATIONS += iterations``; ``COUNTER_FAILURES``, ``COUNTER_DISAGREEMENTS`` and
    ``COUNTER_IMPROVED`` count solves that did not converge, whose starts disagreed, and where a restart
    beat the warm start. (``COUNTER_SOLVES`` is the caller's: some classes count solves without starts.)
    """
    counters[COUNTER_NEWTON_ITERATIONS] += iterations
    if not converged:
        counters[COUNTER_FAILURES] += 1
    if disagreement:
        counters[COUNTER_DISAGREEMENTS] += 1
    if improved:
        counters[COUNTER_IMPROVED] += 1


def draw_restart_uniforms(rng: np.random.Generator | None, settings: SolverSettings, n_leaves: int) -> np.ndarray:
    """The uniforms of a run's random restarts: ``(settings.restarts, n_leaves + 1)`` draws from ``rng``.

    Every class draws this block, first thing in a run, and maps a row to a start in its own
    parameter space (the tabular class: one uniform per leaf and one for the unobserved
    aggregate), so the run's later draws do not depend on the class. No restarts: an empty block
    and no draw. ``rng`` may be ``None`` only then.
    """
    if settings.restarts == 0:
        return np.zeros((0, n_leaves + 1))
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator when settings.restarts = {settings.restarts} > 0, "
                         f"got {rng!r}")
    return rng.random((settings.restarts, n_leaves + 1))


@njit(cache=True)
def may_be_nonconvex(pair_kind: int, bonus_kind: int, alpha: float) -> bool:
    """Whether a round objective can have non-global local minima (THEORY 3): an optimistic bonus
    (XPO, VPO, SELM, POPO: ``-c log Z`` is concave) with ``alpha > 0``, or the chiPO pair loss (its
    link ``phi(z) = z + log z`` of a probability ratio does not keep convexity). DPO and IPO pair losses,
    no bonus and COPO's bonus give convex objectives in the classes' parameters: a local argmin is global."""
    if pair_kind == PAIR_CHIPO:
        return True
    optimistic = bonus_kind == BONUS_XPO or bonus_kind == BONUS_VPO or bonus_kind == BONUS_SELM or bonus_kind == BONUS_POPO
    return optimistic and alpha > 0.0


@njit(cache=True)
def record_certificate(counters: np.ndarray, largest_gap: np.ndarray, value: float, lower_bound: float,
                       certified: bool) -> None:
    """Report one argmin's certificate: ``largest_gap[0]`` keeps the largest relative gap
    ``(value - lower_bound) / max(1, |value|)`` (``inf`` without a bound); an uncertified solve is counted."""
    if not certified:
        counters[COUNTER_UNCERTIFIED] += 1
    if lower_bound == -math.inf or not math.isfinite(value):
        gap = math.inf
    else:
        gap = max(value - lower_bound, 0.0) / max(1.0, abs(value))
    if gap > largest_gap[0]:
        largest_gap[0] = gap
