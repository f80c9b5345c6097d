"""Tests for network3.backprop: hand-written backpropagation through conv and max-pooling layers.

The gradients are checked against central finite differences on every
coordinate of every parameter of small float64 networks, and against
Theano's T.grad of the same networks; the tie rule of max-pooling is checked
on hand-made blocks, against Theano's MaxPoolGrad and against one-sided
finite differences; and 100 mini-batches of float64 SGD on MNIST by the
hand-written equations are checked against network3's own training step.
"""
import numpy as np
import pytest

import network3  # noqa: F401  (configures Theano before theano is imported)
import theano
import theano.tensor as T
from theano.tensor.nnet import conv2d
from theano.tensor.signal.pool import pool_2d

from network3 import backprop as bp

FD_TOLERANCE = 1e-6
THEANO_TOLERANCE = 1e-9


# ---------------------------------------------------------------- small networks
def weights(rng, *shape):
    return rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[1:])), size=shape)


def conv_layer(rng, cls, maps=3, channels=2, filter_shape=(3, 3), **options):
    return cls(weights(rng, maps, channels, *filter_shape), rng.normal(size=maps), **options)


def dense_layer(rng, cls, n_in, n_out):
    return cls(weights(rng, n_out, n_in).T, rng.normal(size=n_out))


def images(rng, n=3, channels=2, h=9, w=8):
    """Random images; 9x8 with 3x3 filters gives a 7x6 map, so pooling drops an edge row."""
    return rng.uniform(0.0, 1.0, size=(n, channels, h, w))


# Conv maps 7x6 -> pooled 3x3: 3 maps x 9 = 27 inputs to the next layer.
def conv_fc(rng, cls, cost, filter_flip):
    return bp.Network([conv_layer(rng, cls, filter_flip=filter_flip),
                       dense_layer(rng, bp.FullyConnectedLayer, 27, 4)], cost)


def conv_softmax(rng):
    return bp.Network([conv_layer(rng, bp.ConvPoolLayer), dense_layer(rng, bp.SoftmaxLayer, 27, 4)])


def conv_fc_softmax(rng):
    return bp.Network([conv_layer(rng, bp.ConvPoolLayer),
                       dense_layer(rng, bp.FullyConnectedLayer, 27, 5),
                       dense_layer(rng, bp.SoftmaxLayer, 5, 4)])


def conv_conv_softmax(rng):
    """Two conv layers: 9x8 -(3x3, 3 maps)-> 7x6, pool 1x1 -(2x2, 4 maps)-> 6x5, pool -> 3x2."""
    return bp.Network([conv_layer(rng, bp.ConvPoolLayer, poolsize=(1, 1)),
                       conv_layer(rng, bp.ConvPoolLayer, maps=4, channels=3, filter_shape=(2, 2)),
                       dense_layer(rng, bp.SoftmaxLayer, 24, 4)])


SIGMOID_OUTPUT = [(cls, cost, flip)
                  for cls in (bp.ConvSigmoidPoolLayer, bp.ConvPoolLayer)
                  for cost in (bp.QuadraticCost, bp.CrossEntropyCost)
                  for flip in (False, True)]


def sigmoid_output_net(case, seed=0):
    cls, cost, flip = case
    return conv_fc(np.random.default_rng(seed), cls, cost, flip)


SOFTMAX_OUTPUT = {"conv+softmax": conv_softmax, "conv+fc+softmax": conv_fc_softmax,
                  "conv+conv+softmax": conv_conv_softmax}


def all_nets():
    nets = [("%s %s flip=%s" % (case[0].__name__, case[1].__name__, case[2]),
             sigmoid_output_net(case)) for case in SIGMOID_OUTPUT]
    nets += [(name, make(np.random.default_rng(1))) for name, make in SOFTMAX_OUTPUT.items()]
    return nets


NETS = all_nets()


def data(seed=2):
    rng = np.random.default_rng(seed)
    return images(rng), rng.integers(0, 4, size=3)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("name,net", NETS, ids=[name for name, _ in NETS])
