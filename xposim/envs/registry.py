"""Environments by name: the built-in instances, the user's registered ones and references.

``make_env(name, **params)`` builds the instance ``name`` — a name of :func:`env_names` or a
reference ``"package.module:function"`` (:mod:`xposim.plugins`) — by calling its factory with
``params``; :func:`register_env` adds a name. A factory returns a :class:`TokenMDP`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xposim.envs.library import (
    headroom_bandit,
    hidden_arm_bandit,
    linear_bandit,
    linear_token_mdp,
    needle,
    random_token_mdp,
    two_arm_lower_bound,
)
from xposim.envs.token_mdp import TokenMDP
from xposim.plugins import is_reference, load_reference

__all__ = ["make_env", "env_factory", "register_env", "env_names", "ENVIRONMENTS"]

#: name -> factory (keyword parameters -> TokenMDP)
ENVIRONMENTS: dict[str, Callable[..., TokenMDP]] = {
    "two_arm_lower_bound": two_arm_lower_bound,
    "needle": needle,
    "random_token_mdp": random_token_mdp,
    "hidden_arm_bandit": hidden_arm_bandit,
    "headroom_bandit": headroom_bandit,
    "linear_bandit": linear_bandit,
    "linear_token_mdp": linear_token_mdp,
}


def env_names() -> list[str]:
    """Every registered name (built-in and user); references need no registration."""
    return sorted(ENVIRONMENTS)


def register_env(name: str, factory: Callable[..., TokenMDP], *, replace: bool = False) -> None:
    """Make ``make_env(name, **params)`` call ``factory(**params)``.

    ``ValueError`` for a name that is taken (unless ``replace``), not an identifier, or a factory
    that is not callable. Registration lives in this process: pool workers started by ``fork``
    and threads see it; dask workers do not — name a reference ``"module:function"`` there.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"environment name must be an identifier, got {name!r}")
    if not callable(factory):
        raise ValueError(f"environment factory for {name!r} must be callable, got {factory!r}")
    if name in ENVIRONMENTS and not replace:
        raise ValueError(f"environment {name!r} is already registered (pass replace=True to replace it)")
    ENVIRONMENTS[name] = factory


def env_factory(name: str) -> Callable[..., TokenMDP]:
    """The factory behind ``name`` (a registered name or a reference), ``ValueError`` otherwise."""
    if is_reference(name):
        factory = load_reference(name, "environment factory")
        if not callable(factory):
            raise ValueError(f"environment factory {name!r} is not callable")
        return factory
    if name in ENVIRONMENTS:
        return ENVIRONMENTS[name]
    raise ValueError(f"unknown environment {name!r}; known: {', '.join(env_names())}, "
                     "or a reference 'package.module:function'")


def make_env(name: str, /, **params: Any) -> TokenMDP:
    """The environment ``name`` built with ``params`` (see the module docstring)."""
    factory = env_factory(name)
    try:
        env = factory(**params)
    except TypeError as error:
        raise ValueError(f"bad parameters {sorted(params)} for environment {name!r}: {error}") from None
    if not isinstance(env, TokenMDP):
        raise ValueError(f"environment factory {name!r} returned {type(env).__name__}, not a TokenMDP")
    return env
