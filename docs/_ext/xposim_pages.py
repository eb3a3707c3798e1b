"""The generated parts of the xposim site, without Sphinx (docs/_ext/xposim_docs.py wires them
into the build; tests/test_docs.py runs them in every test run, with or without the docs extra).

Nothing on the site is a hand-made copy of text or numbers kept elsewhere. Markers in the pages
(HTML comments, invisible if left unprocessed) are replaced by :func:`expand_markers`:

* ``<!-- readme: HEADING -->``: that README section's body, its headings shifted so that the
  section's sub-headings become ``##``; ``<!-- readme: HEADING; skip: A, B -->`` leaves out the
  sub-sections whose headings start with ``A`` or ``B``; ``<!-- readme: HEADING; intro -->`` keeps
  the text before the first sub-heading. Paths into ``docs/`` are rewritten to the page's location
  and code spans naming a docs file, a course notebook or an ``xposim`` object become links. A
  heading the README does not have is an error (the README is the source of this text).
* ``<!-- cli-reference -->``: ``xposim --help`` and every subcommand's ``--help``, from the parser
  itself (``xposim.cli.build_parser``).
* ``<!-- experiments-table -->``: the named experiments (the registry ``xposim list`` prints), each
  with links to its stored runs in ``docs/results/``.
* ``<!-- results-report -->``: ``xposim.harness.report.build_report("docs/results")``, the Markdown
  report ``xposim report docs/results`` writes, so every number on that page is read from a
  stored ``summary.json``.
* ``<!-- course-table -->``: the course notebooks with their titles and download links.
* ``<!-- api: MODULE -->``: ``automodule`` of a public module (one of ``API_MODULES``) with the
  names of its ``__all__`` that it *owns*: a name several documented modules export is documented
  once, in the one nearest to where it is defined (``TabularClass`` in ``xposim.policies.tabular``,
  not in ``xposim.policies``), and linked from the others.

The docstrings are reStructuredText with numpy-like sections whose items read ``name : text``
(a description where numpy style puts a type); :func:`rewrite_docstring` rewrites those items so
napoleon shows them as descriptions, and turns any other underlined heading in a docstring (which
docutils refuses inside a directive) into a rubric.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import posixpath
import re
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
NOTEBOOKS = ROOT / "notebooks"
RESULTS = DOCS / "results"
#: Course notebooks are ``NN_name.ipynb`` (the rule of tests/test_notebooks.py).
NOTEBOOK_NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")
#: The site's folder for the course (a symbolic link to ``notebooks/``).
COURSE = "course"

MARKER = re.compile(
    r"^<!--\s*(readme|cli-reference|experiments-table|results-report|course-table|api)\s*:?\s*(.*?)\s*-->\s*$",
    re.MULTILINE,
)
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(?<![`\w])`([^`\n]+)`(?!`)")
MD_TARGET = re.compile(r"(\]\()([^)\s]+)(\))")
LINK = re.compile(r"(\[[^\]]*\]\([^)]*\))")
PYTHON_NAME = re.compile(r"^(?:xposim|xs)(?:\.[A-Za-z_]\w*)+$|^xposim$")

#: The public modules with a reference page (docs/api/*.md, each ``<!-- api: MODULE -->``).
API_MODULES = [
    "xposim",
    "xposim.envs",
    "xposim.exact",
    "xposim.mixed_chi2",
    "xposim.chi_link",
    "xposim.coverage",
    "xposim.theory",
    "xposim.oracles",
    "xposim.learners",
    "xposim.policies",
    "xposim.policies.base",
    "xposim.policies.solving",
    "xposim.policies.tabular",
    "xposim.policies.tabular.chi_class",
    "xposim.testing",
    "xposim.losses",
    "xposim.harness",
    "xposim.harness.experiments",
    "xposim.lm",
]


class MarkerError(ValueError):
    """A marker that cannot be filled (the message says which and why)."""


def course_notebooks() -> list[Path]:
    return sorted(p for p in NOTEBOOKS.glob("*.ipynb") if NOTEBOOK_NAME.match(p.name))


# ----------------------------------------------------------------------------- markers
def expand_markers(text: str, page: str) -> str:
    """``text`` of the page ``page`` (a path under docs/, e.g. ``"concepts.md"``) with its markers
    replaced (see the module docstring); :class:`MarkerError` for one that cannot be filled."""

    def replace(match: re.Match) -> str:
        kind, argument = match.group(1), match.group(2)
        if kind == "readme":
            return readme_section(argument, page)
        if kind == "cli-reference":
            return cli_reference()
        if kind == "experiments-table":
            return experiments_table(page)
        if kind == "results-report":
            return results_report(page)
        if kind == "api":
            return api_module(argument)
        return course_table(page)

    return MARKER.sub(replace, text)


def _readme_sections() -> list[list]:
    """``[level, heading text, first line, end line]`` of every README heading outside code."""
    lines = README.read_text(encoding="utf-8").splitlines()
    found, in_fence = [], False
    for i, line in enumerate(lines):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else HEADING.match(line)
        if match:
            found.append([len(match.group(1)), match.group(2), i, len(lines)])
    for k, entry in enumerate(found):
        for later in found[k + 1:]:
            if later[0] <= entry[0]:
                entry[3] = later[2]
                break
    return found


def _find(sections: list[list], heading: str, within: tuple[int, int] | None = None) -> list:
    for entry in sections:
        if within and not within[0] < entry[2] < within[1]:
            continue
        if entry[1] == heading or entry[1].startswith(heading):
            return entry
    where = " inside the section asked for" if within else ""
    raise MarkerError(f"README.md has no heading starting with {heading!r}{where}: update the page's "
                         "<!-- readme: ... --> marker (the README is the source of that page's text)")


def readme_section(argument: str, page: str) -> str:
    heading, _, option = (part.strip() for part in argument.partition(";"))
    sections = _readme_sections()
    level, _, start, end = _find(sections, heading.strip('"'))
    lines = README.read_text(encoding="utf-8").splitlines()
    dropped: set[int] = set()
    if option == "intro":
        end = min([s[2] for s in sections if start < s[2] < end], default=end)
    elif option.startswith("skip:"):
        for name in (n.strip() for n in option[len("skip:"):].split(",")):
            _, _, s_start, s_end = _find(sections, name, within=(start, end))
            dropped.update(range(s_start, s_end))
    elif option:
        raise MarkerError(f"unknown option {option!r} in <!-- readme: {argument} --> (intro, or skip: A, B)")
    body = [line for i, line in enumerate(lines[start + 1:end], start + 1) if i not in dropped]
    return "\n".join(adapt(body, shift=level - 1, page=page)).strip("\n") + "\n"


def _relative(target: str, page: str) -> str:
    return posixpath.relpath(target, posixpath.dirname(page) or ".")


def _code_link(span: str, page: str) -> str | None:
    """MyST for a README code span that names something on the site (``None``: leave it)."""
    if span.startswith("docs/") and (ROOT / span).is_file():
        return f"[`{span}`]({_relative(span[len('docs/'):], page)})"
    name = span[len("notebooks/"):] if span.startswith("notebooks/") else span
    if NOTEBOOK_NAME.match(name) and (NOTEBOOKS / name).is_file():
        # a {doc} role: a Markdown link would be resolved through the course link, out of docs/
        return f"{{doc}}`{span} </{COURSE}/{name[:-len('.ipynb')]}>`"
    if PYTHON_NAME.match(span):
        # a cross-reference; one that autodoc did not document stays code text (not nitpicky)
        target = "xposim" + span[2:] if span.startswith("xs.") else span
        return f"{{py:obj}}`{span} <{target}>`"
    return None


def adapt(lines: list[str], shift: int, page: str) -> list[str]:
    """README lines as lines of ``page``: headings up ``shift`` levels, links into ``docs/`` made
    relative to the page, code spans naming a file, notebook or object of the site linked."""
    out, in_fence = [], False
    for line in lines:
        if FENCE.match(line):
            in_fence = not in_fence
            out.append(line)
            continue
        heading = None if in_fence else HEADING.match(line)
        if in_fence or heading:
            out.append(line if in_fence else "#" * max(1, len(heading.group(1)) - shift) + " " + heading.group(2))
            continue

        def target(match: re.Match) -> str:
            url = match.group(2)
            if url.startswith("docs/"):
                url = _relative(url[len("docs/"):], page)
            return match.group(1) + url + match.group(3)

        def span(match: re.Match) -> str:
            return _code_link(match.group(1), page) or match.group(0)

        line = MD_TARGET.sub(target, line)
        parts = LINK.split(line)  # code spans already inside a link's text are left alone
        out.append("".join(p if i % 2 else CODE_SPAN.sub(span, p) for i, p in enumerate(parts)))
    return out


@contextmanager
def _columns(width: int):
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def cli_reference() -> str:
    from xposim.cli import build_parser

    with _columns(100):
        parser = build_parser()
        out = ["### `xposim`", "", "```text", parser.format_help().rstrip(), "```", ""]
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for name, sub in commands.choices.items():
            out += [f"### `xposim {name}`", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def _runs_of(name: str) -> list[str]:
    return sorted(p.name for p in RESULTS.iterdir()
                  if (p / "summary.json").is_file() and (p.name == name or p.name.startswith(name + "_")))


def experiments_table(page: str) -> str:
    from xposim.harness.experiments import all_experiments

    rows = ["| experiment | predictions | what it measures | stored runs |", "|---|---|---|---|"]
    for experiment in all_experiments():
        if not experiment.listed:
            continue
        stored = ", ".join(f"[`{run}`]({_relative('report.md', page)}#{_report_anchor(run)})"
                           for run in _runs_of(experiment.name)) or "—"
        description = experiment.description.replace("|", "\\|")
        rows.append(f"| `{experiment.name}` | {', '.join(experiment.predictions) or '—'} | {description} | {stored} |")
    return "\n".join(rows) + "\n"


def _report_anchor(run: str) -> str:
    return f"run-{run.replace('_', '-')}"


def results_report(page: str) -> str:
    """The report of the stored runs, with figure paths made relative to ``page``, links to figures
    that were not stored (the SVG copies) left out, and an anchor per run."""
    from xposim.harness.report import build_report

    text = build_report(RESULTS)

    def drop_missing_svg(match: re.Match) -> str:
        return match.group(0) if (RESULTS / match.group(1)).exists() else ""

    text = re.sub(r" \(\[SVG\]\(([^)]+\.svg)\)\)", drop_missing_svg, text)
    text = MD_TARGET.sub(lambda m: m.group(1) + _relative(f"results/{m.group(2)}", page) + m.group(3), text)
    out = []
    for line in text.splitlines()[1:]:  # its own title line names the directory
        run = re.match(r"^## `([^`]+)`", line)
        if run:
            out += [f"({_report_anchor(run.group(1))})=", ""]
        overview_row = re.match(r"^\| `([^`]+)` \|", line)
        if overview_row and (RESULTS / overview_row.group(1) / "summary.json").is_file():
            name = overview_row.group(1)
            line = f"| [`{name}`](#{_report_anchor(name)}) |" + line[overview_row.end():]
        out.append(line)
    return "\n".join(out).strip("\n") + "\n"


def _notebook_title(path: Path) -> str:
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


def course_table(page: str) -> str:
    rows = ["| notebook | file | download |", "|---|---|---|"]
    for path in course_notebooks():
        doc = _relative(f"{COURSE}/{path.name}", page)
        rows.append(f"| {{doc}}`{_notebook_title(path)} </{COURSE}/{path.stem}>` | `{path.name}` | "
                    f"{{download}}`ipynb <{doc}>` |")
    return "\n".join(rows) + "\n"


# ----------------------------------------------------------------------------- API pages
def _defined_in(obj) -> str | None:
    if inspect.ismodule(obj):
        return obj.__name__
    module = getattr(obj, "__module__", None)
    return module if isinstance(module, str) else None


def _exports(module) -> list[str]:
    """``__all__``, or (a module without one) the public functions and classes defined in it."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [name for name, obj in vars(module).items()
            if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isroutine(obj))
            and _defined_in(obj) == module.__name__]


