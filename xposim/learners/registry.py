"""``make_learner(name, **overrides)``: the learners by name, the user's included.

A name is a key of :data:`LEARNERS` (the built-ins and whatever :func:`register_learner` added) or
a reference ``"package.module:function"`` (:mod:`xposim.plugins`) to a factory returning a
:class:`LearnerConfig` (or to a ``LearnerConfig`` subclass), called with the overrides.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from xposim.learners.config import LearnerConfig
from xposim.learners.dpo import IPO, ChiPO, OfflineDPO, OnlineDPO
from xposim.learners.optimism import COPO, POPO, SELM, VPO
from xposim.learners.reward_models.config import REWARD_MODEL_LEARNERS
from xposim.learners.xpo import XPO
from xposim.losses import LossSpec
from xposim.losses.kinds import BONUS_NAMES, PAIR_NAMES
from xposim.plugins import is_reference, load_reference

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
    # reward-model explorers (issue 12): maxinp, colstim, thompson_ee, thompson_bai, passive_mle, pessimistic_mle
    **{name: (cls, {}) for name, cls in REWARD_MODEL_LEARNERS.items()},
}


#: user learners registered by factory: name -> callable(**overrides) -> LearnerConfig
_FACTORIES: dict[str, Callable[..., LearnerConfig]] = {}


def learner_names() -> list[str]:
    """Every registered name :func:`make_learner` accepts (references need no registration)."""
    return sorted(set(LEARNERS) | set(_FACTORIES))


def register_learner(name: str, factory: type[LearnerConfig] | Callable[..., LearnerConfig], /,
                     *, replace: bool = False, **fixed) -> None:
    """Make ``make_learner(name, **overrides)`` build the user's learner.

    ``factory``: a :class:`LearnerConfig` subclass (then ``fixed`` are settings of the variant, as
    in :data:`LEARNERS`) or a callable ``(**overrides) -> LearnerConfig``. ``ValueError`` for a
    taken name (unless ``replace``), a name that is not an identifier, or a factory of another
    kind. Registration lives in this process (threads and forked pool workers see it; dask workers
    do not: name a reference ``"module:function"`` there).
    """
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        raise ValueError(f"learner name must be a lower-case identifier (make_learner looks names up in lower "
                         f"case), got {name!r}")
    if name in LEARNERS or name in _FACTORIES:
        if not replace:
            raise ValueError(f"learner {name!r} is already registered (pass replace=True to replace it)")
        LEARNERS.pop(name, None)
        _FACTORIES.pop(name, None)
    if isinstance(factory, type) and issubclass(factory, LearnerConfig):
        LEARNERS[name] = (factory, dict(fixed))
    elif callable(factory) and not fixed:
        _FACTORIES[name] = factory
    else:
        raise ValueError(f"learner factory for {name!r} must be a LearnerConfig subclass or a callable "
                         f"(fixed settings only with a class), got {factory!r}")


def _from_factory(name: str, factory, overrides: dict) -> LearnerConfig:
    if isinstance(factory, type) and issubclass(factory, LearnerConfig):
        return _from_class(name, factory, {}, overrides)
    if not callable(factory):
        raise ValueError(f"learner factory {name!r} is not callable")
    try:
        learner = factory(**overrides)
    except TypeError as error:
        raise ValueError(f"bad settings for learner {name!r}: {error}") from None
    if not isinstance(learner, LearnerConfig):
        raise ValueError(f"learner factory {name!r} returned {type(learner).__name__}, not a LearnerConfig")
    return learner if "name" in overrides or learner.name is not None else dataclasses.replace(learner, name=name)


def _from_class(name: str, cls, fixed: dict, overrides: dict) -> LearnerConfig:
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} for learner {name!r}; its fields are {sorted(fields)}")
    settings = {"name": name, **fixed, **overrides}  # overrides may relabel with name=...
    try:
        return cls(**settings)
    except TypeError as error:
        raise ValueError(f"bad settings for learner {name!r}: {error}") from None


def make_learner(name: str, /, **overrides) -> LearnerConfig:
    """The learner ``name`` (see the module docstring) with fields overridden by ``overrides``.

    ``ValueError`` for an unknown name (listing the known ones), an unknown field (listing the
    fields of that learner) or a nonsensical value (naming the field). The result's ``name``
    (its label in tables) defaults to ``name``.
    """
    if is_reference(name):
        return _from_factory(name, load_reference(name, "learner factory"), overrides)
    key = name.strip().lower().replace("-", "_") if isinstance(name, str) else name
    if key in _FACTORIES:
        return _from_factory(key, _FACTORIES[key], overrides)
    if key not in LEARNERS:
        raise ValueError(f"unknown learner {name!r}; known learners: {', '.join(learner_names())}, "
                         "or a reference 'package.module:function'")
    cls, fixed = LEARNERS[key]
    return _from_class(key, cls, fixed, overrides)


def loss_spec(name: str, /, beta: float, alpha: float | None = None, tau_ipo: float | None = None,
              r_max: float | None = None) -> LossSpec:
    """The per-round loss of learner ``name`` (its THEORY 4.5 row) as a :class:`LossSpec`, read
    from the learner's own declared ``pair_loss`` and ``bonus`` (the one source of which pair loss and
    bonus a learner uses; the LM path trains with it).

    Learners with a bonus (xpo, vpo, selm, popo, copo) require ``alpha``; the others accept only
    ``alpha`` None or 0. ``ipo`` requires ``tau_ipo``, ``chipo`` requires ``r_max``.
    """
    learner = make_learner(name)
    if not learner.has_policy_loss:
        raise ValueError(f"learner {learner.label!r} fits a Bradley–Terry reward model, not a policy loss "
                         "(it has no xposim.losses kernel)")
    pair, bonus = PAIR_NAMES[learner.pair_loss], BONUS_NAMES[learner.bonus]
    if bonus != "none" and alpha is None:
        raise ValueError(f"alpha (finite, >= 0) is required for learner {learner.label!r}")
    return LossSpec(pair=pair, bonus=bonus, beta=beta, alpha=0.0 if alpha is None else alpha,
                    tau_ipo=tau_ipo, r_max=r_max)
