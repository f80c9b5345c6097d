"""network3.layers: outputs against naive numpy loops, shapes, initialisation, errors."""
import numpy as np
import pytest
import theano
import theano.tensor as T

from network3 import ConvPoolLayer, FullyConnectedLayer, ReLU, SoftmaxLayer, linear, tanh
from network3.layers import layer_from_config


def sigmoid_np(z):
    return 1.0 / (1.0 + np.exp(-z))


def naive_conv_pool(x, w, b, pool, act):
    """Theano's conv2d is a true convolution (flipped filter), then max-pool, bias, act."""
    n, c, h, wd = x.shape
    f, _, fh, fw = w.shape
    out = np.zeros((n, f, h - fh + 1, wd - fw + 1))
    for i in range(n):
        for k in range(f):
            for r in range(h - fh + 1):
                for s in range(wd - fw + 1):
                    out[i, k, r, s] = np.sum(x[i, :, r:r + fh, s:s + fw] * w[k, :, ::-1, ::-1])
    ph, pw = pool
    pooled = np.zeros(out.shape[:2] + (out.shape[2] // ph, out.shape[3] // pw))
    for r in range(pooled.shape[2]):
        for s in range(pooled.shape[3]):
            pooled[:, :, r, s] = out[:, :, r * ph:(r + 1) * ph, s * pw:(s + 1) * pw].max(axis=(2, 3))
    return act(pooled + b[None, :, None, None])


@pytest.mark.parametrize("activation, act_np", [(tanh, np.tanh),
                                                 (ReLU, lambda z: np.maximum(0, z))])
def test_conv_pool_layer_matches_naive_loops(activation, act_np):
    rng = np.random.RandomState(1)
    layer = ConvPoolLayer(filter_shape=(3, 2, 3, 3), image_shape=(4, 2, 8, 8), poolsize=(2, 2),
                          activation_fn=activation)
    x = T.matrix("x")
    f = theano.function([x], layer.output_for(x))
    images = rng.rand(5, 2 * 8 * 8).astype("float32")  # any batch size, not only 4
    got = f(images)
    expected = naive_conv_pool(images.reshape(5, 2, 8, 8), layer.w.get_value(),
                               layer.b.get_value(), (2, 2), act_np)
    assert got.shape == layer.output_shape((5,)) == (5, 3, 3, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_fully_connected_and_softmax_match_numpy():
    rng = np.random.RandomState(2)
    fc = FullyConnectedLayer(n_in=6, n_out=4, p_dropout=0.25)
    sm = SoftmaxLayer(n_in=4, n_out=3)
    sm.w.set_value(rng.randn(4, 3).astype("float32"))
    x = T.matrix("x")
    f = theano.function([x], [fc.output_for(x), sm.output_for(fc.output_for(x))])
    inputs = rng.rand(7, 6).astype("float32")
    hidden, probs = f(inputs)
    expected_hidden = sigmoid_np(0.75 * inputs @ fc.w.get_value() + fc.b.get_value())
    np.testing.assert_allclose(hidden, expected_hidden, rtol=1e-5)
    logits = hidden @ sm.w.get_value() + sm.b.get_value()
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-5)
    assert probs.shape == sm.output_shape((7, 4)) == (7, 3)


def test_dropout_zeroes_about_p_of_the_units():
    from theano.sandbox.rng_mrg import MRG_RandomStream
    fc = FullyConnectedLayer(n_in=1000, n_out=1, activation_fn=linear, p_dropout=0.3)
    fc.w.set_value(np.ones((1000, 1), dtype="float32"))
    fc.b.set_value(np.zeros(1, dtype="float32"))
    x = T.matrix("x")
    f = theano.function([x], fc.output_dropout_for(x, MRG_RandomStream(7)))
    kept = f(np.ones((50, 1000), dtype="float32")).ravel() / 1000
    assert abs(kept.mean() - 0.7) < 0.01
    assert kept.std() > 0  # a fresh mask per row


def test_book_initialisation():
    np.random.seed(3)
    conv = ConvPoolLayer(filter_shape=(20, 1, 5, 5), image_shape=(10, 1, 28, 28))
    fc = FullyConnectedLayer(n_in=2880, n_out=100)
    sm = SoftmaxLayer(n_in=100, n_out=10)
    assert conv.w.get_value().std() == pytest.approx(np.sqrt(1 / (20 * 25 / 4)), rel=0.05)
    assert conv.b.get_value().shape == (20,)
    assert fc.w.get_value().std() == pytest.approx(np.sqrt(1 / 100), rel=0.02)
    assert fc.b.get_value().std() == pytest.approx(1.0, rel=0.3)
    assert not sm.w.get_value().any() and not sm.b.get_value().any()
    assert conv.w.dtype == fc.w.dtype == "float32"
    assert (conv.n_in, conv.n_out, fc.n_out) == (784, 2880, 100)


def test_config_round_trip():
    conv = ConvPoolLayer(filter_shape=(4, 1, 5, 5), image_shape=(10, 1, 28, 28), activation_fn=ReLU)
    rebuilt = layer_from_config(conv.config())
    assert rebuilt.config() == conv.config() and rebuilt.activation_fn is ReLU
    with pytest.raises(ValueError, match="unknown layer type 'Pool'"):
        layer_from_config({"type": "Pool"})
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        layer_from_config(dict(conv.config(), activation="swish"))


@pytest.mark.parametrize("make, message", [
    (lambda: ConvPoolLayer((20, 3, 5, 5), (10, 1, 28, 28)),
     r"filter_shape \(20, 3, 5, 5\) expects 3 input feature maps but image_shape "
     r"\(10, 1, 28, 28\) has 1"),
    (lambda: ConvPoolLayer((20, 1, 4, 4), (10, 1, 28, 28), poolsize=(2, 2)),
     r"poolsize \(2, 2\) does not divide the 25x25 feature map"),
    (lambda: ConvPoolLayer((20, 1, 30, 5), (10, 1, 28, 28)), r"filter 30x5 is larger"),
    (lambda: ConvPoolLayer((20, 1, 5), (10, 1, 28, 28)), r"filter_shape must be 4 positive"),
    (lambda: FullyConnectedLayer(0, 10), r"\(n_in, n_out\) must be 2 positive integers"),
    (lambda: FullyConnectedLayer(10, 10, p_dropout=1.0), r"p_dropout must be in \[0, 1\)"),
    (lambda: SoftmaxLayer(10, 10, p_dropout=-0.1), r"SoftmaxLayer: p_dropout"),
])
def test_constructor_errors_name_the_layer_and_shapes(make, message):
    with pytest.raises(ValueError, match=message):
        make()
