#!/usr/bin/env bash
# The whole check: set-up, lint, format, types, then every test including the slow ones on SmolLM2.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# Chromium renders the HTML report in its test; Debian package, root on these machines.
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/python -m pytest --runslow -q "$@"
