#!/usr/bin/env bash
# One-call GPU check of transformers-fish-s2: environment, the CUDA-only tests, generation speed (eager vs compiled
# + CUDA graphs), the serving engine, bitsandbytes quantization. Written for a lent H200 that gets one bash command
# of at most 600 s and no network (docs/gpu-check.md says how to call it); every stage has its own `timeout`, all
# stages share one budget, and everything is tee'd into $OUT/gpu_check.log and summed up in $OUT/gpu_check.md
# (rewritten after each stage, so a killed run still leaves a well-formed report).
#
#   bash benchmarks/gpu_check.sh                                              # on the GPU machine
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_CONFIG=tiny OUT=/tmp/gc bash benchmarks/gpu_check.sh   # CPU dry run (plumbing)
#
# Knobs (environment): GPU_CHECK_DEVICE (cuda), GPU_CHECK_CONFIG (full | small | tiny), GPU_CHECK_BUDGET (seconds
# for all stages, 470), GPU_CHECK_STAGES (env tests generate engine quant), GPU_CHECK_TESTS (pytest node ids),
# GPU_CHECK_FRAMES (frames per generate row), GPU_CHECK_ENGINE_FRAMES, GPU_CHECK_CONCURRENCY ("1 8 32"),
# GPU_CHECK_QUANT_LAYERS (slow-AR layers of the quantization checkpoint; empty: all 36),
# GPU_CHECK_COMPILE_BACKEND (inductor; aot_eager skips code generation in dry runs), PYTHON (python3),
# GPU_CHECK_WHEELS (the folder of wheels to install first, .whl). Exit status: 0 if every stage that ran passed.
set -u
set -a  # the stages run as `bash -c FUNCTION` under `timeout`: they see every variable set below
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
CONFIG=${GPU_CHECK_CONFIG:-full}
BUDGET=${GPU_CHECK_BUDGET:-470}
STAGES=${GPU_CHECK_STAGES:-env tests generate engine quant}
WHEELS=${GPU_CHECK_WHEELS:-.whl}
BACKEND=${GPU_CHECK_COMPILE_BACKEND:-inductor}
OUT=${OUT:-$ROOT/out/gpu_check}
mkdir -p "$OUT"
MD=$OUT/gpu_check.md
LOG=$OUT/gpu_check.log
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)  # per-stage scratch; $OUT keeps two files
: >"$LOG"
START=$(date +%s)
DEADLINE=$((START + BUDGET))

if [ "$CONFIG" = full ]; then
    FRAMES=${GPU_CHECK_FRAMES:-64} ENGINE_FRAMES=${GPU_CHECK_ENGINE_FRAMES:-32}
    CONCURRENCY=${GPU_CHECK_CONCURRENCY:-1 8 32} MAX_CONTEXT=1024 SEQ_MAX=8 TTFA_CODEC=full BATCH="1 8"
    QUANT_CONFIG=full ENGINE_EXTRA=
else
    FRAMES=${GPU_CHECK_FRAMES:-8} ENGINE_FRAMES=${GPU_CHECK_ENGINE_FRAMES:-8}
    CONCURRENCY=${GPU_CHECK_CONCURRENCY:-1 4} MAX_CONTEXT=512 SEQ_MAX=1 TTFA_CODEC=tiny BATCH="1 2"
    QUANT_CONFIG=tiny ENGINE_EXTRA=--skip-codec  # the full-size codec decode alone takes ~45 s on 2 CPU cores
fi
if [ "$DEVICE" = cuda ]; then
    DEFAULT_TESTS="tests/test_pipeline.py::test_device_cuda_runs_model_and_codec_there tests/test_quantization.py tests/test_memory.py"
else  # the dry run: the CUDA test (skips here) and one quick bitsandbytes module
    DEFAULT_TESTS="tests/test_pipeline.py::test_device_cuda_runs_model_and_codec_there tests/test_memory.py"
fi
TESTS=${GPU_CHECK_TESTS:-$DEFAULT_TESTS}

log() { echo "$*" | tee -a "$LOG"; }
show() { echo "\$ $*"; "$@"; }  # a stage's command line goes into its output (and so the report) before it runs

