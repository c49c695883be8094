.PHONY: setup run test lint type unit bench demo fuzz
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

# The long fuzz campaign (docs/fuzzing.md): 1,000,000 packets per protocol, a new seed each run
# (printed; OCS_FUZZ_SEED=<seed> make fuzz replays it).  The bounded 50,000 run is part of make test.
fuzz:
	OCS_FUZZ_PACKETS=$${OCS_FUZZ_PACKETS:-1000000} OCS_FUZZ_SEED=$${OCS_FUZZ_SEED:-$$(date +%s)} \
	  $(PY) -m pytest tests/fuzz/test_campaign.py -q -s -p no:cacheprovider