def test_every_coordinate_of_every_parameter_matches_finite_differences(name, net):
    x, y = data()
    for p, g in zip(net.params, net.gradient(x, y)):
        indices = list(np.ndindex(p.shape))
        assert not any(bp.crosses_kink(net, x, p, i) for i in indices), "a pooling kink within h"
        fd = np.array([bp.finite_difference(net, x, y, p, i) for i in indices]).reshape(p.shape)
        assert bp.relative_error(g, fd) < FD_TOLERANCE


@pytest.mark.parametrize("name,net", NETS, ids=[name for name, _ in NETS])
def test_gradient_matches_theano(name, net):
    x, y = data()
    for g, g_theano in zip(net.gradient(x, y), bp.theano_gradient(net, x, y)):
        assert g.shape == g_theano.shape
        assert bp.relative_error(g, g_theano) < THEANO_TOLERANCE


def test_the_two_orderings_compute_the_same_function_and_gradient():
    """Max-pooling commutes with the increasing sigmoid, so only the route of the error differs."""
    x, y = data()
    rng = np.random.default_rng(3)
    w, b = weights(rng, 3, 2, 3, 3), rng.normal(size=3)
    w_out, b_out = weights(rng, 27, 4), rng.normal(size=4)
    problem = bp.Network([bp.ConvSigmoidPoolLayer(w, b), bp.FullyConnectedLayer(w_out, b_out)],
                         bp.CrossEntropyCost)
    network3_order = bp.Network([bp.ConvPoolLayer(w, b, filter_flip=False),
                                 bp.FullyConnectedLayer(w_out, b_out)], bp.CrossEntropyCost)
    np.testing.assert_allclose(problem.feedforward(x)[0]["a"],
                               network3_order.feedforward(x)[0]["a"], rtol=1e-15)
    for g, g3 in zip(problem.gradient(x, y), network3_order.gradient(x, y)):
        np.testing.assert_allclose(g, g3, rtol=1e-12, atol=1e-15)


def test_update_mini_batch_is_one_gradient_step_and_keeps_float32():
    x, y = data()
    net = sigmoid_output_net(SIGMOID_OUTPUT[0])
    for layer in net.layers:
        layer.w, layer.b = layer.w.astype(np.float32), layer.b.astype(np.float32)
    x = x.astype(np.float32)
    before = [p.copy() for p in net.params]
    gradient, cost_before = net.gradient(x, y), net.total_cost(x, y)
    cost = net.update_mini_batch(x, y, eta=0.5)
    assert cost == cost_before
    for p, p0, g in zip(net.params, before, gradient):
        assert p.dtype == g.dtype == np.float32
        np.testing.assert_allclose(p, p0 - 0.5 * g, rtol=1e-6, atol=1e-7)


def test_float64_training_follows_network3s_trajectory_on_mnist(mnist):
    """100 mini-batches of SGD on MNIST, free-running: the four equations against T.grad.

    network3's layers make their parameters, and Network its input, in
    floatX when they are built, so under floatX=float64 the whole compiled
    step is float64.  From the same start, on the same mini-batches, the
    costs then stay within 5e-10 of each other -- the most at mini-batch 44,
    where training amplifies rounding about a million-fold -- and the
    parameters end 4e-12 apart.  (In float32 the costs drift apart by 0.1, and
    routing tied blocks' errors by ties="first" moves them by 6.6:
    experiments/chap6prob1/train_demo.py.)
    """
    with theano.config.change_flags(floatX="float64"):
        net = network3.Network([network3.ConvPoolLayer(filter_shape=(20, 1, 5, 5),
                                                       image_shape=(10, 1, 28, 28)),
                                network3.SoftmaxLayer(n_in=2880, n_out=10)], 10, seed=0)
        step = net.compile_train_step(0.1, lmbda=0.0, num_training_batches=1)
    assert {v.type.dtype for v in step.maker.fgraph.variables
            if getattr(v.type, "dtype", "").startswith("float")} == {"float64"}
    conv, softmax = net.layers
    copy = bp.Network([bp.ConvPoolLayer(conv.w.get_value(), conv.b.get_value()),
                       bp.SoftmaxLayer(softmax.w.get_value(), softmax.b.get_value())])
    (x, y), _, _ = mnist
    x, y = x[:1000].astype(np.float64), y[:1000]
    cost_diffs = []
    for k in range(0, 1000, 10):
        theano_cost = step(x[k:k + 10], y[k:k + 10].astype(np.int32))
        numpy_cost = copy.update_mini_batch(x[k:k + 10].reshape(-1, 1, 28, 28), y[k:k + 10], 0.1)
        cost_diffs.append(abs(numpy_cost - theano_cost))
    assert max(cost_diffs) < 1e-8
    assert max(np.max(np.abs(p.get_value() - q)) for p, q in zip(net.params, copy.params)) < 1e-9


