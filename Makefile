.PHONY: setup run test lint type unit bench demo
VENV ?= .venv
PY := $(VENV)/bin/python

setup:
	./scripts/bootstrap.sh

run:
	./scripts/run-demo.sh

test:
	./scripts/test.sh

lint:
	$(VENV)/bin/ruff check ocs tests bench

type:
	$(VENV)/bin/mypy

unit:
	$(PY) -m pytest tests/unit -q

bench:
	$(PY) -m bench
