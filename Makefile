# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the whole suite).
# Both run the idempotent set-up first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.setup-done
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false

.PHONY: setup demo test lint cpp-test unit integration perf clean

$(STAMP): pyproject.toml constraints.txt scripts/setup.sh setup.py $(wildcard harness/kernels/csrc/*)
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	harness demo

lint: setup
	pre-commit run -a --show-diff-on-failure

unit: setup
	pytest tests/unit

integration: setup
	pytest -m integration

perf: setup
	pytest -m perf

# C++ unit tests of the cosine kernel (harness/kernels/csrc), built with CMake and run by ctest.
cpp-test: setup
	cmake -S tests/cpp -B build/cpp-tests -DPython3_EXECUTABLE=$(BIN)/python >/dev/null
	cmake --build build/cpp-tests -j 2
	ctest --test-dir build/cpp-tests --output-on-failure

# Each tier is its own pytest run: an empty tier exits 5 and fails the build instead of passing.
test: setup
	$(MAKE) --no-print-directory lint cpp-test unit integration perf

clean:
	rm -rf .work build .pytest_cache .benchmarks
