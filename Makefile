# The two commands of the README: `make run` and `make test`. Both do their own set-up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test bench lint clean

run: $(VENV)/.installed-run
	$(PY) -m scripts.run

test: $(VENV)/.installed-dev
	$(PY) -m scripts.test $(ARGS)

bench: $(VENV)/.installed-dev
	$(PY) -m bench.run $(ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .

$(VENV)/bin/python:
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); \
	  else echo "Python's venv module is missing: sudo apt-get install python3-venv"; exit 2; fi; }
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip

$(VENV)/.installed-run: requirements.txt $(VENV)/bin/python
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/bin/python
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(VENV)/.installed-run

clean:
	-$(PY) -m scripts.localdb stop --dir var/postgres
	rm -rf $(VENV) var/test-postgres
