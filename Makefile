# Two commands on a fresh machine: `make demo` (end-to-end MNIST demo) and `make test`.
#
# Both build tfprune's wheel and run the *installed wheel* in a virtualenv of their
# own ($(VENV), created on first use), never the checkout: the tests run from a
# copy of the project without tfprune/, so a file missing from the package fails.
# `make dev` makes the editable .venv for working on tfprune itself.
PYTHON ?= python3
VENV ?= build/venv
PY := $(VENV)/bin/python
DEV_VENV ?= .venv
EXTRAS ?= test,bench,litert,backends,notebooks
DIST := build/dist
TREE := build/test-tree
# `make test` runs the whole suite; TESTS / PYTEST_ARGS narrow it for a quick look.
# Tests run in WORKERS pytest-xdist processes, one test file per process at a time
# (the TensorFlow suite on 2 cores: 24 min, 46 min in one process); WORKERS=0 runs
# them in one. The core tests on the other backends run in one (two files: faster).
TESTS ?= tests
WORKERS ?= 2
XDIST := $(if $(filter-out 0,$(WORKERS)),-n $(WORKERS) --dist loadfile,)
PYTEST_ARGS ?= --durations=25
# Then the `core` tests again on each other Keras backend (BACKENDS= skips them).
BACKENDS ?= jax torch
CORE_TESTS ?= tests/test_backends.py tests/test_lean.py
# Offline machines point at a local copy of mnist.npz; online, keras downloads it.
TFPRUNE_DATA_DIR ?= $(if $(wildcard ../shared/data/mnist.npz),$(abspath ../shared/data),)
export TFPRUNE_DATA_DIR
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install wheel test demo dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# tfprune itself: a fresh wheel every time, replacing whatever was installed.
wheel: $(PY)
	rm -rf $(DIST) build/lib build/bdist.*  # stale build/lib files would ship
	$(PY) -m pip wheel -q --no-deps -w $(DIST) .
	$(PY) -m pip install -q --force-reinstall --no-deps $(DIST)/tfprune-*.whl

# Its dependencies and extras: again only when setup.cfg changes.
$(VENV)/.deps: setup.cfg pyproject.toml | wheel
	$(PY) -m pip install -q "$$(ls $(DIST)/tfprune-*.whl)[$(EXTRAS)]"
	touch $@

install: wheel $(VENV)/.deps

# Every project file except the package (git's list when there is one), copied to
# $(TREE); pytest runs there, so `import tfprune` can only find the installed wheel.
test: install
	rm -rf $(TREE) && mkdir -p $(TREE)
	{ git ls-files -co --exclude-standard 2>/dev/null || find . -type f; } \
	  | sed 's|^\./||' | grep -v -E '^(tfprune/|build/|\.venv|\.git/)' \
	  | while read -r f; do [ -f "$$f" ] && printf '%s\n' "$$f"; done \
	  | tar -cf - -T - | tar -xf - -C $(TREE)
	cd $(TREE) && TFPRUNE_TEST_INSTALLED=1 TFPRUNE_SOURCE_DIR="$(CURDIR)" \
	  "$(abspath $(PY))" -m pytest -q $(XDIST) $(TESTS) $(PYTEST_ARGS)
	for backend in $(BACKENDS); do \
	  echo "== the core tests on KERAS_BACKEND=$$backend"; \
	  (cd $(TREE) && KERAS_BACKEND=$$backend TFPRUNE_TEST_INSTALLED=1 \
	    TFPRUNE_SOURCE_DIR="$(CURDIR)" "$(abspath $(PY))" -m pytest -q -m core \
	    $(CORE_TESTS)) || exit 1; \
	done

demo: install
	$(VENV)/bin/tfprune demo --output-dir demo_output

dev: $(DEV_VENV)/.installed

$(DEV_VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(DEV_VENV)
	$(DEV_VENV)/bin/python -m pip install -q --upgrade pip
	$(DEV_VENV)/bin/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

clean:
	rm -rf build demo_output *.egg-info
