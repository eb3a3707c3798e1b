"""``xposim lm``: train the reference model, run a preference learner on the LM task, log and plot.

::

    xposim lm [--learner xpo|online_dpo|dpo] [--rounds N] [--quick] [--out DIR] [--json]
              [--mode paper|trl] [--seed N] [--progress auto|on|off] [...]

Steps: generate the task (:func:`xposim.lm.task.make_lm_task`); load the SFT reference model from
``OUT/reference_<key>.npz`` or train and cache it (:func:`xposim.lm.sft.load_or_train_reference`);
run the learner (:func:`xposim.lm.preference.run_preference_learning`); print a per-round table;
write the tidy log ``OUT/lm_<learner>_<mode>_seed<seed>.parquet``, the learning-curve figure
(same stem, ``.png``) and the summary (``.json``). With ``--json`` the last stdout line is the
summary as a JSON object (``initial_value``, ``final_value``, ``best_value``, ``optimal_value`` =
exact ``J_beta(pi*)``, ``learner``, ``rounds``, ... ; NaN written as ``null``).

Bad settings (an unknown learner, zero rounds, a tree too large for ``--scoring exact``,
``--eval-samples 0`` with Monte Carlo scoring, an unusable ``--out``) end with one error line naming
the setting and exit status 2 (:mod:`xposim.cli`), before any training. ``--no-progress`` is a
deprecated alias of ``--progress off``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from xposim.commands import CommandError, add_progress_argument, check_output_directory, register, resolve_progress

__all__ = ["LMExperiment", "run_lm_experiment", "QUICK", "plot_learning_curve", "format_round_table"]


@dataclass(frozen=True)
class LMExperiment:
    """Everything ``xposim lm`` runs (task, reference model, SFT, learner) in one place."""

    learner: str = "xpo"
    """``xpo``, ``online_dpo`` or ``dpo``."""
    mode: str = "paper"
    """``paper`` or ``trl`` (see :mod:`xposim.lm.preference`)."""
    rounds: int | None = None
    """Rounds ``T``; ``None``: 16 (quick: 8)."""
    pairs_per_round: int | None = None
    """Labels per round; ``None``: 64."""
    beta: float = 0.2
    """KL coefficient."""
    alpha: float | None = None
    """XPO bonus coefficient (``None``: the mode's default)."""
    learning_rate: float | None = None
    """Policy learning rate (``None``: 2e-4, quick: 3e-4)."""
    epochs_per_round: int | None = None
    """Paper mode epochs per round (``None``: 2, quick: 1)."""
    vocab_size: int = 6
    """Task vocabulary ``A``."""
    horizon: int = 4
    """Response length ``H``."""
    n_prompts: int = 4
    """Number of prompts (contexts)."""
    scoring: str = "exact"
    """``exact``, ``monte_carlo`` or ``auto``."""
    eval_samples: int | None = None
    """Fresh samples per round for the Monte Carlo metrics (``None``: 256, quick: 64); at least 1
    when the scoring is Monte Carlo (``monte_carlo``, or ``auto`` on a tree too large to enumerate)."""
    seed: int = 0
    """Learner seed (sampling, labels, minibatch order)."""
    task_seed: int = 0
    """Seed of the task and of the reference model (shared by every learner and learner seed)."""
    quick: bool = False
    """Smaller model, shorter SFT and fewer rounds (a run of a few seconds)."""
    progress: bool | None = None
    """Progress bars (``None``: only on a terminal)."""
    blas_threads: int | None = 1
    """OpenBLAS threads while training (:mod:`xposim.lm.blas_threads`; ``None``: numpy's default).
    One thread is fastest for these tiny matrices."""


#: The ``--quick`` defaults (model width/depth, SFT steps, rounds, pairs per round, ...).
QUICK = {"d_model": 32, "n_layers": 1, "sft_steps": 300, "rounds": 8, "pairs_per_round": 64, "learning_rate": 3e-4,
         "epochs_per_round": 1, "eval_samples": 64}
_FULL = {"d_model": 32, "n_layers": 2, "sft_steps": 600, "rounds": 16, "pairs_per_round": 64, "learning_rate": 2e-4,
         "epochs_per_round": 2, "eval_samples": 256}


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_round_table(log) -> str:
    """The per-round table printed by ``xposim lm`` (exact columns when available, else Monte Carlo)."""
    exact = log["scoring"].iloc[0] == "exact"
    columns = [("round", "round", "{:d}"), ("labels", "labels", "{:d}")]
    if exact:
        columns += [("J_beta", "kl_regularized_value", "{:.4f}"), ("E[r]", "expected_reward", "{:.4f}"),
                    ("KL", "kl_to_ref", "{:.4f}"), ("P(pattern)", "pattern_probability", "{:.4f}")]
    else:
        columns += [("J_beta(mc)", "mc/kl_regularized_value", "{:.4f}"), ("+-95%", "mc/kl_regularized_value_ci95", "{:.4f}"),
                    ("KL(mc)", "mc/kl_to_ref", "{:.4f}"), ("P(pattern)", "mc/pattern_probability", "{:.4f}")]
    columns += [("loss/dpo", "loss/dpo", "{:.4f}"), ("loss/xpo", "loss/xpo", "{:.4f}"),
                ("margins", "rewards/margins", "{:.4f}"), ("acc", "rewards/accuracies", "{:.3f}")]
    cells = [[title for title, _, _ in columns]]
    for _, row in log.iterrows():
        line = []
        for _, name, fmt in columns:
            value = row[name]
            if isinstance(value, float) and not math.isfinite(value):
                line.append("-")
            else:
                line.append(fmt.format(int(value)) if fmt == "{:d}" else fmt.format(float(value)))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells)


