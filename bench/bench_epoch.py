#!/usr/bin/env python
"""Seconds per training epoch: the straightforward network3 loop against ours, in one run.

For each Exercise 1 network (exec_with: conv 20x5x5 + pool + FC 100 + softmax;
exec_without: no FC layer), at mini-batch 10, this runs, each in a fresh
process and on the same data:

* the baseline: ../shared/bench/peer_theano_baseline.py (the plain design:
  one compiled call per mini-batch, evaluation in mini-batches of 10);
* ours: bench/ours_epoch.py (network3's Network.SGD);
* with --torch-python, PyTorch eager: ../shared/bench/peer_torch.py, run by
  that interpreter (a venv with ``pip install torch==2.13.0``), with
  --torch-threads threads (default: every core, as PyTorch does by itself);

first with an empty Theano compile directory (cold compile), then again with
the cache it filled (warm).  It prints one table: training s/epoch, images/s,
ratio to the baseline, fraction of the FLOP bound, seconds to evaluate
10,000 images, compile seconds cold and warm, and peak memory (RSS).

The FLOP bound counts the conv, FC and softmax products of a training step
(backward = 2x forward, the convention of ../shared/bench/limit.py) and
divides by the single-precision GEMM rate measured here through scipy's
bundled OpenBLAS, the library Theano links.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from network3 import theano_env  # noqa: E402  (the flags only; imports no Theano)
PEERS = os.path.join(os.path.dirname(ROOT), "shared", "bench")
DEFAULT_BASELINE = os.path.join(PEERS, "peer_theano_baseline.py")
N_EVAL = 10000


def run(cmd, env):
    """Run a benchmark process; return its RESULT json and peak RSS in MiB."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    results = [line[len("RESULT "):] for line in output.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not results:
        raise RuntimeError("%s failed (exit %s):\n%s" % (" ".join(cmd), proc.returncode,
                                                         output[-3000:]))
    return json.loads(results[-1]), usage.ru_maxrss / 1024


def flops_per_image(with_fc):
    """Multiply-adds x 2 of one training step per image: forward + 2x for backward."""
    macs = 24 * 24 * 20 * 5 * 5 + (2880 * 100 + 100 * 10 if with_fc else 2880 * 10)
    return 3 * 2 * macs


def gemm_gflops(threads):
    """Measured float32 GEMM rate (GFLOP/s) of scipy's OpenBLAS, in a fresh process."""
    code = ("import time, numpy as np; from scipy.linalg.blas import sgemm; "
            "a = np.asfortranarray(np.random.rand(1024, 1024).astype('float32')); "
            "sgemm(1.0, a, a); t = time.perf_counter(); n = 20\n"
            "for _ in range(n): sgemm(1.0, a, a)\n"
            "print(2 * 1024**3 * n / (time.perf_counter() - t) / 1e9)")
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    return float(subprocess.check_output([sys.executable, "-c", code], env=env, text=True))


def blas_ldflags(which):
    """Linker flags for the OpenBLAS both Theano programs link: network3's choice by default."""
    if which == "scipy":
        libdir, name = os.path.split(theano_env.bundled_openblas())
        return "-L%s -l:%s -Wl,-rpath,%s" % (libdir, name, libdir)
    if which == "system":
        return "-lopenblas"
    return theano_env.blas_ldflags()


