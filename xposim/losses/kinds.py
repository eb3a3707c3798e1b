"""Integer codes of the loss kinds and the string -> code registry.

Jitted learners select a loss by a small ``int`` (numba cannot dispatch on strings cheaply);
Python callers use the names. THEORY.md section 4.5 is the table these codes implement.
"""
from __future__ import annotations

#: Pair loss ``-log sigma(h)``, ``h = beta (l+ - l-)`` (THEORY 4.1).
PAIR_DPO = 0
#: Pair loss ``(l+ - l- - 1/(2 tau_ipo))^2`` (THEORY 4.5, IPO row).
PAIR_IPO = 1
#: Pair loss ``-log sigma(clip(beta [phi(z+) - phi(z-)], -2 R_max, 2 R_max))``, ``phi(z) = z + log z``
#: (THEORY 4.5, chiPO row).
PAIR_CHIPO = 2

#: No bonus (loss 0).
BONUS_NONE = 0
#: ``+alpha log pi(y)`` (XPO, THEORY 4.3).
BONUS_XPO = 1
#: ``+alpha beta log pi(y)`` (VPO, THEORY 4.5 [R]).
BONUS_VPO = 2
#: ``+alpha beta (log pi(y) - log pi_ref(y))`` (SELM, THEORY 4.5).
BONUS_SELM = 3
#: ``+alpha (sigma(beta l(y)) - 1/2) / beta`` (POPO, bounded, THEORY 4.5).
BONUS_POPO = 4
#: ``-alpha w log pi(y)``, ``w = sg[weight / sqrt(N(x, y))]`` (COPO, opposite sign, THEORY 4.5).
BONUS_COPO = 5

PAIR_KINDS: dict[str, int] = {"dpo": PAIR_DPO, "ipo": PAIR_IPO, "chipo": PAIR_CHIPO}
BONUS_KINDS: dict[str, int] = {
    "none": BONUS_NONE,
    "xpo": BONUS_XPO,
    "vpo": BONUS_VPO,
    "selm": BONUS_SELM,
    "popo": BONUS_POPO,
    "copo": BONUS_COPO,
}
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
