"""The documentation site (docs/conf.py, `make docs`).

* Every marker of every page can be filled: the README sections the pages take their text from
  exist, the report of the stored results builds, the API pages' modules import. This needs only
  xposim, so it runs in every test run and catches a README edit that would break the site.
* The site builds in strict mode (a warning is an error: a broken cross-reference, a missing
  page or image, an unreadable docstring) without executing the notebooks, into a temporary
  directory. Skipped, with the reason, where the docs extra (Sphinx, MyST-NB) is not installed.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
import xposim_pages  # noqa: E402  (docs/_ext: the site's page generation, no Sphinx needed)

PAGES = sorted(p for p in DOCS.rglob("*.md") if "results" not in p.relative_to(DOCS).parts)


def _page(path: Path) -> str:
    return path.relative_to(DOCS).as_posix()


@pytest.mark.parametrize("path", [p for p in PAGES if xposim_pages.MARKER.search(p.read_text())], ids=_page)
def test_every_marker_of_the_page_can_be_filled(path):
    text = xposim_pages.expand_markers(path.read_text(encoding="utf-8"), _page(path))
    assert not xposim_pages.MARKER.search(text)


def test_a_readme_heading_that_does_not_exist_is_an_error():
    with pytest.raises(xposim_pages.MarkerError, match="no heading starting with 'No such section'"):
        xposim_pages.expand_markers("<!-- readme: No such section -->\n", "concepts.md")


def test_readme_paths_into_docs_are_rewritten_for_the_page():
    text = xposim_pages.expand_markers("<!-- readme: Results -->\n", "experiments.md")
    assert "](results/separation/separation_two_arm.png)" in text
    assert "](docs/" not in text


def test_every_public_module_has_an_api_page():
    documented = set()
    for path in (DOCS / "api").glob("*.md"):
        documented |= set(re.findall(r"<!-- api: (\S+) -->", path.read_text()))
    assert documented == set(xposim_pages.API_MODULES)


def test_docstring_items_become_napoleon_items_and_other_headings_rubrics():
    lines = ["Summary.", "", "Parameters", "----------", "env : the environment.", "rounds : number of",
             "    rounds.", "", "Text after the items.", "", "Returns", "-------", "A table."]
    xposim_pages.rewrite_docstring(lines)
    assert lines[:9] == ["Summary.", "", "Parameters", "----------", "env", "    the environment.", "rounds",
                         "    number of", "    rounds."]
    assert lines[9:12] == ["", "", "Text after the items."]  # two blank lines end napoleon's section
    assert ".. rubric:: Returns" in lines


def _missing_docs_extra() -> str | None:
    missing = [name for name in ("sphinx", "myst_nb", "furo") if importlib.util.find_spec(name) is None]
    return f"the docs extra is not installed ({', '.join(missing)} missing): pip install -e '.[docs]'" if missing \
        else None


def test_site_builds_in_strict_mode_without_executing_notebooks(tmp_path):
    reason = _missing_docs_extra()
    if reason:
        pytest.skip(reason)
    site = tmp_path / "site"
    env = dict(os.environ, XPOSIM_DOCS_EXECUTE="false")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
               "-d", str(tmp_path / "doctrees"), str(DOCS), str(site)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"strict build failed:\n{result.stderr[-6000:]}"
    for page in ("index", "installation", "concepts", "cli", "experiments", "report", "performance", "theory",
                 "architecture", "course", "api", "api/xposim", "api/policies", "api/harness"):
        assert (site / f"{page}.html").is_file(), page
    for notebook in xposim_pages.course_notebooks():
        assert (site / "course" / f"{notebook.stem}.html").is_file(), notebook.name
    report = (site / "report.html").read_text(encoding="utf-8")
    for run in sorted(p.parent.name for p in (DOCS / "results").glob("*/summary.json")):
        assert f'id="{xposim_pages._report_anchor(run)}"' in report, run
    for html in site.rglob("*.html"):
        assert "<!-- readme:" not in html.read_text(encoding="utf-8"), html
