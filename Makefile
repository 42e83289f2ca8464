# The two commands a new user needs: `make demo` and `make test`.
# Each sets up what it needs: a virtualenv, the Docker engine, the test images.

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PYTEST_ARGS ?=
# The second leg of the test matrix: the newest Django on the newest Python 3.12+ found here.
PYTHON_NEW ?= $(firstword $(wildcard /root/.pyenv/versions/3.13*/bin/python3 /root/.pyenv/versions/3.12*/bin/python3) \
                $(shell command -v python3.13 python3.12 2>/dev/null))
VENV_NEW   ?= .venv-newest
# What that leg runs: unit tests, the users' API and the contract suite against Docker.
MATRIX_TESTS ?= tests/unit/test_errors.py tests/unit/test_checks.py tests/unit/test_hostapi_wire.py tests/unit/test_http_remote.py \
                tests/integration/test_api.py tests/integration/test_contract.py -k "not http_remote"
LINTED ?= ipynbsrv_backends testproject tests bench scripts

.PHONY: help venv packages engine images test test-fast lint matrix screenshots demo cluster cluster-down clean

help:
	@echo "make demo    set up the master here, start a demo container and serve the admin until Ctrl-C"
	@echo "make image   build the real Jupyter Notebook image (no registry; FORCE=1 builds it again)"
	@echo "make test    run every test (starts the engine and builds the test images first), then lint and matrix;"
	@echo "             ends with one line per stage and the verdict"
	@echo "make test-fast   the tests that need no engine, the master's on the in-memory backend (about 15 s"
	@echo "             of CPU; no engine, images or network but 127.0.0.1)"
	@echo "make hub     JupyterHub, DockerSpawner, the idle culler (venv) and configurable-http-proxy (npm) for the hub tests"
	@echo "make lint    ruff and mypy (with django-stubs) on the package"
	@echo "make matrix  the fast tests, check and makemigrations --check with the newest Django on Python 3.12+"
	@echo "make screenshots   run the browser test and keep its screenshots in docs/screenshots/"
	@echo "make cluster a two-node test bed (namespaces, registry, host APIs) and its admin (SWARM=1: also a swarm)"
	@echo "make cluster-down   remove every trace of the test bed"

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# What the tests need (and the cluster, the bench, the screenshots); the demo needs less.
packages:
	scripts/packages.sh test

packages-demo:
	scripts/packages.sh demo

engine:
	scripts/engine.sh

# JupyterHub for the hub tests and the bench's hub section (docs/jupyterhub.md): the hub, the
# spawners they compare (this package's extra, DockerSpawner), the standard idle culler, into
# the venv; configurable-http-proxy (Node.js) under its cache directory (scripts/chp.sh; the
# packages target brings nodejs and npm). The hub's major version is the notebook image's
# (images/notebook/requirements.txt).
HUB_PACKAGES ?= 'jupyterhub>=6.1,<7' 'dockerspawner>=14' 'jupyterhub-idle-culler>=1.4'
$(VENV)/.hub-installed: $(VENV)/.installed setup.py
	$(VENV)/bin/pip install -q -e '.[test,jupyterhub]' $(HUB_PACKAGES)
	touch $@

hub: $(VENV)/.hub-installed packages
	scripts/chp.sh >/dev/null

.PHONY: hub

# The small busybox stand-in (seconds to build).
stand-in: engine packages-demo
	scripts/images.sh

# The real Jupyter Notebook image: a couple of minutes the first time, then reused (rebuilt by
# itself when images/notebook/ changes); FORCE=1 builds it again.
image: engine packages-demo
	scripts/notebook-image.sh $(if $(FORCE),--force)

images: stand-in image

.PHONY: stand-in image packages-demo

