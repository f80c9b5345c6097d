#!/usr/bin/env python
"""Chapter 6, Problem 1: train with the hand-written gradients and with Theano's, side by side.

    ConvPoolLayer(1x28x28, 20 filters 5x5, pool 2x2, sigmoid) -> SoftmaxLayer(2880 -> 10)
    one epoch of SGD on the first 2,000 MNIST training images, in order,
    mini-batch 10, eta 0.1, float64 (--float32 for the book's precision).

network3's Network (seed 0) updates its parameters with T.grad; a numpy
copy of it (network3.backprop) updates its own with the four equations of
backpropagation.  They start from the same parameters, see the same
mini-batches in the same order, and run freely from there; the script prints
the two cost trajectories side by side every 20 mini-batches.

In float64 -- network3's Network built and its training step compiled under
``theano.config.change_flags(floatX="float64")``, which the script checks
on the compiled graph -- the two trajectories agree to 5e-10 over the whole
epoch (the largest difference at mini-batch 44, in the violent early phase
when the cost jumps to 36), and the final parameters to 2e-12.  Even in
float64 that early phase amplifies rounding about a million-fold: perturbing
the numpy copy's starting parameters by one unit in the last place moves its
own cost at mini-batch 44 by 3e-11 to 2.5e-10.  The script exits 1 if the
largest cost difference, or the parameter difference at the end, exceeds
1e-6.

A real difference in the gradients shows at once: routing a tied pooling
block's error to its first maximum only (``ties="first"``) instead of to
every one, as Theano does, makes the costs differ by 6.6.

With --float32 (network3's default floatX) both sides start from the same
float32 parameters, and the trajectories drift apart by up to 0.13 in the
first few dozen mini-batches, as training amplifies float32 rounding, and
end 2e-4 apart in cost and 6e-4 in the parameters.  That run is for
comparison only and always exits 0.
"""
import argparse
import sys

import numpy as np

import network3  # noqa: F401  (configures Theano before theano is imported)
import theano

from network3 import ConvPoolLayer, Network, SoftmaxLayer, load_data
from network3 import backprop as bp

N_TRAIN = 2000
MINI_BATCH = 10
ETA = 0.1
# float64: measured max |cost difference| 4.6e-10 and final parameter difference 2.1e-12; the
# tolerance leaves three orders of magnitude for other BLAS builds and machines, and is still
# five below the float32 drift (1e-1) or what a wrong gradient gives.
TOLERANCE = 1e-6
PRINT_EVERY = 20


def float_dtypes(step):
    """The floating-point dtypes of every variable in a compiled Theano function's graph."""
    return {v.type.dtype for v in step.maker.fgraph.variables
            if getattr(v.type, "dtype", "").startswith("float")}


def networks(dtype):
    """network3's network (seed 0) with its compiled training step, and a numpy copy, in `dtype`.

    network3's layers create their shared variables in theano.config.floatX
    when they are constructed, and Network.x is a T.matrix of floatX, so the
    network is built, and its step compiled, under that floatX.
    """
    floatX = np.dtype(dtype).name
    with theano.config.change_flags(floatX=floatX):
        net = Network([ConvPoolLayer(filter_shape=(20, 1, 5, 5),
                                     image_shape=(MINI_BATCH, 1, 28, 28), poolsize=(2, 2)),
                       SoftmaxLayer(n_in=2880, n_out=10)], MINI_BATCH, seed=0)
        step = net.compile_train_step(ETA, lmbda=0.0, num_training_batches=1)
    dtypes = float_dtypes(step)
    assert dtypes == {floatX} and net.x.dtype == floatX and \
        all(p.get_value(borrow=True).dtype == floatX for p in net.params), \
        "network3's training step is not all %s: %s" % (floatX, sorted(dtypes))
    conv, softmax = net.layers
    copy = bp.Network([bp.ConvPoolLayer(conv.w.get_value(), conv.b.get_value(), poolsize=(2, 2)),
                       bp.SoftmaxLayer(softmax.w.get_value(), softmax.b.get_value())],
                      bp.LogLikelihoodCost)
    assert all(p.dtype == floatX for p in copy.params)
    return net, step, copy


def max_difference(net, copy):
    """The largest |network3 parameter - numpy parameter|, over every parameter."""
    return max(float(np.max(np.abs(p.get_value(borrow=True) - q)))
               for p, q in zip(net.params, copy.params))


def trajectories(x, y, dtype=np.float64):
    """Train both networks freely on (x, y), in order; one row per mini-batch.

    Each row holds network3's cost, the numpy copy's cost (both before their
    step) and the largest parameter difference after the step.
    """
    net, step, copy = networks(dtype)
    x = np.asarray(x, dtype=dtype)
    rows = []
    for k in range(0, len(x) - MINI_BATCH + 1, MINI_BATCH):
        xb, yb = x[k:k + MINI_BATCH], y[k:k + MINI_BATCH]
        theano_cost = float(step(xb, yb.astype(np.int32)))
        numpy_cost = float(copy.update_mini_batch(xb.reshape(-1, 1, 28, 28), yb, ETA))
        rows.append((theano_cost, numpy_cost, max_difference(net, copy)))
    return np.array(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--float32", action="store_true",
                        help="run both sides in float32 to show the drift (informational)")
    args = parser.parse_args(argv)
    dtype = np.float32 if args.float32 else np.float64

    (x, y), _, _ = load_data()
    rows = trajectories(x[:N_TRAIN], y[:N_TRAIN], dtype)
    theano_cost, numpy_cost, param_diff = rows.T
    cost_diff = np.abs(numpy_cost - theano_cost)

    print("%s, free-running from the same parameters, same mini-batches in the same order"
          % np.dtype(dtype).name)
    digits = 15 if dtype == np.float64 else 7
    width = digits + 5
    print("%10s %*s %*s %11s %11s" % ("", width, "Theano", width, "numpy", "|numpy -",
                                      "max param"))
    print("%10s %*s %*s %11s %11s" % ("mini-batch", width, "cost", width, "cost", "Theano|",
                                      "diff after"))
    for k in list(range(0, len(rows), PRINT_EVERY)) + [len(rows) - 1]:
        print("%10d %*.*f %*.*f %11.1e %11.1e" % (
            k, width, digits, theano_cost[k], width, digits, numpy_cost[k], cost_diff[k],
            param_diff[k]))
    worst = int(np.argmax(cost_diff))
    print("\n%d mini-batches: max |numpy - Theano| cost %.2e (mini-batch %d);"
          % (len(rows), cost_diff[worst], worst))
    print("  max |numpy - Theano| parameter %.2e at the end, %.2e at most on the way"
          % (param_diff[-1], param_diff.max()))
    if args.float32:
        print("float32: for comparison only (float32 rounding amplified by training); "
              "run without --float32 for the check")
        return 0
    ok = cost_diff.max() < TOLERANCE and param_diff[-1] < TOLERANCE
    print("float64 trajectories agree (costs and final parameters < %.0e): %s"
          % (TOLERANCE, "yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
