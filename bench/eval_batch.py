#!/usr/bin/env python
"""Seconds to classify the 10,000 validation images at several evaluation batch sizes.

Prints one line per network and batch size (best of 3 calls), for choosing
network.EVAL_BATCH_SIZE.  Run with OPENBLAS_NUM_THREADS=1 as bench_epoch.py does.
"""
import time

import network3
from network3.data import load_data
from network3.experiment import conv_net_layers
from network3.layers import layer_from_config

SIZES = (50, 100, 250, 500, 1000, 2500)


def main():
    _, (images, _), _ = load_data(quiet=True)
    for name, fc_units in (("exec_with", 100), ("exec_without", 0)):
        net = network3.Network([layer_from_config(c) for c in conv_net_layers(fc_units)], 10,
                               seed=0)
        net.predict(images[:100])  # compile
        for size in SIZES:
            times = []
            for _ in range(3):
                start = time.perf_counter()
                net.predict(images, size)
                times.append(time.perf_counter() - start)
            print("%-12s batch %5d: %.3f s" % (name, size, min(times)))


if __name__ == "__main__":
    main()
