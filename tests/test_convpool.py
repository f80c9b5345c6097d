"""network3.convpool: the fused ConvPoolLayer ops equal the plain Theano graph."""
import numpy as np
import pytest
import theano
import theano.tensor as T

from network3 import cops
from network3.convpool import ConvPool
from network3.layers import ACTIVATIONS, ConvPoolLayer

SHAPES = [  # filter_shape, image_shape, poolsize
    ((20, 1, 5, 5), (10, 1, 28, 28), (2, 2)),      # the book's first layer
    ((40, 20, 5, 5), (10, 20, 12, 12), (2, 2)),    # its second
    ((3, 2, 3, 4), (4, 2, 9, 11), (1, 2)),         # odd sizes: vector tails
    ((5, 3, 3, 3), (2, 3, 8, 10), (3, 2)),         # pooling without shuffles
]


def layer_function(filter_shape, image_shape, poolsize, activation, dtype, c_ops, mode=None,
                   monkeypatch=None):
    """f(x, w, b, g) -> (output, dC/dw, dC/db, dC/dx) for C = sum(output * g)."""
    monkeypatch.setattr(cops, "ENABLED", c_ops)
    layer = ConvPoolLayer(filter_shape, image_shape, poolsize, ACTIVATIONS[activation])
    x, g = T.matrix(dtype=dtype), T.tensor4(dtype=dtype)
    w, b = T.tensor4(dtype=dtype), T.vector(dtype=dtype)
    layer.w, layer.b = w, b
    out = layer.output_for(x)
    grads = T.grad((out * g).sum(), [w, b, x])
    uses_c_ops = any(isinstance(node.op, ConvPool) for node in theano.graph.basic.io_toposort(
        [x, w, b], [out]))
    assert uses_c_ops == c_ops
    return theano.function([x, w, b, g], [out] + grads, mode=mode)


def inputs(filter_shape, image_shape, poolsize, dtype, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.rand(image_shape[0], int(np.prod(image_shape[1:]))).astype(dtype)
    x[:, : x.shape[1] // 3] = 0  # a background of zeros: every block there ties at 0
    w = rng.normal(0, 0.5, size=filter_shape).astype(dtype)
    b = rng.normal(0, 1, size=filter_shape[:1]).astype(dtype)
    conv = (image_shape[2] - filter_shape[2] + 1, image_shape[3] - filter_shape[3] + 1)
    out = (image_shape[0], filter_shape[0], conv[0] // poolsize[0], conv[1] // poolsize[1])
    return x, w, b, rng.normal(size=out).astype(dtype)


@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "ReLU", "linear"])
@pytest.mark.parametrize("dtype, tol", [("float32", 2e-5), ("float64", 1e-12)])
def test_c_ops_equal_the_plain_graph(shapes, activation, dtype, tol, monkeypatch):
    args = inputs(*shapes, dtype)
    ours = layer_function(*shapes, activation, dtype, True, monkeypatch=monkeypatch)(*args)
    plain = layer_function(*shapes, activation, dtype, False, monkeypatch=monkeypatch)(*args)
    for name, a, b in zip(["output", "dw", "db", "dx"], ours, plain):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        scale = max(1.0, np.abs(b).max())
        assert np.abs(a - b).max() <= tol * scale, (name, np.abs(a - b).max(), scale)


@pytest.mark.parametrize("shapes", SHAPES[::2])
def test_numpy_perform_equals_c_code(shapes, monkeypatch):
    args = inputs(*shapes, "float64", seed=1)
    c = layer_function(*shapes, "sigmoid", "float64", True, monkeypatch=monkeypatch)(*args)
    py = layer_function(*shapes, "sigmoid", "float64", True, mode="FAST_COMPILE",
                        monkeypatch=monkeypatch)(*args)
    for a, b in zip(c, py):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_every_tied_maximum_gets_the_gradient(monkeypatch):
    """Small integer images tie often; dC/dx then equals the plain graph's exactly-routed one."""
    shapes = ((2, 1, 2, 2), (3, 1, 7, 7), (2, 2))
    rng = np.random.RandomState(3)
    x = rng.randint(0, 2, size=(3, 49)).astype("float64")
    w = np.ones(shapes[0])                     # integer conv outputs: many ties
    b, g = np.zeros(2), rng.normal(size=(3, 2, 3, 3))
    ours = layer_function(*shapes, "linear", "float64", True, monkeypatch=monkeypatch)(x, w, b, g)
    plain = layer_function(*shapes, "linear", "float64", False, monkeypatch=monkeypatch)(x, w, b, g)
    for a, p in zip(ours, plain):
        np.testing.assert_allclose(a, p, rtol=1e-12, atol=1e-12)
    # ties happened: more conv positions than blocks received the gradient
    assert (np.abs(ours[3]) > 0).sum() > 0 and (ours[0] > 0).any()


def test_wrong_image_size_names_the_layer(monkeypatch):
    f = layer_function(*SHAPES[0], "sigmoid", "float32", True, monkeypatch=monkeypatch)
    x, w, b, g = inputs(*SHAPES[0], "float32")
    with pytest.raises(ValueError, match=r"ConvPoolLayer \(filters 20x1x5x5.*filters has size 3"):
        f(x, w[:, :, :3], b, g)
