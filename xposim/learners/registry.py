"""``make_learner(name, **overrides)``: the learners by name."""
from __future__ import annotations

import dataclasses

from xposim.learners.config import LearnerConfig
from xposim.learners.dpo import IPO, ChiPO, OfflineDPO, OnlineDPO
from xposim.learners.optimism import COPO, POPO, SELM, VPO
from xposim.learners.xpo import XPO

#: name -> (config class, fixed settings of the variant)
LEARNERS: dict[str, tuple[type[LearnerConfig], dict]] = {
    "xpo": (XPO, {}),
    "xpo_historical": (XPO, {"sampler": "historical"}),
    "xpo_batch": (XPO, {"batch_size": 8}),
    "xpo_trl": (XPO, {"mode": "trl"}),
    "online_dpo": (OnlineDPO, {}),
    "online_dpo_greedy": (OnlineDPO, {"greedy": True}),
    "online_dpo_trl": (OnlineDPO, {"mode": "trl"}),
    "dpo": (OfflineDPO, {}),
    "offline_dpo": (OfflineDPO, {}),
    "ipo": (IPO, {}),
    "chipo": (ChiPO, {}),
    "vpo": (VPO, {}),
    "selm": (SELM, {}),
    "popo": (POPO, {}),
    "se_popo": (POPO, {"self_exploring": True}),
    "copo": (COPO, {}),
}


def learner_names() -> list[str]:
    """Every name :func:`make_learner` accepts."""
    return sorted(LEARNERS)


def make_learner(name: str, /, **overrides) -> LearnerConfig:
    """The learner ``name`` (see :data:`LEARNERS`) with fields overridden by ``overrides``.

    ``ValueError`` for an unknown name (listing the known ones), an unknown field (listing the
    fields of that learner) or a nonsensical value (naming the field). The result's ``name``
    (its label in tables) defaults to ``name``.
    """
    key = name.strip().lower().replace("-", "_") if isinstance(name, str) else name
    if key not in LEARNERS:
        raise ValueError(f"unknown learner {name!r}; known learners: {', '.join(learner_names())}")
    cls, fixed = LEARNERS[key]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} for learner {name!r}; its fields are {sorted(fields)}")
    settings = {"name": key, **fixed, **overrides}  # overrides may relabel with name=...
    try:
        return cls(**settings)
    except TypeError as error:
        raise ValueError(f"bad settings for learner {name!r}: {error}") from None
