"""User code by reference: ``"package.module:attribute"`` names a factory anywhere on ``sys.path``.

Used wherever a name of a learner or an environment is accepted (``make_learner``,
``xposim.envs.make_env``, the TOML of ``xposim run``), so a user's own instance or learner runs
through the harness — local pool or dask workers, which import the module themselves — without
editing the package.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["is_reference", "load_reference"]


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
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"{what} {reference!r}: module {module_name!r} has no attribute {attribute!r}") from None
    return target
