# Set-up and everyday commands. Everything runs in .venv, made with python3.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test install

## Start nginxws on sample.conf in the foreground (Ctrl-C stops it).
run: install
	$(BIN)/nginxws -c sample.conf

## Run the whole test suite against the installed package (not the source tree:
## python -P keeps the current directory off sys.path).
test: install
	NGINXWS_TEST_INSTALLED=1 $(BIN)/python -P -m pytest

## The project itself, non-editable, rebuilt from the current tree every time.
install: $(VENV)/.deps
	$(BIN)/pip install --quiet --no-deps --force-reinstall .

## The dependencies and test tools, again whenever pyproject.toml changes.
$(VENV)/.deps: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet ".[test]"
	touch $@
