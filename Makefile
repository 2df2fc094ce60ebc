# Two commands for a new user: `make demo` and `make test`. Each creates .venv and installs
# what it needs from the package index (uv if it can be had, else pip); docs/install.md says what.
# `make demo-quick`: the demo on a 96-utterance corpus with quick steps (a check, not a result).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# On the project's machines pip is configured with a local folder holding the CPU torch wheel;
# uv does not read pip's config, so hand it the same folder (empty elsewhere: no effect).
FIND_LINKS := $(or $(PIP_FIND_LINKS),$(shell $(PY) -m pip config get global.find-links 2>/dev/null))
UV_FLAGS := $(if $(FIND_LINKS),--find-links $(FIND_LINKS))

.PHONY: install demo demo-quick test test-all figures benchmarks clean

# --compile-bytecode: where PYTHONDONTWRITEBYTECODE=1 is set (it is on the project's machines),
# Python never caches bytecode, and every process would recompile torch, transformers and Ray
# from source (seconds of CPU per import); compiled once at install, every import reads the .pyc.
$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade uv || true
	if [ -x $(BIN)/uv ]; then \
	  $(BIN)/uv pip install --compile-bytecode --python $(BIN)/python $(UV_FLAGS) -e ".[all]"; \
	else \
	  $(BIN)/python -m pip install -e ".[all]"; \
	fi
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/probe demo

demo-quick: $(BIN)/.installed
	$(BIN)/probe demo --quick

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

test-all: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --run-slow

figures: $(BIN)/.installed
	$(BIN)/probe figures build
	$(BIN)/probe figures --all

benchmarks: $(BIN)/.installed
	for f in benchmarks/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) runs .cache
