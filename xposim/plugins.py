"""User code by reference: ``"package.module:attribute"`` names a factory anywhere on ``sys.path``.

Used wherever a name of a learner or an environment is accepted (``make_learner``,
``xposim.envs.make_env``, the TOML of ``xposim run``), so a user's own instance or learner runs
through the harness — local pool or dask workers, which import the module themselves — without
editing the package.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["is_reference", "load_reference", "reference_source_hash"]


def is_reference(name: object) -> bool:
    """Whether ``name`` has the form ``"package.module:attribute"``."""
    if not isinstance(name, str) or name.count(":") != 1:
        return False
    module, attribute = name.split(":")
    return bool(module.strip()) and bool(attribute.strip())


def load_reference(reference: str, what: str = "object") -> Any:
    """The object ``attribute`` of module ``package.module`` (dotted attributes allowed).

    ``ValueError`` (one line) when the form is wrong, the module cannot be imported or has no such
    attribute; ``what`` names the role in the message (``"learner factory"``...).
    """
    if not is_reference(reference):
        raise ValueError(f"{what} reference must look like 'package.module:function', got {reference!r}")
    module_name, attribute = (part.strip() for part in reference.split(":"))
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"{what} {reference!r}: cannot import module {module_name!r} ({error})") from None
    except Exception as error:  # noqa: BLE001 - the user's module failed while importing
        raise ValueError(f"{what} {reference!r}: importing module {module_name!r} raised "
                         f"{type(error).__name__}: {error}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"{what} {reference!r}: module {module_name!r} has no attribute {attribute!r}") from None
    return target


def reference_source_hash(reference: str) -> str:
    """sha256 (16 hex digits) of the source file of the module a reference names, so that results
    computed with the user's code can be told from results of an edited version (the harness puts
    it into the cell's settings, hence its id). ``"unknown"`` when the module has no source file."""
    import hashlib
    from importlib.util import find_spec

    module_name = reference.split(":")[0].strip()
    try:
        spec = find_spec(module_name)
    except (ImportError, ValueError):
        spec = None
    origin = getattr(spec, "origin", None)
    if not origin or not origin.endswith(".py"):
        return "unknown"
    with open(origin, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:16]
