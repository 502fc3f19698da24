#!/usr/bin/env bash
# Issue 31's checks on an Intel Xeon with AMX visible, in one go, into one folder: the machine's flags, both
# stacks' benchmark at seq 384 batch 1 and 8 (the summary's `auto` and best-int8-against-best-bf16 lines), the
# AMX-only tests on both stacks, and `make qa STACK=modern`. About 1.5-2 h on 2 vCPUs; run it in the background:
#
#   nohup bash scripts/amx_checks.sh > /tmp/amx_checks.log 2>&1 &
#
# Then `bash .ci/run` from a fresh clone (not beside this: both need the two cores). docs/benchmarks.md takes the
# tables from <folder>/bench-*/bench.md with machine.txt's flags, the commands in commands.txt and the date.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "$(grep -c amx_tile /proc/cpuinfo)" = 0 ]; then
    echo "this CPU shows no AMX (grep -c amx_tile /proc/cpuinfo = 0): these checks need an Intel Xeon with AMX" >&2
    exit 2
fi
OUT=${1:-results/amx-checks-$(date -u +%Y%m%dT%H%MZ)}
mkdir -p "$OUT"
REPEATS=${REPEATS:-6}
LEGACY_PATHS='eager,jit,ipex+jit oneDNN,ipex+jit MKL,compile,auto,ipex+jit:bf16,ipex+jit:bf16 (eager attention),compile:bf16,auto:bf16,ipex+jit:bf32,compile:bf32,ipex+jit:int8,ipex+jit:int8 (eager attention),compile:int8,auto:int8,openvino,openvino:bf16,openvino:int8'
MODERN_PATHS='eager,jit,compile,export,auto,compile:bf16,export:bf16,auto:bf16,compile:bf32,compile:int8,export:int8,auto:int8,openvino,openvino:bf16,openvino:int8'
BENCH="-m cpu_inference_helpers.bench --shapes 384x1,384x8 --repeats $REPEATS --no_profile"

{
    date -u
    echo "commit $(git rev-parse HEAD) $(git status --porcelain | wc -l) changed files"
    uptime
    lscpu
    echo "amx_tile lines in /proc/cpuinfo: $(grep -c amx_tile /proc/cpuinfo)"
} > "$OUT/machine.txt"

run() {  # name, then the command: its output to $OUT/name.log, the command to commands.txt
    local name=$1
    shift
    echo "$(date -u +%H:%M:%S) $name: $*" | tee -a "$OUT/commands.txt"
    "$@" > "$OUT/$name.log" 2>&1
    echo "  exit $? at $(date -u +%H:%M:%S)" | tee -a "$OUT/commands.txt"
}

make --no-print-directory -j2 venv-legacy venv-modern
run bench-legacy .venv/bin/python $BENCH --paths "$LEGACY_PATHS" --output_dir "$OUT/bench-legacy"
run bench-modern .venv-modern/bin/python $BENCH --paths "$MODERN_PATHS" --output_dir "$OUT/bench-modern"
AMX_TESTS="tests/test_bf32.py tests/test_capabilities.py tests/test_auto.py tests/test_optimize.py"
run amx-tests-legacy .venv/bin/python -m pytest -q -rs $AMX_TESTS
run amx-tests-modern .venv-modern/bin/python -m pytest -q -rs -m 'not stack_independent' $AMX_TESTS
run qa-modern make --no-print-directory qa STACK=modern QA_OUTPUT="$OUT/qa-modern"

# The verdicts issue 31 asks for, from the benchmark's own summaries
for stack in legacy modern; do
    echo "== $stack"
    grep -E "^seq [0-9]+, batch|^  (auto|best int8)|UNSTEADY|moved apart" "$OUT/bench-$stack.log" || echo "(no summary: see bench-$stack.log)"
done | tee "$OUT/verdicts.txt"
tail -n 3 "$OUT"/amx-tests-*.log "$OUT/qa-modern.log"
echo "all in $OUT"
