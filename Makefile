# The two commands of the README. Both create .venv from the project's own files if missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP_TEST := $(VENV)/.installed-test
STAMP_BASE := $(VENV)/.installed

.PHONY: demo test test-fast bench notebooks clean clean-numba-cache help

help:
	@echo "make demo   - create .venv, install xposim, run the headline experiment"
	@echo "make test   - create .venv, install xposim[test], run the whole suite (JIT and no-JIT subset)"
	@echo "make bench  - run the benchmarks in benchmarks/"
	@echo "make notebooks - install the notebook extra and open the course in Jupyter Lab"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP_BASE): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(STAMP_BASE)

demo: $(STAMP_BASE)
	$(PY) -m xposim demo

# The whole suite with numba JIT on, then the fast subset again with NUMBA_DISABLE_JIT=1 so the
# pure-Python execution of every kernel is exercised too.
test: $(STAMP_TEST)
	$(PY) -m pytest -q
	NUMBA_DISABLE_JIT=1 $(PY) -m pytest -q -m fast -p no:cacheprovider

test-fast: $(STAMP_TEST)
	NUMBA_DISABLE_JIT=1 $(PY) -m pytest -q -m fast -p no:cacheprovider

notebooks: $(STAMP_BASE)
	$(PY) -m pip install --quiet -e '.[notebooks]'
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP_BASE)
	for f in benchmarks/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# numba's on-disk cache does not notice when a jitted callee in another module changes: after
# editing a kernel, clear it (CI starts from a clean clone and never sees a stale cache).
clean-numba-cache:
	find xposim -name '*.nbi' -delete -o -name '*.nbc' -delete
