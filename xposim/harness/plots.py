"""Figures of the harness (matplotlib, Agg backend), saved as PNG and SVG side by side.

Every figure has a title, axis labels with units, and a legend naming each line, so it reads
without the code: measured curves are solid with a shaded confidence band, theory is dashed and
says so in its legend entry, fitted lines are dotted and carry their slope.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

__all__ = ["Curve", "Line", "Panel", "ScalingSeries", "curve_plot", "panels_plot", "scaling_plot", "save_figure", "color_for",
           "plot_colors"]

_PALETTE = {
    "xpo": "#d62728",
    "online_dpo": "#1f77b4",
    "dpo": "#7f7f7f",
    "xpo_alpha0": "#ff7f0e",
    "xpo_historical": "#e377c2",
    "online_dpo_greedy": "#17becf",
    "ipo": "#8c564b",
    "chipo": "#2ca02c",
    "vpo": "#9467bd",
    "selm": "#bcbd22",
    "popo": "#17becf",
    "se_popo": "#aec7e8",
    "copo": "#ff9896",
}
_FALLBACK = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _learner_key(label: str) -> str:
    return str(label).split(" ")[0].split("(")[0].rstrip(":,")


def color_for(label: str, index: int = 0) -> str:
    """A stable colour per learner name (prefix match), else one from a fixed cycle."""
    return _PALETTE.get(_learner_key(label), _FALLBACK[index % len(_FALLBACK)])


def plot_colors(labels: Sequence[str], explicit: Sequence[str | None] | None = None) -> list[str]:
    """One colour per label for one figure. A label that starts with a learner name of the palette
    gets that learner's colour, shared by all its labels (line styles tell its settings apart);
    any other label gets its own colour. Two different learners or labels never share a colour:
    a palette colour already taken is replaced by the first unused colour of the fallback cycle.
    ``explicit[i]`` (not None) overrides label ``i``."""
    explicit = list(explicit) if explicit is not None else [None] * len(labels)
    assigned: dict[str, str] = {}
    used = {c for c in explicit if c is not None}
    cycle = _FALLBACK + [c for c in _PALETTE.values() if c not in _FALLBACK]
    out = []
    for label, fixed in zip(labels, explicit):
        if fixed is not None:
            out.append(fixed)
            continue
        key = _learner_key(label)
        group = key if key in _PALETTE else f"label:{label}"
        if group not in assigned:
            color = _PALETTE.get(key)
            if color is None or color in used:
                color = next((c for c in cycle if c not in used), cycle[len(assigned) % len(cycle)])
            assigned[group] = color
            used.add(color)
        out.append(assigned[group])
    return out


@dataclass
class Curve:
    """A measured curve: mean over seeds with a ``[low, high]`` band (None: no band)."""

    label: str
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    color: str | None = None
    linestyle: str | tuple = "-"


@dataclass
class Line:
    """A theory or reference line (dashed by default)."""

    label: str
    x: np.ndarray
    y: np.ndarray
    style: str | tuple = "--"
    """A matplotlib line style ('--', ':', '-.', '-' or a dash tuple)."""
    color: str = "black"
    """A colour; in a :class:`ScalingSeries`, ``'series'`` means the series' colour."""


@dataclass
class ScalingSeries:
    """Points ``(x, y)`` with error bars; censored points (a lower bound) are drawn as open
    triangles at the budget; ``fit`` is a fitted line, ``predicted`` a theory line."""

    label: str
    x: np.ndarray
    y: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    censored: np.ndarray | None = None
    fit: Line | None = None
    predicted: Line | None = None
    color: str | None = None
    extra: list[Line] = field(default_factory=list)


def save_figure(fig: plt.Figure, directory: str | Path, stem: str) -> list[str]:
    """Save ``fig`` as ``directory/stem.png`` (150 dpi) and ``.svg``; close it; return the names."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for ext, kwargs in (("png", {"dpi": 150}), ("svg", {})):
        name = f"{stem}.{ext}"
        fig.savefig(directory / name, bbox_inches="tight", **kwargs)
        names.append(name)
    plt.close(fig)
    return names


def _finish(ax: plt.Axes, title: str, xlabel: str, ylabel: str, note: str | None) -> None:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.25)
    n_entries = len(ax.get_legend_handles_labels()[0])
    if n_entries > 5:
        ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    else:
        ax.legend(fontsize=8, loc="best")
    if note:
        ax.figure.text(0.01, -0.02, note, fontsize=7, ha="left", va="top", wrap=True)


def _band_arrays(curve: Curve, positive: bool):
    low = np.asarray(curve.low, dtype=float)
    high = np.asarray(curve.high, dtype=float)
    ok = np.isfinite(low) & np.isfinite(high)
    if positive:
        floor = np.nanmin(np.asarray(curve.mean, float)[np.asarray(curve.mean, float) > 0], initial=np.inf)
        low = np.where(low > 0, low, floor / 10 if np.isfinite(floor) else 1e-300)
    return low, high, ok


def _draw_curves(ax: plt.Axes, curves: Sequence[Curve], overlays: Sequence[Line], logx: bool, logy: bool) -> None:
    colors = plot_colors([c.label for c in curves], [c.color for c in curves])
    for curve, color in zip(curves, colors):
        x = np.asarray(curve.x, float)
        mean = np.asarray(curve.mean, float)
        ax.plot(x, mean, linestyle=curve.linestyle, color=color, lw=1.8, label=curve.label)
        if curve.low is not None and curve.high is not None:
            low, high, ok = _band_arrays(curve, logy)
            if ok.any():
                ax.fill_between(x[ok], low[ok], high[ok], color=color, alpha=0.2, lw=0)
    for line in overlays:
        ax.plot(np.asarray(line.x, float), np.asarray(line.y, float), linestyle=line.style, color=line.color,
                lw=1.4, label=line.label)
    if logx:
        ax.set_xscale("log")
        # a short range of decades gets overlapping labels on minor ticks: label decades only
        ax.xaxis.set_minor_formatter(NullFormatter())
    if logy:
        ax.set_yscale("log")


def curve_plot(
    directory: str | Path,
    stem: str,
    title: str,
    xlabel: str,
    ylabel: str,
    curves: Sequence[Curve],
    overlays: Sequence[Line] = (),
    logx: bool = True,
    logy: bool = True,
    note: str | None = None,
) -> list[str]:
    """Measured curves with bands, plus theory overlays (e.g. the Theorem 3.1 bound)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    _draw_curves(ax, curves, overlays, logx, logy)
    _finish(ax, title, xlabel, ylabel, note)
    return save_figure(fig, directory, stem)