# ---------------------------------------------------------------- convolution
def test_conv_pool_layer_is_theanos_conv2d_a_true_convolution():
    """conv2d's default filter_flip=True flips the filter: a convolution, not the book's formula."""
    rng = np.random.default_rng(4)
    a, w = rng.normal(size=(2, 3, 7, 6)), rng.normal(size=(4, 3, 3, 2))
    x_t, w_t = T.dtensor4(), T.dtensor4()
    theano_conv = theano.function([x_t, w_t], conv2d(x_t, w_t))(a, w)
    theano_corr = theano.function([x_t, w_t], conv2d(x_t, w_t, filter_flip=False))(a, w)
    np.testing.assert_allclose(bp.ConvPoolLayer(w, np.zeros(4)).convolve(a), theano_conv,
                               rtol=1e-12)
    np.testing.assert_allclose(bp.ConvSigmoidPoolLayer(w, np.zeros(4)).convolve(a), theano_corr,
                               rtol=1e-12)
    assert not np.allclose(theano_conv, theano_corr)
    # The book's formula, written out for one output neuron.
    assert bp.correlate(a, w)[1, 2, 3, 4] == pytest.approx(np.sum(w[2] * a[1, :, 3:6, 4:6]))


# ---------------------------------------------------------------- ties in max-pooling
TIED = np.array([[[[1.0, 3.0, 5.0, 5.0, 9.0],
                   [3.0, 2.0, 5.0, 5.0, 0.0],
                   [7.0, 7.0, 7.0, 7.0, 7.0]]]])   # 3x5: pooling 2x2 drops row 2 and column 4
DELTA = np.array([[[[1.0, 10.0]]]])


