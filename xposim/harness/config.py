"""Experiment settings: defaults, TOML overrides, validation of keys and types.

A setting's type is the type of its default value (``int``, ``float``, ``str``, ``bool`` or a list
of one of those). An override must have that type (an ``int`` is accepted where a ``float`` is
expected); an unknown key, a wrong type or a float that is not finite (TOML ``nan``, ``inf``) is a
:class:`ValueError` with one clear line that names the key, the expected type and the value given.

Sweep sizes are bounded so that an impossible request fails at once instead of growing without
end: at most :data:`MAX_SEEDS` seeds and :data:`MAX_CELLS` cells (points x seeds) per experiment
(:func:`check_seeds`, :func:`check_sweep_size`).
"""
from __future__ import annotations

import copy
import json
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["COMMON_SETTINGS", "MAX_SEEDS", "MAX_CELLS", "load_config", "validate_overrides", "type_name",
           "canonical_json", "check_seeds", "check_sweep_size"]

#: Settings every experiment has: number of seeds and the root seed of ``SeedSequence``.
COMMON_SETTINGS: dict[str, Any] = {"seeds": 4, "root_seed": 0}

#: Most seeds one experiment may run (setting ``seeds``, ``xposim run --seeds``).
MAX_SEEDS = 100_000

#: Most cells (sweep points x seeds) one experiment may run.
MAX_CELLS = 1_000_000


def check_seeds(seeds: Any, name: str = "setting 'seeds'") -> int:
    """``seeds`` if it is an integer in ``[1, MAX_SEEDS]``, else a one-line ``ValueError``."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise ValueError(f"{name} must be an integer in [1, {MAX_SEEDS}] (the limit of seeds per experiment), "
                         f"got {seeds!r}")
    return seeds


def check_sweep_size(n_points: int, seeds: int, experiment: str = "") -> int:
    """``n_points * seeds`` (the number of cells) if it is at most ``MAX_CELLS``, else ``ValueError``."""
    n_cells = int(n_points) * int(seeds)
    if n_cells > MAX_CELLS:
        where = f" of experiment '{experiment}'" if experiment else ""
        raise ValueError(f"the sweep{where} has {n_points} points x {seeds} seeds = {n_cells} cells, above the "
                         f"limit of {MAX_CELLS} cells per experiment; lower 'seeds' or shorten the list settings")
    return n_cells


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the stable text hashed into cell ids."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def type_name(value: Any) -> str:
    """Human name of the type of a default value, e.g. ``'list of float'``."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        inner = {type_name(v) for v in value}
        if not inner:
            return "list"
        if inner == {"int", "float"}:
            return "list of float"
        return "list of " + "/".join(sorted(inner))
    return type(value).__name__


def _coerce_scalar(key: str, default: Any, value: Any) -> Any:
    kind = type_name(default)
    if kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int beyond float64
                number = math.inf
            if not math.isfinite(number):
                raise ValueError(f"setting '{key}' must be a finite float, got {value!r}")
            return number
    elif kind == "str":
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - defaults are always one of the above
        return value
    raise ValueError(f"setting '{key}' must be of type {kind}, got {value!r} ({type_name(value)})")


def _coerce(key: str, default: Any, value: Any) -> Any:
    if isinstance(default, dict):  # keyword parameters (e.g. a factory's): str keys, finite JSON values
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValueError(f"setting '{key}' must be a table of named values, got {value!r} ({type_name(value)})")
        for name, entry in value.items():
            entries = entry if isinstance(entry, list) else [entry]
            if any(isinstance(e, dict) for e in entries) or any(_non_finite(e) for e in entries):
                raise ValueError(f"setting '{key}.{name}' must be a finite number, string, bool or list of them, "
                                 f"got {entry!r}")
        return dict(value)
    if isinstance(default, list):
        if not isinstance(value, list):
            raise ValueError(f"setting '{key}' must be of type {type_name(default)}, got {value!r} ({type_name(value)})")
        if any(_non_finite(v) for v in value):
            raise ValueError(f"setting '{key}' must be of type {type_name(default)} with finite entries, got {value!r}")
        if not default:
            return list(value)
        template = 0.0 if type_name(default) == "list of float" else default[0]
        try:
            return [_coerce_scalar(key, template, v) for v in value]
        except ValueError:
            raise ValueError(
                f"setting '{key}' must be of type {type_name(default)}, got {value!r}"
            ) from None
    return _coerce_scalar(key, default, value)


def _non_finite(value: Any) -> bool:
    """A float that is ``nan`` or ``+-inf`` (what TOML's ``nan`` / ``inf`` parse to)."""
    return isinstance(value, float) and not math.isfinite(value)


def validate_overrides(defaults: Mapping[str, Any], overrides: Mapping[str, Any], experiment: str) -> dict[str, Any]:
    """Return ``defaults`` updated with ``overrides`` after checking every key and type.

    Raises ``ValueError`` naming the first unknown key (with the list of known keys) or the first
    value whose type differs from its default's type.
    """
    settings = copy.deepcopy(dict(defaults))
    for key, value in overrides.items():
        if key not in settings:
            known = ", ".join(sorted(settings))
            raise ValueError(f"unknown setting '{key}' for experiment '{experiment}' (known settings: {known})")
        settings[key] = _coerce(key, settings[key], value)
    return settings


def load_config(path: str | Path, experiment: str | None = None) -> dict[str, Any]:
    """Read a TOML file of setting overrides.

    Top-level keys are settings. A table named after the experiment (``[rate]``) is also accepted
    and merged over the top-level keys; tables named after other experiments are ignored, so one
    file can hold the overrides of several experiments. Raises ``ValueError`` with one line for a
    missing file or invalid TOML.
    """
    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"config file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ValueError(f"cannot read config file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"config file {str(path)!r} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    from xposim.harness.experiments import experiment_names

    names = set(experiment_names())
    # settings whose value is itself a table (a dict default, e.g. the sweep's env_params)
    table_settings: set[str] = set()
    if experiment in names:
        from xposim.harness.experiments import get_experiment

        table_settings = {k for k, v in get_experiment(experiment).defaults(True).items() if isinstance(v, dict)}
    overrides: dict[str, Any] = {}
    table: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in table_settings and key not in names:
            overrides[key] = value
        elif isinstance(value, dict):
            if key == experiment:
                table = value
            elif key in names:
                continue
            else:
                raise ValueError(
                    f"config file {str(path)!r}: table [{key}] is not an experiment name "
                    f"(settings are top-level keys or sit in a table named after the experiment)"
                )
        else:
            overrides[key] = value
    for key, value in table.items():
        if isinstance(value, dict) and key not in table_settings:
            raise ValueError(f"config file {str(path)!r}: nested table [{experiment}.{key}] is not a setting")
        overrides[key] = value
    return overrides
