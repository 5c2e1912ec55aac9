# `make demo` and `make test` each set up their own virtual environment on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed
export LTR_HOME ?= $(CURDIR)/var
export DAGSTER_HOME ?= $(LTR_HOME)/dagster
# uv installs into this project's .venv, whatever environment the caller has active.
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)

.PHONY: install lock lock-check demo test test-fast test-serving lint typecheck docs docs-check format ui bench clean

install: $(STAMP)

# uv itself is bootstrapped with pip at the version the lock pins, then installs exactly uv.lock.
$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): pyproject.toml uv.lock | $(UV)
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

# The whole suite: every tier, with the broker, S3 server and Chromium it starts itself. The
# serving tier runs once, inside tests/deploy/test_serving_install.py: in a fresh venv holding
# the serving install alone (no Dagster, DuckDB, pandas), not here in the full one.
test: $(STAMP) $(CHROMIUM)
	$(PY) -m pytest -q --ignore=tests/serving

# The serving tier directly in the development venv (quicker to iterate on).
test-serving: $(STAMP)
	$(PY) -m pytest -q tests/serving

# The unit tier without its slow tests (pure logic, no services): under a minute.
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
BENCHMARKS := ingest quality_real quality_sim exploration_cost fairness training serving
bench: $(STAMP)
	@for name in $(BENCHMARKS); do echo "== $$name"; $(PY) -m benchmarks.$$name || exit 1; done

clean:
	rm -rf $(LTR_HOME) .pytest_cache
