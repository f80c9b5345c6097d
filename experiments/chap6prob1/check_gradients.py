#!/usr/bin/env python
"""Chapter 6, Problem 1: check hand-written backpropagation against two independent witnesses.

For every parameter of five float64 networks,

    the problem's network (conv 5x5 -> sigmoid -> max-pool 2x2 -> 10 sigmoid
    outputs), with the quadratic and with the cross-entropy cost;
    network3's ConvPoolLayer(20 maps) + SoftmaxLayer;
    network3's ConvPoolLayer(20 maps) + FullyConnectedLayer(100) + SoftmaxLayer;
    the book's two-conv net, ConvPoolLayer(20) + ConvPoolLayer(40 maps over
    20 channels) + FullyConnectedLayer(100) + SoftmaxLayer;

it prints the relative error max|g - g'| / max|g| of the numpy gradient g
(network3.backprop) against

    central finite differences, h = 1e-5, on up to 25 random coordinates of
        each parameter (all of them for small ones), passing over any
        coordinate where moving by h would change a pooling maximum (column
        "kinks"); tolerance 1e-6;
    Theano's T.grad of the same network built from conv2d and pool_2d, on
        every coordinate; tolerance 1e-9.

The inputs are random 28x28 images, so no pooling block holds an exact tie.
A second table uses images with exact ties of the two kinds MNIST has --
blank margins, and straight strokes of constant intensity -- and shows where
Theano's tie rule (every tied neuron gets the error) and the rule "first
tied neuron only" part company, and which one the finite difference agrees
with.  Exits 1 if any check fails.
"""
import sys

import numpy as np

from network3 import backprop as bp

FD_TOLERANCE = 1e-6
THEANO_TOLERANCE = 1e-9
FD_COORDINATES = 25
MINI_BATCH = 4


def conv(rng, layer, maps, channels):
    """A conv layer of 5x5 filters, w ~ N(0, 1/(inputs per neuron)), b ~ N(0, 1)."""
    w = rng.normal(0.0, 1.0 / np.sqrt(channels * 25), size=(maps, channels, 5, 5))
    return layer(w, rng.normal(size=maps))


def dense(rng, layer, n_in, n_out):
    """A fully connected or softmax layer, w ~ N(0, 1/n_in), b ~ N(0, 1).

    network3 starts a SoftmaxLayer at zero, which would make every gradient
    below it zero too, and so check nothing.
    """
    return layer(rng.normal(0.0, 1.0 / np.sqrt(n_in), size=(n_in, n_out)), rng.normal(size=n_out))


def problem_network(rng, cost, ties="all"):
    return bp.Network([conv(rng, lambda w, b: bp.ConvSigmoidPoolLayer(w, b, ties=ties), 1, 1),
                       dense(rng, bp.FullyConnectedLayer, 144, 10)], cost)


def networks(rng):
    """(name, network) for each network checked."""
    yield "problem, quadratic", problem_network(rng, bp.QuadraticCost)
    yield "problem, cross-entropy", problem_network(rng, bp.CrossEntropyCost)
    yield "conv+softmax", bp.Network([conv(rng, bp.ConvPoolLayer, 20, 1),
                                      dense(rng, bp.SoftmaxLayer, 2880, 10)])
    yield "conv+fc+softmax", bp.Network([conv(rng, bp.ConvPoolLayer, 20, 1),
                                         dense(rng, bp.FullyConnectedLayer, 2880, 100),
                                         dense(rng, bp.SoftmaxLayer, 100, 10)])
    yield "conv+conv+fc+softmax", bp.Network([conv(rng, bp.ConvPoolLayer, 20, 1),
                                              conv(rng, bp.ConvPoolLayer, 40, 20),
                                              dense(rng, bp.FullyConnectedLayer, 640, 100),
                                              dense(rng, bp.SoftmaxLayer, 100, 10)])


def coordinates(rng, net, x, param):
    """Up to FD_COORDINATES random indices of `param` with no pooling kink within h, and a count.

    The cost has a kink wherever a pooling block changes its maximum, and
    among thousands of blocks some are always within h = 1e-5 of a tie; a
    central difference across such a kink measures neither slope.  Indices
    with a kink that near are passed over; the count says how many were.
    """
    chosen, passed_over = [], 0
    for i in rng.permutation(param.size):
        index = np.unravel_index(i, param.shape)
        if bp.crosses_kink(net, x, param, index):
            passed_over += 1
        else:
            chosen.append(index)
            if len(chosen) == FD_COORDINATES:
                break
    return chosen, passed_over


def finite_differences(net, x, y, param, indices):
    return np.array([bp.finite_difference(net, x, y, param, index) for index in indices])


def parameter_names(net):
    return ["%s %d %s" % (type(layer).__name__, j, name)
            for j, layer in enumerate(net.layers) for name in ("w", "b")]


