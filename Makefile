# Two commands on a fresh machine:
#   make demo   -- install into .venv and run the Brian2 demo (writes figures/demo/, ignored by git)
#   make test   -- install into .venv (with test and sweep extras) and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test install install-test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,dev,sweep]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/dfc-brian demo --out figures/demo

test: install
	$(VENV)/bin/ruff check dfc_brian tests benchmarks notebooks
	$(VENV)/bin/ruff format --check dfc_brian tests benchmarks notebooks/*.py  # not notebooks/src (cells kept as written)
	$(PY) notebooks/sync.py --check
	$(VENV)/bin/python -m pytest -q tests
	DFC_QUICK=1 $(VENV)/bin/python -m pytest -q --nbmake notebooks

# writes runs/bench/ (ignored by git); the committed numbers in benchmarks/results/ stay as measured
bench: install
	mkdir -p runs/bench
	$(PY) benchmarks/bench_brian2.py --out runs/bench/brian2.json
	$(PY) benchmarks/bench_batched.py --out runs/bench/batched.json
	$(PY) benchmarks/bench_speed.py --threads 1 --out runs/bench/speed.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
