"""Loss/bonus combinations the non-built-in policy classes are checked on (pair kind, pair
parameter, bonus kind, alpha): every pair loss and every bonus of THEORY 4.5 at least once."""
from xposim.losses import (
    BONUS_COPO,
    BONUS_NONE,
    BONUS_POPO,
    BONUS_SELM,
    BONUS_VPO,
    BONUS_XPO,
    PAIR_CHIPO,
    PAIR_DPO,
    PAIR_IPO,
)

LOSS_CASES = [
    (PAIR_DPO, 0.0, BONUS_NONE, 0.0),
    (PAIR_IPO, 0.7, BONUS_NONE, 0.0),
    (PAIR_CHIPO, 1.0, BONUS_XPO, 0.3),
    (PAIR_DPO, 0.0, BONUS_XPO, 0.4),
    (PAIR_DPO, 0.0, BONUS_VPO, 0.4),
    (PAIR_DPO, 0.0, BONUS_SELM, 0.4),
    (PAIR_DPO, 0.0, BONUS_POPO, 0.6),
    (PAIR_DPO, 0.0, BONUS_COPO, 0.3),
]
