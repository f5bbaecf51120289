# Set-up is part of every target: `make demo` and `make test` work on a fresh clone (`make test`
# also installs the system tools its tests drive, when run as root on Debian: system-deps).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install system-deps demo test test-all lint bench bench-quick screenshot clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The system tools the tests drive for real (LibreOffice, Carlito, pdftoppm, Chromium; the list
# and why: tests/_tools.py). As root with apt-get they are installed; otherwise this says what to
# install and carries on, and each test that needs a missing tool fails with the same command.
system-deps:
	@missing="$$($(PYTHON) tests/_tools.py)" || { echo "$(PYTHON) tests/_tools.py failed"; exit 1; }; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing $$missing (apt-get; log in /tmp/sheetsync-apt.log)"; \
	  { DEBIAN_FRONTEND=noninteractive apt-get update -q \
	    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends $$missing; \
	  } >/tmp/sheetsync-apt.log 2>&1 \
	    || { echo "could not install $$missing:"; tail -20 /tmp/sheetsync-apt.log; exit 1; }; \
	else \
	  echo "the tests need system packages that are missing; install them with:"; \
	  echo "  sudo apt-get install -y --no-install-recommends $$missing"; \
	  echo "(continuing: the tests that need them will fail, naming that command)"; \
	fi

demo: install
	$(PY) -m sheetsync.demo demo-run

test: system-deps install
	$(PY) -m pytest

test-all: system-deps install
	$(PY) -m pytest -m ''

lint: install
	$(PY) -m ruff check sheetsync tests bench
	$(PY) -m mypy sheetsync

bench: install
	$(PY) -m bench

bench-quick: install
	$(PY) -m bench --quick

# docs/workbook.png: the pushed workbook as LibreOffice Calc shows it at 100% (soffice, pdftoppm);
# docs/report.png: the first screen of `sheetsync report` in headless Chromium.
screenshot: system-deps install
	$(PY) docs/screenshot.py

clean:
	rm -rf $(VENV) demo-run bench-out .pytest_cache
