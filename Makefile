# Two commands set GeoCAM up on a fresh machine with Python 3.11+ and pip:
#   make run    - virtual environment + install + the GUI on the embedded demo data
#   make test   - virtual environment + install + the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run test install bench screenshot clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/geocam-gui --demo

test: install
	QT_QPA_PLATFORM=$${QT_QPA_PLATFORM:-offscreen} $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/run_all.py

screenshot: install
	QT_QPA_PLATFORM=offscreen $(BIN)/geocam-gui --demo --screenshot docs/screenshot.png

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