def plot_learning_curve(log, path: Path, title: str) -> Path:
    """Two panels against the number of preference labels: ``J_beta`` of every iterate (exact, or
    Monte Carlo with its 95% band) with the optimum and the reference, and ``KL(pi || pi_ref)``
    (exact / Monte Carlo) next to trl's batch estimator. Saved as PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    exact = log["scoring"].iloc[0] == "exact"
    labels = log["labels"].to_numpy()
    fig, (ax_value, ax_kl) = plt.subplots(1, 2, figsize=(11, 4.2))
    if exact:
        ax_value.plot(labels, log["kl_regularized_value"], "o-", color="#d62728", label="iterate (exact)")
        ax_value.plot(labels, log["average_iterate_value"], "s--", color="#ff7f0e", ms=4,
                      label="average iterate (mixture, exact)")
        ax_value.axhline(log["optimal_value"].iloc[0], ls="--", color="black", label=r"optimum $J_\beta(\pi^*_\beta)$ (exact)")
    mc = log["mc/kl_regularized_value"].to_numpy()
    if (~(log["mc/kl_regularized_value"].isna())).any():
        ci = log["mc/kl_regularized_value_ci95"].to_numpy()
        ax_value.plot(labels, mc, ".:", color="#1f77b4", label="iterate (Monte Carlo)")
        ax_value.fill_between(labels, mc - ci, mc + ci, color="#1f77b4", alpha=0.2, label="Monte Carlo 95% CI")
    initial = log["kl_regularized_value" if exact else "mc/kl_regularized_value"].iloc[0]
    ax_value.axhline(initial, ls=":", color="grey", label=r"reference model $\pi_{ref}$")
    ax_value.set_xlabel("preference labels queried")
    ax_value.set_ylabel(r"$J_\beta(\pi) = E[r] - \beta\,KL(\pi\,||\,\pi_{ref})$")
    ax_value.set_title(r"KL-regularized value $J_\beta$")
    ax_value.legend(fontsize=8)
    if exact:
        ax_kl.plot(labels, log["kl_to_ref"], "o-", color="#d62728", label="exact KL")
    if (~(log["mc/kl_to_ref"].isna())).any():
        kl, ci = log["mc/kl_to_ref"].to_numpy(), log["mc/kl_to_ref_ci95"].to_numpy()
        ax_kl.plot(labels, kl, ".:", color="#1f77b4", label="Monte Carlo (fresh samples, T=1)")
        ax_kl.fill_between(labels, kl - ci, kl + ci, color="#1f77b4", alpha=0.2)
    # trl's number of round t is measured on pi^(t), the iterate evaluated in row t-1: plot it there
    ax_kl.plot(labels[:-1], log["trl/objective_kl"].to_numpy()[1:], "x--", color="#7f7f7f",
               label="trl's objective/kl (mean log-ratio on the sampled batch)")
    ax_kl.set_xlabel("preference labels queried")
    ax_kl.set_ylabel(r"$KL(\pi\,||\,\pi_{ref})$ [nats per response]")
    ax_kl.set_title("KL to the reference model")
    ax_kl.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_lm_experiment(experiment: LMExperiment, out: str | Path):
    """Run ``experiment`` (see :class:`LMExperiment`), write its files into ``out`` and return
    ``(summary, log)``: the summary dict (with the file paths; NaN as ``None``) and the per-round
    DataFrame. The reference model is cached in ``out``."""
    from xposim.lm.blas_threads import blas_threads

    with blas_threads(experiment.blas_threads):
        return _run_lm_experiment(experiment, out)


def _scores_by_monte_carlo(scoring: str, n_prompts: int, vocab_size: int, horizon: int) -> bool:
    """Whether ``scoring`` means Monte Carlo metrics for this task size (``exact`` is checked apart)."""
    from xposim.lm.task import resolve_scoring

    return scoring != "exact" and resolve_scoring(scoring, n_prompts, vocab_size, horizon) == "monte_carlo"


def _run_lm_experiment(experiment: LMExperiment, out: str | Path):
    from xposim.lm.model import TransformerConfig
    from xposim.lm.preference import PreferenceConfig, run_preference_learning
    from xposim.lm.sft import SFTConfig, load_or_train_reference
    from xposim.lm.task import LMTaskConfig, check_exact_scoring, make_lm_task

    preset = QUICK if experiment.quick else _FULL
    task_config = LMTaskConfig(vocab_size=experiment.vocab_size, horizon=experiment.horizon,
                               n_prompts=experiment.n_prompts, seed=experiment.task_seed)
    if experiment.scoring == "exact":  # fail before any training
        check_exact_scoring(task_config.n_prompts, task_config.vocab_size, task_config.horizon)
    pick = lambda value, key: preset[key] if value is None else value  # noqa: E731
    monte_carlo = _scores_by_monte_carlo(experiment.scoring, task_config.n_prompts, task_config.vocab_size,
                                         task_config.horizon)
    if monte_carlo and pick(experiment.eval_samples, "eval_samples") < 1:
        raise ValueError(f"eval_samples must be an integer >= 1 when the scoring is Monte Carlo "
                         f"(scoring={experiment.scoring!r}), got {experiment.eval_samples!r}")
    config = PreferenceConfig(
        learner=experiment.learner, mode=experiment.mode, rounds=pick(experiment.rounds, "rounds"),
        pairs_per_round=pick(experiment.pairs_per_round, "pairs_per_round"), beta=experiment.beta,
        alpha=experiment.alpha, learning_rate=pick(experiment.learning_rate, "learning_rate"),
        epochs_per_round=pick(experiment.epochs_per_round, "epochs_per_round"),
        eval_samples=pick(experiment.eval_samples, "eval_samples"), scoring=experiment.scoring,
        progress=experiment.progress,
    )
    started = time.perf_counter()
    task = make_lm_task(task_config)
    model_config = TransformerConfig(vocab_size=task.vocab_size, max_len=task.sequence_length,
                                     d_model=preset["d_model"], n_heads=2, n_layers=preset["n_layers"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    show = sys.stderr.isatty() if experiment.progress is None else experiment.progress
    sft = load_or_train_reference(task, model_config, SFTConfig(steps=preset["sft_steps"]),
                                  seed=experiment.task_seed, directory=out, progress=show)
    sft_seconds = time.perf_counter() - started
    run = run_preference_learning(task, sft.model, config, seed=experiment.seed)
    stem = f"lm_{config.learner}_{config.mode}_seed{experiment.seed}"
    log_path = out / f"{stem}.parquet"
    run.log.to_parquet(log_path, index=False)
    figure_path = plot_learning_curve(
        run.log, out / f"{stem}.png",
        f"{config.learner} ({config.mode} mode) on the LM task: A={task.vocab_size}, H={task.horizon}, "
        f"beta={config.beta:g}, alpha={config.resolved_alpha:g}, seed {experiment.seed}")
    summary = dict(run.summary)
    summary.update(
        seed=experiment.seed, task_seed=experiment.task_seed, quick=experiment.quick,
        reference_model=str(sft.path), reference_reused=sft.reused, sft_seconds=sft_seconds,
        log=str(log_path), figure=str(figure_path), total_seconds=time.perf_counter() - started,
    )
    summary = {k: _json_safe(v) for k, v in summary.items()}
    (out / f"{stem}.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary, run.log


# --------------------------------------------------------------------------------------------
# argparse wiring
# --------------------------------------------------------------------------------------------
def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--learner", choices=["xpo", "online_dpo", "dpo"], default="xpo",
                        help="preference learner (default: xpo, Algorithm 1)")
    parser.add_argument("--mode", choices=["paper", "trl"], default="paper",
                        help="paper: keep all pairs, epochs per round, BT labels; trl: one step per fresh batch, "
                             "argmax labels, sample at T=0.9, score at T=1")
    parser.add_argument("--rounds", type=int, default=None, help="rounds T (default 16; --quick: 8)")
    parser.add_argument("--pairs-per-round", type=int, default=None, help="labels per round (default 64)")
    parser.add_argument("--beta", type=float, default=0.2, help="KL coefficient beta (default 0.2)")
    parser.add_argument("--alpha", type=float, default=None,
                        help="XPO bonus coefficient (default: 0.01 in paper mode, 1e-5 in trl mode)")
    parser.add_argument("--learning-rate", type=float, default=None, help="policy AdamW learning rate")
    parser.add_argument("--epochs-per-round", type=int, default=None, help="paper mode: epochs over all pairs per round")
    parser.add_argument("--vocab-size", type=int, default=6, help="task vocabulary A (default 6)")
    parser.add_argument("--horizon", type=int, default=4, help="response length H (default 4)")
    parser.add_argument("--n-prompts", type=int, default=4, help="number of prompts (default 4)")
    parser.add_argument("--scoring", choices=["exact", "monte_carlo", "auto"], default="exact",
                        help="exact: tabulate the network (refused when the tree is too large); monte_carlo; auto")
    parser.add_argument("--eval-samples", type=int, default=None, help="fresh samples per round for Monte Carlo metrics")
    parser.add_argument("--seed", type=int, default=0, help="learner seed (default 0)")
    parser.add_argument("--task-seed", type=int, default=0, help="seed of the task and the reference model (default 0)")
    parser.add_argument("--quick", action="store_true", help="small model, short SFT, few rounds (a few seconds)")
    parser.add_argument("--out", default="xposim-lm", help="output directory (reference model cache, log, figure)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    add_progress_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="deprecated: same as --progress off")


def _check_arguments(args: argparse.Namespace) -> None:
    checks = [("--rounds", args.rounds, 1), ("--pairs-per-round", args.pairs_per_round, 1),
              ("--epochs-per-round", args.epochs_per_round, 1), ("--eval-samples", args.eval_samples, 0),
              ("--vocab-size", args.vocab_size, 2), ("--horizon", args.horizon, 1), ("--n-prompts", args.n_prompts, 1),
              ("--seed", args.seed, 0), ("--task-seed", args.task_seed, 0)]
    for flag, value, low in checks:
        if value is not None and value < low:
            raise CommandError(f"{flag} must be an integer >= {low}, got {value}")
    for flag, value, strict in (("--beta", args.beta, True), ("--alpha", args.alpha, False),
                                ("--learning-rate", args.learning_rate, True)):
        if value is not None and (not math.isfinite(value) or value < 0 or (strict and value == 0)):
            raise CommandError(f"{flag} must be a finite number {'> 0' if strict else '>= 0'}, got {value}")
    if args.scoring == "exact":
        from xposim.lm.task import MAX_EXACT_SEQUENCES, check_exact_scoring, exact_scoring_sequences

        try:
            check_exact_scoring(args.n_prompts, args.vocab_size, args.horizon)
        except ValueError:
            needed = exact_scoring_sequences(args.n_prompts, args.vocab_size, args.horizon)
            raise CommandError(
                f"--scoring exact needs the network on every prefix: --vocab-size {args.vocab_size} --horizon "
                f"{args.horizon} --n-prompts {args.n_prompts} means {needed:,} sequences, above the limit of "
                f"{MAX_EXACT_SEQUENCES:,}; use --scoring monte_carlo or a smaller --vocab-size/--horizon") from None
    if args.eval_samples == 0 and _scores_by_monte_carlo(args.scoring, args.n_prompts, args.vocab_size, args.horizon):
        why = "" if args.scoring == "monte_carlo" else ", which is Monte Carlo on a tree this large"
        raise CommandError(f"--eval-samples must be an integer >= 1 with --scoring {args.scoring}{why} "
                           f"(the metrics are estimated from fresh samples), got 0")
    if args.alpha is not None and args.learner != "xpo":
        raise CommandError(f"--alpha is a parameter of --learner xpo only, not of {args.learner}")
    if args.no_progress and args.progress == "on":
        raise CommandError("--no-progress (deprecated alias of --progress off) contradicts --progress on")


def _format_value(value) -> str:
    """A summary value for the closing line: ``0.1234``, or ``n/a`` when it was not measured (``None``)."""
    return "n/a" if value is None else f"{value:.4f}"


def _run(args: argparse.Namespace) -> int:
    _check_arguments(args)
    check_output_directory(args.out)
    if args.no_progress:
        print("xposim: note: --no-progress is deprecated; use --progress off", file=sys.stderr)
    experiment = LMExperiment(
        learner=args.learner, mode=args.mode, rounds=args.rounds, pairs_per_round=args.pairs_per_round, beta=args.beta,
        alpha=args.alpha, learning_rate=args.learning_rate, epochs_per_round=args.epochs_per_round,
        vocab_size=args.vocab_size, horizon=args.horizon, n_prompts=args.n_prompts, scoring=args.scoring,
        eval_samples=args.eval_samples, seed=args.seed, task_seed=args.task_seed, quick=args.quick,
        progress=False if args.no_progress else resolve_progress(args.progress),
    )
    try:
        summary, log = run_lm_experiment(experiment, args.out)
    except ValueError as exc:  # name the setting: the messages of the task / scoring checks do
        raise CommandError(str(exc)) from None
    print(format_round_table(log))
    opt = summary["optimal_value"]
    print(f"{summary['learner']} ({summary['mode']}): J_beta {_format_value(summary['initial_value'])} -> "
          f"{_format_value(summary['final_value'])}"
          + (f" (optimum {opt:.4f}, exact)" if opt is not None else " (Monte Carlo estimates)")
          + f"; reference model {'reused' if summary['reference_reused'] else 'trained'}: {summary['reference_model']}")
    print(f"log: {summary['log']}  figure: {summary['figure']}")
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    return 0


register("lm", "train the SFT reference and run XPO / online DPO / DPO on the torch-free LM task")((_add_arguments, _run))
