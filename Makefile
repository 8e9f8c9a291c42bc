# Two entry points for a fresh machine with Python 3.11: `make run`, `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
JS_CLIENT_STAMP := clients/js/node_modules/.installed

.PHONY: install run test lint clean

# Two distributions, both editable: the clients, the CLI and the pytest plugin (clients/python,
# procwire-client; its pyproject.toml declares the plugin's pytest11 entry point, so a change there
# reinstalls it) and the server (procwire, which depends on it).
$(STAMP): pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e clients/python -e '.[test]'
	touch $(STAMP)

install: $(STAMP) $(NODE_STAMP) $(JS_CLIENT_STAMP)

# A development server on BIND (127.0.0.1:9999; PROCWIRE_BIND=... to move it).
# It prints, last, a one-time console link and the CLI's two export lines;
# its token is kept in ~/.local/state/procwire (docs/deploy.md, "make run").
# NEW_TOKEN=1 replaces that token first.
run: install
	$(if $(NEW_TOKEN),$(BIN)/procwire-token --new-dev-token)
	$(BIN)/gunicorn -c gunicorn.conf.py

# The client's wheel, alone (what a user of the clients or the CLI installs): dist/procwire_client-*.whl.
# tests/test_client_wheel.py builds its own from the same sources and installs it in a clean venv.
# An old clients/python/build/ would put deleted modules back in the wheel: removed first.
.PHONY: client-wheel
client-wheel: $(STAMP)
	rm -rf dist/procwire_client-*.whl clients/python/build
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist clients/python

test: install client-wheel install-nginx install-redis install-websocketd chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
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

# tests/test_programs_websocketd.py runs the same programs under websocketd (the
# program endpoints' model, issue 14) and compares: Debian's package, installed
# here when missing and we are root, otherwise required.  `make bench` uses it too.
.PHONY: install-websocketd
install-websocketd:
	@command -v websocketd >/dev/null 2>&1 || [ -x /usr/bin/websocketd ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends websocketd; \
	  else \
	    echo "the websocketd comparison tests need websocketd: sudo apt-get install websocketd" >&2; exit 1; \
	  fi; }

# The cluster tests (tests/redis_server.py) start their own redis-server on
# free loopback ports: Debian's package, installed here when missing and we are
# root, otherwise required.  Where the package's own service started on
# install (systemd; a container's policy-rc.d forbids it), it is stopped and
# disabled: nothing of ours listens on 6379.
.PHONY: install-redis
install-redis:
	@command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
	    && $(MAKE) --no-print-directory stop-packaged-redis; \
	  else \
	    echo "the cluster tests need redis-server: sudo apt-get install redis-server" >&2; exit 1; \
	  fi; }

# The packaged service, only if it actually runs: systemd's unit, or the init
# script's pid file (policy-rc.d may refuse invoke-rc.d, so the script is run directly).
.PHONY: stop-packaged-redis
stop-packaged-redis:
	@if [ -d /run/systemd/system ] && systemctl is-active --quiet redis-server; then \
	  echo "stopping and disabling the packaged redis-server service"; \
	  systemctl disable --now redis-server; \
	elif [ -s /run/redis/redis-server.pid ] && kill -0 "$$(cat /run/redis/redis-server.pid)" 2>/dev/null; then \
	  echo "stopping and disabling the packaged redis-server service"; \
	  /etc/init.d/redis-server stop; \
	  update-rc.d redis-server disable >/dev/null 2>&1 || true; \
	fi

lint: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Soak: 100 clients for 10 minutes against the real server, then a check for leftovers
# (docs/reliability.md); SOAK_ARGS="--minutes 1" for a short run.
.PHONY: soak
soak: install
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) dist

# The web console's front-end packages (package.json, package-lock.json), served from node_modules/.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

# The JavaScript client's dev dependencies (ws, for its Node tests; tests/test_js_client.py runs them).
$(JS_CLIENT_STAMP): clients/js/package.json clients/js/package-lock.json
	cd clients/js && npm ci --no-audit --no-fund
	touch $(JS_CLIENT_STAMP)

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
