"""The loss kinds (:class:`PairLoss`, :class:`Bonus`), their integer codes and the name -> code registry.

Jitted learners select a loss by a small ``int`` (numba cannot dispatch on strings cheaply);
learners declare theirs as enum members (``pair_loss = PairLoss.DPO``), Python callers may use
the names. THEORY.md section 4.5 is the table these codes implement.
"""
from __future__ import annotations

from enum import IntEnum


class PairLoss(IntEnum):
    """The loss of one labeled pair ``(tau+, tau-)`` (THEORY 4.1, 4.5)."""

    DPO = 0
    """``-log sigma(h)``, ``h = beta (l(tau+) - l(tau-))``, ``l = log pi - log pi_ref`` (THEORY 4.1)."""
    IPO = 1
    """``(l(tau+) - l(tau-) - 1/(2 tau_ipo))^2`` (THEORY 4.5, IPO row)."""
    CHIPO = 2
    """``-log sigma(clip(beta [phi(z+) - phi(z-)], -2 R_max, 2 R_max))``, ``phi(z) = z + log z``,
    ``z = pi/pi_ref`` (THEORY 4.5, chiPO row)."""


class Bonus(IntEnum):
    """The bonus term on one response ``y`` (THEORY 4.3, 4.5); it enters the minimization as written."""

    NONE = 0
    """No bonus (loss 0)."""
    XPO = 1
    """``+alpha log pi(y)`` (XPO, THEORY 4.3)."""
    VPO = 2
    """``+alpha beta log pi(y)`` (VPO, THEORY 4.5 [R])."""
    SELM = 3
    """``+alpha beta (log pi(y) - log pi_ref(y))`` (SELM, THEORY 4.5)."""
    POPO = 4
    """``+alpha (sigma(beta l(y)) - 1/2) / beta`` (POPO, bounded, THEORY 4.5)."""
    COPO = 5
    """``-alpha w log pi(y)``, ``w = sg[weight / sqrt(N(x, y))]`` (COPO, opposite sign, THEORY 4.5)."""


# the codes as plain ints, for the kernels and for numba arguments (an IntEnum member passed to a
# jitted function would be a type of its own)
PAIR_DPO = int(PairLoss.DPO)
PAIR_IPO = int(PairLoss.IPO)
PAIR_CHIPO = int(PairLoss.CHIPO)
BONUS_NONE = int(Bonus.NONE)
BONUS_XPO = int(Bonus.XPO)
BONUS_VPO = int(Bonus.VPO)
BONUS_SELM = int(Bonus.SELM)
BONUS_POPO = int(Bonus.POPO)
BONUS_COPO = int(Bonus.COPO)

PAIR_KINDS: dict[str, int] = {member.name.lower(): int(member) for member in PairLoss}
BONUS_KINDS: dict[str, int] = {member.name.lower(): int(member) for member in Bonus}
PAIR_NAMES: dict[int, str] = {v: k for k, v in PAIR_KINDS.items()}
BONUS_NAMES: dict[int, str] = {v: k for k, v in BONUS_KINDS.items()}


def _normalize(name: object) -> object:
    if isinstance(name, str):
        return name.strip().lower().replace("-", "_")
    return name


def pair_kind(name: str | int) -> int:
    """Integer code of the pair loss ``name`` (one of ``dpo``, ``ipo``, ``chipo``; case-insensitive).

    An ``int`` that is already a valid code is returned unchanged.
    """
    key = _normalize(name)
    if isinstance(key, str) and key in PAIR_KINDS:
        return PAIR_KINDS[key]
    if isinstance(key, int) and not isinstance(key, bool) and key in PAIR_NAMES:
        return int(key)
    raise ValueError(
        f"pair loss name must be one of {sorted(PAIR_KINDS)} (or codes {sorted(PAIR_NAMES)}), got {name!r}"
    )


def bonus_kind(name: str | int) -> int:
    """Integer code of the bonus ``name`` (``none``, ``xpo``, ``vpo``, ``selm``, ``popo``, ``copo``).

    Case-insensitive; an ``int`` that is already a valid code is returned unchanged.
    """
    key = _normalize(name)
    if isinstance(key, str) and key in BONUS_KINDS:
        return BONUS_KINDS[key]
    if isinstance(key, int) and not isinstance(key, bool) and key in BONUS_NAMES:
        return int(key)
    raise ValueError(
        f"bonus name must be one of {sorted(BONUS_KINDS)} (or codes {sorted(BONUS_NAMES)}), got {name!r}"
    )
