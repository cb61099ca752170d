# Two commands do all the set-up: `make run` starts a homeserver on SQLite, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= data/homeserver.yaml

.PHONY: run test install install-test bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

$(CONFIG): | $(VENV)/.installed
	$(VENV)/bin/uzel generate-config --server-name localhost --config-path $(CONFIG) --data-dir data

run: $(VENV)/.installed $(CONFIG)
	$(VENV)/bin/uzel run --config $(CONFIG)

# PostgreSQL tests run against $$UZEL_TEST_POSTGRES, or a server the test run starts from the
# Debian postgresql binaries in a temporary directory; they are skipped only when neither exists
# (CI sets UZEL_REQUIRE_POSTGRES=1 so that a skip becomes a failure).
test: $(VENV)/.installed-test
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(VENV)/.installed-test
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
