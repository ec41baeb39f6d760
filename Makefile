# Everything runs from .venv, which the targets create themselves on a fresh machine.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 3000
# The gpu extra when an NVIDIA driver answers, else cpu: onnxruntime and onnxruntime-gpu
# overwrite each other, so exactly one is ever installed.
ORT_EXTRA ?= $(shell nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)

.PHONY: install install-train serve test test-fast lint format train clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-serve: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$(ORT_EXTRA)]'
	touch $@

$(VENV)/.installed-all: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$(ORT_EXTRA),train,dev]'
	touch $@ $(VENV)/.installed-serve

install: $(VENV)/.installed-serve

install-train: $(VENV)/.installed-all

serve: install
	$(BIN)/bentoml serve service.service:GanService --port $(PORT)

test: install-train
	$(BIN)/python -m pytest tests

test-fast: install-train
	$(BIN)/python -m pytest tests -m "not integration and not slow"

lint: install-train
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install-train
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Example: make train ARGS="--dataset mnist --arch dcgan28 --loss ns --steps 5000 --out runs/mnist"
train: install-train
	$(BIN)/python -m training.train $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The serving image (Dockerfile): docker when a daemon answers, else buildah (+ a local Debian
# base when no registry answers). VARIANT=gpu for the CUDA image; IMAGE=name:tag. docs/deploy.md.
.PHONY: image
image:
	IMAGE=$(or $(IMAGE),gan-service:latest) VARIANT=$(or $(VARIANT),cpu) deploy/scripts/build-image.sh

# A Bento (bentofile.yaml; BENTOFILE=deploy/bento/bentofile.gpu.yaml for the GPU one): every
# folder under models/ imported into BentoML's model store first (idempotent: a folder already
# there is not copied again), since the Bento packs the models from the store. docs/deploy.md.
.PHONY: bento
bento: install
	$(BIN)/python -m service.bento_models import $(wildcard models/*/)
	$(BIN)/bentoml build -f $(or $(BENTOFILE),bentofile.yaml) .

# The benchmark of BENCHMARKS.md (~25 min; needs wrk: apt-get install wrk, and Java 17 for the
# TorchServe peer). QUICK=1 make bench: a 3-minute smoke run of the same steps.
.PHONY: bench
bench: install-train
	bash bench/run_all.sh
