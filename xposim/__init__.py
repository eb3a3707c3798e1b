"""xposim: exact-ground-truth simulator for exploration in RLHF (XPO and relatives).

The short public surface; each name lives in a small module of its own (see docs/architecture.md).
"""
# first: numba's kernel cache per version of the code (before any kernel is compiled or loaded)
from xposim import _kernel_cache  # noqa: F401  isort: skip
from xposim import envs, oracles, theory
from xposim.coverage import (
    concentrability,
    concentrability_box_class,
    coverability,
    coverability_box_class,
    coverability_unrestricted,
    sec_along,
)
from xposim.envs import TokenMDP, make_env, register_env
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
from xposim.learners.registry import make_learner, register_learner
from xposim.seeding import make_rng, spawn_seeds
# ``xposim.simulate`` is the function; its module is ``xposim.simulation`` (one name, one meaning).
from xposim.simulation import simulate

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
    "make_env",
    "make_learner",
    "make_rng",
    "oracles",
    "policy_from_leaf_values",
    "regret_decomposition",
    "register_env",
    "register_learner",
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
