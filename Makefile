# edgefleet developer entry points. A newcomer needs two: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install controlplane system-packages tools crds lint unit bench bench-fleet bench-bytes fuzz clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or pass PYTHON=..."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Real kube-apiserver + etcd, built from Go modules once and cached in ~/.cache/edgefleet (see docs/testing.md).
controlplane:
	bash hack/build-control-plane.sh

# Debian's chromium for the dashboard's browser tests and the demo's screenshots (apt-get; see the script).
system-packages:
	bash hack/install-system-packages.sh

# Go tools the tests run (helm, and our argocd-lua / kstatus harnesses), built from Go modules once and cached in
# ~/.cache/edgefleet/tools (hack/build-go-tool.sh holds the table of tools and versions).
GO_TOOLS ?= helm argocd-lua kstatus
tools:
	@for t in $(GO_TOOLS); do bash hack/build-go-tool.sh $$t || exit 1; done

## The main job on an embedded local control plane (the harness's python -m edgefleet.testing.demo).
demo: install controlplane system-packages
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m edgefleet.testing.demo

## Everything CI runs: lint, types, import contracts, unit + real-control-plane tests.
test: install controlplane system-packages tools lint
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m pytest -q -p no:cacheprovider

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: install
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m pytest -q -m "not controlplane"

## Long property-based fuzzing of bundle opening, manifests, inference requests and URI checks (make test runs a
## brief pass of the same properties). FUZZ_EXAMPLES per property; each run explores new inputs.
FUZZ_EXAMPLES ?= 20000
fuzz: install
	EDGEFLEET_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m pytest -q -p no:cacheprovider tests/fuzz

crds: install
	$(PY) -m edgefleet.api.crd crds

bench: install controlplane
	@for b in benchmarks/*.py; do case "$$b" in benchmarks/fleet_scale.py|benchmarks/model_bytes.py) continue;; esac; echo "== $$b"; PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) $$b || exit 1; done

## Simulated fleets of 100, 1,000 and 5,000 real edge agents against the local control plane (long; FLEET_SIZES=100,1000 for a shorter run).
FLEET_SIZES ?= 100,1000,5000
bench-fleet: install controlplane
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) benchmarks/fleet_scale.py --sizes $(FLEET_SIZES)

## A 21 MB model to 1,000 simulated devices on 4 sites: embedded store vs registry + per-site caches vs prestage.
bench-bytes: install controlplane
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) benchmarks/model_bytes.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist src/*.egg-info
