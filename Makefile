# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.spikemask-installed

.PHONY: setup browser run test lint bench clean

# The HTML report's test renders it in a real headless Chromium (the Debian package); installed once.
APT := $(if $(filter 0,$(shell id -u)),,sudo )apt-get

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	# SpikingJelly is only a test/benchmark reference; its declared torchvision/torchaudio
	# requirements cannot be satisfied by the CPU torch, so it goes in without dependencies.
	$(PIP) install -q --no-deps spikingjelly==2.0.0
	touch $(STAMP)

setup: $(STAMP)

browser:
	@command -v chromium >/dev/null 2>&1 || { $(APT) update -qq && \
		DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq --no-install-recommends chromium >/dev/null; }

run: setup
	$(VENV)/bin/spikemask demo

test: setup browser
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
