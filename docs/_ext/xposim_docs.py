"""Sphinx extension of the xposim site (docs/conf.py loads it): fills the pages' markers
(xposim_pages.expand_markers) when a page is read, prepares the docstrings for napoleon
(xposim_pages.rewrite_docstring), folds the course's solutions, and keeps the strict build strict
except for the docstring problems docs/conf.py lists (``known_docstring_problems``).
"""
from __future__ import annotations

import logging
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging as sphinx_logging

import xposim_pages

logger = sphinx_logging.getLogger(__name__)


def on_source_read(app: Sphinx, docname: str, source: list[str]) -> None:
    if not xposim_pages.MARKER.search(source[0]):
        return
    try:
        source[0] = xposim_pages.expand_markers(source[0], docname + ".md")
    except xposim_pages.MarkerError as exc:
        raise ExtensionError(f"{docname}.md: {exc}") from None


def on_process_docstring(app: Sphinx, what: str, name: str, obj, options, lines: list[str]) -> None:
    xposim_pages.rewrite_docstring(lines)


def on_missing_reference(app: Sphinx, env, node, contnode):
    """A Python cross-reference to a re-exported name (``xposim.solve``, ``xs.simulate`` in the
    README, ``:class:`xposim.policies.PolicyClass``` in a docstring) resolves to where that object
    is documented (``xposim.exact.solve``, ...)."""
    if node.get("refdomain") != "py":
        return None
    target = xposim_pages.documented_target(node.get("reftarget", ""))
    if target is None or target == node.get("reftarget"):
        return None
    return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, node["reftype"], target, node, contnode)


# ----------------------------------------------------------------------------- course solutions
SOLUTION_TAG = "solution"


def wrap_solution_markdown_cells() -> bool:
    """Make MyST-NB put a markdown cell tagged ``solution`` in a container with the classes
    ``cell tag_solution``, as it does for code cells (it passes markdown cells through without
    their tags), so that _static/solutions.js folds the whole solution, prose included. Cells with
    a heading are left alone (a container would break the section structure). Returns whether
    MyST-NB had the method to wrap (if not, solution prose is simply shown)."""
    try:
        from docutils import nodes
        from myst_nb.core.render import MditRenderMixin
    except ImportError:
        return False
    original = getattr(MditRenderMixin, "render_nb_cell_markdown", None)
    if original is None or getattr(original, "_xposim", False):
        return original is not None

    def render_nb_cell_markdown(self, token) -> None:
        tags = (token.meta or {}).get("metadata", {}).get("tags", [])
        if SOLUTION_TAG not in tags or any(child.type == "heading" for child in token.walk()):
            return original(self, token)
        container = nodes.container(classes=["cell", f"tag_{SOLUTION_TAG}", "markdown_cell"])
        with self.current_node_context(container, append=True):
            original(self, token)

    render_nb_cell_markdown._xposim = True
    MditRenderMixin.render_nb_cell_markdown = render_nb_cell_markdown
    return True


# ----------------------------------------------------------------------------- known problems
class KnownDocstringProblems(logging.Filter):
    """On Sphinx's warning handler: a warning located in a docstring listed in ``conf.py``
    (``known_docstring_problems``: object name -> what is wrong) is shown as an INFO line and not
    counted, so it does not fail the strict build; every other warning still does. The fix
    belongs in the docstring: the list is what is left to do, and an entry whose object no longer
    warns is reported at the end of the build so the list shrinks."""

    def __init__(self, known: dict[str, str]):
        super().__init__()
        self.known = known
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        location = getattr(record, "location", None)
        if not isinstance(location, str):
            return True
        for name in self.known:
            if f"docstring of {name}:" in location:
                self.seen.add(name)
                logger.info("known docstring problem (%s; fix it in the docstring): %s: %s",
                            self.known[name], location, record.getMessage())
                return False
        return True


def move_notebook_outputs(app: Sphinx) -> None:
    """MyST-NB writes the notebooks' images next to the output directory (``site/../
    jupyter_execute``, the repository's top level for `make docs`); keep them with the doctrees
    (``build/doctrees`` for `make docs`) instead. Runs after MyST-NB's own builder-inited."""
    config = getattr(app.env, "mystnb_config", None)
    if config is not None and hasattr(config, "copy"):
        app.env.mystnb_config = config.copy(output_folder=str(Path(app.doctreedir) / "jupyter_execute"))


def on_builder_inited(app: Sphinx) -> None:
    known = app.config.known_docstring_problems
    if not known:
        return
    handlers = [h for h in logging.getLogger(sphinx_logging.NAMESPACE).handlers
                if isinstance(h, sphinx_logging.WarningStreamHandler)]
    app._xposim_known_filter = KnownDocstringProblems(known)
    for handler in handlers:
        handler.filters.insert(0, app._xposim_known_filter)


def on_before_read_docs(app: Sphinx, env, docnames: list[str]) -> None:
    app._xposim_read_all = set(docnames) >= set(env.found_docs)


def on_build_finished(app: Sphinx, exception: Exception | None) -> None:
    known_filter = getattr(app, "_xposim_known_filter", None)
    # only a build that read every page has seen every docstring
    if exception is None and known_filter is not None and getattr(app, "_xposim_read_all", False):
        fixed = sorted(set(known_filter.known) - known_filter.seen)
        if fixed:
            logger.warning("known_docstring_problems in docs/conf.py lists docstrings that no longer warn: %s "
                           "(remove them from the list)", ", ".join(fixed))


def setup(app: Sphinx) -> dict:
    if not wrap_solution_markdown_cells():
        logger.info("xposim_docs: this MyST-NB cannot wrap markdown cells; solution prose is not folded")
    app.add_config_value("known_docstring_problems", {}, "env")
    app.connect("source-read", on_source_read)
    app.connect("autodoc-process-docstring", on_process_docstring, priority=400)
    app.connect("missing-reference", on_missing_reference)  # before napoleon (500)
    app.connect("builder-inited", on_builder_inited)
    app.connect("builder-inited", move_notebook_outputs, priority=900)  # after MyST-NB (500)
    app.connect("env-before-read-docs", on_before_read_docs)
    app.connect("build-finished", on_build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
