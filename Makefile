# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.spikemask-installed

.PHONY: setup run test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	# SpikingJelly is only a test/benchmark reference; its declared torchvision/torchaudio
	# requirements cannot be satisfied by the CPU torch, so it goes in without dependencies.
	$(PIP) install -q --no-deps spikingjelly==2.0.0
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(VENV)/bin/spikemask demo

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
