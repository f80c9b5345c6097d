#!/usr/bin/env python
"""Rounding drift after 500 training steps: the C ops against the plain Theano graph.

Trains 5,000 MNIST images (one epoch, mini-batch 10, seed 0) of exec_with
(--fc 100) or exec_without (--fc 0) twice, with network3's C ops and with the
plain graph (NETWORK3_C_OPS=0 inside the process), in float32 and in float64
(each in a fresh process), and prints, per path, the largest parameter
difference relative to that parameter's scale.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

TRAIN = """
import sys, network3, numpy as np
from network3 import cops
from network3.data import load_data, shared, subset
from network3.experiment import conv_net_layers
from network3.layers import layer_from_config
training, validation, _ = load_data(quiet=True)
out = {}
for c_ops in (True, False):
    cops.ENABLED = c_ops
    net = network3.Network([layer_from_config(c) for c in conv_net_layers(fc_units=int(sys.argv[1]))],
                           10, seed=0)
    net.SGD(shared(subset(training, 5000)), 1, 10, 0.1, shared(subset(validation, 1000)), quiet=True)
    out.update({("c" if c_ops else "plain") + str(k): p for k, p in enumerate(net.get_params())})
np.savez(sys.argv[2], **out)
"""


def relative(params, exact):
    return max(np.abs(p - e).max() / np.abs(e).max() for p, e in zip(params, exact))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fc", type=int, default=100)
    args = ap.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for floatx in ("float64", "float32"):
            path = os.path.join(tmp, floatx + ".npz")
            env = dict(os.environ, THEANO_FLAGS="floatX=" + floatx, OPENBLAS_NUM_THREADS="1")
            subprocess.run([sys.executable, "-c", TRAIN, str(args.fc), path], env=env, check=True)
            with np.load(path) as f:
                runs[floatx] = {k: f[k] for k in f.files}
    n = len(runs["float64"]) // 2
    get = lambda fx, name: [runs[fx]["%s%d" % (name, k)] for k in range(n)]  # noqa: E731
    exact = get("float64", "plain")
    print("net: %s" % ("exec_with" if args.fc else "exec_without"))
    print("C ops float64 vs plain float64: %.1e" % relative(get("float64", "c"), exact))
    print("plain float32 vs plain float64: %.1e" % relative(get("float32", "plain"), exact))
    print("C ops float32 vs plain float64: %.1e" % relative(get("float32", "c"), exact))
    print("C ops float32 vs plain float32: %.1e" % relative(get("float32", "c"),
                                                          get("float32", "plain")))


if __name__ == "__main__":
    main()
