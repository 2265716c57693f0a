# The two commands of the README: `make demo` (the main job) and `make test`.
# Each creates or reuses the virtual environment in $(VENV) and installs what
# it needs; nothing else has to be set up by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Where the real data lives on this project's machines; a user points
# DISTIL_TF_DATA at their own copy (GLUE TSVs, vocab, ...) or uses tfds.
DISTIL_TF_DATA ?= $(abspath ../shared/data)
export DISTIL_TF_DATA

STAMP := $(VENV)/.installed-$(shell cat setup.py distil_tf/version.py | cksum | cut -d' ' -f1)

$(STAMP): setup.py distil_tf/version.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned to the CPU build, so that nothing below resolves a CUDA torch.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[test,bench,demo]"
	rm -f $(VENV)/.installed-*
	touch $@

.PHONY: install test test-all demo
install: $(STAMP)

# Two pytest workers, one test file each at a time (--dist loadfile keeps a
# file's module fixtures in one process). Most of a test's time is Python
# (tracing, exporting, subprocess start-up) on one core, so two workers on a
# 2-core machine cut the wall time; TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
PYTEST_PARALLEL = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test: $(STAMP)
	$(PY) -m pytest -q --durations=25 $(PYTEST_PARALLEL)

# Slow tiers too (real checkpoints, kills and resumes, multi-worker).
test-all: $(STAMP)
	$(PY) -m pytest -q --run-large $(PYTEST_PARALLEL)

demo: $(STAMP)
	$(VENV)/bin/distil-tf demo --data-dir $(DISTIL_TF_DATA)
