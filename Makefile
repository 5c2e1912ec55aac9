# `make demo` and `make test` each set up their own virtual environment on a fresh machine.
# The project runs on Python 3.11 (pyproject.toml): python3.11 when the PATH has it.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || echo python3)
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed
export LTR_HOME ?= $(CURDIR)/var
export DAGSTER_HOME ?= $(LTR_HOME)/dagster
# uv installs into this project's .venv, whatever environment the caller has active.
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)

.PHONY: install lock lock-check demo test test-fast test-serving lint typecheck docs docs-check format ui bench clean \
	docker-tools dockerd deploy-images deploy-up deploy-down

install: $(STAMP)

# uv itself is bootstrapped with pip at the version the lock pins, then installs exactly uv.lock.
PY311 := import sys; sys.exit(sys.version_info[:2] != (3, 11))
$(UV):
	@$(PYTHON) -c '$(PY311)' || { echo "error: the project needs Python 3.11 and $(PYTHON) is" \
		"$$($(PYTHON) --version 2>&1): run make with PYTHON=/path/to/python3.11" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): pyproject.toml uv.lock | $(UV)
	@$(PY) -c '$(PY311)' || { echo "error: $(VENV) holds $$($(PY) --version 2>&1) and the" \
		"project needs Python 3.11: rm -rf $(VENV), then make with PYTHON=/path/to/python3.11" >&2; \
		exit 2; }
	$(UV) sync --locked --extra pipeline --extra dev --extra deploy --extra dask --python $(PY) --quiet
	touch $(STAMP)

# Re-resolve uv.lock after editing pyproject.toml's dependencies (commit both).
lock: | $(UV)
	$(UV) lock

# Fails when pyproject.toml and uv.lock disagree (CI runs it).
lock-check: | $(UV)
	$(UV) lock --check

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

# Starts from an empty state under $(LTR_HOME) each time, so the report is reproducible.
demo: $(STAMP)
	rm -rf $(LTR_HOME)
	$(MAKE) --no-print-directory $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/ltr demo

# Debian's Chromium for the headless UI test (never `playwright install`: no downloads here).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "the UI test needs Debian's chromium: sudo apt-get install chromium"; fi

# The whole suite: every tier, with the broker, S3 server, Chromium and Docker it starts itself
# (tests/deploy/test_compose_stack.py runs `make deploy-images` and the compose stack). The
# serving tier runs once, inside tests/deploy/test_serving_install.py: in a fresh venv holding
# the serving install alone (no Dagster, DuckDB, pandas), not here in the full one.
# PYTEST_WORKERS processes share the test files (pytest-xdist, a file's tests on one worker, so
# its module fixtures are built once): most of the suite waits on processes it started (Dagster,
# the broker, Chromium, Docker), so two workers finish sooner than one even on 2 cores.
PYTEST_WORKERS ?= 2
test: $(STAMP) $(CHROMIUM) docker-tools
	$(PY) -m pytest -q --durations=25 --ignore=tests/serving -n $(PYTEST_WORKERS) --dist loadfile

# The serving tier directly in the development venv (quicker to iterate on).
test-serving: $(STAMP)
	$(PY) -m pytest -q tests/serving

# The unit tier without its slow tests (pure logic, no services): about a minute.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "unit and not slow"

# mypy, configured in pyproject.toml: strict on the product packages and benchmarks/; tests/
# strict but for unannotated signatures (their bodies still checked).
typecheck: $(STAMP)
	$(VENV)/bin/mypy

# docs/configuration.md, generated from the settings schema (ltr_core/settings.py).
DOCS_CONFIG := docs/configuration.md
docs: $(STAMP)
	$(PY) -m ltr_core.settings_doc > $(DOCS_CONFIG).tmp
	mv $(DOCS_CONFIG).tmp $(DOCS_CONFIG)

# Fails when docs/configuration.md is not what the schema gives (CI runs it): run `make docs`.
docs-check: $(STAMP)
	@tmp=$$(mktemp) && $(PY) -m ltr_core.settings_doc > $$tmp && \
		if diff -u $(DOCS_CONFIG) $$tmp; then rm -f $$tmp; \
		else rm -f $$tmp; echo "$(DOCS_CONFIG) is stale: run make docs"; exit 1; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The Dagster UI on http://127.0.0.1:3000 over the demo's instance and lake.
ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

# Every benchmark; each prints name=value lines (how to run them: benchmarks/README.md; results: docs/benchmarks.md).
BENCHMARKS := ingest quality_real quality_sim gate_error exploration_cost click_signal fairness training serving reload_stall online
bench: $(STAMP)
	@for name in $(BENCHMARKS); do echo "== $$name"; $(PY) -m benchmarks.$$name || exit 1; done

