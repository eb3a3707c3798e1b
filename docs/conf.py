"""Sphinx configuration of the xposim site: `make docs` builds it into site/ in strict mode.

    python -m sphinx -W --keep-going -E -b html -d build/doctrees docs site

Pages are MyST Markdown (docs/*.md; docs/theory.md and docs/architecture.md as they are), the API
reference is autodoc over the docstrings, and the course is notebooks/*.ipynb (docs/course is a
link to it) executed by MyST-NB while the site is built. docs/_ext/xposim_pages.py fills the
pages' markers from the README, the command-line parser, the experiment registry and the stored
results (docs/results/), so no text or number is copied into the pages by hand; the public
modules with a reference page are its API_MODULES.

Environment:
    XPOSIM_DOCS_EXECUTE=false   render the notebooks without executing them (tests/test_docs.py)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT))  # the work tree's xposim, whether installed or not

import xposim  # noqa: E402

project = "xposim"
author = "the xposim authors"
copyright = "the xposim authors (MIT licence)"
release = version = xposim.__version__

extensions = [
    "myst_nb",  # MyST Markdown pages and notebooks (executes them)
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "xposim_docs",
]

root_doc = "index"
exclude_patterns = [
    "_build",
    "_ext",
    # stored runs: their figures are shown through the pages; a report.md written there by
    # `xposim report docs/results` is not a page (report.md generates the same from the summaries)
    "results/**",
    "**/.ipynb_checkpoints",
]

# ----------------------------------------------------------------------------- MyST
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# ----------------------------------------------------------------------------- notebooks (MyST-NB)
_execute = os.environ.get("XPOSIM_DOCS_EXECUTE", "true").strip().lower() not in ("0", "false", "no", "off")
#: "force": every notebook runs at every build, against the code of the work tree (a cache keyed on
#: the notebook alone would keep outputs of older code). They are stored without outputs.
nb_execution_mode = "force" if _execute else "off"
nb_execution_raise_on_error = True  # a notebook that raises fails the build
nb_execution_show_tb = True
nb_execution_timeout = 600  # seconds per cell; each notebook runs in under a minute once compiled
nb_merge_streams = True
#: The kernels inherit this environment. `simulate` imports tqdm.auto, which warns "IProgress not found"
#: in a kernel without ipywidgets; on the site that is noise (with a local path) in every notebook that
#: does not filter it itself, so the course is executed with that one warning ignored.
_IPROGRESS = "ignore:IProgress not found"
if _IPROGRESS not in os.environ.get("PYTHONWARNINGS", ""):
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), _IPROGRESS]))

# ----------------------------------------------------------------------------- API (autodoc)
autodoc_default_options = {"member-order": "bysource", "show-inheritance": True}
autodoc_preserve_defaults = True
autodoc_typehints = "signature"
add_module_names = False
python_maximum_signature_line_length = 96
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_ivar = True  # (unused while "Attributes" is a custom section below; keeps it a field list if not)
#: Items naming several things at once (``beta, alpha, r_max : ...``, ``policy, log_policy : ...``) have one
#: joint description: rendered as Sphinx :param:/:ivar: fields, napoleon would repeat it under each name and
#: Sphinx would read "policy," as the type of "log_policy". As napoleon's own field lists they stay one item.
napoleon_custom_sections = [("Parameters", "params_style"), ("Attributes", "params_style")]

#: Docstrings that docutils cannot read cleanly, by object; their warnings are shown but do not
#: fail the build (docs/_ext/xposim_docs.py). Fix the docstring, then remove its line here.
known_docstring_problems: dict[str, str] = {}

# ----------------------------------------------------------------------------- HTML
html_theme = "furo"
html_title = f"xposim {release}"
html_static_path = ["_static"]
html_css_files = ["xposim.css"]
html_js_files = ["solutions.js"]
html_show_sourcelink = False
