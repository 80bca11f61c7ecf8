# Two commands do all the set-up: `make run` and `make test`. Both create .venv when it is missing or stale.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test venv dataset server e2e clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)  ## the whole train flow on the built-in corpus and bundled encoder
	$(BIN)/python -m flows.train_lvm

dataset: $(STAMP)  ## only build the default dataset
	$(BIN)/lvm build-dataset --corpus builtin --out data/builtin.all-MiniLM-L6-v2.parquet

test: $(STAMP)  ## lint (ruff: pyflakes, import order, lines <= 120), then the suite
	$(BIN)/ruff check lvm tasks flows tests bench scripts
	$(BIN)/python -m pytest -q -p no:cacheprovider

server: $(STAMP)  ## Prefect server + UI on :4200, deployments from prefect.yaml, and a worker
	scripts/serve_deployments.sh

e2e: $(STAMP)  ## a flow run seen in the Prefect UI through headless Chromium (apt-installs chromium if missing: root + network); screenshots in data/e2e/
	@command -v chromium >/dev/null || { echo "installing Debian's chromium"; apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }
	$(BIN)/python scripts/e2e_ui.py

clean:  ## what runs regenerate: run folders, Prefect cache records, the built-in table (your own tables and the embedding caches stay)
	rm -rf data/runs data/cache/prefect data/builtin.*.parquet
