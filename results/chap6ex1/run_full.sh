#!/usr/bin/env bash
# The full Exercise 1 experiment as run for results/chap6ex1: both scripts at once,
# each training its 3 runs one after another on one core (the machine has 2).
set -eu
cd "$(dirname "$0")/../.."
export OPENBLAS_NUM_THREADS=1
out=results/chap6ex1/runs
.venv/bin/python experiments/chap6ex1/exec_with.py --jobs 1 --out $out/exec_with --resume --quiet \
    > results/chap6ex1/exec_with.out 2>&1 &
.venv/bin/python experiments/chap6ex1/exec_without.py --jobs 1 --out $out/exec_without --resume --quiet \
    > results/chap6ex1/exec_without.out 2>&1 &
wait
