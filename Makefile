# `make demo`: set up .venv if needed, then run the digits mode-connectivity study (configs/digits/study.yaml).
# `make test`: set up .venv with test extras if needed, run the whole test suite, then the numerically
#   sensitive tests (markers `numerics`, `trained`, except the `slow` DDP and resumption ones, whose
#   bounds tests/measure_bounds.py measured under both kernel sets) a second time with torch's portable
#   kernels (ATEN_CPU_CAPABILITY=default), as another CPU would round.
# `make test-fast`: the everyday loop, every test not marked `slow`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

PYTEST := $(BIN)/python -m pytest

.PHONY: demo test test-fast venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.14.1 torchvision==0.29.1

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python -m unlearn_mc.demo

test: $(VENV)/.installed
	$(PYTEST)
	ATEN_CPU_CAPABILITY=default $(PYTEST) -m "(numerics or trained) and not slow" -p no:cacheprovider

test-fast: $(VENV)/.installed
	$(PYTEST) -m "not slow"

clean:
	rm -rf lightning_logs checkpoints
