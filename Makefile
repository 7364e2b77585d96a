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

# Two workers (pytest-xdist), one PyTorch thread each (tests/conftest.py): on two idle cores the suite took 9:50 and 10:38 on
# 2026-12-06 and 13:27 on 2026-12-07 (fresh clones; on the 7th the text benchmark's fine-tuning also ran 1.4x slower than
# its documented time), where most of a test's time is Python and process start-up, not arithmetic.
TEST_WORKERS ?= 2

test: $(VENV)/.installed
	$(PY) -m pytest -n $(TEST_WORKERS)

bench: $(VENV)/.installed
	$(PY) benchmarks/kd_epoch_cost.py

clean:
	rm -rf $(VENV) runs
