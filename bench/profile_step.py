#!/usr/bin/env python
"""Microseconds per training step of exec_with (or --fc 0: exec_without), for a profile.

Run under THEANO_FLAGS=profile=True to get Theano's per-op table at exit:
    THEANO_FLAGS=profile=True OPENBLAS_NUM_THREADS=1 python bench/profile_step.py
"""
import argparse
import time

import numpy as np

import network3
from network3.data import load_data, shared, subset
from network3.experiment import conv_net_layers
from network3.layers import layer_from_config


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fc", type=int, default=100)
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    training, _, _ = load_data(quiet=True)
    training = subset(training, 10000)
    net = network3.Network([layer_from_config(c) for c in conv_net_layers(fc_units=args.fc)], 10,
                           seed=0)
    step = net._compile_train_mb(shared(training), 0.1, 0.0, 1000, None)
    step.trust_input = True
    indices = [np.asarray(j, dtype="int64") for j in range(1000)]
    for j in range(200):
        step(indices[j])
    start = time.perf_counter()
    for j in range(args.steps):
        step(indices[j % 1000])
    print("%.0f us per training step" % (1e6 * (time.perf_counter() - start) / args.steps))


if __name__ == "__main__":
    main()
