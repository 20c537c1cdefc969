# Two commands: `make run` and `make test`. Each installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
CONFIG ?= conf/config.yaml
PORT ?= 4000

.PHONY: install run test lint bench bench-soak bench-scale bench-instructions clean

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

# Side by side with the bare relay in one run; ANCHOR=<venv with litellm[proxy]> adds LiteLLM,
# VARIANTS=a,b the gateway with tests/bench/variants/a.yaml (a feature on), BENCH_SECONDS the length.
bench: install
	bash tests/bench/run.sh $(if $(ANCHOR),--anchor $(ANCHOR)) $(if $(VARIANTS),--variants $(VARIANTS)) --seconds $(or $(BENCH_SECONDS),10) .

# Memory under a long run: RSS after 20,000 calls and at each tenth of SOAK_CALLS (default 1,000,000,
# about 25 minutes here); flat means the last within 10 % of the first.
bench-soak: install
	bash tests/bench/run.sh --soak $(or $(SOAK_CALLS),1000000) .

# Scaling checks: 1 vs 1,000 deployments, 10 vs 1,000,000 keys, what features cost, 1,000 slow streams.
# SCALE_ARGS passes options, e.g. SCALE_ARGS='--only streams --rounds 1'.
bench-scale: install
	$(PY) -m tests.bench.scale $(SCALE_ARGS)

# Instructions per call under valgrind's callgrind (installed from Debian's packages when missing):
# steady where req/s is not. INSTRUCTIONS_ARGS passes options, e.g. '--against ../other-checkout'.
bench-instructions: install
	command -v valgrind >/dev/null || { apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null 2>&1; }
	$(PY) -m tests.bench.instructions $(INSTRUCTIONS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info