def measure(name, cmd, env, cache_root, ldflags):
    """Cold run (empty compile cache) then warm run; return a row of numbers."""
    # An empty compile directory for both, both linking the same OpenBLAS; network3 adds its
    # own other flags, and the baseline gets Theano's defaults plus float32.
    flags = ["base_compiledir=%s" % os.path.join(cache_root, "theano"),
             "blas__ldflags=%s" % ldflags.replace(",", "\\,")]
    if name == "baseline":
        flags += ["floatX=float32"]
    cold_env = dict(env, THEANO_FLAGS=",".join(flags))
    cold, _ = run(cmd, cold_env)
    warm, rss = run(cmd, cold_env)
    epoch = warm["epochs"][-1]
    if "compile_train_s" in warm:  # the baseline's own field names
        compile_cold = cold["compile_train_s"] + cold["compile_eval_s"]
        compile_warm = warm["compile_train_s"] + warm["compile_eval_s"]
        eval_s = epoch["valid_s"]
    else:
        compile_cold, compile_warm = cold["compile_s"], warm["compile_s"]
        eval_s = epoch["eval_s"] / 2  # validation and test: 2 x 10,000 images
    return {"impl": name, "train_s": epoch["train_s"], "eval_10k_s": eval_s,
            "valid_acc": epoch["valid_acc"], "compile_cold_s": compile_cold,
            "compile_warm_s": compile_warm, "rss_mib": rss, "n_train": warm["n_train"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=DEFAULT_BASELINE, help="the straightforward loop")
    ap.add_argument("--train-limit", type=int, default=None, help="default: all 50,000")
    ap.add_argument("--threads", type=int, default=1, help="OPENBLAS_NUM_THREADS (default 1)")
    ap.add_argument("--nets", default="with,without", help="with, without or both")
    ap.add_argument("--json", help="also write the rows as JSON here")
    ap.add_argument("--blas", choices=["default", "scipy", "system"], default="default",
                    help="the OpenBLAS both link: scipy's bundled copy (what pip alone gives), "
                         "the system's -lopenblas, or network3's default choice")
    ap.add_argument("--torch-python", help="a Python with torch: adds PyTorch eager to the table")
    ap.add_argument("--torch-threads", type=int, default=os.cpu_count(),
                    help="torch.set_num_threads for PyTorch (default: every core)")
    args = ap.parse_args(argv)
    if not os.path.exists(args.baseline):
        ap.error("baseline script not found: %s" % args.baseline)
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    env.pop("NETWORK3_C_OPS", None)
    limit = ["--train-limit", str(args.train_limit)] if args.train_limit else []
    ldflags = blas_ldflags(args.blas)
    peak = gemm_gflops(args.threads)
    print("machine: %s, %d cores | python %s | OPENBLAS_NUM_THREADS=%d | sgemm peak %.0f GFLOP/s"
          " | blas__ldflags=%s" % (platform.processor() or platform.machine(), os.cpu_count(),
                                   platform.python_version(), args.threads, peak, ldflags))
    rows = []
    for net in args.nets.split(","):
        no_fc = ["--no-fc"] if net == "without" else []
        commands = [("baseline", [sys.executable, args.baseline, "--epochs", "1"] + limit + no_fc),
                    ("network3", [sys.executable, os.path.join(ROOT, "bench", "ours_epoch.py"),
                                  "--epochs", "1"] + limit + no_fc)]
        if args.torch_python:
            commands.append(("pytorch %d thr" % args.torch_threads,
                             [args.torch_python, os.path.join(PEERS, "peer_torch.py"), "--epochs",
                              "1", "--threads", str(args.torch_threads)] + limit + no_fc))
        for name, cmd in commands:
            with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache:
                row = measure(name, cmd, env, cache, ldflags)
            row["net"] = "exec_" + net
            bound = flops_per_image(net == "with") * row["n_train"] / (peak * 1e9)
            row["flop_bound_fraction"] = bound / row["train_s"]
            rows.append(row)
        base = rows[-len(commands)]
        for row in rows[-len(commands):]:
            row["speedup"] = base["train_s"] / row["train_s"]
            row["eval_speedup"] = base["eval_10k_s"] / row["eval_10k_s"]
    header = ("net", "impl", "train s/epoch", "images/s", "x baseline", "FLOP-bound frac",
              "eval 10k s", "eval x", "compile cold s", "compile warm s", "peak RSS MiB",
              "val acc")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| %s | %s | %.2f | %.0f | %.2f | %.2f | %.3f | %.2f | %.1f | %.1f | %.0f | %.2f%% |"
              % (r["net"], r["impl"], r["train_s"], r["n_train"] / r["train_s"], r["speedup"],
                 r["flop_bound_fraction"], r["eval_10k_s"], r["eval_speedup"],
                 r["compile_cold_s"], r["compile_warm_s"], r["rss_mib"], 100 * r["valid_acc"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "sgemm_gflops": peak, "threads": args.threads,
                       "blas_ldflags": ldflags,
                       "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, f, indent=2)


if __name__ == "__main__":
    main()
