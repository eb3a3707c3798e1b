"""Parameters of the tabular class (``TabularState``) and the solver's scratch memory (``Workspace``).

Parameters actually carried (per context ``x``): one value ``f`` per *observed* leaf (a slot of the
:class:`~xposim.policies.view.IterateView`) and ONE shared value ``g`` (``rest_value``) for every
unobserved leaf: unobserved leaves enter the objective only through ``log Z_f(x)``, where they act
as one aggregate leaf of reference mass ``P_U(x)``, so at any minimizer they can share a value.
The cost of a round therefore depends on the observed leaves only, never on ``n_leaves``.
Closed form of ``g`` (used as a test): the objective depends on ``g`` only through
``log Z`` with derivative ``-(p_U/beta) S``, ``S = sum of d(objective)/d(log pi)``
over the bonus terms (pair terms of DPO/IPO cancel in ``S``). For XPO/VPO/SELM/POPO bonuses
``S > 0``: ``g = R_max`` (optimism: the unseen leaves get the largest value); for COPO ``S < 0``:
``g = 0``; with ``alpha = 0`` the objective does not depend on ``g`` and it keeps its value.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np



#: Largest number of variables (observed responses of a context, plus the unobserved aggregate) the
#: certified solver takes; a context with more is solved locally and reported uncertified.
MAX_CERTIFIED_VARIABLES = 256
#: contexts whose last certified search is kept at once (context ``x`` uses slot ``x % FRONTIER_SLOTS``)
FRONTIER_SLOTS = 4
#: floats the kept searches may take (boxes and points of every slot's leaves): 32 MiB
FRONTIER_FLOATS = 1 << 22

TabularState = namedtuple(
    "TabularState",
    [
        "values",  # (nc, L) f of each slot
        "rest_value",  # (nc,) g shared by the unobserved leaves
        "known",  # (nc,) int64 slots whose value is initialized
        "lower",  # float 0
        "upper",  # float R_max
        "restart_pool",  # (restarts, L + 1) uniforms
        "leaf_logref",  # (nc, L) log pi_ref(tau|x) (the environment's, for the class weights)
        "tolerance",
        "max_iterations",
        "disagreement_tolerance",
        "dense_limit",
        "beta",
        "cache_d",  # (nc, L) dF/d log pi of each slot at the current values (the derivative cache)
        "cache_value",  # (nc,) F at the current values
        "cache_scale",  # (nc,) number of loss terms N
        "cache_alpha",  # (nc,) alpha of the cached objective
        "cache_count",  # (nc, L) bonus counts in the cached objective
        "cache_weight",  # (nc, L) bonus weights in the cached objective
        "cache_valid",  # (nc,) bool
        "champion_starts",  # bool: one extra start per variable (SolverSettings.champion_starts)
        "certify",  # bool: certified global argmin of non-convex objectives (SolverSettings.argmin)
        "certificate_gap",  # float: relative gap of a certified solve
        "max_nodes",  # int: branch-and-bound budget per solve
        "reuse_search",  # bool: start each certified solve from the context's last search (SolverSettings)
    ],
)
TabularState.__doc__ = """Parameters of the tabular class (module docstring) and its solver settings."""

Workspace = namedtuple(
    "Workspace",
    [
        "edge_a", "edge_b", "edge_w",  # (E,) gathered edges of one context
        "h_cc", "h_cr", "h_rr",  # (E,) weighted pair second derivatives
        "lw", "v", "v0", "v_best", "v_try", "lref", "mcount", "bweight",  # (L + 1,)
        "logp", "p", "d", "grad", "u", "hb", "direction", "free_index", "position",
        "cg_r", "cg_z", "cg_p", "cg_q", "cg_x", "full",  # (L + 1,)
        "component",  # (L + 1,) int64 union-find parents
        "hessian",  # (dense_limit, dense_limit)
        "scratch",  # (L + 1,)
        "certificate",  # CertificateWorkspace of the branch-and-bound (xposim.policies.tabular.certified)
        "frontier",  # Frontier: the last search of each context slot (xposim.policies.tabular.frontier)
    ],
)


def frontier_capacity(max_nodes: int, n_variables: int, slots: int) -> int:
    """Leaves a kept search may hold: ``4 (max_nodes + 2)``, within :data:`FRONTIER_FLOATS` over all slots
    (five vectors per leaf: its box's two ends, its point, two gradients)."""
    per_leaf = 5 * max(int(n_variables), 1) * max(int(slots), 1)
    return max(1, min(4 * (int(max_nodes) + 2), FRONTIER_FLOATS // per_leaf))


def certified_words(n_leaves: int, edge_capacity: int, max_nodes: int, frontier_slots: int) -> int:
    """Floats of the branch-and-bound's workspace and kept searches (memory estimates)."""
    from xposim.policies.tabular.frontier import frontier_bytes

    m = min(n_leaves + 1, MAX_CERTIFIED_VARIABLES)
    words = 5 * (max_nodes + 2) * m + 2 * m * m + 12 * (max_nodes + 2)
    if frontier_slots > 0:
        words += frontier_bytes(frontier_slots, frontier_capacity(max_nodes, m, frontier_slots), m,
                                edge_capacity) // 8
    return words


def new_workspace(n_leaves: int, edge_capacity: int, dense_limit: int, max_nodes: int = 0,
                  frontier_slots: int = 0) -> Workspace:
    """Scratch memory of the solver: ``O(n_leaves + edges + dense_limit^2)`` floats, plus the
    branch-and-bound's ``O(max_nodes * m + m^2)`` with ``m = min(n_leaves + 1, MAX_CERTIFIED_VARIABLES)``
    when ``max_nodes > 0`` (a certified solver), plus ``frontier_slots`` kept searches
    (:func:`certified_words`)."""
    from xposim.policies.tabular.certified import new_certificate_workspace
    from xposim.policies.tabular.frontier import new_frontier, no_frontier

    n = n_leaves + 1
    e = max(int(edge_capacity), 1)
    m = min(n, MAX_CERTIFIED_VARIABLES)
    frontier = (new_frontier(frontier_slots, frontier_capacity(max_nodes, m, frontier_slots), m, e)
                if max_nodes > 0 and frontier_slots > 0 else no_frontier())
    f = lambda size: np.zeros(size)  # noqa: E731
    certificate = (new_certificate_workspace(min(n, MAX_CERTIFIED_VARIABLES), max_nodes) if max_nodes > 0
                   else new_certificate_workspace(1, 1))
    return Workspace(
        edge_a=np.zeros(e, dtype=np.int64), edge_b=np.zeros(e, dtype=np.int64), edge_w=f(e),
        h_cc=f(e), h_cr=f(e), h_rr=f(e),
        lw=f(n), v=f(n), v0=f(n), v_best=f(n), v_try=f(n), lref=f(n), mcount=f(n), bweight=f(n),
        logp=f(n), p=f(n), d=f(n), grad=f(n), u=f(n), hb=f(n), direction=f(n),
        free_index=np.zeros(n, dtype=np.int64), position=np.zeros(n, dtype=np.int64),
        cg_r=f(n), cg_z=f(n), cg_p=f(n), cg_q=f(n), cg_x=f(n), full=f(n),
        component=np.zeros(n, dtype=np.int64),
        hessian=np.zeros((dense_limit, dense_limit)),
        scratch=f(n),
        certificate=certificate,
        frontier=frontier,
    )
