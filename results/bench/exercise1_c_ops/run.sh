#!/usr/bin/env bash
# The full Exercise 1 experiment (6 runs x 60 epochs) on the C ops, timed: both scripts at
# once, each training its 3 runs one after another on one core (the machine has 2).
set -eu
cd "$(dirname "$0")/../../.."
export OPENBLAS_NUM_THREADS=1
out=results/bench/exercise1_c_ops/runs
start=$(date +%s)
.venv/bin/python experiments/chap6ex1/exec_with.py --jobs 1 --out $out/exec_with --overwrite --quiet &
.venv/bin/python experiments/chap6ex1/exec_without.py --jobs 1 --out $out/exec_without --overwrite --quiet &
wait
echo "wall seconds: $(( $(date +%s) - start ))"
