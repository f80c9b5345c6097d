#!/usr/bin/env bash
# The book's first conv net from `network3 train`, 2 epochs on all 50,000 images,
# killed (SIGKILL) once its first epoch is logged, then resumed.
set -u
cd "$(dirname "$0")/../.."
export OPENBLAS_NUM_THREADS=1
out=results/first_conv/run
rm -rf "$out"
.venv/bin/network3 train --name first_conv --conv 20x5x5 --fc 100 --epochs 2 --seed 1 --out "$out" &
pid=$!
until [ -f "$out/log.jsonl" ] && [ "$(wc -l < "$out/log.jsonl")" -ge 2 ]; do sleep 0.1; done
kill -9 $pid; wait $pid 2>/dev/null
echo "killed after: $(( $(wc -l < "$out/log.jsonl") - 1 )) epoch(s) logged"
.venv/bin/network3 train --out "$out" --resume
