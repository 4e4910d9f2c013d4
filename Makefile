# fx — two commands on a fresh machine:
#   make up     run the embedded platform (NATS + controller + gateway) with examples/ deployed
#   make test   lint, unit, integration and observability tests, then the Kubernetes end-to-end tier (tests/e2e)
# Both create .venv/ inside the repo and install everything they need into it.
# For an operator (docs/install.md):
#   make images [REGISTRY=localhost/fx] [TAG=<version>] [BASE=python:3.11-slim]
#               controller, gateway and runtime-python images, built with buildah, podman or docker
#   make push REGISTRY=host[:port]/path [TAG=..] [CA_FILE=ca.pem | TLS_VERIFY=false]
#               the same images, built if missing, pushed there
#   make chart [REGISTRY=host[:port]/path]   dist/fx-<version>.tgz, defaulting image.registry to REGISTRY
#   make bundle [REGISTRY=..] [TAG=..] [BASE=..]
#               the air-gapped bundle dist/fx-bundle-<version>.tar: the images, the chart, the CLI's wheels, load.sh

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYPROJECTS := core/pyproject.toml sdk/pyproject.toml gateway/pyproject.toml controller/pyproject.toml runtime-images/pyproject.toml

.PHONY: install up test unit integration observability dashboards lint format bench clean images push chart bundle

# `make images` / `make push` / `make chart` / `make bundle` settings (tools/images.py, tools/chart.py, tools/bundle.py).
REGISTRY   ?=
TAG        ?=
BASE       ?=
CA_FILE    ?=
TLS_VERIFY ?= true
IMAGE_ARGS = $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(TAG),--tag $(TAG)) $(if $(BASE),--base $(BASE))

$(STAMP): $(PYPROJECTS) requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e core -e runtime-images -e gateway -e controller -r requirements-dev.txt
	@# fx-sdk holds fx/__init__.py (fx.Client, @fx.function). The compat mode puts sdk/ on sys.path, where that
	@# regular package is found; the strict mode's finder would leave fx as fx-core's bare namespace package.
	$(BIN)/python -m pip install -q -e sdk --config-settings editable_mode=compat
	@touch $@

install: $(STAMP)

up: install
	$(BIN)/fx up --state-dir .fx --examples examples

# The tiers before the Kubernetes one on pytest-xdist workers, a test file whole to one (tests/conftest.py): most
# tests wait on sockets and processes, so two workers on two cores took 24 min where one took 34.
TEST_WORKERS ?= 2
test: install lint
	$(BIN)/python -m tests.cluster.prebuild $(BIN)/python -m pytest -n $(TEST_WORKERS) --durations=25
	@$(MAKE) --no-print-directory e2e-tier

unit: install
	$(BIN)/python -m pytest tests/unit

integration: install
	$(BIN)/python -m pytest tests/integration

# A real Prometheus (Debian's, installed if missing) scraping the platform: every dashboard query returns data.
observability: install
	$(BIN)/python -m pytest tests/observability

# charts/fx/dashboards from tools/dashboards.py, then their pictures in docs/dashboards from a real Prometheus.
dashboards: install
	$(BIN)/python -m tools.dashboards
	FX_RENDER_DASHBOARDS=docs $(BIN)/python -m pytest tests/observability

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Each figure beside its reference from the same run, with its target: PASS/MISS lines, summed up at the end.
bench: export FX_BENCH_REPORT = $(CURDIR)/$(VENV)/bench-report.jsonl
bench: install
	@rm -f $(FX_BENCH_REPORT)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.api_routes
	$(BIN)/python -m bench.scaling
	$(BIN)/python -m bench.log_soak
	$(BIN)/python -m bench.api_matching --requests 50000
	$(BIN)/python -m bench.api_limits --requests 50000
	$(BIN)/python -m bench.lambda_authorizer --requests 50000
	$(BIN)/python -m bench.cli_start --runs 15
	$(BIN)/python -m bench.events --events 20000
	$(BIN)/python -m bench.gateway_nginx --duration 4 --rounds 3
	$(BIN)/python -m bench.runtime_invoke --requests 20000 --rounds 3
	$(BIN)/python -m bench.deploy_scale --functions 1000 --samples 30
	@$(BIN)/python -m bench.report

images: install
	$(BIN)/python -m tools.images build $(IMAGE_ARGS)

push: install
	$(BIN)/python -m tools.images push $(IMAGE_ARGS) $(if $(CA_FILE),--ca-file $(CA_FILE),--tls-verify $(TLS_VERIFY))

chart: install
	$(BIN)/python -m tools.chart package $(if $(REGISTRY),--registry $(REGISTRY))

bundle: install
	$(BIN)/python -m tools.bundle $(IMAGE_ARGS)

clean:
	rm -rf $(VENV) .fx .pytest_cache .ruff_cache .cache dist

# The single-node Kubernetes test harness (issue 4): cluster-up, cluster-down, e2e.
include tests/cluster/cluster.mk
