#!/usr/bin/env python
"""Chapter 6, Exercise 1: does the 100-unit fully-connected layer help?

Trains the book's first convolutional network with and without its
fully-connected layer, then compares them (table, plot, Welch t-test).
Quick by default (5,000 training images, 3 epochs, 3 runs each: about a
minute on 2 cores); --full runs the book's experiment (all 50,000 images, 60 epochs,
best of 3 runs each).
"""
import argparse
import os
import sys

from network3 import compare, gpu
from network3.experiment import conv_net_layers, run_experiment

NETWORKS = (("exec_with", 100), ("exec_without", 0))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true",
                    help="the book's experiment: 60 epochs on all the data (default: quick)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=None, help="runs at once (default: cores)")
    ap.add_argument("--out", default=None, help="default runs/chap6ex1[-quick]")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted experiment")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace an earlier --full experiment in --out (quick ones always are)")
    ap.add_argument("--device", type=gpu.parse_device, default=None,
                    help="cpu, cuda or cudaN (default: Theano's); see docs/gpu.md")
    args = ap.parse_args(argv)
    out = args.out or os.path.join("runs", "chap6ex1" + ("" if args.full else "-quick"))
    common = ["--runs", str(args.runs), "--quiet"] + ([] if args.full else ["--quick"])
    common += ["--jobs", str(args.jobs)] if args.jobs else []
    common += [flag for flag in ("--resume", "--overwrite") if getattr(args, flag[2:])]
    common += ["--device", args.device] if args.device else []
    for name, fc_units in NETWORKS:
        status = run_experiment(name, conv_net_layers(fc_units=fc_units),
                                common + ["--out", os.path.join(out, name)])
        if status:
            return status
    run_dirs = [os.path.join(out, name, "run-%d" % k)
                for name, _ in NETWORKS for k in range(1, args.runs + 1)]
    return compare.main(run_dirs + ["--out", out])


if __name__ == "__main__":
    sys.exit(main())
