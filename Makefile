# Each target creates .venv itself, so a fresh clone needs nothing but Python 3.11.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.core: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[cli,plot]"
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
	cd $(DEMO) && $(NEURALNP) split cancer.csv --stratify diagnosis --seed 0
	cd $(DEMO) && $(NEURALNP) train train.csv --target diagnosis --epochs 200 --early-stopping 10
	cd $(DEMO) && $(NEURALNP) predict model valid.csv

test: $(VENV)/.dev
	$(PY) -m pytest -q

bench: $(VENV)/.dev
	$(PY) benchmarks/bench_mlp.py

clean:
	rm -rf $(VENV) $(DEMO) build src/*.egg-info .pytest_cache
