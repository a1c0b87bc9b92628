# Set-up and everyday commands. Everything runs in .venv, made with python3.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test install autobahn clients conformance

## Start nginxws on sample.conf in the foreground (Ctrl-C stops it).
run: install
	$(BIN)/nginxws -c sample.conf

## Run the whole test suite against the installed package (not the source tree:
## python -P keeps the current directory off sys.path), then Autobahn|Testsuite.
test: install autobahn clients
	NGINXWS_TEST_INSTALLED=1 $(BIN)/python -P -m pytest
	$(MAKE) --no-print-directory conformance

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
conformance: install autobahn
	$(BIN)/python -P tests/conformance/run_autobahn.py --reference \
		--server-cmd 'nginxws=$(ECHO_SERVER)'
	$(BIN)/python -P tests/conformance/run_autobahn.py \
		--server-cmd 'nginxws-wss=$(ECHO_SERVER) --tls' --server-url 'nginxws-wss=wss://127.0.0.1:{port}/echo'
	$(BIN)/python -P tests/conformance/run_autobahn.py --timeout 1200 --require-implemented \
		$(DEFLATE_CASES_$(AUTOBAHN_DEFLATE)) --server-cmd 'nginxws-deflate=$(ECHO_SERVER) --deflate'

## What the browser and real-client tests drive: Debian's chromium and curl,
## Playwright and httpie (only what is missing; quiet).
clients: $(VENV)/.deps
	bash tests/browser/install.sh $(BIN)/python

## Autobahn|Testsuite runs under Python 2.7; installed once into ~/.cache.
autobahn:
	bash tests/conformance/install-autobahn.sh >/dev/null

## The project itself, non-editable, rebuilt from the current tree every time.
install: $(VENV)/.deps
	$(BIN)/pip install --quiet --no-deps --force-reinstall .

## The dependencies and test tools, again whenever pyproject.toml changes.
$(VENV)/.deps: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet ".[test]"
	touch $@
