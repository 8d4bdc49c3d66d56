# The two commands a user needs: `make demo` and `make test`. Both set themselves up.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgepilot-installed

.PHONY: setup demo test bench clean protos

$(STAMP): pyproject.toml scripts/bootstrap.sh
	VENV=$(VENV) ./scripts/bootstrap.sh
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgepilot demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) benchmarks/simulator_throughput.py

protos: $(STAMP)
	$(PY) -m edgepilot.protos

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
