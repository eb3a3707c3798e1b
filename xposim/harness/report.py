"""``xposim report DIR``: a Markdown report of every experiment run found in ``DIR``.

``DIR`` is either one run (``DIR/summary.json``) or an output directory holding runs
(``DIR/NAME/summary.json``). The report lists, per run, the settings line, the predictions with
measured value, interval, predicted value and verdict, the tables, failed cells, and links to
the figures; it is written to ``DIR/report.md``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["build_report", "write_report", "format_number", "predictions_table"]

_VERDICT_MARK = {"held": "held", "not held": "**not held**", "inconclusive": "inconclusive"}


def format_number(value: Any) -> str:
    """Three significant digits; ``None`` -> an em dash, ``'inf'`` -> infinity."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return {"inf": "∞", "-inf": "−∞"}.get(value, value)
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _interval(measured: dict[str, Any]) -> str:
    low, high = measured.get("low"), measured.get("high")
    if low is None and high is None:
        return ""
    return f" [{format_number(low)}, {format_number(high)}]"


def predictions_table(predictions: list[dict[str, Any]]) -> str:
    """Markdown table: id | prediction | measured [95% interval] | predicted | verdict."""
    lines = ["| id | prediction | measured [95% interval] | predicted | verdict |", "|---|---|---|---|---|"]
    for p in predictions:
        m = p.get("measured", {})
        unit = f" ({m['unit']})" if m.get("unit") else ""
        measured = f"{format_number(m.get('value'))}{_interval(m)}{unit}"
        lines.append(
            f"| {p['id']} | {_cell(p['prediction'])} | {measured} | {format_number(p.get('predicted'))} | "
            f"{_VERDICT_MARK.get(p['verdict'], p['verdict'])} |"
        )
    return "\n".join(lines)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _records_table(records: list[dict[str, Any]], max_rows: int = 40) -> str:
    if not records:
        return "(empty)"
    columns = list(records[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for record in records[:max_rows]:
        lines.append("| " + " | ".join(_cell(format_number(record.get(c))) for c in columns) + " |")
    if len(records) > max_rows:
        lines.append(f"\n({len(records) - max_rows} more rows in summary.json)")
    return "\n".join(lines)


def _section(summary: dict[str, Any], manifest: dict[str, Any] | None, prefix: str) -> str:
    name = summary["experiment"]
    out = [f"## `{name}` — {summary.get('description', '')}", ""]
    settings = summary.get("settings", {})
    mode = "quick" if summary.get("quick") else "full"
    run = summary.get("run", {})
    version = manifest.get("xposim_version") if manifest else None
    out.append(
        f"Predictions {', '.join(summary.get('predictions_tested', []))}; {mode} settings; "
        f"{settings.get('seeds')} seeds (root seed {settings.get('root_seed')}); "
        f"{run.get('cells', '?')} cells, {run.get('failed', 0)} failed; xposim {version or '?'}."
    )
    out.append("")
    if summary.get("predictions"):
        out += [predictions_table(summary["predictions"]), ""]
        for p in summary["predictions"]:
            parts = []
            if p.get("rule"):
                parts.append(f"rule: {p['rule']}")
            if p.get("detail"):
                parts.append(f"measured: {p['detail']}")
            if parts:
                out.append(f"* **{p['id']}** — " + ". ".join(parts))
        out.append("")
    if summary.get("analysis_error"):
        out += [f"**Analysis failed:** `{summary['analysis_error']}`", ""]
    for figure in summary.get("figures", []):
        if figure.endswith(".png"):
            svg = figure[:-4] + ".svg"
            out.append(f"![{figure}]({prefix}{figure}) ([SVG]({prefix}{svg}))")
    if summary.get("figures"):
        out.append("")
    for table_name, records in summary.get("tables", {}).items():
        out += [f"**{table_name}**", "", _records_table(records), ""]
    failed = summary.get("failed_cells", [])
    if failed:
        out += ["**Failed cells** (their results are missing; rerun the same command to retry them):", ""]
        for f in failed:
            out.append(f"* `{f['cell_id']}` seed {f['seed_index']} {json.dumps(f['settings'])}: `{f['error']}`")
        out.append("")
    if summary.get("notes"):
        out += [summary["notes"], ""]
    out.append(f"Settings: `{json.dumps(settings, sort_keys=True)}`")
    out.append("")
    return "\n".join(out)


def _runs(directory: Path) -> list[tuple[Path, str]]:
    if (directory / "summary.json").exists():
        return [(directory, "")]
    from xposim.harness.experiments import experiment_names

    order = {name: i for i, name in enumerate(experiment_names())}
    found = sorted(directory.glob("*/summary.json"), key=lambda p: (order.get(p.parent.name, len(order)), p.parent.name))
    return [(p.parent, f"{p.parent.name}/") for p in found]


def build_report(directory: str | Path) -> str:
    """The Markdown report of the runs in ``directory`` (``ValueError`` if there are none)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"report directory {str(directory)!r} does not exist")
    runs = _runs(directory)
    if not runs:
        raise ValueError(f"no experiment results in {str(directory)!r} (expected NAME/summary.json; run `xposim run NAME --out {directory}`)")
    parts = [f"# xposim report: `{directory}`", ""]
    overview = ["| experiment | predictions | held | not held | inconclusive |", "|---|---|---|---|---|"]
    sections = []
    for run_dir, prefix in runs:
        try:
            summary = json.loads((run_dir / "summary.json").read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{run_dir / 'summary.json'} is not valid JSON: {exc}") from None
        manifest_path = run_dir / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
        verdicts = [p["verdict"] for p in summary.get("predictions", [])]
        overview.append(
            f"| `{summary['experiment']}` | {', '.join(summary.get('predictions_tested', []))} | "
            f"{verdicts.count('held')} | {verdicts.count('not held')} | {verdicts.count('inconclusive')} |"
        )
        sections.append(_section(summary, manifest, prefix))
    parts += overview + [""] + sections
    return "\n".join(parts)


def write_report(directory: str | Path) -> tuple[Path, str]:
    """Build the report and write it to ``directory/report.md``; return the path and the text."""
    from xposim.harness.store import atomic_write_bytes

    text = build_report(directory)
    path = Path(directory) / "report.md"
    atomic_write_bytes(path, text.encode("utf-8"))
    return path, text
