"""THE loss kernels of xposim (THEORY.md sections 4.1-4.5); every learner and the LM path call these.

Notation: ``l(y) = log pi(y|x) - log pi_ref(y|x)`` (sequence-level, summed over tokens), DPO margin
``h = beta (l(tau+) - l(tau-))``. Losses are *minimized*.

Layers:

* scalar ``@njit`` kernels returning the loss and its derivatives w.r.t. their inputs:
  pair losses :func:`dpo_pair`, :func:`ipo_pair`, :func:`chipo_pair` (and ``*_hessian``), bonuses
  :func:`xpo_bonus`, :func:`vpo_bonus`, :func:`selm_bonus`, :func:`popo_bonus`, :func:`copo_bonus`;
  int-dispatched :func:`pair_loss`, :func:`pair_loss_hessian`, :func:`bonus_loss`,
  :func:`bonus_loss_hessian` with codes ``PAIR_*`` / ``BONUS_*``;
* weighted batch kernels :func:`pair_loss_batch`, :func:`bonus_loss_batch` (+ ``*_hessian_batch``);
* Python API :func:`pair_loss_and_grad`, :func:`bonus_loss_and_grad` and :class:`LossSpec`.

The plain-numpy reference is :mod:`xposim.reference.losses_numpy`.
"""
from xposim.losses.api import (
    LossSpec,
    bonus_loss_and_grad,
    bonus_loss_hessian_arrays,
    pair_loss_and_grad,
    pair_loss_hessian_arrays,
)
from xposim.losses.batch import (
    bonus_loss_batch,
    bonus_loss_hessian_batch,
    check_bonus_parameters,
    check_pair_parameters,
    pair_loss_batch,
    pair_loss_hessian_batch,
)
from xposim.losses.bonus import (
    bonus_loss,
    bonus_loss_hessian,
    copo_bonus,
    popo_bonus,
    popo_bonus_hessian,
    selm_bonus,
    vpo_bonus,
    xpo_bonus,
)
from xposim.losses.kinds import (
    BONUS_COPO,
    BONUS_KINDS,
    BONUS_NONE,
    BONUS_POPO,
    BONUS_SELM,
    BONUS_VPO,
    BONUS_XPO,
    PAIR_CHIPO,
    Bonus,
    PairLoss,
    PAIR_DPO,
    PAIR_IPO,
    PAIR_KINDS,
    bonus_kind,
    pair_kind,
)
from xposim.losses.pair import (
    chipo_margin,
    chipo_pair,
    chipo_pair_hessian,
    dpo_pair,
    dpo_pair_hessian,
    ipo_pair,
    ipo_pair_hessian,
    pair_loss,
    pair_loss_hessian,
)

__all__ = [
    "BONUS_COPO", "BONUS_KINDS", "BONUS_NONE", "BONUS_POPO", "BONUS_SELM", "BONUS_VPO", "BONUS_XPO",
    "Bonus", "LossSpec", "PairLoss", "PAIR_CHIPO", "PAIR_DPO", "PAIR_IPO", "PAIR_KINDS",
    "bonus_kind", "bonus_loss", "bonus_loss_and_grad", "bonus_loss_batch", "bonus_loss_hessian",
    "bonus_loss_hessian_arrays", "bonus_loss_hessian_batch", "check_bonus_parameters",
    "check_pair_parameters", "chipo_margin", "chipo_pair", "chipo_pair_hessian", "copo_bonus",
    "dpo_pair", "dpo_pair_hessian", "ipo_pair", "ipo_pair_hessian", "pair_kind", "pair_loss",
    "pair_loss_and_grad", "pair_loss_batch", "pair_loss_hessian", "pair_loss_hessian_arrays",
    "pair_loss_hessian_batch", "popo_bonus", "popo_bonus_hessian", "selm_bonus", "vpo_bonus",
    "xpo_bonus",
]
