# Set-up and everyday commands. Everything runs in .venv, made with python3.
# Without make: `pip install .` (or `pipx install .`) gives the same nginxws
# (README.md, docs/deploy.md).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The installed package is rebuilt when one of these is newer than it (the
# directories too: a file added or removed changes its directory).
PACKAGE_FILES := pyproject.toml grammar $(wildcard grammar/*) nginxws nginxws/conf \
	$(wildcard nginxws/*.py nginxws/conf/*.py)
# A pyproject.toml list of requirements, one a line: `$(REQUIREMENTS) dependencies`
# (what the server needs) or `$(REQUIREMENTS) test` (the test extra).
REQUIREMENTS := $(BIN)/python -c 'import sys, tomllib; \
	project = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	name = sys.argv[1]; \
	print("\n".join(project[name] if name == "dependencies" else project["optional-dependencies"][name]))'

.PHONY: run test test-python install autobahn system-tools redis conformance

## Start nginxws on sample.conf in the foreground (Ctrl-C stops it), with this
## directory as its prefix: the pid file is ./nginxws.pid, and
## `.venv/bin/nginxws -p $PWD -c sample.conf -s reload` signals it from here.
run: $(VENV)/.installed
	$(BIN)/nginxws -p $(CURDIR)/ -c sample.conf

## Run the whole test suite against the installed package (not the source tree:
## python -P keeps the current directory off sys.path), then Autobahn|Testsuite.
## It installs missing Debian packages with apt-get and needs a CPython 2.7
## (docs/testing.md); `make test-python` needs neither.
test: $(VENV)/.test-deps $(VENV)/.installed
	@echo "make test: apt-get installs the Debian packages the browser, client and contrib tests need, if missing;"
	@echo "make test: Autobahn|Testsuite needs CPython 2.7 (pyenv 2.7.18, or NGINXWS_PYTHON27). Without either: make test-python"
	$(MAKE) --no-print-directory system-tools redis autobahn
	NGINXWS_TEST_INSTALLED=1 $(BIN)/python -P -m pytest
	$(MAKE) --no-print-directory conformance

## The Python tests alone, against the installed package: no apt-get, no
## Python 2.7. The tests marked `apt` (Chromium, curl, systemd-analyze,
## logrotate, nginx + nchan, redis-server) are deselected; everything else runs.
test-python: $(VENV)/.test-deps $(VENV)/.installed
	NGINXWS_TEST_INSTALLED=1 $(BIN)/python -P -m pytest -m "not apt"

## Autobahn|Testsuite (every case) against nginxws (master + 2 workers) and
## trio-websocket's own echo server, side by side; fails on any FAILED case.
## Then every case once more over wss:// (listen ... ssl, a self-signed
## certificate; about 25 s).
## Then the compression cases (12.*, 13.*) against a location with deflate=on,
## where UNIMPLEMENTED fails too: by default every group at message sizes up to
## 32 KiB (cases *.*.1-8 and 11-13, about 2 minutes);
## AUTOBAHN_DEFLATE=full runs all 216 (about 11 minutes on 2 cores).
AUTOBAHN_DEFLATE ?= quick
DEFLATE_CASES_quick := --cases '12.*' --cases '13.*' \
	$(foreach n,9 10 14 15 16 17 18,--exclude '12.*.$(n)' --exclude '13.*.$(n)')
DEFLATE_CASES_full := --cases '12.*' --cases '13.*'
ECHO_SERVER := $(abspath $(BIN))/python -P $(abspath tests/conformance/nginxws_echo.py) --port {port} --workers 2
conformance: $(VENV)/.installed autobahn
	$(BIN)/python -P tests/conformance/run_autobahn.py --reference \
		--server-cmd 'nginxws=$(ECHO_SERVER)'
	$(BIN)/python -P tests/conformance/run_autobahn.py \
		--server-cmd 'nginxws-wss=$(ECHO_SERVER) --tls' --server-url 'nginxws-wss=wss://127.0.0.1:{port}/echo'
	$(BIN)/python -P tests/conformance/run_autobahn.py --timeout 1200 --require-implemented \
		$(DEFLATE_CASES_$(AUTOBAHN_DEFLATE)) --server-cmd 'nginxws-deflate=$(ECHO_SERVER) --deflate'

## What the tests marked `apt` drive besides Python: Debian's chromium and curl,
## Playwright and httpie (tests/browser/install.sh); systemd-analyze and
## logrotate (tests/contrib/install.sh). Only what is missing; quiet.
system-tools: $(VENV)/.test-deps
	bash tests/browser/install.sh $(BIN)/python
	bash tests/contrib/install.sh

## What the Redis tests drive (channels across hosts): Debian's redis-server
## and redis-cli, and ip for the three-host test's network namespaces.
redis:
	bash tests/redis/install.sh

## Autobahn|Testsuite runs under Python 2.7; installed once into ~/.cache.
autobahn:
	bash tests/conformance/install-autobahn.sh >/dev/null

## The project, non-editable, rebuilt from the current tree when it changed,
## and the test tools (what the tests and bench/'s floors and memory use).
install: $(VENV)/.test-deps $(VENV)/.installed

$(VENV)/.installed: $(VENV)/.deps $(PACKAGE_FILES)
	$(BIN)/pip install --quiet --no-deps --force-reinstall .
	touch $@

## What the server needs (pyproject.toml's dependencies), again when it changes.
$(VENV)/.deps: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(REQUIREMENTS) dependencies | $(BIN)/pip install --quiet -r /dev/stdin
	touch $@

## The test tools (the test extra), for make test and make test-python only.
$(VENV)/.test-deps: $(VENV)/.deps
	( $(REQUIREMENTS) test; $(REQUIREMENTS) redis ) | $(BIN)/pip install --quiet -r /dev/stdin
	touch $@