def _owner(name: str, obj, documented: list[str]) -> str | None:
    """The documented module that documents ``obj`` (exported as ``name``): of the documented
    modules exporting it, the one nearest to where it is defined (``None``: none exports it)."""
    candidates = [m for m in documented
                  if name in _exports(importlib.import_module(m)) and getattr(importlib.import_module(m), name, None) is obj]
    home = _defined_in(obj) or ""
    within = [m for m in candidates if home == m or home.startswith(m + ".")]
    return max(within or candidates, key=len) if candidates else None


def documented_target(target: str, documented: list[str] = API_MODULES) -> str | None:
    """Where the site documents the object a dotted name reaches through re-exports
    (``xposim.solve`` -> ``xposim.exact.solve``, ``xposim.TokenMDP.from_arrays`` ->
    ``xposim.envs.TokenMDP.from_arrays``); ``None`` if it is not an exported xposim object."""
    parts = target.split(".")
    if parts[0] != "xposim":
        return None
    for cut in range(len(parts) - 1, 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        name, rest = parts[cut], parts[cut + 1:]
        if name not in _exports(module):
            return None
        obj = getattr(module, name, None)
        if obj is None:
            return None
        if inspect.ismodule(obj):
            return ".".join([obj.__name__, *rest])
        owner = _owner(name, obj, documented)
        return None if owner is None else ".".join([owner, name, *rest])
    return None


def api_module(module_name: str, documented: list[str] = API_MODULES) -> str:
    """MyST for the reference of ``module_name``: its docstring and the members it owns (autodoc,
    which writes reStructuredText, hence ``eval-rst``), then links to the names it re-exports."""
    if module_name not in documented:
        raise MarkerError(f"<!-- api: {module_name} -->: not in API_MODULES (docs/_ext/xposim_pages.py)")
    module = importlib.import_module(module_name)
    own, elsewhere = [], []
    for name in _exports(module):
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            elsewhere.append((name, obj.__name__, "mod"))
            continue
        owner = _owner(name, obj, documented)
        if owner == module_name:
            own.append(name)
        else:
            elsewhere.append((name, f"{owner}.{name}", "obj"))
    members = f"   :members: {', '.join(own)}" if own else "   :no-members:"
    out = ["```{eval-rst}", f".. automodule:: {module_name}", members, "```", ""]
    if elsewhere:
        out += ["Also exported here, documented with their module:", ""]
        out += [f"* {{py:{role}}}`{module_name}.{name} <{target}>`" for name, target, role in elsewhere]
        out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------- docstrings
UNDERLINE = re.compile(r"^\s*(-{3,}|={3,})\s*$")
ITEM = re.compile(r"^(\s*)(\*{0,2}[A-Za-z_]\w*(?:\s*,\s*\*{0,2}[A-Za-z_]\w*)*)\s+:\s+(.*)$")
#: Sections whose items are ``name : text``; napoleon reads ``name`` + an indented description.
ITEM_SECTIONS = {"Parameters", "Attributes", "Other Parameters", "Keyword Arguments"}
#: Sections napoleon parses itself (left as they are).
NAPOLEON_SECTIONS = {"Examples", "Example", "Notes", "References", "See Also", "Warnings", "Yields", "Raises"}


def rewrite_docstring(lines: list[str]) -> None:
    """Rewrite ``lines`` (one docstring) in place for napoleon (see the module docstring)."""
    out: list[str] = []
    section = None
    i = 0
    while i < len(lines):
        line = lines[i]
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and UNDERLINE.match(following) and len(following.strip()) >= len(line.strip()) - 1:
            title = line.strip()
            if title in ITEM_SECTIONS or title in NAPOLEON_SECTIONS:
                out += [line, following]
            else:  # "Returns" (free text here) and a module's own headings
                _end_section(out, section)
                out += [f".. rubric:: {title}", ""]
            section = title
            i += 2
            continue
        if section in ITEM_SECTIONS and line.strip() and not line[0].isspace():
            item = ITEM.match(line)
            if item:
                out += [item.group(2), "    " + item.group(3)]
                i += 1
                continue
            # text after the items: napoleon would read it as one more item
            _end_section(out, section)
            section = None
        out.append(line)
        i += 1
    lines[:] = out


def _end_section(out: list[str], section: str | None) -> None:
    """Close a napoleon item section: two blank lines are its section break."""
    while out and not out[-1].strip():
        out.pop()
    out += ["", ""] if section in ITEM_SECTIONS else ([""] if out else [])
