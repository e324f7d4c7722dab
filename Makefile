PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EVERYTHING := .tools/npm/node_modules/@modelcontextprotocol/server-everything

.PHONY: run test test-fast lint bench bench-records clean tools

# uv installs what pip would, in seconds rather than a minute (its wheels in parallel):
# setup is most of a fresh machine's `make test`. pip does it if uv cannot be had.
UV := $(BIN)/python -m uv pip install --quiet

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv || $(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(UV) --python $(BIN)/python -e '.[test]' || $(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m cordon_dev up

# Three workers (pytest-xdist): most tests wait on servers rather than the CPU, so three
# keep two cores busy. Each whole topology's tests stay on one worker, which starts it
# once (tests/conftest.py groups them); the rest is shared out.
test: $(STAMP) tools
	$(BIN)/python -m pytest -q -n 3 --dist loadgroup --durations=15

# The fast lane: everything that needs no real server (in-process gateways, documents,
# policy, dialects, errors), in well under a minute.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not servers" -n 2 --durations=10

# Tools some tests need: headless Chromium (the web page), promtool (alert rules, from
# the prometheus package), libsodium (the sidecar's and the SDK's signatures), checkov
# (Terraform), MCP's reference server-everything (npm, an upstream of the MCP tests).
# Installed where this machine lets us (Debian, as root); otherwise those tests skip and
# say why.
tools:
	@for need in chromium:chromium promtool:prometheus; do \
		command -v $${need%%:*} >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 \
		&& [ "$$(id -u)" = 0 ] && apt-get install -y -q $${need#*:} >/dev/null 2>&1; } || true; \
	done
	@ldconfig -p 2>/dev/null | grep -q libsodium || { command -v apt-get >/dev/null 2>&1 \
		&& [ "$$(id -u)" = 0 ] && apt-get install -y -q libsodium23 >/dev/null 2>&1; } || true
	@# checkov (Terraform checks) in a venv of its own: its pins are not ours.
	@[ -x .tools/checkov/bin/checkov ] || { $(BIN)/python -m uv venv -q .tools/checkov \
		&& $(UV) --python .tools/checkov/bin/python checkov >/dev/null 2>&1; } \
		|| { $(PYTHON) -m venv .tools/checkov \
		&& .tools/checkov/bin/pip install --quiet checkov >/dev/null 2>&1; } || true
	@# The reference MCP server (npm), one of the gateway's upstreams in the tests, pinned.
	@[ -f $(EVERYTHING)/dist/index.js ] || { command -v npm >/dev/null 2>&1 \
		&& npm install --quiet --no-audit --no-fund --prefix .tools/npm \
		@modelcontextprotocol/server-everything@2026.8.31 >/dev/null 2>&1; } || true

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/policy_cost.py
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/overhead.py --tracing  # fails if its sink receives no export
	$(BIN)/python bench/tools.py
	$(BIN)/python bench/propagation.py
	$(BIN)/python bench/aggregator.py
	$(BIN)/python bench/sidecar.py

bench-records: $(STAMP)
	$(BIN)/python bench/records.py

clean:
	rm -rf $(VENV) .cordon .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
