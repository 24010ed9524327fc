# Quick start: `make demo` and `make test`. Each bootstraps .venv from the
# package registries on first use (idempotent: re-runs only when pyproject.toml changes).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# git keeps no file modes but the executable bit: the development keys' private
	@# files arrive 0644, and sigbus refuses key files that others can read.
	chmod 600 keys/dev/*.key.json keys/dev/*.key keys/dev/*.nkey
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sigbus demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# Benchmarks print each figure next to a baseline measured in the same run
# (the hub end to end beside a raw JetStream pipeline and the crypto floor, on the
# development keys and fictitious data: docs/performance.md; Cedar for the policy
# engine; SHA-256 and raw JetStream publishes for the log).
bench: $(STAMP)
	$(BIN)/sigbus --dev bench --startup-sizes 10000,100000,1000000 --chart bench.svg
	$(BIN)/python bench/policy_bench.py
	$(BIN)/python bench/audit_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
