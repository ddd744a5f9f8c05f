# MIDAS - one command each: `make demo` runs the whole pipeline, `make test` the test suite.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1

.PHONY: setup demo demo-real test test-all bench lint clean up down logs server worker deploy hourly-now

$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/midas demo

demo-real: $(STAMP)
	$(BIN)/midas demo --real

# The default suite (< 10 min on 2 cores). `make test-all` adds the tests marked slow (the real-
# recordings demo and Ctrl-C of a whole demo). Longer variants are set by environment:
# MIDAS_EXCHANGE_SYNC_SECS=30 (the exchange sync test), BOOK_FUZZ_EXAMPLES=1500 (book fuzzing).
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/python -m compileall -q midas flows tests bench

clean:
	rm -rf $(VENV) build *.egg-info

# Operating with Prefect (README "Operating with Prefect and docker compose").
# `make server` in one terminal, then `make deploy` and `make worker` in others; UI at
# http://127.0.0.1:4200. PREFECT_API_URL defaults to that server; MIDAS_HOME (where workers run the
# flows from) to this directory; PREFECT_LOGGING_EXTRA_LOGGERS=midas sends midas.* logs to the UI.
# (Target-specific: `make test` must not point the test suite at a server.)
PREFECT_TARGETS := server worker deploy hourly-now
$(PREFECT_TARGETS): export PREFECT_API_URL ?= http://127.0.0.1:4200/api
$(PREFECT_TARGETS): export MIDAS_HOME ?= $(CURDIR)
$(PREFECT_TARGETS): export PREFECT_LOGGING_EXTRA_LOGGERS ?= midas
$(PREFECT_TARGETS): export PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW ?= ignore
COMPOSE ?= docker compose

server: $(STAMP)
	$(BIN)/midas ops server

worker: $(STAMP)
	$(BIN)/midas ops worker

deploy: $(STAMP)
	$(BIN)/midas ops deploy

hourly-now: $(STAMP)
	$(BIN)/midas ops hourly-now

up:
	@mkdir -p data logs
	$(COMPOSE) up -d --build

down:
	$(COMPOSE) down

logs:
	$(COMPOSE) logs -f --tail=200
