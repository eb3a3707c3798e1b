"""Environments: the token MDP (THEORY 1.1), its tree numbering and the instance library."""
from xposim.envs import tree
from xposim.envs.library import (
    headroom_bandit,
    hidden_arm_bandit,
    linear_bandit,
    linear_token_mdp,
    needle,
    random_token_mdp,
    two_arm_lower_bound,
)
from xposim.envs.registry import env_factory, env_names, make_env, register_env
from xposim.envs.token_mdp import TokenMDP
from xposim.envs.tree import (
    MAX_TREE_ENTRIES,
    check_enumerable,
    leaf_index,
    leaf_path_states,
    leaf_tokens,
    level_start,
    n_leaves,
    n_states,
    state_index,
    state_prefix,
)

__all__ = [
    "TokenMDP",
    "tree",
    "two_arm_lower_bound",
    "hidden_arm_bandit",
    "headroom_bandit",
    "make_env",
    "register_env",
    "env_names",
    "env_factory",
    "needle",
    "random_token_mdp",
    "linear_bandit",
    "linear_token_mdp",
    "MAX_TREE_ENTRIES",
    "check_enumerable",
    "leaf_index",
    "leaf_path_states",
    "leaf_tokens",
    "level_start",
    "n_leaves",
    "n_states",
    "state_index",
    "state_prefix",
]
