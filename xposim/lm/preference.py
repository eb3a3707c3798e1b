"""Preference-learning loops of the LM path: offline DPO, online DPO and XPO on the SHARED kernels.

Every loss and gradient goes through :mod:`xposim.losses` (``xposim.learners.loss_spec``): this module
computes sequence log-probabilities with the network, hands the log-ratios
``l(y) = log pi(y|x) - log pi_ref(y|x)`` to the pair kernel and ``log pi(tau~)`` to the bonus
kernel, and back-propagates the kernels' derivatives through
:meth:`~xposim.lm.model.Transformer.backward_sequence_logprobs`.

The XPO loop is Algorithm 1 of the paper (THEORY 4.3) with a batch of ``B`` pairs per round
(Alg. 4); online DPO (THEORY 4.2) and offline DPO (4.1) differ only in the sampler pair::

    pi^(1) = pi_ref ; D = {}                                      # step 0
    for t = 1..T:
        x ~ rho                                                    # step 1
        tau ~ pi^(t)(.|x) ; tau~ ~ pi_ref(.|x)                     # step 2 (sampler pair)
        label (tau, tau~) -> (tau+, tau-) ; D <- D + {(tau+, tau-)} # step 3
        pi^(t+1) = argmin_pi alpha sum_i log pi(tau~_i) + L_DPO(pi; D)   # step 4

Sampler pairs: XPO ``(pi^(t), pi_ref)``; online DPO ``(pi^(t), pi^(t))``; offline DPO
``(pi_ref, pi_ref)`` (a dataset from the reference, grown round by round so that curves share the
x-axis "labels").

Modes (THEORY 4.4 "Practice"):

* ``mode="paper"``: all pairs are kept; step 4 is approximated by ``epochs_per_round`` epochs of
  minibatch AdamW over all of ``D`` (warm-started from ``pi^(t)``); labels from the task's
  preference oracle (Bradley–Terry by default); sampling at temperature 1.
* ``mode="trl"``: what trl's ``XPOTrainer`` / ``OnlineDPOTrainer`` do (under ``trl.experimental`` since trl 0.29): one gradient step
  on each fresh batch (no data kept), argmax labels (the higher true reward wins, ties to the
  first = policy response, trl's ``model_scores >= ref_scores``), both responses sampled at
  temperature 0.9 while every log-probability is scored at temperature 1, ``alpha = 1e-5``.

Every random draw comes from two streams spawned from ``seed``: the learner stream (contexts,
responses, labels, minibatch order, in a fixed order) and the evaluation stream (fresh samples
for the Monte Carlo metrics), so evaluation never changes training and two runs with the same
seed give bit-identical logs.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xposim import exact
from xposim.columns import with_dtypes
from xposim.envs.token_mdp import TokenMDP
from xposim.lm.metrics import batch_metrics, empty_batch_metrics, evaluation_metrics
from xposim.lm.model import Transformer
from xposim.lm.optim import AdamW, clip_grad_norm
from xposim.lm.sampling import sample
from xposim.lm.tabulate import exact_scores, mixture_value, monte_carlo_scores, score_sequences, tabulate_policy
from xposim.lm.task import LMTask, resolve_scoring
from xposim.learners.registry import loss_spec as learner_loss_spec
from xposim.losses import LossSpec
from xposim.oracles import make_oracle
from xposim.seeding import SeedLike, make_rng, spawn_seeds

__all__ = [
    "LEARNERS",
    "MODES",
    "SCORINGS",
    "PAPER_ALPHA",
    "TRL_ALPHA",
    "TRL_TEMPERATURE",
    "PreferenceConfig",
    "PairBatch",
    "PreferenceLoss",
    "preference_loss",
    "preference_step",
    "PreferenceRun",
    "run_preference_learning",
]

LEARNERS = ("xpo", "online_dpo", "dpo")
MODES = ("paper", "trl")
SCORINGS = ("exact", "monte_carlo", "auto")
#: Default XPO ``alpha`` of the paper mode, tuned on the default task (``beta = 0.2``): the
#: DPO term's derivative w.r.t. a log-ratio is ``beta sigma(-h) <= beta``; the bonus adds ``alpha``
#: per reference sample. Much larger values (``alpha >~ beta / 4`` here) push ``log pi(tau~)`` down
#: faster than the DPO term pulls it back: the unbounded network class then drifts to a large KL.
PAPER_ALPHA = 0.01
#: trl's default ``alpha`` of ``XPOConfig``.
TRL_ALPHA = 1e-5
#: trl's default generation temperature of ``OnlineDPOConfig`` / ``XPOConfig``.
TRL_TEMPERATURE = 0.9


@dataclass(frozen=True)
class PreferenceConfig:
    """Settings of one preference-learning run (:func:`run_preference_learning`)."""

    learner: str = "xpo"
    """``"xpo"`` (Algorithm 1), ``"online_dpo"`` or ``"dpo"`` (offline, pairs from ``pi_ref``)."""
    mode: str = "paper"
    """``"paper"`` (keep all pairs, several epochs per round, oracle labels, temperature 1) or
    ``"trl"`` (one step per fresh batch, argmax labels, sample at 0.9, score at 1)."""
    rounds: int = 16
    """``T``: number of rounds; each queries ``pairs_per_round`` labels."""
    pairs_per_round: int = 64
    """``B``: pairs (preference labels) per round (Alg. 4's batch)."""
    beta: float = 0.2
    """KL coefficient ``beta > 0`` of ``J_beta`` and of the DPO margin ``h = beta (l+ - l-)``."""
    alpha: float | None = None
    """XPO bonus coefficient ``alpha >= 0`` (``alpha log pi(tau~)`` per reference sample);
    ``None``: :data:`PAPER_ALPHA` in paper mode, :data:`TRL_ALPHA` in trl mode. Must be ``None``
    for DPO and online DPO."""
    learning_rate: float = 2e-4
    """AdamW learning rate of the policy (one optimizer for the whole run)."""
    epochs_per_round: int = 2
    """Paper mode: epochs over all pairs so far per round (the approximate argmin of step 4)."""
    minibatch_size: int = 32
    """Paper mode: pairs per gradient step (the last minibatch of an epoch may be smaller)."""
    weight_decay: float = 0.0
    """Decoupled AdamW weight decay."""
    grad_clip: float = 1.0
    """Global gradient-norm clip per step."""
    temperature: float | None = None
    """Sampling temperature of both responses; ``None``: 1.0 in paper mode, :data:`TRL_TEMPERATURE`
    in trl mode. Log-probabilities are always scored at temperature 1."""
    eval_samples: int = 256
    """Fresh samples of the iterate per round for the Monte Carlo metrics (0: none)."""
    scoring: str = "auto"
    """``"exact"`` (tabulate the network; ValueError if the tree is too large), ``"monte_carlo"``
    or ``"auto"`` (exact when the tree is small enough)."""
    progress: bool | None = None
    """tqdm progress bar per run: ``None`` shows it only when stderr is a terminal."""

    def __post_init__(self) -> None:
        if self.learner not in LEARNERS:
            raise ValueError(f"learner must be one of {list(LEARNERS)}, got {self.learner!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        if self.scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {list(SCORINGS)}, got {self.scoring!r}")
        for name, low in (("rounds", 1), ("pairs_per_round", 1), ("epochs_per_round", 1), ("minibatch_size", 1),
                          ("eval_samples", 0)):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        for name, positive in (("beta", True), ("learning_rate", True), ("grad_clip", True), ("weight_decay", False)):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0 or (positive and value == 0):
                raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
        if self.alpha is not None:
            if self.learner != "xpo":
                raise ValueError(f"alpha is a parameter of learner 'xpo' only, got alpha={self.alpha!r} for {self.learner!r}")
            if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 <= self.alpha < math.inf:
                raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha!r}")
        if self.temperature is not None and (isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float))
                                             or not 0 < self.temperature < math.inf):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature!r}")
        if self.scoring == "monte_carlo" and self.eval_samples == 0:
            raise ValueError("eval_samples must be >= 1 when scoring='monte_carlo' (the metrics would all be NaN)")

    @property
    def resolved_alpha(self) -> float:
        """The bonus coefficient actually used (0 for DPO / online DPO)."""
        if self.learner != "xpo":
            return 0.0
        if self.alpha is not None:
            return float(self.alpha)
        return PAPER_ALPHA if self.mode == "paper" else TRL_ALPHA

    @property
    def resolved_temperature(self) -> float:
        """The sampling temperature actually used."""
        if self.temperature is not None:
            return float(self.temperature)
        return 1.0 if self.mode == "paper" else TRL_TEMPERATURE

    def loss_spec(self) -> LossSpec:
        """The learner's per-round objective from the shared kernels (THEORY 4.5)."""
        alpha = self.resolved_alpha if self.learner == "xpo" else None
        return learner_loss_spec(self.learner, beta=self.beta, alpha=alpha)


