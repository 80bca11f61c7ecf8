# Two commands do all the set-up: `make run` and `make test`. Both create .venv when it is missing or stale.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# one Prefect home for `make run` and `make server`: the runs of one are in the other's UI
export PREFECT_HOME ?= $(CURDIR)/data/prefect-home
PREFECT_PORT ?= 4200
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test venv dataset server e2e clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)  ## the whole train flow on the built-in corpus and bundled encoder (on `make server`'s server when it is up)
	@if curl -fs http://127.0.0.1:$(PREFECT_PORT)/api/health >/dev/null 2>&1; then \
	  echo "using the Prefect server of make server (http://127.0.0.1:$(PREFECT_PORT))"; \
	  PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api $(BIN)/lvm run; \
	else $(BIN)/lvm run; fi

dataset: $(STAMP)  ## only build the default dataset
	$(BIN)/lvm build-dataset --corpus builtin --out data/builtin.all-MiniLM-L6-v2.parquet

test: $(STAMP)  ## lint (ruff: pyflakes, import order, lines <= 120), then the suite
	$(BIN)/ruff check lvm tasks flows tests bench scripts
	$(BIN)/python -m pytest -q -p no:cacheprovider

server: $(STAMP)  ## Prefect server + UI on :4200, deployments from prefect.yaml, and a worker
	PREFECT_PORT=$(PREFECT_PORT) scripts/serve_deployments.sh

e2e: $(STAMP)  ## a flow run seen in the Prefect UI through headless Chromium (apt-installs chromium if missing: root + network); screenshots in data/e2e/
	@command -v chromium >/dev/null || { echo "installing Debian's chromium"; apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }
	$(BIN)/python scripts/e2e_ui.py

clean:  ## what runs regenerate: run folders, Prefect cache records, the built-in table (your own tables and the embedding caches stay)
	rm -rf data/runs data/cache/prefect data/builtin.*.parquet
