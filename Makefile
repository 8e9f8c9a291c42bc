# Two entry points for a fresh machine with Python 3.11: `make run`, `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: install run test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP) $(NODE_STAMP)

run: install
	$(BIN)/gunicorn -c gunicorn.conf.py

test: install install-nginx chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

# tests/test_deploy.py runs the real nginx (Debian's package): installed here
# when missing and we are root, otherwise required.
.PHONY: install-nginx
install-nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx; \
	  else \
	    echo "the tests need nginx: sudo apt-get install nginx" >&2; exit 1; \
	  fi; }

lint: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Soak: 100 clients for 10 minutes against the real server, then a check for leftovers
# (docs/reliability.md); SOAK_ARGS="--minutes 1" for a short run.
.PHONY: soak
soak: install
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV)

# The web console's front-end packages (package.json, package-lock.json), served from node_modules/.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

# The browser for tests/test_console.py: Debian's chromium, driven by Playwright (never `playwright install`).
.PHONY: chromium
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	  else \
	    echo "the console tests need chromium: sudo apt-get install chromium" >&2; exit 1; \
	  fi; }

# Benchmarks side by side with websocketd (docs/benchmarks.md); BENCH_ARGS=--quick for a short run.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

.PHONY: bench
bench: $(BENCH_STAMP)
	@command -v websocketd >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get install -y websocketd || { apt-get update && apt-get install -y websocketd; } || true; \
	  else \
	    echo "websocketd is missing: apt-get install websocketd (the suite runs without that column)"; \
	  fi; }
	ulimit -n "$$(ulimit -Hn)" 2>/dev/null; $(BIN)/python -m bench $(BENCH_ARGS)
