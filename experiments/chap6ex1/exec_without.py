#!/usr/bin/env python
"""Chapter 6, Exercise 1, without the fully-connected layer.

    ConvPoolLayer(1x28x28, 20 filters 5x5, pool 2x2, sigmoid)
    -> SoftmaxLayer(2880 -> 10)
    mini-batch 10, eta 0.1, lmbda 0, 60 epochs, best of 3 runs.

The book gives no number; compare with exec_with.py using `network3 compare`.
"""
import sys

from network3.experiment import conv_net_layers, run_experiment

if __name__ == "__main__":
    sys.exit(run_experiment("exec_without", conv_net_layers(fc_units=0),
                            description=__doc__.splitlines()[0]))
