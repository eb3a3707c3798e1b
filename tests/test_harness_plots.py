"""Figures of the harness: files written, and a legend a reader can decode (distinct colours)."""
from __future__ import annotations

import numpy as np
import pytest

from xposim.harness import plots

pytestmark = pytest.mark.fast


def test_two_learners_never_share_a_colour_in_one_figure():
    # 'xpo_paper_argmax' falls back to the 'xpo' palette entry by prefix; popo and
    # online_dpo_greedy share a palette colour: in one figure all four must differ
    labels = ["xpo", "xpo_paper_argmax", "popo", "online_dpo_greedy"]
    colors = plots.plot_colors(labels)
    assert len(set(colors)) == len(labels)
    assert colors[0] == plots.color_for("xpo")


def test_the_same_learner_keeps_one_colour_across_settings():
    labels = ["chipo (β = 0.01)", "dpo (β = 0.01)", "chipo (β = 0.1)", "dpo (β = 0.1)"]
    colors = plots.plot_colors(labels)
    assert colors[0] == colors[2] and colors[1] == colors[3] and colors[0] != colors[1]


def test_explicit_colours_are_kept_and_not_reused():
    colors = plots.plot_colors(["xpo", "online_dpo"], [plots.color_for("online_dpo"), None])
    assert colors[0] == plots.color_for("online_dpo")
    assert colors[1] != colors[0]


def test_curve_plot_writes_png_and_svg(tmp_path):
    x = np.array([1.0, 10.0, 100.0])
    curves = [plots.Curve("xpo", x, 1 / x, 0.5 / x, 2 / x), plots.Curve("xpo_trl", x, 2 / x)]
    written = plots.curve_plot(tmp_path, "demo", "title", "queries", "suboptimality", curves)
    assert sorted(p.rsplit(".", 1)[1] for p in written) == ["png", "svg"]
    assert all((tmp_path / p).stat().st_size > 0 for p in written)


def test_labels_that_are_not_learners_get_distinct_colours():
    labels = [f"β = {b}, T = {t}" for b in (0.05, 0.1) for t in (64, 16384)]
    colors = plots.plot_colors(labels)
    assert len(set(colors)) == len(labels)
