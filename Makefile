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

.PHONY: setup demo test lint cpp-test unit integration perf clean reports

$(STAMP): pyproject.toml constraints.txt scripts/setup.sh setup.py $(wildcard harness/kernels/csrc/*)
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	harness demo

lint: setup
	pre-commit run -a --show-diff-on-failure

# Unit and integration tests run on pytest-xdist workers, a test file per worker (module fixtures
# start their servers once). Integration tests mostly wait on servers and subprocesses: on 2 cores
# that tier took 19.5 min in one process and 12.6 on two workers; three took 11.0 on a warm
# checkout but 12.6 on a clean clone too (conversions and server start-ups dominate), so two: less
# contention for the same time. UNIT_WORKERS / INTEGRATION_WORKERS = 0 run a tier in one process.
# The perf tier never runs on workers: its ratios need the machine to themselves.
UNIT_WORKERS ?= 2
INTEGRATION_WORKERS ?= 2
xdist = $(if $(filter 0,$(1)),,-n $(1) --dist loadfile)

unit: setup
	pytest tests/unit $(call xdist,$(UNIT_WORKERS))

integration: setup
	pytest -m integration --durations=15 $(call xdist,$(INTEGRATION_WORKERS))

perf: setup
	pytest -m perf --durations=10

# C++ unit tests of the cosine kernel (harness/kernels/csrc), built with CMake and run by ctest.
cpp-test: setup
	cmake -S tests/cpp -B build/cpp-tests -DPython3_EXECUTABLE=$(BIN)/python >/dev/null
	cmake --build build/cpp-tests -j 2
	ctest --test-dir build/cpp-tests --output-on-failure

# Each tier is its own pytest run: an empty tier exits 5 and fails the build instead of passing.
# Then `harness demo` end to end as a user runs it (all 7 steps: ~1 min 50 s here with the
# embedding conversions cached, ~1 min more without).
# A run must leave the tree as it found it (reports go to the git-ignored .work/reports): the
# tree's state before and after is compared, and a difference fails the build, listed. Every
# tier runs even after one failed (a summary with each tier's time ends the output); the exit
# status is the first failed tier's own, or 1 for a tree the run changed.
test: setup
	state=$$(mktemp -d); bash scripts/tree-state.sh > $$state/before; \
	status=0; summary=""; for tier in lint cpp-test unit integration perf demo; do \
	  start=$$SECONDS; rc=0; $(MAKE) --no-print-directory $$tier || rc=$$?; \
	  line="make $$tier: $$([ $$rc -eq 0 ] && echo ok || echo "FAILED (exit $$rc)") in $$((SECONDS - start)) s"; \
	  echo "==> $$line"; summary="$$summary$$line"$$'\n'; \
	  if [ $$rc -ne 0 ] && [ $$status -eq 0 ]; then status=$$rc; fi; \
	done; \
	printf '%s' "$$summary"; \
	bash scripts/tree-state.sh > $$state/after; \
	if ! diff $$state/before $$state/after > $$state/diff; then \
	  echo "make test: the run changed the working tree (< before, > after):"; \
	  cat $$state/diff; \
	  if [ $$status -eq 0 ]; then status=1; fi; \
	fi; \
	rm -rf $$state; exit $$status

# Refresh the committed reference reports in reports/ with this machine's numbers (minutes; run
# `make demo` first: it exports the model and converts MiniLM). Other runs write .work/reports.
REPORTS := reports
reports: setup
	harness tune paths.reports_dir=$(REPORTS)
	harness roofline paths.reports_dir=$(REPORTS)
	harness roofline paths.reports_dir=$(REPORTS) roofline.dtype=fp16 \
	  roofline.output.report=$(REPORTS)/roofline_fp16.md
	harness embed compare paths.reports_dir=$(REPORTS)

clean:
	rm -rf .work build .pytest_cache .benchmarks
