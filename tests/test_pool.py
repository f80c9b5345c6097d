"""network3.pool: the C max-pooling ops equal Theano's pool_2d, ties included."""
import numpy as np
import pytest
import theano
import theano.tensor as T
from theano.tensor.signal.pool import pool_2d

import network3
from network3 import layers
from network3.data import shared, subset
from network3.pool import max_pool


def pooled_and_grad(pool, dtype, mode=None):
    x, g = T.tensor4(dtype=dtype), T.tensor4(dtype=dtype)
    pooled = pool(x)
    return theano.function([x, g], [pooled, T.grad((pooled * g).sum(), x)], mode=mode)


@pytest.mark.parametrize("poolsize, shape", [((2, 2), (3, 4, 8, 6)), ((3, 3), (2, 2, 9, 12)),
                                             ((2, 3), (1, 3, 4, 9)), ((1, 1), (2, 1, 3, 3))])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", [None, "FAST_COMPILE"])  # C code, and the Python perform()
def test_equals_theano_pool_2d_with_ties(poolsize, shape, dtype, mode):
    rng = np.random.RandomState(sum(shape))
    x = rng.randint(0, 3, size=shape).astype(dtype)  # small integers: many tied maxima
    out_shape = shape[:2] + (shape[2] // poolsize[0], shape[3] // poolsize[1])
    g = rng.rand(*out_shape).astype(dtype)
    ours = pooled_and_grad(lambda v: max_pool(v, poolsize), dtype, mode)(x, g)
    theirs = pooled_and_grad(lambda v: pool_2d(v, ws=poolsize, ignore_border=True), dtype)(x, g)
    assert ours[0].shape == out_shape and ours[0].dtype == dtype
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
    if poolsize != (1, 1):  # ties did occur, and every tied input got the gradient
        assert (ours[1] != 0).sum() > np.prod(out_shape)


def test_non_contiguous_input():
    x = T.tensor4()
    f = theano.function([x], max_pool(x.dimshuffle(0, 1, 3, 2), (2, 2)))
    v = np.random.RandomState(0).rand(2, 3, 4, 6).astype("float32")
    expected = v.transpose(0, 1, 3, 2).reshape(2, 3, 3, 2, 2, 2).max(axis=(3, 5))
    np.testing.assert_array_equal(f(v), expected)


def test_block_that_does_not_divide_is_an_error():
    x = T.tensor4()
    f = theano.function([x], max_pool(x, (2, 2)))
    with pytest.raises(ValueError, match="the 2x2 block must divide the feature map"):
        f(np.zeros((1, 1, 5, 4), dtype="float32"))


def test_training_equals_the_pool_2d_network(small_mnist, monkeypatch):
    """Same parameters after 100 SGD steps of the book's first conv net, either pooling."""
    def train(pool):
        monkeypatch.setattr(layers, "max_pool", pool)
        net = network3.Network([layers.ConvPoolLayer((20, 1, 5, 5), (10, 1, 28, 28)),
                                layers.FullyConnectedLayer(2880, 100),
                                layers.SoftmaxLayer(100, 10)], 10, seed=5)
        net.SGD(shared(subset(small_mnist[0], 1000)), 1, 10, 0.1, shared(small_mnist[1]),
                quiet=True)
        return net.get_params()

    ours = train(max_pool)
    theirs = train(lambda x, ws: pool_2d(x, ws=ws, ignore_border=True))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