@dataclass
class Panel:
    """One panel of :func:`panels_plot`: its curves, overlays, axis titles and scales."""

    title: str
    xlabel: str
    ylabel: str
    curves: Sequence[Curve]
    overlays: Sequence[Line] = ()
    logx: bool = True
    logy: bool = True


def panels_plot(directory: str | Path, stem: str, title: str, panels: Sequence[Panel],
                note: str | None = None) -> list[str]:
    """Side-by-side :class:`Panel` s (e.g. a measured curve and the tuned parameter behind it)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 4.6), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        _draw_curves(ax, panel.curves, panel.overlays, panel.logx, panel.logy)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    if note:
        fig.text(0.01, -0.02, note, fontsize=7, ha="left", va="top", wrap=True)
    return save_figure(fig, directory, stem)


def scaling_plot(
    directory: str | Path,
    stem: str,
    title: str,
    xlabel: str,
    ylabel: str,
    series: Sequence[ScalingSeries],
    overlays: Sequence[Line] = (),
    logx: bool = True,
    logy: bool = True,
    note: str | None = None,
) -> list[str]:
    """Scaling points with error bars, fitted lines (dotted) and predicted lines (dashed)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = plot_colors([s.label for s in series], [s.color for s in series])
    for s, color in zip(series, colors):
        x = np.asarray(s.x, float)
        y = np.asarray(s.y, float)
        censored = np.zeros(x.size, bool) if s.censored is None else np.asarray(s.censored, bool)
        seen = ~censored & np.isfinite(y)
        if s.low is not None and s.high is not None:
            low = np.asarray(s.low, float)
            high = np.asarray(s.high, float)
            ok = seen & np.isfinite(low) & np.isfinite(high)
            ax.errorbar(x[ok], y[ok], yerr=[np.maximum(y[ok] - low[ok], 0), np.maximum(high[ok] - y[ok], 0)],
                        fmt="none", ecolor=color, alpha=0.6, capsize=3)
            up = seen & np.isfinite(low) & ~np.isfinite(high)
            if up.any():
                ax.errorbar(x[up], y[up], yerr=[np.maximum(y[up] - low[up], 0), np.zeros(up.sum())], fmt="none",
                            ecolor=color, alpha=0.6, capsize=3, uplims=True)
        ax.plot(x[seen], y[seen], "o-", color=color, lw=1.2, ms=5, label=s.label)
        if censored.any():
            ax.plot(x[censored], y[censored], "^", mfc="none", color=color, ms=8,
                    label=f"{s.label}: censored at budget (true value higher)")
        for line in [s.fit, s.predicted, *s.extra]:
            if line is not None:
                ax.plot(np.asarray(line.x, float), np.asarray(line.y, float), linestyle=line.style,
                        color=color if line.color == "series" else line.color, lw=1.2, label=line.label)
    for line in overlays:
        ax.plot(np.asarray(line.x, float), np.asarray(line.y, float), linestyle=line.style, color=line.color,
                lw=1.4, label=line.label)
    if logx:
        ax.set_xscale("log")
        # a short range of decades gets overlapping labels on minor ticks: label the measured x
        # values themselves when there are few of them, the decades otherwise
        ax.xaxis.set_minor_formatter(NullFormatter())
        xs = np.unique(np.concatenate([np.asarray(s.x, float) for s in series])) if series else np.array([])
        xs = xs[np.isfinite(xs) & (xs > 0)]
        if 0 < xs.size <= 10:
            ax.set_xticks(xs, [f"{v:.3g}" for v in xs])
    if logy:
        ax.set_yscale("log")
    _finish(ax, title, xlabel, ylabel, note)
    return save_figure(fig, directory, stem)
