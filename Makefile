# Two commands do all the set-up: `make run` and `make test`. Both create .venv when it is missing or stale.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test venv dataset serve server e2e bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)  ## the whole train flow on the built-in corpus and bundled encoder
	$(BIN)/python -m flows.train_lvm

dataset: $(STAMP)  ## only build the default dataset
	$(BIN)/lvm build-dataset --corpus builtin --out data/builtin.parquet

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf data/runs data/cache data/prefect data/*.parquet
