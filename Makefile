# The two commands a user needs: `make demo` and `make test`. Both set themselves up.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgepilot-installed

.PHONY: setup demo test bench clean protos policies

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
	$(PY) scripts/protos.py

# re-export the shipped demo bundle after retraining edgepilot/models/policies/dtac_fig5.pt
policies: $(STAMP)
	$(VENV)/bin/edgepilot export edgepilot/models/policies/dtac_fig5.pt --profile laptop --precisions fp32 \
	  --states 500 --calibration-states 200 --min-agreement 0.9 --out edgepilot/models/policies/dtac_fig5-laptop.bundle

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
