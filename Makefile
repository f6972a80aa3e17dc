# shipyard — the two commands are `make demo` and `make test`; the rest are their parts.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3
EXAMPLE := examples/events-api

.PHONY: demo test venv engine images lint unit e2e clean-demo readme

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

engine:
	bash scripts/engine.sh

images: engine
	bash scripts/images.sh

lint: venv
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	cd $(EXAMPLE) && test -z "$$(gofmt -l .)" && go vet ./...
	test -z "$$(gofmt -l images/cadvisor)"

unit: venv
	$(BIN)/pytest tests/unit
	cd $(EXAMPLE) && go test ./...

e2e: venv images
	$(BIN)/pytest tests/e2e

# Every test: lint, unit (Python and Go), end to end on the real engine.
test: venv images lint
	cd $(EXAMPLE) && go test ./...
	$(BIN)/pytest --durations=40

# Deploy the example app to the local Docker engine and print its URL.
demo: venv images
	bash scripts/demo-env.sh $(EXAMPLE)/.env.development
	cd $(EXAMPLE) && ../../$(BIN)/shipyard deploy development

clean-demo: venv
	cd $(EXAMPLE) && ../../$(BIN)/shipyard destroy development --yes --volumes --snapshots

# Regenerate the configuration reference in README.md from the models.
readme: venv
	$(BIN)/python -c 'import re, pathlib; from shipyard.config import reference_markdown as r; p = pathlib.Path("README.md"); s = p.read_text(); a, b = "<!-- reference:start -->", "<!-- reference:end -->"; p.write_text(s[: s.index(a) + len(a)] + "\n" + r() + "\n" + s[s.index(b):])'
