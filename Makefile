# Two commands: `make run` and `make test`. Each installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
CONFIG ?= conf/config.yaml
PORT ?= 4000

.PHONY: install run test lint bench clean

install: $(INSTALLED)

# Re-install only when the declared dependencies change.
$(INSTALLED): setup.cfg setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,lint]'
	touch $@

run: install
	$(VENV)/bin/dheera_ai --config $(CONFIG) --port $(PORT)

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check --line-length 120 --select E,F,W,I,B,UP --ignore UP037 dheera_ai plugins proxy_app tests wsgi.py

bench: install
	bash ../shared/bench/run.sh $(if $(ANCHOR),--anchor $(ANCHOR)) .

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info