# --------------------------------------------------------------------------------------------
# pairs and the loss through the network
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairBatch:
    """Labelled pairs ``(tau+, tau-)`` with the reference log-probabilities fixed at labelling time.

    ``bonus_on_chosen[i]`` says whether the bonus sample ``tau~_i`` of the pair (the second,
    reference response for XPO) is the chosen one; unused when the learner has no bonus.
    """

    contexts: np.ndarray
    chosen: np.ndarray
    rejected: np.ndarray
    ref_logp_chosen: np.ndarray
    ref_logp_rejected: np.ndarray
    bonus_on_chosen: np.ndarray

    def __len__(self) -> int:
        return int(self.contexts.shape[0])

    def take(self, index: np.ndarray) -> "PairBatch":
        """The pairs at ``index`` (in that order)."""
        return PairBatch(*(getattr(self, f)[index] for f in self.__dataclass_fields__))

    @staticmethod
    def concatenate(batches: list["PairBatch"]) -> "PairBatch":
        """All pairs of ``batches`` in order."""
        return PairBatch(*(np.concatenate([getattr(b, f) for b in batches]) for f in PairBatch.__dataclass_fields__))


@dataclass(frozen=True)
class PreferenceLoss:
    """The minibatch objective from the kernels and its derivatives w.r.t. the sequence log-probs.

    ``pair_loss_sum = sum_i pair_loss(l(tau+_i), l(tau-_i))``, ``bonus_loss_sum = sum_i bonus(log pi(tau~_i))``;
    ``d_logp`` (``(2m,)``: chosen then rejected) is the derivative of
    ``(pair_loss_sum + bonus_loss_sum) / m`` w.r.t. ``log pi`` of each sequence.
    """

    pair_loss_sum: float
    bonus_loss_sum: float
    logp_chosen: np.ndarray
    logp_rejected: np.ndarray
    d_logp: np.ndarray

    @property
    def mean(self) -> float:
        """``(pair_loss_sum + bonus_loss_sum) / m``, the minimized quantity."""
        return (self.pair_loss_sum + self.bonus_loss_sum) / self.logp_chosen.shape[0]


