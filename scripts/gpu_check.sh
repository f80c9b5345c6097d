#!/usr/bin/env bash
# GPU check: set up Theano's GPU stack, then train the book's first conv net
# (experiments/chap6ex1/exec_with.py) for 2 epochs on the GPU and on the CPU, and report
# the epoch times, the accuracies and the devices the run logs recorded.
#
# Usage: scripts/gpu_check.sh [--out FILE] [--epochs N] [--offline DIR] [--cuda-lib DIR]...
#   --out FILE      also write everything to FILE (default results/gpu/gpu_check.txt)
#   --epochs N      epochs per run (default 2)
#   --offline DIR, --cuda-lib DIR   passed to scripts/gpu_setup.sh
# Environment: PYTHON (default .venv/bin/python). Needs data/mnist.pkl.gz (or NETWORK3_DATA).
# Ends within 8 minutes. Exit status: 0 both runs finished; 1 no usable GPU (nothing was
# trained); 2 set-up failed, data missing, or a run failed or ran out of time.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

OUT=results/gpu/gpu_check.txt EPOCHS=2 SETUP_ARGS=()
while [ $# -gt 0 ]; do
    case $1 in
        --out) OUT=${2:?--out needs a file}; shift 2 ;;
        --epochs) EPOCHS=${2:?--epochs needs a number}; shift 2 ;;
        --offline|--cuda-lib) SETUP_ARGS+=("$1" "${2:?$1 needs a directory}"); shift 2 ;;
        -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
PY=${PYTHON:-.venv/bin/python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
DEADLINE=$((SECONDS + 465))  # 8 minutes, less a margin for the report

budget() {  # CAP: seconds the next step may take, never past the deadline
    local left=$((DEADLINE - SECONDS))
    echo $((left < $1 ? left : $1))
}

train() {  # DEVICE CAP
    local seconds
    seconds=$(budget "$2")
    echo "== exec_with.py, $EPOCHS epochs, --device $1 (at most ${seconds} s)"
    if [ "$seconds" -lt 30 ]; then
        echo "skipped: out of time"
        return 2
    fi
    timeout "$seconds" "$PY" experiments/chap6ex1/exec_with.py --runs 1 --jobs 1 --quiet \
        --epochs "$EPOCHS" --device "$1" --out "$WORK/$1"
    case $? in
        0) ;;
        124) echo "stopped after ${seconds} s: out of time (epochs logged so far are below)"
             return 2 ;;
        *) echo "the run on $1 failed (above)"; return 2 ;;
    esac
}

report() {  # the run logs' headers and epochs, and the speed ratio
    "$PY" - "$WORK" <<'EOF'
import json, os, sys
rows, train = [], {}
for device in ("cuda", "cpu"):
    path = os.path.join(sys.argv[1], device, "run-1", "log.jsonl")
    if not os.path.exists(path):
        print("%s: no run log" % device)
        continue
    with open(path) as f:
        records = [json.loads(line) for line in f]
    theano = records[0]["theano"]
    print("%s run: Theano device %s%s; floatX %s; THEANO_FLAGS %s" % (
        device, theano["device"],
        " (%s)" % theano["device_name"] if "device_name" in theano else "",
        theano["floatX"], theano["flags"]))
    for r in records[1:]:
        if r["type"] == "epoch":
            rows.append((device, r["epoch"], r["train_seconds"], r["eval_seconds"],
                         r["validation_accuracy"], r["test_accuracy"]))
            train.setdefault(device, []).append(r["train_seconds"])
print("%-6s %5s %9s %8s %11s %8s" % ("device", "epoch", "train s", "eval s", "validation",
                                      "test"))
for device, epoch, t, e, v, a in rows:
    print("%-6s %5d %9.1f %8.1f %10.2f%% %7.2f%%" % (device, epoch, t, e, 100 * v,
                                                     100 * (a or 0)))
if len(train) == 2:
    mean = {d: sum(s) / len(s) for d, s in train.items()}
    print("mean training seconds per epoch: cuda %.1f, cpu %.1f; the GPU is %.2fx the CPU's "
          "speed" % (mean["cuda"], mean["cpu"], mean["cpu"] / mean["cuda"]))
EOF
}

check() {
    echo "== network3 GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
    echo "== nvidia-smi"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
    else
        echo "(nvidia-smi is not installed)"
    fi
    echo "== scripts/gpu_setup.sh ${SETUP_ARGS[*]}"
    if ! timeout "$(budget 120)" scripts/gpu_setup.sh "${SETUP_ARGS[@]}"; then
        echo "gpu_check: the set-up failed (above); nothing was trained"
        return 2
    fi
    echo "== network3 gpu check"
    if ! "$PY" -m network3 gpu check; then
        echo "gpu_check: no GPU: Theano's GPU stack is not usable on this machine (the" \
             "missing pieces are listed above); nothing was trained"
        return 1
    fi
    echo "== network3 info"
    "$PY" -m network3 info
    if ! timeout "$(budget 60)" "$PY" -m network3 data check; then
        echo "gpu_check: no data: run \`network3 data fetch\` or copy mnist.pkl.gz into data/"
        return 2
    fi
    local status=0
    train cuda 240 || status=2
    train cpu 150 || status=2
    echo "== results (run logs in $WORK)"
    report
    return $status
}

mkdir -p "$(dirname "$OUT")"
check 2>&1 | tee "$OUT"
status=${PIPESTATUS[0]}
echo "gpu_check: exit status $status; output written to $OUT" | tee -a "$OUT"
exit "$status"
