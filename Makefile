# `make demo` and `make test` each set up their own virtual environment on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export LTR_HOME ?= $(CURDIR)/var
export DAGSTER_HOME ?= $(LTR_HOME)/dagster

.PHONY: install demo test lint format ui bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

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

test: $(STAMP) $(CHROMIUM)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The Dagster UI on http://127.0.0.1:3000 over the demo's instance and lake.
ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

# Every benchmark; each prints name=value lines (see benchmarks/README.md).
BENCHMARKS := ingest quality_real quality_sim training serving
bench: $(STAMP)
	@for name in $(BENCHMARKS); do echo "== $$name"; $(PY) -m benchmarks.$$name || exit 1; done

clean:
	rm -rf $(LTR_HOME) .pytest_cache
