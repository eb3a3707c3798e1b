"""The :class:`Experiment` record and the registry of named experiments (bsuite style).

An experiment is an id, a one-line description, quick and full settings, a function turning the
settings into sweep *points* (one settings dict per cell, seeds aside), a *cell function* run once
per (point, seed), and an *analysis* turning the tidy results into figures and one verdict per
prediction of THEORY.md section 7.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xposim.harness.config import COMMON_SETTINGS, check_seeds, validate_overrides

__all__ = ["Experiment", "register_experiment", "get_experiment", "experiment_names", "all_experiments"]

CellFunction = Callable[[dict[str, Any], np.random.SeedSequence], pd.DataFrame]
Analysis = Callable[[pd.DataFrame, dict[str, Any], Path], dict[str, Any]]


@dataclass(frozen=True)
class Experiment:
    """A named experiment.

    * ``points(settings)`` lists the per-cell settings (JSON scalars or lists); each is run for
      seed indices ``0..settings['seeds']-1``.
    * ``cell(point, seed)`` is a module-level (picklable) function returning a tidy DataFrame.
    * ``analyze(results, settings, directory)`` writes figures into ``directory`` and returns
      ``{"predictions": [...], "figures": [...], "tables": {...}}`` (see :mod:`xposim.harness.verdicts`).
    * ``check(settings)`` raises ``ValueError`` (one line) for impossible settings.
    """

    name: str
    predictions: tuple[str, ...]
    description: str
    quick: Mapping[str, Any]
    full: Mapping[str, Any]
    points: Callable[[dict[str, Any]], list[dict[str, Any]]]
    cell: CellFunction
    analyze: Analysis
    check: Callable[[dict[str, Any]], None] | None = None
    needs_learners: bool = True
    listed: bool = True
    notes: str = field(default="")

    def __post_init__(self) -> None:
        if set(self.quick) != set(self.full):
            raise ValueError(f"experiment {self.name!r}: quick and full settings must have the same keys")

    def defaults(self, quick: bool) -> dict[str, Any]:
        """The quick or full settings, with the common ``seeds`` / ``root_seed`` keys filled in."""
        base = dict(COMMON_SETTINGS)
        base.update(self.quick if quick else self.full)
        return base

    def settings(self, quick: bool = True, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Validated settings: defaults updated with ``overrides``, then :attr:`check`-ed.

        ``seeds`` must lie in ``[1, MAX_SEEDS]`` (:data:`xposim.harness.config.MAX_SEEDS`) and
        ``root_seed`` be ``>= 0``; ``ValueError`` naming the setting otherwise."""
        settings = validate_overrides(self.defaults(quick), overrides or {}, self.name)
        check_seeds(settings["seeds"])  # 1 <= seeds <= MAX_SEEDS, before any sweep is built
        if settings["root_seed"] < 0:
            raise ValueError(f"setting 'root_seed' must be >= 0, got {settings['root_seed']}")
        if self.check is not None:
            self.check(settings)
        return settings


_REGISTRY: dict[str, Experiment] = {}


def register_experiment(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to the registry (its name must be new)."""
    if experiment.name in _REGISTRY:
        raise ValueError(f"experiment {experiment.name!r} is already registered")
    _REGISTRY[experiment.name] = experiment
    return experiment


def experiment_names(include_unlisted: bool = True) -> list[str]:
    """Names of the registered experiments, in registration order."""
    return [n for n, e in _REGISTRY.items() if include_unlisted or e.listed]


def all_experiments() -> list[Experiment]:
    """The registered experiments, in registration order."""
    return list(_REGISTRY.values())


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(experiment_names(include_unlisted=False))
        raise ValueError(f"unknown experiment {name!r} (known experiments: {known}; see `xposim list`)") from None
