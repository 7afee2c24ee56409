# Moodscape — two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.moodscape-installed
HOST ?= 127.0.0.1
PORT ?= 8000
UI_PORT ?= 3000

export MOODSCAPE_HOME ?= $(CURDIR)/.moodscape
export DAGSTER_HOME ?= $(MOODSCAPE_HOME)/dagster
export NUMBA_CACHE_DIR ?= $(MOODSCAPE_HOME)/numba_cache
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install materialize serve run ui lint test clean-store

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock scripts/install_system_deps.sh
	bash scripts/install_system_deps.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

# Dagster instance profile: dev (local SQLite, dagster.yaml) or prod (Postgres, queued runs, retries:
# dagster.prod.yaml, see docs/PRODUCTION.md). Re-copied whenever the profile or the file changes.
MOODSCAPE_DAGSTER_PROFILE ?= dev
DAGSTER_YAML_SRC := $(if $(filter prod,$(MOODSCAPE_DAGSTER_PROFILE)),dagster.prod.yaml,$(if $(filter dev,$(MOODSCAPE_DAGSTER_PROFILE)),dagster.yaml,$(error MOODSCAPE_DAGSTER_PROFILE must be dev or prod, not '$(MOODSCAPE_DAGSTER_PROFILE)')))

.PHONY: dagster-yaml FORCE
dagster-yaml: $(DAGSTER_HOME)/dagster.yaml

$(DAGSTER_HOME)/dagster.yaml: $(DAGSTER_YAML_SRC) FORCE
	mkdir -p $(DAGSTER_HOME)
	cmp -s $(DAGSTER_YAML_SRC) $@ || cp $(DAGSTER_YAML_SRC) $@

materialize: install $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/moodscape materialize

serve: install
	$(VENV)/bin/moodscape serve --host $(HOST) --port $(PORT)

run: materialize
	$(VENV)/bin/moodscape serve --host $(HOST) --port $(PORT)

# The link re-check schedule and the inbox sensor start RUNNING here (MOODSCAPE_AUTOMATION=off to keep them stopped).
ui: install $(DAGSTER_HOME)/dagster.yaml
	MOODSCAPE_AUTOMATION=$${MOODSCAPE_AUTOMATION:-on} $(VENV)/bin/dagster dev -w workspace.yaml -h $(HOST) -p $(UI_PORT)

lint: install
	$(VENV)/bin/ruff check .

test: install $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q

clean-store:
	rm -rf $(MOODSCAPE_HOME)/store