def preference_loss(policy: Transformer, task: LMTask, batch: PairBatch, spec: LossSpec) -> PreferenceLoss:
    """Forward the chosen and rejected sequences through ``policy`` (keeping the cache for
    :meth:`Transformer.backward_sequence_logprobs`) and evaluate the kernels of ``spec``.

    No loss formula lives here: ``spec.pair_loss_and_grad`` gets the log-ratios,
    ``spec.bonus_loss_and_grad`` the log-probabilities of the bonus samples.
    """
    m = len(batch)
    sequences = np.concatenate([task.full_sequences(batch.contexts, batch.chosen),
                                task.full_sequences(batch.contexts, batch.rejected)])
    logp = policy.sequence_logprobs(sequences, start=task.prompt_length)  # float64, temperature 1
    logp_chosen, logp_rejected = logp[:m], logp[m:]
    pair_sum, d_chosen, d_rejected = spec.pair_loss_and_grad(logp_chosen - batch.ref_logp_chosen,
                                                             logp_rejected - batch.ref_logp_rejected)
    bonus_logp = np.where(batch.bonus_on_chosen, logp_chosen, logp_rejected)
    bonus_ref = np.where(batch.bonus_on_chosen, batch.ref_logp_chosen, batch.ref_logp_rejected)
    bonus_sum, d_bonus = spec.bonus_loss_and_grad(bonus_logp, bonus_ref)
    # d l / d log pi = 1, so the kernels' derivatives w.r.t. log-ratios are those w.r.t. log pi
    d_chosen = d_chosen + np.where(batch.bonus_on_chosen, d_bonus, 0.0)
    d_rejected = d_rejected + np.where(batch.bonus_on_chosen, 0.0, d_bonus)
    return PreferenceLoss(pair_loss_sum=pair_sum, bonus_loss_sum=bonus_sum, logp_chosen=logp_chosen,
                          logp_rejected=logp_rejected, d_logp=np.concatenate([d_chosen, d_rejected]) / m)


