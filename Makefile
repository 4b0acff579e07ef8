# `make demo`: set up .venv if needed, then run the digits mode-connectivity study (configs/digits/study.yaml).
# `make test`: set up .venv with test extras if needed, then run the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test venv clean

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
	$(BIN)/python -m pytest

clean:
	rm -rf lightning_logs checkpoints
