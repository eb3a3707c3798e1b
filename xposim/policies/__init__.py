"""Policy classes (THEORY 3) and their per-round argmin.

* :class:`TabularClass` — ``pi_f ∝ pi_ref e^{f/beta}``, ``f in [0, R_max]^{leaves}`` (projected Newton);
* :class:`FiniteClass` — an explicit list of policies (exact argmin by enumeration);
* :class:`LogLinearClass` — ``pi_theta ∝ pi_ref e^{<theta, phi>/beta}``, ``||theta|| <= B`` (projected Newton on the ball);
* :class:`TokenLogitClass` — softmax logits per state, ``|z| <= B`` (damped projected Newton-CG on the box);
* :class:`PolicyClass` — the interface new classes implement (see :mod:`xposim.policies.base`).
"""
from xposim.policies.arrays import env_arrays
from xposim.policies.base import PolicyClass
from xposim.policies.solving import SolverSettings
from xposim.policies.store import new_store, PairStore
from xposim.policies.view import IterateView, new_view
from xposim.policies.finite import FiniteClass
from xposim.policies.loglinear import LogLinearClass
from xposim.policies.tabular import TabularClass
from xposim.policies.token_logit import TokenLogitClass

__all__ = [
    "PolicyClass",
    "TabularClass",
    "FiniteClass",
    "LogLinearClass",
    "TokenLogitClass",
    "SolverSettings",
    "IterateView",
    "PairStore",
    "env_arrays",
    "new_view",
    "new_store",
]