def preference_step(policy: Transformer, optimizer: AdamW, task: LMTask, batch: PairBatch, spec: LossSpec,
                    grad_clip: float) -> PreferenceLoss:
    """One AdamW step on the minibatch objective ``(sum pair losses + sum bonuses) / m``."""
    loss = preference_loss(policy, task, batch, spec)
    grads = policy.backward_sequence_logprobs(loss.d_logp)
    clip_grad_norm(grads, grad_clip)
    optimizer.step(grads)
    return loss


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------
@dataclass
class PreferenceRun:
    """Result of :func:`run_preference_learning`.

    ``log``: tidy per-round DataFrame (columns of :mod:`xposim.lm.metrics`, ``average_iterate_value``
    (exact ``J_beta`` of the uniform mixture of the iterates so far, :func:`xposim.lm.tabulate.mixture_value`) and ``learner``,
    ``mode``, ``seed``, ``round``, ``labels``, ``beta``, ``alpha``, ``temperature``, ``scoring``);
    ``policy``: the last iterate; ``summary``: ``initial_value``, ``final_value``, ``best_value``,
    ``best_round``, ``average_iterate_value`` (exact ``J_beta`` of the uniform mixture of
    ``pi^(1..T+1)``, NaN under Monte Carlo scoring), ``optimal_value`` (exact ``J_beta(pi*)``, NaN under Monte Carlo scoring: then
    the values are MC estimates), ``learner``, ``mode``, ``rounds``, ``labels``, ``scoring``,
    ``wall_seconds``.
    """

    log: pd.DataFrame
    policy: Transformer
    summary: dict
    pairs: PairBatch = field(repr=False, default=None)
    """Every labelled pair of the run in query order (also in trl mode, where training discards them)."""
    gradient_steps: int = 0
    """Number of AdamW steps taken on the policy."""
    config: PreferenceConfig = field(repr=False, default=None)


def _resolve_scoring(config: PreferenceConfig, task: LMTask) -> str:
    return resolve_scoring(config.scoring, task.n_contexts, task.vocab_size, task.horizon)


