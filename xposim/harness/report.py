"""``xposim report DIR``: a Markdown report of every experiment run found in ``DIR``.

``DIR`` is either one run (``DIR/summary.json``) or an output directory holding runs
(``DIR/RUN/summary.json``). Each run is named by its directory (two runs of one experiment, e.g.
``alpha`` and ``alpha_champion``, stay apart). The report lists, per run, the settings line with
the xposim version and the fingerprint(s) of the code that computed its cells, the run's status
when it did not end cleanly, the predictions with measured value, interval, predicted value and
verdict, the tables, failed cells, and links to the figures; it is written to ``DIR/report.md``.

A ``summary.json`` or ``manifest.json`` that is not what ``xposim run`` writes, and a directory
the report cannot be written to, give a one-line ``ValueError`` naming the file.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["build_report", "write_report", "format_number", "format_predictions", "predictions_table", "load_summary",
           "code_line"]

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


def _fingerprints(summary: dict[str, Any], manifest: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``{short fingerprint: {"xposim_version", "cells"}}`` of a run's results (manifest first, then
    the summary); empty for runs recorded before fingerprints existed."""
    for source in (manifest or {}, summary.get("run", {})):
        table = source.get("fingerprints")
        if isinstance(table, dict) and table and all(isinstance(e, dict) for e in table.values()):
            return table
    return {}


def code_line(summary: dict[str, Any], manifest: dict[str, Any] | None) -> str:
    """Which code computed a run's results: ``"xposim V, code FP"``, or every fingerprint with its
    cell count when they are mixed; ``unknown`` for runs recorded before fingerprints existed."""
    fingerprints = _fingerprints(summary, manifest)
    version = (manifest or {}).get("xposim_version") or "?"
    if not fingerprints:
        current = (manifest or {}).get("code_fingerprint")
        if current:
            return f"xposim {version}, code {current} (no result recorded)"
        return f"xposim {version}, code fingerprint unknown (run before fingerprints were recorded)"
    if len(fingerprints) == 1:
        (fingerprint, entry), = fingerprints.items()
        return f"xposim {entry.get('xposim_version', version)}, code {fingerprint}"

    def cells(item: tuple[str, dict[str, Any]]) -> int:
        count = item[1].get("cells")
        return -count if isinstance(count, int) else 0

    parts = [f"{fp} (xposim {e.get('xposim_version', '?')}, {e.get('cells', '?')} cells)"
             for fp, e in sorted(fingerprints.items(), key=cells)]
    return "**mixed code fingerprints**: " + ", ".join(parts)


def _fingerprint_cell(summary: dict[str, Any], manifest: dict[str, Any] | None) -> str:
    return ", ".join(f"`{fp}`" for fp in _fingerprints(summary, manifest)) or "unknown"


_STATUS_NOTE = {
    "running": "a run of this directory is in progress or was killed (manifest status `running`): the "
               "results below may be from an earlier run",
    "failed": "the last run of this directory failed{error}: the results below are from an earlier run",
    "interrupted": "the last run of this directory was interrupted: the results below are from an earlier run",
}


def _section(summary: dict[str, Any], manifest: dict[str, Any] | None, prefix: str, label: str) -> str:
    name = summary["experiment"]
    title = f"`{label}`" if label == name else f"`{label}` (experiment `{name}`)"
    out = [f"## {title} — {summary.get('description', '')}", ""]
    settings = summary.get("settings", {})
    mode = "quick" if summary.get("quick") else "full"
    run = summary.get("run", {})
    out.append(
        f"Predictions {', '.join(summary.get('predictions_tested', []))}; {mode} settings; "
        f"{settings.get('seeds')} seeds (root seed {settings.get('root_seed')}); "
        f"{run.get('cells', '?')} cells, {run.get('failed', 0)} failed; {code_line(summary, manifest)}."
    )
    out.append("")
    status = (manifest or {}).get("status")
    if status in _STATUS_NOTE:
        error = (manifest or {}).get("error")
        out += [f"**Warning:** {_STATUS_NOTE[status].format(error=f' ({error})' if error else '')}.", ""]
    if run.get("stale_reused"):
        out += [f"**Note:** {run['stale_reused']} cells were reused from other code (`accept_stale`).", ""]
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
            out.append(f"* `{f.get('cell_id')}` seed {f.get('seed_index')} {json.dumps(f.get('settings'))}: "
                       f"`{f.get('error') or '(no message recorded)'}`")
        out.append("")
    if summary.get("notes"):
        out += [summary["notes"], ""]
    out.append(f"Settings: `{json.dumps(settings, sort_keys=True)}`")
    out.append("")
    return "\n".join(out)


