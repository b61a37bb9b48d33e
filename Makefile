# Each target creates .venv itself, so a fresh clone needs nothing but Python 3.11.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench bench-quick clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# fast: the compiled (Numba) kernels, the speed the README reports
$(VENV)/.core: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[cli,plot,fast]"
	touch $@

$(VENV)/.dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.core

# The main job, from a terminal: export the bundled breast-cancer data, split it, train with
# early stopping, and predict the held-out rows.
DEMO := demo-run
NEURALNP := $(abspath $(VENV))/bin/neuralnp

demo: $(VENV)/.core
	mkdir -p $(DEMO)
	cd $(DEMO) && $(NEURALNP) datasets export breast_cancer cancer.csv --overwrite
	cd $(DEMO) && $(NEURALNP) split cancer.csv --stratify diagnosis --seed 0 --overwrite
	cd $(DEMO) && $(NEURALNP) train train.csv --target diagnosis --epochs 200
	cd $(DEMO) && $(NEURALNP) predict model valid.csv

test: $(VENV)/.dev
	$(PY) -m pytest -q

$(VENV)/.bench: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[bench]"
	touch $@ $(VENV)/.dev $(VENV)/.core

# Side by side with PyTorch, Keras and scikit-learn; the script unsets OPENBLAS_CORETYPE and
# OPENBLAS_L2_SIZE for its runs, as on a user's machine, and reports what the shell had.
bench: $(VENV)/.bench
	$(PY) benchmarks/bench_mlp.py --wait-quiet 120

bench-quick: $(VENV)/.bench
	$(PY) benchmarks/bench_mlp.py --quick

clean:
	rm -rf $(VENV) $(DEMO) build src/*.egg-info .pytest_cache
