# Two entry points (see README): `make run` starts the app, `make test` runs every test.
# Both create .venv and install what they need first; reinstalling happens only when the
# requirement files change.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8501

.PHONY: run test lint chromium compose-cli bench-ingest bench-index clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(BIN)/streamlit run app/main.py --server.port $(PORT)

# Browser tests drive Debian's Chromium (Playwright cannot download its own browsers here).
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: install Debian's chromium package to run the browser tests"; fi; }

# The deployment tests also ask a real Compose implementation to read docker-compose.yml (no engine
# needed): Docker's plugin if present, else Debian's docker-compose.
compose-cli:
	@docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; \
	  else echo "note: install docker compose (or Debian's docker-compose) to run the compose test"; fi; }

test: $(VENV)/.installed-dev chromium compose-cli
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench-ingest: $(VENV)/.installed
	$(BIN)/python -m bench.ingest ../shared/datasets/imagenet-sample/images

bench-index: $(VENV)/.installed
	$(BIN)/python -m bench.index

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
