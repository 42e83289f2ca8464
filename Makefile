# The two commands a new user needs: `make demo` and `make test`.
# Each sets up what it needs: a virtualenv, the Docker engine, the test images.

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help venv packages engine images test demo cluster cluster-down clean

help:
	@echo "make demo    set up the master here, start a demo container and serve the admin until Ctrl-C"
	@echo "make test    run every test (starts the engine and builds the test images first)"
	@echo "make cluster a two-node test bed (namespaces, registry, host APIs) and its admin"
	@echo "make cluster-down   remove every trace of the test bed"

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

packages:
	scripts/packages.sh

engine:
	scripts/engine.sh

images: engine packages
	scripts/images.sh

test: venv images
	$(PY) -m pytest $(PYTEST_ARGS)

demo: venv images
	$(PY) scripts/demo.py

cluster: venv images
	scripts/cluster.sh up 2
	$(PY) scripts/cluster_master.py

cluster-down:
	scripts/cluster.sh down

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache

# make bench: what the abstraction costs next to the engine, written to docs/benchmarks.md.
# Not part of make test. Brings the cluster test bed up (IPYNBSRV_CLUSTER_ID) and down again.
BENCH_ARGS ?=
.PHONY: bench
$(VENV)/.bench-installed: $(VENV)/.installed setup.py
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	touch $@

bench: $(VENV)/.bench-installed images
	$(PY) -m bench $(BENCH_ARGS)