def seed_column(seed: SeedLike) -> int:
    """The int64 ``seed`` column of the log (the vocabulary of :mod:`xposim.columns`): the seed
    itself for an int, a ``SeedSequence`` child's index (the last entry of its spawn key, as the
    harness and ``simulate`` number their runs), a root sequence's entropy when it fits in int64,
    else -1."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return int(seed)
    if isinstance(seed, np.random.SeedSequence):
        if seed.spawn_key:
            return int(seed.spawn_key[-1])
        if isinstance(seed.entropy, (int, np.integer)) and 0 <= seed.entropy < 2 ** 63:
            return int(seed.entropy)
    return -1


def run_preference_learning(task: LMTask, reference: Transformer, config: PreferenceConfig = PreferenceConfig(),
                            seed: SeedLike = 0, env: TokenMDP | None = None) -> PreferenceRun:
    """Run ``config.learner`` for ``config.rounds`` rounds from ``pi^(1) = reference`` (module docstring).

    ``env``: the task's TokenMDP with the tabulated reference (built here when ``None`` and
    scoring is exact). The reference model is never modified.
    """
    started = time.perf_counter()
    scoring = _resolve_scoring(config, task)
    spec = config.loss_spec()
    alpha, temperature = config.resolved_alpha, config.resolved_temperature
    # paper mode: the task's oracle; trl mode: argmax labels, ties to the first (policy) response
    oracle = task.oracle if config.mode == "paper" else make_oracle("argmax")
    learner_seed, eval_seed = spawn_seeds(seed, 2)
    rng, eval_rng = make_rng(learner_seed), make_rng(eval_seed)
    p, horizon = task.prompt_length, task.horizon

    optimal_value = math.nan
    if scoring == "exact":
        if env is None:
            env = task.token_mdp(tabulate_policy(reference, task))
        optimal_value = exact.solve(env, config.beta).value

    iterate_probabilities_sum = None  # sum over iterates of pi_i(tau|x): the average iterate, exactly

    def evaluate_iterate(model: Transformer, index: int) -> dict[str, float]:
        nonlocal iterate_probabilities_sum
        scores, average_value = None, math.nan
        if scoring == "exact":
            table = tabulate_policy(model, task)
            scores = exact_scores(env, task, table, config.beta)
            probabilities = exact.trajectory_probabilities(env, table)
            iterate_probabilities_sum = probabilities if iterate_probabilities_sum is None \
                else iterate_probabilities_sum + probabilities
            mixture = iterate_probabilities_sum / (index + 1)
            average_value = mixture_value(env, mixture / mixture.sum(axis=1, keepdims=True), config.beta)
        mc = None
        if config.eval_samples > 0:
            contexts = eval_rng.choice(task.n_contexts, size=config.eval_samples, p=task.rho)
            drawn = sample(model, task.prompts[contexts], horizon, eval_rng, 1.0).tokens
            # both scored the same way (full sequences, same batches), so pi = pi_ref gives exactly 0
            logp_policy = score_sequences(model, drawn, p)
            logp_ref = score_sequences(reference, drawn, p)
            mc = monte_carlo_scores(task, contexts, drawn[:, p:], logp_policy, logp_ref, config.beta)
        return {**evaluation_metrics(scores, optimal_value, mc), "average_iterate_value": average_value}

    base = {"learner": config.learner, "mode": config.mode, "seed": seed_column(seed), "beta": config.beta, "alpha": alpha,
            "temperature": temperature, "scoring": scoring}
    rows = [{**base, "round": 0, "labels": 0, **empty_batch_metrics(), **evaluate_iterate(reference, 0)}]

    # step 0: pi^(1) = pi_ref (a copy: the reference stays fixed), D = {}
    policy = reference.copy()
    optimizer = AdamW(policy.params, lr=config.learning_rate, weight_decay=config.weight_decay)
    data: list[PairBatch] = []  # D (paper mode trains on it; kept in trl mode for inspection only)
    gradient_steps = 0
    first_from_policy = config.learner in ("xpo", "online_dpo")
    second_from_policy = config.learner == "online_dpo"

    show = sys.stderr.isatty() if config.progress is None else bool(config.progress)
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.rounds, desc=f"{config.learner} ({config.mode})", file=sys.stderr, leave=False)
    for t in range(1, config.rounds + 1):
        # step 1: x ~ rho, a batch of B contexts
        contexts = rng.choice(task.n_contexts, size=config.pairs_per_round, p=task.rho)
        prompts = task.prompts[contexts]
        # step 2: the sampler pair; XPO: tau ~ pi^(t), tau~ ~ pi_ref
        first = sample(policy if first_from_policy else reference, prompts, horizon, rng, temperature).tokens[:, p:]
        second = sample(policy if second_from_policy else reference, prompts, horizon, rng, temperature).tokens[:, p:]
        # step 3: label the pair with the oracle (True: the first response is preferred)
        r_first, r_second = task.reward(contexts, first), task.reward(contexts, second)
        first_wins = np.asarray(oracle.sample(rng, r_first, r_second), dtype=bool)
        chosen = np.where(first_wins[:, None], first, second)
        rejected = np.where(first_wins[:, None], second, first)
        ref_chosen = score_sequences(reference, task.full_sequences(contexts, chosen), p)  # temperature 1
        ref_rejected = score_sequences(reference, task.full_sequences(contexts, rejected), p)
        fresh = PairBatch(contexts=contexts, chosen=chosen, rejected=rejected, ref_logp_chosen=ref_chosen,
                          ref_logp_rejected=ref_rejected, bonus_on_chosen=~first_wins)  # tau~ = the second response
        # trl-named batch metrics, with pi^(t) before the update (trl's convention)
        logp_chosen = score_sequences(policy, task.full_sequences(contexts, chosen), p)
        logp_rejected = score_sequences(policy, task.full_sequences(contexts, rejected), p)

        # step 4: pi^(t+1) = argmin alpha sum log pi(tau~) + L_DPO(pi; D)
        pair_sum = bonus_sum = 0.0
        n_terms = 0
        data.append(fresh)
        if config.mode == "paper":
            all_pairs = PairBatch.concatenate(data)  # D: every pair so far (and every tau~ so far)
            for _ in range(config.epochs_per_round):
                order = rng.permutation(len(all_pairs))
                for lo in range(0, len(all_pairs), config.minibatch_size):
                    step = preference_step(policy, optimizer, task, all_pairs.take(order[lo : lo + config.minibatch_size]),
                                           spec, config.grad_clip)
                    pair_sum, bonus_sum, n_terms = (pair_sum + step.pair_loss_sum, bonus_sum + step.bonus_loss_sum,
                                                    n_terms + step.logp_chosen.shape[0])
                    gradient_steps += 1
        else:  # trl: one gradient step on the fresh batch only (D is kept for inspection, never trained on)
            step = preference_step(policy, optimizer, task, fresh, spec, config.grad_clip)
            pair_sum, bonus_sum, n_terms = step.pair_loss_sum, step.bonus_loss_sum, step.logp_chosen.shape[0]
            gradient_steps += 1

        metrics = batch_metrics(config.beta, logp_chosen, logp_rejected, ref_chosen, ref_rejected, r_first, r_second,
                                pair_sum / n_terms, bonus_sum / n_terms)
        rows.append({**base, "round": t, "labels": t * config.pairs_per_round, **metrics, **evaluate_iterate(policy, t)})
        if bar is not None:
            value = rows[-1]["kl_regularized_value" if scoring == "exact" else "mc/kl_regularized_value"]
            bar.update(1)
            bar.set_postfix(J=f"{value:.4f}")
    if bar is not None:
        bar.close()

    log = with_dtypes(pd.DataFrame(rows))
    value_column = "kl_regularized_value" if scoring == "exact" else "mc/kl_regularized_value"
    values = log[value_column].to_numpy()
    best = int(np.nanargmax(values)) if np.any(np.isfinite(values)) else 0
    summary = {
        "learner": config.learner,
        "mode": config.mode,
        "rounds": config.rounds,
        "labels": config.rounds * config.pairs_per_round,
        "scoring": scoring,
        "beta": config.beta,
        "alpha": alpha,
        "initial_value": float(values[0]),
        "final_value": float(values[-1]),
        "best_value": float(values[best]),
        "best_round": best,
        "average_iterate_value": float(log["average_iterate_value"].iloc[-1]),
        "optimal_value": float(optimal_value),
        "final_kl_to_ref": float(log["objective/kl"].iloc[-1]),
        "wall_seconds": time.perf_counter() - started,
    }
    return PreferenceRun(log=log, policy=policy, summary=summary, pairs=PairBatch.concatenate(data),
                         gradient_steps=gradient_steps, config=config)