@pytest.mark.parametrize("ties,expected", [
    ("all", [[0, 1, 10, 10, 0], [1, 0, 10, 10, 0], [0, 0, 0, 0, 0]]),
    ("first", [[0, 1, 10, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])])
def test_tie_rule_sends_the_error_exactly_where_stated(ties, expected):
    """Block 1 ties 3 = 3 at (0,1) and (1,0); block 2 ties four 5s; the 9 and 7s are not pooled."""
    assert bp.max_pool(TIED, (2, 2)).tolist() == [[[[3.0, 5.0]]]]
    routes = bp.pool_routes(TIED, (2, 2), ties)
    assert bp.unpool(DELTA, routes, (2, 2))[0, 0].tolist() == expected


def test_theano_max_pool_grad_gives_every_tied_input_the_whole_error():
    a = T.dtensor4()
    grad = theano.function([a], T.grad(T.sum(pool_2d(a, ws=(2, 2), ignore_border=True, mode="max")
                                             * DELTA), a))(TIED)
    routes = bp.pool_routes(TIED, (2, 2), "all")
    np.testing.assert_array_equal(grad, bp.unpool(DELTA, routes, (2, 2)))


def test_at_a_tie_finite_differences_are_one_sided():
    """C = sum(delta * max_pool(a)).  Raising a tied input raises the max; lowering it does not."""
    def cost(a):
        return np.sum(DELTA * bp.max_pool(a, (2, 2)))
    h = 1e-6
    tied = [(0, 0, 0, 1), (0, 0, 1, 0)]   # the two 3s of the first block
    for index in tied:
        up, down = TIED.copy(), TIED.copy()
        up[index] += h
        down[index] -= h
        assert (cost(up) - cost(TIED)) / h == pytest.approx(1.0)     # right-hand derivative
        assert (cost(TIED) - cost(down)) / h == 0.0                  # left-hand derivative
        assert (cost(up) - cost(down)) / (2 * h) == pytest.approx(0.5)
    # ties="all" gives each tied input its right-hand derivative, ties="first" a
    # subgradient (1, 0); neither is the central difference's (1/2, 1/2).
    by_rule = {ties: bp.unpool(DELTA, bp.pool_routes(TIED, (2, 2), ties), (2, 2))
               for ties in bp.TIE_RULES}
    assert [by_rule["all"][i] for i in tied] == [1.0, 1.0]
    assert [by_rule["first"][i] for i in tied] == [1.0, 0.0]


def blank_images(rng):
    """Images whose lower half is blank, like MNIST's margins: every block there ties."""
    x = rng.uniform(0.0, 1.0, size=(2, 1, 12, 12))
    x[:, :, 6:, :] = 0.0
    return x


def problem_net(rng, ties):
    return bp.Network([bp.ConvSigmoidPoolLayer(weights(rng, 1, 1, 3, 3), rng.normal(size=1),
                                               ties=ties),
                       dense_layer(rng, bp.FullyConnectedLayer, 25, 3)], bp.CrossEntropyCost)


def test_blank_blocks_the_shared_bias_and_the_two_tie_rules():
    """With sigma before pooling, blank blocks tie at z = b and move together when b moves.

    C is then differentiable in b, and its derivative counts each block
    once: ties="first" agrees with finite differences, while ties="all"
    -- Theano's rule, so T.grad too -- counts every tied neuron.
    """
    rng = np.random.default_rng(5)
    x, y = blank_images(rng), np.array([0, 2])
    net_all = problem_net(np.random.default_rng(6), "all")
    net_first = problem_net(np.random.default_rng(6), "first")
    b = net_all.layers[0].b
    fd = bp.finite_difference(net_all, x, y, b, (0,))
    g_all, g_first = net_all.gradient(x, y), net_first.gradient(x, y)
    assert g_first[1][0] == pytest.approx(fd, rel=1e-7)
    assert abs(g_all[1][0] - fd) > 0.1 * abs(fd)
    assert bp.relative_error(g_all[1], bp.theano_gradient(net_all, x, y)[1]) < THEANO_TOLERANCE
    # The weights see only blank pixels in the tied blocks, so both rules agree there.
    np.testing.assert_allclose(g_all[0], g_first[0], rtol=1e-12)


def test_identical_patches_tie_in_network3s_ordering_too():
    """Down a vertical stroke of constant intensity, adjacent neurons see identical patches.

    Their convolutions tie and move together whatever the weights do, so
    the weights' derivative counts each block once: ties="first" agrees
    with finite differences, and ties="all" (Theano's rule) does not.
    """
    x = np.zeros((2, 1, 12, 12))
    x[0, 0, 1:11, 4:6] = 0.66
    x[1, 0, 2:10, 6:7] = 0.66
    y = np.array([1, 3])
    net_all = bp.Network([conv_layer(np.random.default_rng(10), bp.ConvPoolLayer, channels=1),
                          dense_layer(np.random.default_rng(11), bp.SoftmaxLayer, 75, 4)])
    net_first = bp.Network([conv_layer(np.random.default_rng(10), bp.ConvPoolLayer, channels=1,
                                       ties="first"),
                            dense_layer(np.random.default_rng(11), bp.SoftmaxLayer, 75, 4)])
    w = net_all.layers[0].w
    fd = np.array([bp.finite_difference(net_all, x, y, w, i) for i in np.ndindex(w.shape)])
    g_all, g_first = net_all.gradient(x, y)[0], net_first.gradient(x, y)[0]
    assert bp.relative_error(g_first.ravel(), fd) < FD_TOLERANCE
    assert bp.relative_error(g_all.ravel(), fd) > 1e-3
    assert bp.relative_error(g_all, bp.theano_gradient(net_all, x, y)[0]) < THEANO_TOLERANCE


def test_crosses_kink_finds_a_near_tie():
    """A 1x2 filter on [[1, 1+1e-7, 5], [0, 0, 0]]: the first block is 1e-7 from a tie.

    Moving w[..., 1] by -1e-5 lowers the second position by 5e-5 but the
    first by only 1e-5, so the maximum changes neuron; moving w[..., 0]
    scales both alike, and it does not.
    """
    x = np.array([[[[1.0, 1.0 + 1e-7, 5.0], [0.0, 0.0, 0.0]]]])
    net = bp.Network([bp.ConvPoolLayer(np.array([[[[1.0, 0.0]]]]), np.zeros(1), filter_flip=False),
                      bp.SoftmaxLayer(np.ones((1, 2)), np.zeros(2))])
    w = net.layers[0].w
    assert bp.crosses_kink(net, x, w, (0, 0, 0, 1))
    assert not bp.crosses_kink(net, x, w, (0, 0, 0, 0))


# ---------------------------------------------------------------- shapes
def backward_shapes(net, x, y):
    """The shape of delta for each layer, found by running the equations layer by layer."""
    records = net.feedforward(x)
    out = records[-1]
    delta = net.cost.delta(out["z"], out["a"], net.targets(y, len(x)))
    shapes = [delta.shape]
    for j in range(len(net.layers) - 1, 0, -1):
        nabla_a = net.layers[j].backpropagate(records[j], delta)
        assert nabla_a.shape == records[j - 1]["a"].shape
        delta = net.layers[j - 1].delta(records[j - 1], nabla_a)
        shapes.insert(0, delta.shape)
    return shapes


def test_shapes_of_every_intermediate_in_the_problems_network():
    rng = np.random.default_rng(7)
    x, y = rng.uniform(size=(5, 1, 28, 28)), rng.integers(0, 10, size=5)
    net = bp.Network([bp.ConvSigmoidPoolLayer(weights(rng, 1, 1, 5, 5), rng.normal(size=1)),
                      dense_layer(rng, bp.FullyConnectedLayer, 144, 10)], bp.QuadraticCost)
    conv, out = net.feedforward(x)
    assert {k: v.shape for k, v in conv.items()} == {
        "a_in": (5, 1, 28, 28), "z": (5, 1, 24, 24), "a_conv": (5, 1, 24, 24),
        "routes": (5, 1, 24, 24), "a": (5, 1, 12, 12)}
    assert out["a_in"].shape == (5, 144) and out["z"].shape == out["a"].shape == (5, 10)
    assert out["in_shape"] == (5, 1, 12, 12)
    assert backward_shapes(net, x, y) == [(5, 1, 24, 24), (5, 10)]
    assert [g.shape for g in net.gradient(x, y)] == [(1, 1, 5, 5), (1,), (144, 10), (10,)]
    # One maximum per 2x2 block: 144 routes per image.
    assert conv["routes"].sum(axis=(2, 3)).tolist() == [[144]] * 5


def test_shapes_of_every_intermediate_in_network3s_conv_fc_softmax():
    rng = np.random.default_rng(8)
    x, y = rng.uniform(size=(2, 1, 28, 28)), rng.integers(0, 10, size=2)
    net = bp.Network([bp.ConvPoolLayer(weights(rng, 20, 1, 5, 5), rng.normal(size=20)),
                      dense_layer(rng, bp.FullyConnectedLayer, 2880, 30),
                      dense_layer(rng, bp.SoftmaxLayer, 30, 10)])
    conv, fc, softmax = net.feedforward(x)
    assert {k: v.shape for k, v in conv.items()} == {
        "a_in": (2, 1, 28, 28), "conv": (2, 20, 24, 24), "routes": (2, 20, 24, 24),
        "z": (2, 20, 12, 12), "a": (2, 20, 12, 12)}
    # Flattened in C order, as Theano's flatten(2).
    np.testing.assert_array_equal(fc["a_in"], conv["a"].reshape(2, 2880))
    assert fc["z"].shape == fc["a"].shape == (2, 30)
    assert softmax["a"].shape == (2, 10)
    np.testing.assert_allclose(softmax["a"].sum(axis=1), 1.0)
    assert backward_shapes(net, x, y) == [(2, 20, 12, 12), (2, 30), (2, 10)]
    assert [g.shape for g in net.gradient(x, y)] == [p.shape for p in net.params]


# ---------------------------------------------------------------- bad shapes
def good_net():
    rng = np.random.default_rng(9)
    return bp.Network([bp.ConvPoolLayer(weights(rng, 2, 1, 5, 5), np.zeros(2)),
                       dense_layer(rng, bp.SoftmaxLayer, 288, 10)])


@pytest.mark.parametrize("make,message", [
    (lambda: bp.ConvPoolLayer(np.zeros((5, 5)), np.zeros(1)),
     "w: expected shape (n_filters, channels, fh, fw), got (5, 5)"),
    (lambda: bp.ConvSigmoidPoolLayer(np.zeros((20, 1, 5, 5)), np.zeros(10)),
     "b: expected shape (20,), got (10,)"),
    (lambda: bp.ConvPoolLayer(np.zeros((2, 1, 5, 5)), np.zeros(2), poolsize=(2, 0)),
     "poolsize: expected 2 positive integers, got (2, 0)"),
    (lambda: bp.ConvPoolLayer(np.zeros((2, 1, 5, 5)), np.zeros(2), ties="random"),
     "ties: expected one of ('all', 'first'), got 'random'"),
    (lambda: bp.FullyConnectedLayer(np.zeros(10), np.zeros(10)),
     "w: expected shape (n_in, n_out), got (10,)"),
    (lambda: bp.SoftmaxLayer(np.zeros((30, 10)), np.zeros(30)),
     "b: expected shape (10,), got (30,)"),
])
def test_bad_parameter_shapes_name_the_parameter(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value) == message


@pytest.mark.parametrize("x,y,message", [
    (np.zeros((10, 784)), np.zeros(10, dtype=int),
     "x: expected shape (n, 1, >=5, >=5), got (10, 784)"),
    (np.zeros((10, 3, 28, 28)), np.zeros(10, dtype=int),
     "x: expected shape (n, 1, >=5, >=5), got (10, 3, 28, 28)"),
    (np.zeros((10, 1, 4, 28)), np.zeros(10, dtype=int),
     "x: expected shape (n, 1, >=5, >=5), got (10, 1, 4, 28)"),
    (np.zeros((10, 1, 26, 26)), np.zeros(10, dtype=int),
     "layer 1 (SoftmaxLayer) input, flattened from (10, 2, 11, 11): expected shape (n, 288), "
     "got (10, 242)"),
    (np.zeros((10, 1, 28, 28)), np.zeros(9, dtype=int),
     "y (integer labels): expected shape (10,), got (9,)"),
    (np.zeros((10, 1, 28, 28)), np.zeros((10, 10)),
     "y (integer labels): expected shape (10,), got (10, 10)"),
])
def test_bad_input_shapes_name_the_input(x, y, message):
    with pytest.raises(ValueError) as info:
        good_net().gradient(x, y)
    assert str(info.value) == message


def test_bad_labels_and_mismatched_cost():
    with pytest.raises(ValueError, match=r"y: expected integer labels in 0\.\.9"):
        good_net().gradient(np.zeros((2, 1, 28, 28)), np.array([0, 10]))
    with pytest.raises(ValueError, match="QuadraticCost needs a FullyConnectedLayer as the last "
                                         "layer, got SoftmaxLayer"):
        bp.Network(good_net().layers, bp.QuadraticCost)
