# Set-up is part of every target: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install demo test test-all lint bench bench-quick screenshot clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: install
	$(PY) -m sheetsync.demo demo-run

test: install
	$(PY) -m pytest

test-all: install
	$(PY) -m pytest -m ''

lint: install
	$(PY) -m ruff check sheetsync tests bench
	$(PY) -m mypy sheetsync

bench: install
	$(PY) -m bench

bench-quick: install
	$(PY) -m bench --quick

# docs/workbook.png: the pushed workbook as LibreOffice Calc shows it at 100% (needs soffice).
screenshot: install
	$(PY) docs/screenshot.py

clean:
	rm -rf $(VENV) demo-run bench-out .pytest_cache
