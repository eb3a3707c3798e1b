"""``xposim demo`` / ``make demo``: the headline experiments on their quick settings.

Runs ``separation`` (E2, Proposition 2.1: passive methods need ``~e^{1/(8 beta)}`` queries, XPO
does not) and ``rate`` (E3, Theorem 3.1: XPO's suboptimality decays at least like ``T^{-1/2}``)
into ``out/`` (default ``./xposim-demo``), prints one table of predictions with measured values,
intervals and verdicts, and writes ``out/report.md`` with the figures beside it. Reruns resume.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

__all__ = ["run_demo", "DEMO_EXPERIMENTS"]

#: The experiments of the demo, in order.
DEMO_EXPERIMENTS = ("separation", "rate")


def run_demo(out: str | Path = "xposim-demo", quick: bool = True, workers: int | None = None,
             progress: bool | None = None) -> dict[str, dict]:
    """Run the demo experiments into ``out`` and print their verdicts; return the summaries."""
    from xposim.harness import run_experiment
    from xposim.harness.report import format_predictions, write_report

    out = Path(out)
    show = sys.stderr.isatty() if progress is None else progress
    start = time.perf_counter()
    summaries = {}
    print(f"xposim demo: {', '.join(DEMO_EXPERIMENTS)} ({'quick' if quick else 'full'} settings) -> {out}/")
    for name in DEMO_EXPERIMENTS:
        t0 = time.perf_counter()
        summary = run_experiment(name, out, quick=quick, workers=workers, progress=show)
        summaries[name] = summary
        print(f"\n== {name}: {summary['description']}  ({time.perf_counter() - t0:.1f} s)")
        print(format_predictions(summary))
        if summary.get("failed_cells"):
            print(f"   {len(summary['failed_cells'])} cells failed; see {out / name / 'failures'}")
        if summary.get("analysis_error"):
            print(f"   analysis failed: {summary['analysis_error']}")
    report_path, _ = write_report(out)
    figures = sorted(str(p) for p in out.glob("*/*.png"))
    print(f"\nfigures: {', '.join(figures)}")
    print(f"report:  {report_path}")
    print(f"demo wall time: {time.perf_counter() - start:.1f} s")
    return summaries
