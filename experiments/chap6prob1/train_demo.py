#!/usr/bin/env python
"""Chapter 6, Problem 1: train with the hand-written gradients and with Theano's, side by side.

    ConvPoolLayer(1x28x28, 20 filters 5x5, pool 2x2, sigmoid) -> SoftmaxLayer(2880 -> 10)
    one epoch of SGD on the first 2,000 MNIST training images, in order,
    mini-batch 10, eta 0.1, float32.

network3's Network (seed 0) updates its parameters with T.grad; numpy
copies of it (network3.backprop) update theirs with the four equations of
backpropagation.  They start from the same parameters and see the same
mini-batches, and the script prints the two cost trajectories every 20
mini-batches.

The trajectories agree to float32 rounding at first, then drift apart by
up to ~1e-1 in the first few dozen mini-batches, when the cost jumps as
high as 36 and the network is at its most sensitive; they come back to
within ~1e-4 by the end.  The same numpy code run in float64 drifts from
its float32 self just as far, so the drift is float32 rounding amplified by
training, not a difference between the gradients.  What the gradients
themselves must satisfy is checked step by step: a numpy copy reset to
network3's parameters before each mini-batch must give the same cost
(relative difference < 1e-6) and the same updated parameters (< 1e-6)
as network3's step.  The script exits 1 if any step does not.
"""
import sys

import numpy as np

from network3 import ConvPoolLayer, Network, SoftmaxLayer, load_data
from network3 import backprop as bp

N_TRAIN = 2000
MINI_BATCH = 10
ETA = 0.1
COST_TOLERANCE = 1e-6
PARAM_TOLERANCE = 1e-6


def networks():
    """network3's network (seed 0), and numpy copies of its parameters in float32 and float64."""
    net = Network([ConvPoolLayer(filter_shape=(20, 1, 5, 5), image_shape=(MINI_BATCH, 1, 28, 28),
                                 poolsize=(2, 2)),
                   SoftmaxLayer(n_in=2880, n_out=10)], MINI_BATCH, seed=0)

    def copy(dtype):
        conv, softmax = net.layers
        return bp.Network([bp.ConvPoolLayer(conv.w.get_value().astype(dtype),
                                            conv.b.get_value().astype(dtype), poolsize=(2, 2)),
                           bp.SoftmaxLayer(softmax.w.get_value().astype(dtype),
                                           softmax.b.get_value().astype(dtype))],
                          bp.LogLikelihoodCost)
    return net, copy(np.float32), copy(np.float32), copy(np.float64)


def copy_params(net, reference):
    """Set the numpy network's parameters to network3's current ones."""
    for p, q in zip(net.params, reference.params):
        q[...] = p.get_value()


def max_difference(params, other_params):
    return max(float(np.max(np.abs(p - q))) for p, q in zip(params, other_params))


def theano_params(net):
    return [p.get_value() for p in net.params]


def train(net, free, shadow, free64, x, y):
    """One epoch, comparing the numpy networks with network3 after every mini-batch.

    `free` (float32) trains on its own from the shared start, so the two
    trajectories show whatever rounding differences grow into; `free64`
    does the same in float64, to show how large float32 rounding alone
    makes them.  `shadow` is reset to network3's parameters before every
    step, so it compares single steps -- the cost and the update -- from
    identical parameters.  Returns one row per mini-batch: network3's
    cost, free's, free64's, |shadow cost - network3 cost| / max(1, cost)
    and the largest |shadow parameter - network3 parameter| after the step.
    """
    step = net.compile_train_step(ETA, lmbda=0.0, num_training_batches=1)
    rows = []
    for k in range(0, len(x), MINI_BATCH):
        xb, yb = x[k:k + MINI_BATCH], y[k:k + MINI_BATCH]
        images = xb.reshape(-1, 1, 28, 28)
        copy_params(net, shadow)
        theano_cost = float(step(xb, yb.astype(np.int32)))
        shadow_cost = float(shadow.update_mini_batch(images, yb, ETA))
        rows.append((theano_cost,
                     float(free.update_mini_batch(images, yb, ETA)),
                     float(free64.update_mini_batch(images.astype(np.float64), yb, ETA)),
                     abs(shadow_cost - theano_cost) / max(1.0, abs(theano_cost)),
                     max_difference(theano_params(net), shadow.params)))
    return np.array(rows)


def main():
    (x, y), _, _ = load_data()
    x, y = x[:N_TRAIN], y[:N_TRAIN]
    net, free, shadow, free64 = networks()
    rows = train(net, free, shadow, free64, x, y)
    theano_cost, free_cost, free64_cost, step_cost, step_param = rows.T
    print("%10s %12s %12s %11s %11s  %s" % (
        "", "Theano", "numpy", "numpy -", "numpy f64 -", "one step from Theano's parameters:"))
    print("%10s %12s %12s %11s %11s  %11s %11s" % (
        "mini-batch", "cost", "cost", "Theano", "numpy f32", "cost diff", "param diff"))
    for k in list(range(0, len(rows), 20)) + [len(rows) - 1]:
        print("%10d %12.6f %12.6f %11.1e %11.1e  %11.1e %11.1e" % (
            k, theano_cost[k], free_cost[k], free_cost[k] - theano_cost[k],
            free64_cost[k] - free_cost[k], step_cost[k], step_param[k]))
    worst = int(np.argmax(np.abs(free_cost - theano_cost)))
    print("\nFree-running, %d mini-batches: max |numpy - Theano| cost %.2e (mini-batch %d), "
          "parameters at the end %.2e;" % (len(rows), abs(free_cost - theano_cost)[worst], worst,
                                           max_difference(theano_params(net), free.params)))
    print("  the same numpy code in float64 vs float32: max cost %.2e, parameters at the end %.2e"
          % (np.max(np.abs(free64_cost - free_cost)), max_difference(free64.params, free.params)))
    print("Single steps from the same parameters: max relative cost difference %.2e, "
          "max parameter difference %.2e" % (step_cost.max(), step_param.max()))
    ok = step_cost.max() < COST_TOLERANCE and step_param.max() < PARAM_TOLERANCE
    print("single steps agree (cost < %.0e relative, parameters < %.0e): %s"
          % (COST_TOLERANCE, PARAM_TOLERANCE, "yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