# --- wheels (before any stage: transformers 5.24, soundfile, soxr, bitsandbytes; see benchmarks/gpu_wheels.txt) ---
WHEEL_NOTE="none installed (no $WHEELS/*.whl)"
export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    if "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
        log "installing $(ls "$WHEELS"/*.whl | wc -l) wheels into /tmp/site"
        if timeout 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site "$WHEELS"/*.whl 2>&1 | tee -a "$LOG"; then
            export PYTHONPATH=$ROOT/src:/tmp/site
            WHEEL_NOTE="installed into /tmp/site: $(cd "$WHEELS" && ls *.whl | tr '\n' ' ')"
        else
            WHEEL_NOTE="pip install of $WHEELS/*.whl FAILED (see the log); running on the machine's packages"
        fi
    else
        WHEEL_NOTE="skipped: the wheels are for CPython 3.12, this is $("$PY" -c 'import platform; print(platform.python_version())')"
    fi
fi
log "wheels: $WHEEL_NOTE"
log "PYTHONPATH=$PYTHONPATH"

SUMMARY=$WORK/summary.md
SECTIONS=$WORK/sections.md
: >"$SUMMARY"
: >"$SECTIONS"
FAILED=0

write_report() {
    {
        echo "# GPU check"
        echo
        echo "- started: $(date -u -d "@$START" '+%Y-%m-%d %H:%M:%S UTC'), $(($(date +%s) - START)) s so far, budget ${BUDGET} s"
        echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'unknown (no .git)')"
        echo "- device \`$DEVICE\`, config \`$CONFIG\`, python \`$PY\`, compile backend \`$BACKEND\`"
        echo "- wheels: $WHEEL_NOTE"
        echo
        echo "| stage | status | seconds | timeout s |"
        echo "|---|---|---:|---:|"
        cat "$SUMMARY"
        echo
        cat "$SECTIONS"
    } >"$MD"
}

# stage ID TITLE CAP_SECONDS FUNCTION: runs under min(CAP, what is left of the budget), output tee'd to the log;
# the report gets the output's Markdown tables as they are and the rest (deduplicated lines, last 60) in a text fence.
stage() {
    local id=$1 title=$2 cap=$3
    shift 3
    case " $STAGES " in *" $id "*) ;; *) return 0 ;; esac
    local left=$((DEADLINE - $(date +%s)))
    local limit=$((cap < left ? cap : left))
    if [ "$limit" -lt 15 ]; then
        echo "| $title | skipped: budget spent | 0 | - |" >>"$SUMMARY"
        log "## $title: skipped (budget spent)"
        write_report
        return 0
    fi
    STAGE_LIMIT=$limit
    log ""
    log "## $title (timeout ${limit} s): $*"
    local raw=$WORK/$id.txt began status rc
    began=$(date +%s)
    timeout -k 10 "$limit" bash -c "$*" 2>&1 | tee -a "$LOG" >"$raw"
    rc=${PIPESTATUS[0]}
    local took=$(($(date +%s) - began))
    case $rc in
        0) status=ok ;;
        124 | 137) status="**TIMED OUT** (rc $rc)" FAILED=1 ;;
        3) status="**SKIPPED** (a package is missing, see below)" ;;
        *) status="**FAILED** (rc $rc)" FAILED=1 ;;
    esac
    log "## $title: $status in ${took} s"
    echo "| $title | $status | $took | $limit |" >>"$SUMMARY"
    {
        echo "## $title"
        echo
        echo "$status in ${took} s (timeout ${limit} s). Command: \`$*\`"
        echo
        awk '/^\|/ {print; intable=1; next} intable {print ""; intable=0} END {if (intable) print ""}' "$raw"
        echo '```text'
        grep -v '^|' "$raw" | sed 's/```/`` `/g' | uniq | tail -n 60
        echo '```'
        echo
    } >>"$SECTIONS"
    write_report
}

env_check() {
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm,clocks.mem,temperature.gpu \
            --format=csv || true
    else
        echo "nvidia-smi: not found"
    fi
    df -h /tmp /dev/shm 2>/dev/null | sed 's/^/df: /'
    show "$PY" benchmarks/gpu_check_env.py --device "$DEVICE"
}
run_tests() {
    # shellcheck disable=SC2086
    show "$PY" -m pytest -q -p no:cacheprovider -rfEs --durations=5 $TESTS
}
run_generate() {
    local limit=$STAGE_LIMIT
    # shellcheck disable=SC2086
    show "$PY" benchmarks/bench_generate.py --configs "$CONFIG" --device "$DEVICE" --dtype bfloat16 \
        --modes eager compiled --batch $BATCH --frames "$FRAMES" --ttfa-codec "$TTFA_CODEC" \
        --compile-backend "$BACKEND" --time-limit $((limit * 55 / 100))
}
run_engine() {
    local limit=$STAGE_LIMIT
    # shellcheck disable=SC2086
    show "$PY" benchmarks/bench_engine.py --config "$CONFIG" --device "$DEVICE" --dtype bfloat16 \
        --concurrency $CONCURRENCY --arrivals burst --frames "$ENGINE_FRAMES" --max-context "$MAX_CONTEXT" \
        --sequential-max "$SEQ_MAX" --time-limit $((limit * 55 / 100)) $ENGINE_EXTRA
}
run_quant() {
    local limit=$STAGE_LIMIT layers=()
    [ -n "${GPU_CHECK_QUANT_LAYERS:-}" ] && layers=(--layers "$GPU_CHECK_QUANT_LAYERS")
    "$PY" -c 'import bitsandbytes' 2>/dev/null || {
        echo "bitsandbytes is not importable: carry its wheel (benchmarks/fetch_gpu_wheels.sh); stage skipped"
        return 3
    }
    show "$PY" benchmarks/gpu_quantization_check.py --schemes bnb-4bit bnb-8bit --config "$QUANT_CONFIG" \
        --device "$DEVICE" --frames 20 "${layers[@]}" --time-limit $((limit * 60 / 100))
}

export -f show env_check run_tests run_generate run_engine run_quant
write_report
stage env "(a) environment" 60 env_check
stage tests "(b) CUDA-only tests" 90 run_tests
stage generate "(c) bench_generate: eager vs compiled" 180 run_generate
stage engine "(d) bench_engine: burst" 100 run_engine
stage quant "(e) bitsandbytes 4/8-bit" 120 run_quant
log ""
log "total $(($(date +%s) - START)) s; report: $MD"
write_report
if [ -z "${GPU_CHECK_KEEP_WORK:-}" ]; then rm -rf "$WORK"; fi
exit $FAILED
