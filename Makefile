# Two commands matter: `make demo` (the main job on a local EC2 endpoint) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint clean package bench

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	# The command line as the console script .venv/bin/ec2-powercycle (editable: it runs this checkout).
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation --editable .
	touch $@

demo: setup
	$(PY) tools/demo.py

lint: setup
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest

clean:
	rm -rf $(VENV) dist lib .pytest_cache .hypothesis

package: setup
	PYTHON=$(PY) ./package.sh

bench: setup
	$(PY) bench/run.py
	$(PY) bench/org.py
	$(PY) bench/slow_urls.py
