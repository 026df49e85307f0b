# Everything runs in a local virtual environment that these targets create.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The demo gets its own small environment: sessiondb and its three dependencies, no dev tools.
DEMO_VENV := .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed

.PHONY: demo test test-slow lint typecheck bench crash soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet -e .
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(DEMO_VENV)/bin/python examples/agent_server.py

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow" --run-slow

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m ruff format --check src tests benchmarks examples
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(PY) -m mypy

$(VENV)/.bench-installed: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $(VENV)/.bench-installed

bench: $(VENV)/.bench-installed
	$(PY) -m benchmarks
	$(PY) -m benchmarks --mix small --workloads concurrent --no-extras
	$(PY) -m benchmarks.bench_cpu

crash: $(STAMP)
	$(PY) scripts/crash_campaign.py --kills 1000 --sweep-seeds 2
	$(PY) scripts/crash_campaign.py --kills 1000 --processes 4 --kills-per-store 100 --kills-only

soak: $(STAMP)
	$(PY) scripts/soak.py

clean:
	rm -rf $(VENV) $(DEMO_VENV) build *.egg-info src/*.egg-info