def _runs(directory: Path) -> list[tuple[Path, str, str]]:
    """``(run directory, link prefix, label)`` of each run, the label being its directory's name."""
    if (directory / "summary.json").exists():
        return [(directory, "", directory.resolve().name)]
    from xposim.harness.experiments import experiment_names

    order = {name: i for i, name in enumerate(experiment_names())}

    def key(path: Path) -> tuple[int, str]:
        run = path.parent.name
        base = min((n for n in order if run == n or run.startswith(n + "_")), key=lambda n: -len(n), default=None)
        return (order.get(base, len(order)) if base is not None else len(order), run)

    found = sorted(directory.glob("*/summary.json"), key=key)
    return [(p.parent, f"{p.parent.name}/", p.parent.name) for p in found]


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


def _expect(condition: bool, path: Path, what: str) -> None:
    if not condition:
        raise ValueError(f"{path} is not an xposim run summary: {what} (rerun the experiment to rewrite it)")


def load_summary(path: Path) -> dict[str, Any]:
    """``summary.json`` of a run, checked to have what the report reads (``ValueError`` naming
    the file and the first thing missing otherwise)."""
    summary = _read_json(path)
    _expect(isinstance(summary, dict), path, f"expected a JSON object, got {type(summary).__name__}")
    _expect(isinstance(summary.get("experiment"), str), path, "no 'experiment' name")
    for key, kind in (("predictions", list), ("figures", list), ("tables", dict), ("failed_cells", list),
                      ("settings", dict), ("run", dict), ("predictions_tested", list)):
        if key in summary:
            _expect(isinstance(summary[key], kind), path, f"'{key}' is not a {kind.__name__}")
    for i, prediction in enumerate(summary.get("predictions", [])):
        _expect(isinstance(prediction, dict), path, f"prediction {i} is not an object")
        missing = [k for k in ("id", "prediction", "verdict") if k not in prediction]
        _expect(not missing, path, f"prediction {i} lacks {', '.join(repr(k) for k in missing)}")
        _expect(isinstance(prediction.get("measured", {}), dict), path, f"prediction {i}: 'measured' is not an object")
    _expect(all(isinstance(f, str) for f in summary.get("figures", [])), path, "'figures' are not file names")
    for table_name, records in summary.get("tables", {}).items():
        _expect(isinstance(records, list) and all(isinstance(r, dict) for r in records), path,
                f"table {table_name!r} is not a list of records")
    _expect(all(isinstance(f, dict) for f in summary.get("failed_cells", [])), path, "'failed_cells' are not records")
    return summary


def _load_manifest(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    manifest = _read_json(path)
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} is not an xposim run manifest: expected a JSON object, got {type(manifest).__name__}")
    return manifest


def build_report(directory: str | Path) -> str:
    """The Markdown report of the runs in ``directory`` (``ValueError`` if there are none)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"report directory {str(directory)!r} does not exist")
    runs = _runs(directory)
    if not runs:
        raise ValueError(f"no experiment results in {str(directory)!r} (expected NAME/summary.json; run `xposim run NAME --out {directory}`)")
    parts = [f"# xposim report: `{directory}`", ""]
    overview = ["| run | experiment | predictions | held | not held | inconclusive | code |",
                "|---|---|---|---|---|---|---|"]
    sections = []
    for run_dir, prefix, label in runs:
        summary = load_summary(run_dir / "summary.json")
        manifest = _load_manifest(run_dir / "manifest.json")
        verdicts = [p["verdict"] for p in summary.get("predictions", [])]
        overview.append(
            f"| `{label}` | `{summary['experiment']}` | {', '.join(map(str, summary.get('predictions_tested', [])))} | "
            f"{verdicts.count('held')} | {verdicts.count('not held')} | {verdicts.count('inconclusive')} | "
            f"{_fingerprint_cell(summary, manifest)} |"
        )
        sections.append(_section(summary, manifest, prefix, label))
    parts += overview + [""] + sections
    return "\n".join(parts)


def write_report(directory: str | Path) -> tuple[Path, str]:
    """Build the report and write it to ``directory/report.md``; return the path and the text
    (``ValueError`` naming the file when it cannot be written)."""
    from xposim.harness.store import atomic_write_bytes

    text = build_report(directory)
    path = Path(directory) / "report.md"
    try:
        atomic_write_bytes(path, text.encode("utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot write the report to {path}: {exc.strerror or exc}") from None
    return path, text


def format_predictions(summary: dict[str, Any]) -> str:
    """Plain-text table of a summary's predictions (what ``xposim run`` and the demo print)."""
    if not summary.get("predictions"):
        return "no predictions: this experiment measures (see its figures and tables)"
    rows = [("id", "verdict", "measured [95% interval]", "predicted", "prediction")]
    for p in summary.get("predictions", []):
        m = p["measured"]
        interval = "" if m["low"] is None and m["high"] is None else \
            f" [{format_number(m['low'])}, {format_number(m['high'])}]"
        rows.append((p["id"], p["verdict"], f"{format_number(m['value'])}{interval}",
                     format_number(p["predicted"]), p["prediction"]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows)
