# The two commands of the README: `make demo` and `make test`. Each sets up what it needs on a fresh machine:
# a .venv, the CPU build of PyTorch first (so no multi-GB CUDA build is pulled), then distillkit itself.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[cli,test]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/distillkit demo --out runs/demo --overwrite

# Two workers (pytest-xdist), one PyTorch thread each and for every process a test starts (tests/conftest.py): on two
# idle cores a fresh clone's suite took 9:56 on 2026-12-07 (after torchmetrics, whose import pulled in transformers,
# was dropped; 13:27 the day before; 6:55 on the faster machine of 2026-12-07's later session), where most of a test's
# time is Python and process start-up, not arithmetic.
TEST_WORKERS ?= 2

test: $(VENV)/.installed
	$(PY) -m pytest -n $(TEST_WORKERS)

bench: $(VENV)/.installed
	$(PY) benchmarks/kd_epoch_cost.py

clean:
	rm -rf $(VENV) runs