clean:
	rm -rf $(LTR_HOME) .pytest_cache


# --- The Docker deployment (deploy/, docs/deployment.md) -----------------------------------------
# Debian's Docker engine (docker.io, 20.10), compose v1 (docker-compose) and debootstrap (the base
# image is made from Debian's packages: no image registry is needed). The docker.io CLI
# (/usr/bin/docker) builds: it has BuildKit built in (build secrets, cache mounts).
DOCKER := /usr/bin/docker
DOCKERD := /usr/sbin/dockerd
DOCKER_COMPOSE := /usr/bin/docker-compose
DEBOOTSTRAP := /usr/sbin/debootstrap
DOCKER_TOOLS := $(DOCKER) $(DOCKERD) $(DOCKER_COMPOSE) $(DEBOOTSTRAP)
docker-tools: $(DOCKER_TOOLS)
$(DOCKER_TOOLS):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			docker.io docker-compose debootstrap; \
	else echo "the deployment needs: sudo apt-get install docker.io docker-compose debootstrap"; fi

# The daemon, unless one answers: no bridge network and no iptables rules (every container uses
# the host's network; only 127.0.0.1 is reachable on these machines). Its log: $(LTR_HOME)/dockerd.log.
dockerd: docker-tools
	@if ! $(DOCKER) info >/dev/null 2>&1; then \
		mkdir -p $(LTR_HOME); \
		setsid $(DOCKERD) --bridge=none --iptables=false >>$(LTR_HOME)/dockerd.log 2>&1 </dev/null & \
		for i in $$(seq 60); do $(DOCKER) info >/dev/null 2>&1 && break; sleep 1; done; \
		$(DOCKER) info >/dev/null 2>&1 || { echo "dockerd did not start: $(LTR_HOME)/dockerd.log"; exit 1; }; \
	fi

# Both images, from uv.lock, on the base made from Debian's packages (built once, then reused).
# The package index is reached over HTTPS through whatever CA the host trusts: that bundle is a
# BuildKit secret of the build (never a layer of the image). Layers and uv's download cache are
# kept by Docker, so a rebuild after a code change redoes only the project's own layer.
BASE_IMAGE ?= ltr-python:3.11-bookworm
LTR_DAGSTER_IMAGE ?= ltr-dagster:latest
LTR_SERVING_IMAGE ?= ltr-serving:latest
CA_BUNDLE ?= $(or $(SSL_CERT_FILE),/etc/ssl/certs/ca-certificates.crt)
DOCKER_BUILD = DOCKER_BUILDKIT=1 $(DOCKER) build --network host --secret id=ca,src=$(CA_BUNDLE) \
	--build-arg PYTHON_IMAGE=$(BASE_IMAGE)
deploy-images: dockerd
	deploy/base-image.sh $(BASE_IMAGE)
	$(DOCKER_BUILD) -f deploy/Dockerfile.serving -t $(LTR_SERVING_IMAGE) .
	$(DOCKER_BUILD) -f deploy/Dockerfile.dagster -t $(LTR_DAGSTER_IMAGE) .
	$(DOCKER) image prune -f --filter label=io.ltr-platform.image >/dev/null
	@$(DOCKER) image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' $(BASE_IMAGE)
	@$(DOCKER) image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' $(LTR_SERVING_IMAGE)
	@$(DOCKER) image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' $(LTR_DAGSTER_IMAGE)

# The compose stack (deploy/docker-compose.yml) with the settings of deploy/.env (copy
# deploy/.env.example): Postgres, Kafka and S3 are the ones it names. Built first, then started
# without building (compose v1 cannot pass the build secret).
COMPOSE = $(DOCKER_COMPOSE) -p ltr -f deploy/docker-compose.yml --env-file deploy/.env
# The image tags come from deploy/.env when it names them (compose runs what it names).
ENV_IMAGES = $$(sed -n -E 's/^(LTR_DAGSTER_IMAGE|LTR_SERVING_IMAGE)=["'"'"']?([^"'"'"'[:space:]]+)["'"'"']?[[:space:]]*$$/\1=\2/p' deploy/.env)
deploy-up:
	@test -f deploy/.env || { echo "copy deploy/.env.example to deploy/.env and fill it in"; exit 1; }
	$(MAKE) --no-print-directory deploy-images $(ENV_IMAGES)
	$(COMPOSE) up -d --no-build
	$(COMPOSE) ps

deploy-down:
	$(COMPOSE) down
