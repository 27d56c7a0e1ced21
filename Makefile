# Every target creates the environment first if needed (uv + the committed uv.lock).
# Only Python 3.11+ and access to PyPI are required; uv is installed with pip if missing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# uv from PATH, else the copy pip installs into $(PYTHON)'s site-packages.
UV = $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help env train test test-slow test-all lint format tensorboard benchmark gpu-check new-project template-update clean clean-all

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	@touch $@

env: $(VENV)/.synced ## create or update the environment in .venv from uv.lock

train: $(VENV)/.synced ## train the embedded default (generated shapes, small CNN, ~1 min on 2 CPU cores)
	$(PY) train.py $(ARGS)

test: $(VENV)/.synced ## run the test suite (fast tests; slow ones are in test-slow)
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

test-slow: $(VENV)/.synced ## run only the tests marked slow
	$(PY) -m pytest -n 2 --dist loadfile -m slow $(PYTEST_ARGS)

test-all: $(VENV)/.synced ## run every test
	$(PY) -m pytest -n 2 --dist loadfile -m "slow or not slow" $(PYTEST_ARGS)

lint: $(VENV)/.synced ## check style with ruff
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(VENV)/.synced ## fix style with ruff
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

tensorboard: $(VENV)/.synced ## serve TensorBoard over every run in logs/
	$(PY) -m tensorboard.main --logdir logs $(ARGS)

benchmark: $(VENV)/.synced ## trainer overhead against a hand-written loop (benchmarks/overhead.py)
	$(PY) benchmarks/overhead.py $(ARGS)

gpu-check: $(VENV)/.synced ## every CUDA check and figure, report in logs/gpu-check/ (one line and exit 0 without CUDA)
	$(PY) benchmarks/gpu_check.py

new-project: ## copy the template into NAME=<dir> as a new git repository; PACKAGE=<name> renames the package, MINIMAL=1 leaves out the wings
	@test -n "$(NAME)" || { echo "usage: make new-project NAME=<dir> [PACKAGE=<name>] [MINIMAL=1]"; exit 2; }
	$(PYTHON) -m project.starter "$(NAME)" $(if $(PACKAGE),--package "$(PACKAGE)") $(if $(filter 1,$(MINIMAL)),--minimal)

template-update: ## merge the template's later commits into a project made by new-project
	@git remote get-url template >/dev/null 2>&1 || { echo "error: no 'template' remote; this checkout was not made by make new-project"; exit 2; }
	git pull --no-rebase --no-edit template $(or $(BRANCH),main)

clean: ## delete run outputs and caches (keeps .venv)
	rm -rf logs outputs multirun .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

clean-all: clean ## also delete the environment
	rm -rf $(VENV)
