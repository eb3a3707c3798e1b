"""The raw arrays of an environment that the learner engine and the policy classes read.

Everything works at the TRAJECTORY level (THEORY 1.1: transitions are deterministic, so a policy
is its distribution over leaves ``pi(tau|x)``).
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from xposim.envs.token_mdp import TokenMDP

EnvArrays = namedtuple(
    "EnvArrays",
    [
        "leaf_logref",  # (nc, L) log pi_ref(tau|x), -inf if impossible
        "leaf_reward",  # (nc, L) r(tau|x) in [0, r_max]
        "rho_cdf",  # (nc,) cumulative sum of rho
        "ref_cdf",  # (nc, L) cumulative pi_ref(.|x) in leaf order
        "max_reward",  # (nc,) max_tau r(tau|x) over pi_ref-possible leaves
        "rho",  # (nc,)
        "vocab_size",  # int A
        "horizon",  # int H
        "r_max",  # float R_max
    ],
)
EnvArrays.__doc__ = """Raw float64 arrays of a :class:`~xposim.envs.TokenMDP` at trajectory level (see field comments)."""


def env_arrays(env: TokenMDP) -> EnvArrays:
    """The :class:`EnvArrays` of ``env`` (copies, C-contiguous float64)."""
    if not isinstance(env, TokenMDP):
        raise ValueError(f"env must be an xposim.envs.TokenMDP, got {type(env).__name__}")
    logref = np.ascontiguousarray(env.trajectory_ref_logprobs, dtype=np.float64).copy()
    reward = np.ascontiguousarray(env.trajectory_rewards, dtype=np.float64).copy()
    ref = np.exp(logref)
    ref_cdf = np.cumsum(ref, axis=1)
    ref_cdf /= ref_cdf[:, -1:]
    rho = np.ascontiguousarray(env.rho, dtype=np.float64).copy()
    rho_cdf = np.cumsum(rho)
    rho_cdf /= rho_cdf[-1]
    possible = logref > -np.inf
    max_reward = np.where(possible, reward, -np.inf).max(axis=1)
    return EnvArrays(
        leaf_logref=logref,
        leaf_reward=reward,
        rho_cdf=rho_cdf,
        ref_cdf=np.ascontiguousarray(ref_cdf),
        max_reward=max_reward,
        rho=rho,
        vocab_size=int(env.vocab_size),
        horizon=int(env.horizon),
        r_max=float(env.r_max),
    )
