"""A user's own environment and learner, defined outside the package (tests of `sweep`)."""
from __future__ import annotations

import dataclasses

import numpy as np

import xposim as xs
from xposim.learners import XPO


def three_arm_bandit(gap: float = 0.5, rare: float = 0.05) -> xs.TokenMDP:
    """One context, three arms; arm 0 is best and rare under pi_ref."""
    ref = np.array([[[rare, (1 - rare) / 2, (1 - rare) / 2]]])
    rewards = np.array([[[1.0, 1.0 - gap, 0.0]]])
    return xs.TokenMDP.from_arrays([1.0], ref, rewards, name=f"user_three_arm(gap={gap:g})")


def strong_xpo(**overrides) -> XPO:
    """XPO with a larger bonus, as a user might tune it."""
    return dataclasses.replace(XPO(alpha=0.5), **overrides)


def not_a_learner(**overrides):
    return 42
