# Two commands on a fresh machine: `make demo` (end-to-end MNIST demo) and `make test`.
# Both create their own virtualenv in .venv from setup.cfg.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Offline machines point at a local copy of mnist.npz; online, keras downloads it.
TFPRUNE_DATA_DIR ?= $(if $(wildcard ../shared/data/mnist.npz),$(abspath ../shared/data),)
export TFPRUNE_DATA_DIR
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test demo bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,bench,litert]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q tests

demo: install
	$(VENV)/bin/tfprune demo --output-dir demo_output

clean:
	rm -rf $(VENV) demo_output build *.egg-info