def check_network(rng, name, net, x, y):
    """One table row per parameter: shape, coordinates checked, FD and Theano errors."""
    gradient = net.gradient(x, y)
    theano = bp.theano_gradient(net, x, y)
    rows = []
    for pname, p, g, g_theano in zip(parameter_names(net), net.params, gradient, theano):
        indices, passed_over = coordinates(rng, net, x, p)
        fd = finite_differences(net, x, y, p, indices)
        fd_err = bp.relative_error([g[i] for i in indices], fd) if indices else np.inf
        rows.append((name, pname, p.shape, len(indices), passed_over, fd_err,
                     bp.relative_error(g, g_theano)))
    return rows


def print_table(rows):
    print("%-22s %-24s %-11s %5s %6s %10s %10s  %s" % (
        "network", "parameter", "shape", "FD n", "kinks", "FD err", "Theano err", "ok"))
    failures = 0
    for name, pname, shape, n, passed_over, fd_err, theano_err in rows:
        ok = fd_err < FD_TOLERANCE and theano_err < THEANO_TOLERANCE
        failures += not ok
        print("%-22s %-24s %-11s %5d %6d %10.1e %10.1e  %s" % (
            name, pname, "x".join(map(str, shape)), n, passed_over, fd_err, theano_err,
            "ok" if ok else "FAIL"))
    return failures


def blank_lower_half(x):
    """The images with their lower half blank, as MNIST's margins are: every block there ties."""
    x = x.copy()
    x[:, :, 14:, :] = 0.0
    return x


def vertical_strokes(n):
    """Blank images, each with a vertical stroke of constant intensity, as MNIST's 1s often have.

    Down a straight stroke of constant intensity, vertically adjacent
    neurons see identical patches, so their convolutions tie at a non-zero
    value, and they move together whatever the weights do.
    """
    x = np.zeros((n, 1, 28, 28))
    for i in range(n):
        x[i, 0, 4:24, 6 + 4 * i:8 + 4 * i] = 0.66
    return x


def problem_net(rng, ties):
    return problem_network(rng, bp.CrossEntropyCost, ties)


def network3_net(rng, ties):
    return bp.Network([conv(rng, lambda w, b: bp.ConvPoolLayer(w, b, ties=ties), 20, 1),
                       dense(rng, bp.SoftmaxLayer, 2880, 10)])


def twins(rng, make):
    """The same network twice, with ties="all" and with ties="first"."""
    state = rng.bit_generator.state
    net_all = make(rng, "all")
    rng.bit_generator.state = state
    return net_all, make(rng, "first")


def tie_table(rng, x, y):
    """Where pooling blocks tie exactly, compare both tie rules with Theano and finite differences.

    For each first-layer parameter the row shows the coordinate where the
    two rules differ most.  Where tied neurons move together, C is
    differentiable and its derivative counts each block once, as
    ties="first" does; Theano's rule, ties="all", counts every tied neuron.
    """
    print("\nTies: images with exact ties; the coordinate where the tie rules differ most")
    print("%-38s %-22s %10s %10s %10s %10s" % ("network, images", "parameter", "ties=all",
                                               "ties=first", "Theano", "FD"))
    failures = 0
    for label, make, images in (("problem, lower half blank", problem_net, blank_lower_half(x)),
                                ("conv+softmax, lower half blank", network3_net,
                                 blank_lower_half(x)),
                                ("conv+softmax, vertical strokes", network3_net,
                                 vertical_strokes(len(x)))):
        net_all, net_first = twins(rng, make)
        g_all, g_first = net_all.gradient(images, y), net_first.gradient(images, y)
        theano = bp.theano_gradient(net_all, images, y)
        for j, name in enumerate(("w", "b")):
            p, ga, gf = net_all.params[j], g_all[j], g_first[j]
            index = np.unravel_index(np.argmax(np.abs(ga - gf) + 1e-12 * np.abs(ga)), p.shape)
            fd = bp.finite_difference(net_all, images, y, p, index)
            print("%-38s %-22s %10.6f %10.6f %10.6f %10.6f" % (
                label, "layer 0 %s[%s]" % (name, ",".join(map(str, index))),
                ga[index], gf[index], theano[j][index], fd))
            failures += bp.relative_error(ga, theano[j]) >= THEANO_TOLERANCE
            failures += bp.relative_error(gf[index], fd) >= FD_TOLERANCE
    print("ties=all matches Theano everywhere, ties=first matches the finite difference: %s"
          % ("yes" if not failures else "NO"))
    return failures


def main():
    rng = np.random.default_rng(6)
    x = rng.uniform(0.0, 1.0, size=(MINI_BATCH, 1, 28, 28))
    y = rng.integers(0, 10, size=MINI_BATCH)
    rows = []
    for name, net in networks(rng):
        rows.extend(check_network(rng, name, net, x, y))
    print("Relative errors of the numpy gradients (float64, mini-batch %d): "
          "tolerance %.0e against finite differences, %.0e against Theano\n"
          % (MINI_BATCH, FD_TOLERANCE, THEANO_TOLERANCE))
    failures = print_table(rows)
    failures += tie_table(rng, x, y)
    print("\n%s" % ("all checks passed" if not failures else "%d checks FAILED" % failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
