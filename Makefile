# The two set-up commands in the README are `make demo` and `make test`; both build .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Where torch's CPU-only wheels come from when no local wheel is found (set it to a mirror of that index,
# or empty for pip's default index, which on Linux serves the multi-GB CUDA build).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install demo test lint typecheck unit integration clean devstack-up devstack-down schema

install: $(STAMP)

# torch (pyproject's `train` extra, which `dev` includes) goes in first, pinned, CPU build: a local wheel that pip already knows (find-links) is taken
# without touching the network (its small pure-Python needs come with the next step); otherwise the
# CPU-only index, never the default CUDA download.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-index --no-deps torch==2.13.0 2>/dev/null \
	  || $(BIN)/python -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/streamrec devstack up
	$(BIN)/streamrec demo $(DEMO_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy core storage consumer model serving retrain cli tooling streamrec_client

unit: install
	$(BIN)/pytest -q tests/unit

integration: install
	$(BIN)/pytest -q tests/integration

test: install lint typecheck
	$(BIN)/python -m tests.run_suite -q -p no:cacheprovider tests

# The published JSON Schemas of event v1 (docs/schema/), regenerated from core/events.py's models.
schema: install
	$(BIN)/python -m tooling.event_schema

devstack-up: install
	$(BIN)/streamrec devstack up

devstack-down: install
	$(BIN)/streamrec devstack down

clean:
	rm -rf $(VENV) .devstack .mypy_cache .ruff_cache .pytest_cache