# Lint and matrix run as sub-makes through this variable, not $(MAKE) written out: make runs
# a recipe line naming $(MAKE) even under -n, and this line starts PostgreSQL and the tests.
STAGE = $(MAKE) --no-print-directory
# A private PostgreSQL runs for the length of the tests (the concurrency tests' second pass).
# Every stage runs (tests, lint, matrix) whatever the one before did; the last lines say how
# each went and the verdict (scripts/test-summary.sh), and the exit status is non-zero if any
# stage failed. pytest's output is kept whole (colours too, on a terminal).
test: venv packages images hub
	@log=$$(mktemp); rc=$$(mktemp); trap 'rm -f "$$log" "$$rc"' EXIT; \
	color=; [ -t 1 ] && color=--color=yes; \
	port=$$(scripts/postgres.sh start) || { echo "make test: FAILED (the tests' PostgreSQL did not start)"; exit 1; }; \
	export $$port; \
	{ $(PY) -m pytest $$color --durations=30 $(PYTEST_ARGS); echo $$? >"$$rc"; } 2>&1 | tee "$$log"; \
	tests=$$(cat "$$rc"); \
	scripts/postgres.sh stop; \
	$(STAGE) lint; lint=$$?; \
	$(STAGE) matrix; matrix=$$?; \
	scripts/test-summary.sh "$$log" "$${tests:-1}" "$$lint" "$$matrix" "$(strip $(PYTHON_NEW))"

# The fast tier (tests/support/fast_tier.py): tests/unit, the contract suite on the Memory
# backend and the master's tests of tests/integration on Memory nodes. DOCKER_HOST leads nowhere, so a test that
# reached for an engine would fail; the venv is made only when it is missing.
test-fast:
	@[ -x $(PY) ] || $(STAGE) venv
	IPYNBSRV_TEST_BACKEND=memory DOCKER_HOST=unix:///nonexistent/docker.sock \
	  $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/mypy

$(VENV_NEW)/.installed: setup.py
	rm -rf $(VENV_NEW)
	$(PYTHON_NEW) -m venv $(VENV_NEW)
	$(VENV_NEW)/bin/pip install -q --upgrade pip
	$(VENV_NEW)/bin/pip install -q -e . "pytest>=8" "pytest-django>=4.8" "pytest-timeout>=2.3"
	$(VENV_NEW)/bin/pip install -q --upgrade Django djangorestframework drf-spectacular
	touch $@

ifeq ($(strip $(PYTHON_NEW)),)
matrix:
	@echo "matrix: no Python 3.12+ found (set PYTHON_NEW=/path/to/python3.12)"; \
	 case "$$CI" in 1|true|yes) exit 1;; *) echo "matrix: skipped";; esac
else
matrix: $(VENV_NEW)/.installed images
	@$(VENV_NEW)/bin/python -c 'import sys, django; print(f"matrix: Django {django.get_version()} on Python {sys.version.split()[0]}")'
	$(VENV_NEW)/bin/python testproject/manage.py check
	$(VENV_NEW)/bin/python testproject/manage.py makemigrations --check --dry-run ipynbsrv_backends
	$(VENV_NEW)/bin/python -m pytest -q -p no:cacheprovider $(MATRIX_TESTS)
endif

screenshots: venv packages images
	IPYNBSRV_SCREENSHOTS=$(CURDIR)/docs/screenshots $(PY) -m pytest -q tests/integration/test_browser.py

# The demo builds the notebook image itself (and says so if it must fall back to the stand-in).
demo: venv stand-in
	$(PY) scripts/demo.py

# SWARM=1: the nodes also form a Docker swarm (node 1 the manager; docs/swarm.md).
SWARM ?=
cluster: venv packages stand-in
	scripts/cluster.sh up 2
	$(if $(SWARM),scripts/cluster.sh swarm)
	$(PY) scripts/cluster_master.py

cluster-down:
	scripts/cluster.sh down

clean:
	rm -rf $(VENV) $(VENV_NEW) build dist *.egg-info .pytest_cache

# make bench: what the abstraction costs next to the engine, written to docs/benchmarks.md.
# Not part of make test; needs only the stand-in image. Brings the cluster test bed up
# (IPYNBSRV_CLUSTER_ID) and down again.
BENCH_ARGS ?=
.PHONY: bench
$(VENV)/.bench-installed: $(VENV)/.installed setup.py
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	touch $@

bench: $(VENV)/.bench-installed packages stand-in image hub
	$(PY) -m bench $(BENCH_ARGS)
