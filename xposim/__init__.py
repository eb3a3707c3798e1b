"""xposim: exact-ground-truth simulator for exploration in RLHF (XPO and relatives).

The short public surface; each name lives in a small module of its own (see docs/architecture.md).
"""
from xposim import envs, oracles, theory
from xposim.coverage import (
    concentrability,
    concentrability_box_class,
    coverability,
    coverability_box_class,
    coverability_unrestricted,
    sec_along,
)
from xposim.envs import TokenMDP
from xposim.exact import (
    evaluate,
    greedy_policy,
    implicit_rewards,
    kl_regularized_value,
    policy_from_leaf_values,
    regret_decomposition,
    solve,
    trajectory_logprobs,
    trajectory_probabilities,
)
from xposim.seeding import make_rng, spawn_seeds
# Bound after the submodule import so that ``xposim.simulate`` is always the function (a lazy
# attribute would be shadowed by the submodule ``xposim.simulate`` once anything imports it).
from xposim.simulate import simulate

__version__ = "0.1.0"

__all__ = [
    "TokenMDP",
    "concentrability",
    "concentrability_box_class",
    "coverability",
    "coverability_box_class",
    "coverability_unrestricted",
    "envs",
    "evaluate",
    "greedy_policy",
    "implicit_rewards",
    "kl_regularized_value",
    "make_rng",
    "oracles",
    "policy_from_leaf_values",
    "regret_decomposition",
    "sec_along",
    "solve",
    "spawn_seeds",
    "theory",
    "simulate",
    "trajectory_logprobs",
    "trajectory_probabilities",
]


_LAZY_SUBMODULES = ("learners", "policies", "losses", "harness", "lm")


def __getattr__(name: str):
    # The learner engine, harness and LM path are heavier: import them on first use.
    import importlib

    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"xposim.{name}")
    raise AttributeError(f"module 'xposim' has no attribute {name!r}")
