# parcours — every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EVENTS ?= 20000
CUSTOMERS ?= 10000
TOUCHPOINTS ?= 1000000
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo test test-unit test-integration lint format typecheck bench bench-queries clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The HTML report's test opens it in Debian's chromium (headless).
BROWSER := /usr/bin/chromium
$(BROWSER):
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

install: $(STAMP) ## Install parcours and its dev tools into .venv

demo: $(STAMP) ## Run the whole pipeline on the embedded stack and print the report (EVENTS=N)
	$(BIN)/parcours demo --events $(EVENTS) --data-dir .parcours/demo

test: $(STAMP) $(BROWSER) ## Run the whole suite (unit + integration on embedded Tansu and chDB, headless chromium)
	$(BIN)/pytest tests --require-integration

test-unit: $(STAMP) ## Unit tests only (fast, pure)
	$(BIN)/pytest tests/unit

test-integration: $(STAMP) $(BROWSER) ## Integration tests only
	$(BIN)/pytest tests/integration

lint: $(STAMP) typecheck ## Check style, lint and types (changes nothing)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy --strict on the package
	$(BIN)/mypy schemas streams sinks deploy

format: $(STAMP) ## Rewrite the code to the house style
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench-queries: $(STAMP) ## Time the analyst query library on generated rows (TOUCHPOINTS=N, default 1M)
	$(BIN)/parcours bench-queries --touchpoints $(TOUCHPOINTS)

bench: $(STAMP) ## Marginal rate, CPU µs/event per process, paced latency (CUSTOMERS=N, default 10000)
	$(BIN)/parcours bench --customers $(CUSTOMERS)

clean: ## Remove the venv and local data
	rm -rf $(VENV) .parcours test-artifacts
