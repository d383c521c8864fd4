# streamkit — the commands a newcomer needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
KAFKA := compose/kafka

.PHONY: help install demo test lint format bench kafka-up kafka-down kafka2-up kafka2-down s3-up s3-down postgres-up postgres-down docs docs-check clean

help:
	@echo "make demo        run the demo on the embedded defaults (no services needed)"
	@echo "make test        install everything, start what the tests need, run the whole suite"
	@echo "make lint        ruff + mypy --strict"
	@echo "make bench       run the benchmarks (figures for docs/performance.md)"
	@echo "make docs        build the documentation site into site/ (mkdocs-material)"
	@echo "make docs-check  build it strictly (a broken link or nav entry fails; make test runs it)"
	@echo "make kafka-up    start the local single-node Kafka broker on 127.0.0.1:9092"
	@echo "make kafka-down  stop it"
	@echo "make kafka2-up   start a second broker on 127.0.0.1:9094 (global-table tests)"
	@echo "make kafka2-down stop it"
	@echo "make s3-up       start a local S3-compatible server (S3Proxy) on 127.0.0.1:9000"
	@echo "make s3-down     stop it"
	@echo "make postgres-up    start a throwaway local PostgreSQL 15 on 127.0.0.1:5432 (PG_PORT)"
	@echo "make postgres-down  stop it and delete its data"

# A virtualenv with streamkit (editable), every extra and every dependency group: what
# test, lint, bench and docs need.
$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv
	@$(BIN)/uv pip install -q --python $(BIN)/python -e '.[all]' --group test --group typing --group bench --group docs
	@touch $@

# The demo needs streamkit alone (its core dependencies): no extras, no groups. A marker
# of its own, so that `make test` after `make demo` still installs everything.
$(BIN)/.installed-demo: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv
	@$(BIN)/uv pip install -q --python $(BIN)/python -e .
	@touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed-demo
	@$(BIN)/streamkit demo

test: install
	@TEST_PYTHON=$(BIN)/python bash .ci/test-env.sh bash .ci/pytest.sh $(BIN)/python $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory docs-check

lint: install
	@$(BIN)/ruff check streamkit handlers tests benchmarks
	@$(BIN)/ruff format --check streamkit handlers tests benchmarks
	@$(BIN)/mypy
	@$(BIN)/lint-imports --no-cache

format: install
	@$(BIN)/ruff format streamkit handlers tests benchmarks
	@$(BIN)/ruff check --fix streamkit handlers tests benchmarks

bench: install
	@$(BIN)/python -m benchmarks $(BENCH_ARGS)

kafka-up:
	@$(KAFKA)/kafka-up.sh

kafka-down:
	@$(KAFKA)/kafka-down.sh

# a second broker (global tables: each region its own cluster); `make test` starts it too
kafka2-up:
	@KAFKA_PORT=9094 KAFKA_HEAP_OPTS="-Xms128m -Xmx384m" $(KAFKA)/kafka-up.sh

kafka2-down:
	@KAFKA_PORT=9094 $(KAFKA)/kafka-down.sh

s3-up:
	@compose/s3/s3-up.sh

s3-down:
	@compose/s3/s3-down.sh

postgres-up:
	@compose/postgres/pg-up.sh

postgres-down:
	@compose/postgres/pg-down.sh

# The documentation site (mkdocs.yml, docs/) into site/; `$(BIN)/mkdocs serve` serves it live.
docs: install
	@NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --site-dir site
	@echo "docs: built into site/ (open site/index.html)"

# A strict build into a temporary directory: any warning (a broken link or anchor, a nav
# entry without its page, a page missing from the nav) fails. (No --quiet: it hides the
# warnings --strict counts.)
docs-check: install
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir "$$tmp"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .bench
