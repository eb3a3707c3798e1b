# The two commands of the README. Both create .venv from the project's own files if missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP_TEST := $(VENV)/.installed-test
STAMP_BASE := $(VENV)/.installed
STAMP_DOCS := $(VENV)/.installed-docs

.PHONY: demo test test-fast bench notebooks docs clean clean-numba-cache help

help:
	@echo "make demo   - create .venv, install xposim, run the headline experiment"
	@echo "make test   - create .venv, install xposim[test], run the whole suite (JIT and no-JIT subset)"
	@echo "make bench  - run the benchmarks in benchmarks/"
	@echo "make notebooks - install the notebook extra and open the course in Jupyter Lab"
	@echo "make docs   - install the docs extra, build the site into site/ (strict; executes the course)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP_BASE): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(STAMP_BASE)

$(STAMP_DOCS): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[docs]'
	touch $@ $(STAMP_BASE)

demo: $(STAMP_BASE)
	$(PY) -m xposim demo

# The whole suite with numba JIT on, then the fast subset again with NUMBA_DISABLE_JIT=1 so the
# pure-Python execution of every kernel is exercised too. PYTEST_WORKERS processes (pytest-xdist)
# share the tests file by file (a file's tests share fixtures and the kernels they compile); the
# compiled kernels are shared through numba's on-disk cache. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

test: $(STAMP_TEST)
	$(PY) -m pytest -q $(XDIST)
	NUMBA_DISABLE_JIT=1 $(PY) -m pytest -q -m fast -p no:cacheprovider $(XDIST)

test-fast: $(STAMP_TEST)
	NUMBA_DISABLE_JIT=1 $(PY) -m pytest -q -m fast -p no:cacheprovider $(XDIST)

notebooks: $(STAMP_BASE)
	$(PY) -m pip install --quiet -e '.[notebooks]'
	$(VENV)/bin/jupyter lab notebooks/

# The site (docs/conf.py): -W makes a warning an error (--keep-going lists them all first); -E
# starts from a fresh environment, so every notebook of the course is executed against this code.
docs: $(STAMP_DOCS)
	$(PY) -m sphinx -W --keep-going -E -b html -d build/doctrees docs site
	@echo "open site/index.html"

bench: $(STAMP_BASE)
	for f in benchmarks/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build site *.egg-info

# the compiled kernels of every version of the code (xposim/_kernel_cache.py keys them by the
# sources' fingerprint, so a stale kernel never runs; this only frees the disk), and any left in
# __pycache__ by versions before that
clean-numba-cache: $(STAMP_BASE)
	$(PY) -c 'import xposim._kernel_cache as k; k.clear()'
	find xposim -name '*.nbi' -delete -o -name '*.nbc' -delete
