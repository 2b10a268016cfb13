# Relais — the two commands a fresh machine needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.DEFAULT_GOAL := help
.PHONY: help install system-deps demo test lint typecheck unit integration lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## create .venv and install Relais with its dev tools

system-deps: ## Debian packages the tests use (docker-compose 1.29 for the compose check, promtool, amtool, stunnel, chromium for the console's browser tests)
	@missing=""; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v amtool >/dev/null || missing="$$missing prometheus-alertmanager"; \
	command -v stunnel4 >/dev/null || missing="$$missing stunnel4"; \
	test -x /usr/lib/postgresql/15/bin/postgres || missing="$$missing postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

demo: $(STAMP) ## set up and run the demo: broker, workers, DMP sandbox, a few documents end to end
	$(BIN)/relais demo

lint: $(STAMP) ## ruff (lint and format check) and the import contracts (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP) ## mypy (strict on the library packages)
	$(BIN)/mypy

unit: $(STAMP) ## fast tests of the pure cores
	$(BIN)/pytest tests/unit

integration: $(STAMP) system-deps ## tests against the real broker, sandbox and worker processes
	$(BIN)/pytest tests/integration

test: $(STAMP) system-deps lint typecheck ## set up and run everything CI runs: lint, types, all tests
	$(BIN)/pytest

# The production image installs these, pinned with hashes, and nothing else (see the Dockerfile):
# pyproject's runtime dependencies with the rocksdb extra, and the build backend. Existing pins
# are kept; `make lock UPGRADE=--upgrade` moves every pin to the newest release allowed.
LOCK := $(BIN)/uv pip compile --quiet --generate-hashes --only-binary :all: \
	--python-version 3.11 --python-platform x86_64-unknown-linux-gnu --custom-compile-command 'make lock' $(UPGRADE)

lock: $(STAMP) ## pin the production image's dependencies with hashes (requirements/*.lock)
	$(LOCK) --extra rocksdb -o requirements/production.lock pyproject.toml
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
	  | $(LOCK) -o requirements/build.lock -

clean: ## remove the virtualenv, caches and local state
	rm -rf $(VENV) .relais .mypy_cache .ruff_cache .pytest_cache .hypothesis
