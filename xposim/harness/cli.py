"""Subcommands ``list``, ``run`` and ``report`` (registered with :func:`xposim.cli.register`).

Bad settings, config files, experiment names and directories give one ``xposim: error:`` line
and exit status 2 (handled by :func:`xposim.cli.main`); ``run`` exits 1 when some cells failed
(their ids are printed and recorded; the other cells' results are kept). ``run --out`` is checked
(:func:`xposim.cli.check_output_directory`) and the sweep size bounded (``--seeds`` at most
:data:`xposim.harness.config.MAX_SEEDS`) before any cell runs. ``report`` turns any failure to read
the results or to write ``report.md`` into one error line naming the directory.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from xposim.commands import CommandError, add_progress_argument, check_output_directory, register, resolve_progress

DEFAULT_OUT = "xposim-results"  # same as xposim.harness.api.DEFAULT_OUT (not imported: keeps `xposim list` fast)

__all__: list[str] = []


def _seeds(text: str) -> int:
    from xposim.harness.config import MAX_SEEDS  # imported here: importing xposim.harness loads the runner

    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= MAX_SEEDS:
        raise argparse.ArgumentTypeError(
            f"expected an integer in [1, {MAX_SEEDS}] (the limit of seeds per experiment), got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


# ----------------------------------------------------------------------------- list
def _add_list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all", action="store_true", help="also list internal experiments")


def _list(args: argparse.Namespace) -> int:
    from xposim.harness.experiments import all_experiments

    experiments = [e for e in all_experiments() if e.listed or args.all]
    width = max(len(e.name) for e in experiments)
    for e in experiments:
        tag = ",".join(e.predictions) or "no verdict"
        print(f"{e.name:<{width}}  [{tag}]  {e.description}")
    return 0


register("list", "list the named experiments with one-line descriptions")((_add_list_arguments, _list))


# ----------------------------------------------------------------------------- run
def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="experiment name (see `xposim list`)")
    parser.add_argument("--quick", action="store_true", help="the quick settings (seconds; CI and the demo)")
    parser.add_argument("--seeds", type=_seeds,
                        help="number of seeds, at most 100000 = MAX_SEEDS (overrides the settings)")
    parser.add_argument("--workers", type=_positive_int, help="local worker processes (default: CPU count)")
    parser.add_argument("--scheduler", metavar="ADDR", help="dask.distributed scheduler, e.g. tcp://HOST:8786")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT}); reruns resume")
    parser.add_argument("--config", metavar="FILE.toml", help="TOML file of setting overrides")
    parser.add_argument("--json", action="store_true", help="print summary.json as the last line of output")
    parser.add_argument("--accept-stale", action="store_true",
                        help="reuse stored cells computed by other code (another code fingerprint) instead of "
                             "recomputing them; the manifest and report say the results mix code")
    add_progress_argument(parser)


def _run(args: argparse.Namespace) -> int:
    from xposim.harness.api import run_experiment
    from xposim.harness.config import load_config
    from xposim.harness.experiments import get_experiment
    from xposim.harness.report import format_predictions
    from xposim.harness.store import StoreLockedError

    experiment = get_experiment(args.name)
    overrides = load_config(args.config, experiment.name) if args.config else {}
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    check_output_directory(args.out)
    progress = resolve_progress(args.progress)
    try:
        summary = run_experiment(experiment.name, args.out, quick=args.quick, overrides=overrides,
                                 workers=args.workers, scheduler=args.scheduler, progress=progress,
                                 accept_stale=args.accept_stale)
    except ModuleNotFoundError as exc:
        raise CommandError(f"experiment {experiment.name!r} needs module {exc.name!r}, which is not available") from None
    except StoreLockedError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot write results under {args.out!r}: {exc.strerror or exc}") from None
    directory = os.path.join(args.out, experiment.name)
    if not args.json:
        print(f"{experiment.name}: {summary['run']['ran']} cells run, {summary['run']['skipped_already_done']} "
              f"resumed, {summary['run']['failed']} failed, {summary['run']['seconds']:.1f} s")
        print(format_predictions(summary))
        print(f"results: {directory}/results.parquet  summary: {directory}/summary.json  "
              f"figures: {', '.join(f for f in summary.get('figures', []) if f.endswith('.png')) or 'none'}")
    if summary.get("analysis_error"):
        print(f"xposim: analysis error: {summary['analysis_error']}", file=sys.stderr)
    failed = summary.get("failed_cells", [])
    for failure in failed[:10]:
        print(f"xposim: cell {failure['cell_id']} failed: {failure['error']}", file=sys.stderr)
    if len(failed) > 10:
        print(f"xposim: ... and {len(failed) - 10} more failed cells (see {directory}/failures/)", file=sys.stderr)
    if args.json:
        sys.stdout.flush()
        print(json.dumps(summary, sort_keys=False, default=str))
    return 1 if summary.get("failed_cells") or summary.get("analysis_error") else 0


register("run", "run a named experiment (resumable; --quick for seconds-long settings)")((_add_run_arguments, _run))


# ----------------------------------------------------------------------------- report
def _add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="an output directory of `xposim run` (or one experiment's directory)")


def _report(args: argparse.Namespace) -> int:
    from xposim.harness.report import write_report

    try:
        path, text = write_report(args.directory)
    except ValueError:  # report's own one-line messages (no results, invalid JSON, ...)
        raise
    except OSError as exc:
        where = f": {str(exc.filename)!r}" if exc.filename else ""
        raise CommandError(f"report of {args.directory!r} failed: {exc.strerror or exc}{where}") from None
    except Exception as exc:  # noqa: BLE001 - a malformed summary.json: one line, not a traceback
        raise CommandError(f"cannot build the report of {args.directory!r}: a summary.json there is malformed "
                           f"({type(exc).__name__}: {exc})") from None
    print(text)
    print(f"(written to {path})", file=sys.stderr)
    return 0


register("report", "Markdown report (tables, figure links) of everything in a results directory")(
    (_add_report_arguments, _report))
