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
    "trajectory_logprobs",
    "trajectory_probabilities",
]


def __getattr__(name: str):
    # simulate lives in a heavier module; import it on first use.
    if name == "simulate":
        from xposim.simulate import simulate

        return simulate
    raise AttributeError(f"module 'xposim' has no attribute {name!r}")
