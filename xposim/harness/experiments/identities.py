"""``identities`` (E1): the identities of THEORY 2.1 on random instances, to float64 precision.

Per cell one random token MDP (:func:`xposim.envs.random_token_mdp`), its exact optimum
(:func:`xposim.exact.solve`), a random policy ``pi`` and a random comparator ``nu`` (Dirichlet
per state, on the support of ``pi_ref``). Every error is checked against an independent brute
force over the enumerated trajectories (``log``-domain, ``scipy.special.logsumexp``):

* ``gibbs_value``: ``V*(x)`` against ``beta log sum_tau pi_ref(tau|x) e^{r(tau)/beta}``;
* ``implicit_reward`` (the paper's Eq. 9): ``beta log(pi*(tau|x)/pi_ref(tau|x))`` against
  ``r(tau) - V*(x)`` on every trajectory with ``pi_ref > 0``;
* ``suboptimality_is_kl``: ``J(pi*) - J(pi)`` (solver and evaluator) against
  ``beta E_x KL(pi || pi*)`` computed from trajectory probabilities;
* ``regret_decomposition``: ``J(pi*) - J(pi)`` against the preference term plus the bonus term
  of THEORY 2.1.3 computed by brute force for the comparator ``nu``;
* ``library_decomposition``: :func:`xposim.exact.regret_decomposition` against the brute force.

The prediction E1 holds when every error is ``<= 1e-10``.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xposim.harness.experiments.base import Experiment, register_experiment
from xposim.seeding import make_rng

TOLERANCE = 1e-10
IDENTITIES = ("gibbs_value", "implicit_reward", "suboptimality_is_kl", "regret_decomposition",
              "library_decomposition")


def points(settings: dict[str, Any]) -> list[dict[str, Any]]:
    grid = itertools.product(settings["n_contexts"], settings["vocab_sizes"], settings["horizons"],
                             settings["betas"], settings["rewards"], settings["ref_concentrations"])
    return [{"n_contexts": c, "vocab_size": a, "horizon": h, "beta": b, "reward": r, "ref_concentration": k}
            for c, a, h, b, r, k in grid]


def _random_policy(rng: np.random.Generator, ref_probs: np.ndarray, concentration: float) -> np.ndarray:
    """Dirichlet rows restricted to the support of ``pi_ref`` (so every KL below is finite)."""
    policy = rng.dirichlet(np.full(ref_probs.shape[-1], concentration), size=ref_probs.shape[:2])
    policy = np.where(ref_probs > 0, np.maximum(policy, 1e-300), 0.0)
    return policy / policy.sum(axis=2, keepdims=True)


def cell(point: dict[str, Any], seed: np.random.SeedSequence) -> pd.DataFrame:
    from scipy.special import logsumexp

    from xposim import exact
    from xposim.envs import random_token_mdp

    env_seed, policy_seed = seed.spawn(2)
    beta = float(point["beta"])
    env = random_token_mdp(point["n_contexts"], point["vocab_size"], point["horizon"], seed=env_seed,
                           reward=point["reward"], ref_concentration=point["ref_concentration"])
    rng = make_rng(policy_seed)
    optimum = exact.solve(env, beta)
    rewards = env.trajectory_rewards
    log_ref = env.trajectory_ref_logprobs
    on_ref = np.isfinite(log_ref)
    rho = env.rho

    # Gibbs value: V*(x) = beta log sum_tau pi_ref e^{r/beta}
    log_z = logsumexp(np.where(on_ref, log_ref + rewards / beta, -np.inf), axis=1)
    errors = {"gibbs_value": np.max(np.abs(optimum.value_per_context - beta * log_z))}
    scales = {"gibbs_value": np.max(np.abs(optimum.value_per_context))}

    implicit = exact.implicit_rewards(env, optimum)  # from the solution's Q* - V*: exact at any beta
    target = rewards - optimum.value_per_context[:, None]
    errors["implicit_reward"] = np.max(np.abs(implicit - target)[on_ref])
    scales["implicit_reward"] = np.max(np.abs(target[on_ref]))

    policy = _random_policy(rng, env.ref_probs, 1.0)
    comparator = _random_policy(rng, env.ref_probs, 0.7)
    suboptimality = optimum.value - exact.evaluate(env, policy, beta).value
    log_pi = exact.trajectory_logprobs(env, policy)
    log_star = exact.trajectory_logprobs(env, optimum)  # from log pi*: no underflow at small beta
    log_nu = exact.trajectory_logprobs(env, comparator)
    pi = np.exp(log_pi)
    nu = np.exp(log_nu)
    on_pi = pi > 0
    kl = np.where(on_pi, pi * (np.where(on_pi, log_pi, 0.0) - np.where(on_pi, log_star, 0.0)), 0.0).sum(axis=1)
    errors["suboptimality_is_kl"] = abs(suboptimality - beta * float(rho @ kl))
    scales["suboptimality_is_kl"] = abs(suboptimality)

    f_pi = np.where(on_ref, beta * (np.where(on_ref, log_pi - log_ref, 0.0)) - rewards, 0.0)
    on_nu = nu > 0
    preference = (pi * f_pi).sum(axis=1) - (nu * f_pi).sum(axis=1)
    bonus = beta * np.where(on_nu, nu * (np.where(on_nu, log_pi - log_star, 0.0)), 0.0).sum(axis=1)
    brute_total = float(rho @ (preference + bonus))
    errors["regret_decomposition"] = abs(suboptimality - brute_total)
    scales["regret_decomposition"] = abs(suboptimality)

    library = exact.regret_decomposition(env, policy, beta, comparator)
    errors["library_decomposition"] = max(abs(library.preference_term - float(rho @ preference)),
                                          abs(library.bonus_term - float(rho @ bonus)),
                                          abs(library.total - library.suboptimality))
    scales["library_decomposition"] = max(abs(library.preference_term), abs(library.bonus_term))
    return pd.DataFrame({
        "identity": list(IDENTITIES),
        "max_abs_error": [float(errors[k]) for k in IDENTITIES],
        "scale": [float(scales[k]) for k in IDENTITIES],
    })


def analyze(results: pd.DataFrame, settings: dict[str, Any], directory: Path) -> dict[str, Any]:
    import matplotlib.pyplot as plt

    from xposim.harness import plots
    from xposim.harness.verdicts import prediction_record

    worst = results.loc[results.groupby("identity")["max_abs_error"].idxmax()]
    table = [
        {"identity": row.identity, "max_abs_error": float(row.max_abs_error), "scale_of_terms": float(row.scale),
         "worst_instance": f"C={row.n_contexts},A={row.vocab_size},H={row.horizon},beta={row.beta:g},{row.reward}",
         "instances": int((results["identity"] == row.identity).sum())}
        for row in worst.itertuples()
    ]
    overall = float(results["max_abs_error"].max())
    verdict = "held" if overall <= TOLERANCE else "not held"
    record = prediction_record(
        "E1", "the identities of THEORY 2.1 hold on random instances to float64 precision",
        overall, None, None, TOLERANCE, verdict,
        rule=f"held when the largest error over all {results['cell_id'].nunique()} instances and "
             f"{results['identity'].nunique()} identities is <= {TOLERANCE:g} (a maximum, so no interval)",
        unit="max absolute error",
        detail="worst: " + ", ".join(f"{t['identity']} {t['max_abs_error']:.2g}" for t in table),
    )
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    order = [i for i in IDENTITIES if i in set(results["identity"])]
    jitter = make_rng(0)
    for j, identity in enumerate(order):
        errs = results.loc[results["identity"] == identity, "max_abs_error"].to_numpy()
        shown = np.maximum(errs, 1e-18)
        ax.plot(j + jitter.uniform(-0.15, 0.15, errs.size), shown, "o", ms=4, alpha=0.6, color=plots.color_for("", j))
    ax.axhline(TOLERANCE, ls="--", color="black", label=f"prediction: error <= {TOLERANCE:g}")
    ax.set_yscale("log")
    ax.set_xticks(range(len(order)), [o.replace("_", "\n") for o in order], fontsize=8)
    ax.set_ylabel("max |error| per random instance (exact 0 drawn at 1e-18)")
    ax.set_xlabel("identity (THEORY 2.1)")
    ax.set_title("E1: exact identities on random token MDPs, float64")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.25)
    figures = plots.save_figure(fig, directory, "identities_errors")
    return {"predictions": [record], "figures": figures, "tables": {"max_error_by_identity": table}}


def check(settings: dict[str, Any]) -> None:
    from xposim.envs import tree

    for key, minimum in (("n_contexts", 1), ("vocab_sizes", 2), ("horizons", 1)):
        if not settings[key] or min(settings[key]) < minimum:
            raise ValueError(f"setting '{key}' must be a non-empty list of integers >= {minimum}, got {settings[key]}")
    if not settings["betas"] or min(settings["betas"]) <= 0:
        raise ValueError(f"setting 'betas' must be a non-empty list of numbers > 0, got {settings['betas']}")
    if not settings["ref_concentrations"] or min(settings["ref_concentrations"]) <= 0:
        raise ValueError(f"setting 'ref_concentrations' must be numbers > 0, got {settings['ref_concentrations']}")
    if not set(settings["rewards"]) <= {"terminal", "dense"} or not settings["rewards"]:
        raise ValueError(f"setting 'rewards' must list 'terminal' and/or 'dense', got {settings['rewards']}")
    for c in settings["n_contexts"]:
        for a in settings["vocab_sizes"]:
            for h in settings["horizons"]:
                if c * tree.n_leaves(a, h) > 2_000_000:
                    raise ValueError(f"instance C={c}, A={a}, H={h} has {c * a**h:,} trajectories; the brute force "
                                     f"of E1 allows at most 2,000,000")


IDENTITIES_EXPERIMENT = register_experiment(Experiment(
    name="identities",
    predictions=("E1",),
    description="THEORY 2.1 identities (Eq. 9, suboptimality = beta KL, regret decomposition) on random MDPs, max error",
    quick={"n_contexts": [2], "vocab_sizes": [2, 3], "horizons": [1, 3], "betas": [0.05, 1.0],
           "rewards": ["terminal", "dense"], "ref_concentrations": [1.0], "seeds": 3},
    full={"n_contexts": [1, 3], "vocab_sizes": [2, 3, 5], "horizons": [1, 2, 4], "betas": [0.02, 0.1, 0.5, 2.0],
          "rewards": ["terminal", "dense"], "ref_concentrations": [0.3, 1.0], "seeds": 10},
    points=points, cell=cell, analyze=analyze, check=check, needs_learners=False,
))
