# The README's commands call these targets. `make test` and `make demo` install first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install system-deps demo test bench lint format clean

install: system-deps $(STAMP)

# docker-registry and skopeo are what the tests and the demo run against (never runtime
# dependencies of ocync itself). As root on Debian they are installed when missing.
system-deps:
	@if ! command -v docker-registry >/dev/null 2>&1 || ! command -v skopeo >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing docker-registry and skopeo with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry skopeo; \
	  else \
	    echo "docker-registry and skopeo are needed: sudo apt-get install docker-registry skopeo" >&2; \
	    exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: install
	$(PY) -m ocync_conformance.demo

test: install
	$(PY) -m pytest

# ocync against skopeo on the small corpus (generated once, cached in ~/.cache/ocync-bench);
# `$(PY) -m bench --preset medium --repeat 3` writes the numbers in bench/results/latest.md.
bench: install
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m bench --preset small --repeat 1 --no-latest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
