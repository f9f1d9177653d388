# Two commands set GeoCAM up on a fresh machine with Python 3.11+ and pip:
#   make run    - virtual environment + install + the GUI on the embedded demo data
#   make test   - virtual environment + install + the whole test suite
#   make coverage  - the test suite with line coverage of geocam_gui/core (terminal + coverage.json)
#   make gpu-check - on a CUDA machine: the GPU path end to end in <= 5 min, figures in gpu_check.json
#                    (without CUDA it says so and exits 0; GPU_CHECK_ARGS=--dry-run-cpu rehearses it)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run test coverage gpu-check install bench screenshot clean

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

coverage: install
	QT_QPA_PLATFORM=$${QT_QPA_PLATFORM:-offscreen} $(BIN)/python -m pytest --cov=geocam_gui/core \
		--cov-branch --cov-report=term-missing:skip-covered --cov-report=json:coverage.json $(PYTEST_ARGS)

gpu-check: install
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m geocam_gui.gpu_check --json gpu_check.json $(GPU_CHECK_ARGS)

bench: install
	$(BIN)/python benchmarks/run_all.py

screenshot: install
	QT_QPA_PLATFORM=offscreen $(BIN)/geocam-gui --demo --screenshot docs/screenshot.png --size 1280x800

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .coverage coverage.json
