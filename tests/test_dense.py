"""network3.dense: the training graph's products equal numpy's, and an epoch equals the plain one."""
import numpy as np
import pytest
import theano
import theano.tensor as T

import network3
from network3 import cops
from network3.data import shared, subset
from network3.dense import DenseDot, dense_dot
from network3.experiment import conv_net_layers
from network3.layers import layer_from_config


@pytest.mark.parametrize("batch, n_in, n_out", [(10, 2880, 100), (10, 100, 10), (10, 2880, 10),
                                                (7, 35, 23), (1, 9, 17), (100, 64, 40)])
@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("float64", 1e-13)])
@pytest.mark.parametrize("mode", [None, "FAST_COMPILE"])  # C code, and the Python perform()
def test_products_and_gradients_equal_numpy(batch, n_in, n_out, dtype, tol, mode):
    rng = np.random.RandomState(n_in + n_out)
    x, w = T.matrix(dtype=dtype), T.matrix(dtype=dtype)
    g = T.matrix(dtype=dtype)
    y = dense_dot(x, w, n_in, n_out)
    assert isinstance(y.owner.op, DenseDot)
    f = theano.function([x, w, g], [y] + T.grad((y * g).sum(), [x, w]), mode=mode)
    xv, wv = rng.normal(size=(batch, n_in)).astype(dtype), rng.normal(size=(n_in, n_out)).astype(dtype)
    gv = rng.normal(size=(batch, n_out)).astype(dtype)
    for ours, exact in zip(f(xv, wv, gv), [xv.astype("float64") @ wv, gv.astype("float64") @ wv.T,
                                            xv.T.astype("float64") @ gv]):
        assert ours.dtype == dtype
        scale = np.sqrt(max(n_in, n_out))
        np.testing.assert_allclose(ours, exact, rtol=0, atol=tol * scale * np.abs(exact).max())


def test_wrong_width_is_an_error_naming_the_sizes():
    x, w = T.matrix(), T.matrix()
    f = theano.function([x, w], dense_dot(x, w, 30, 4))
    with pytest.raises(ValueError, match=r"dense 30x4: x has size 29 in dimension 1, expected 30"):
        f(np.zeros((2, 29), "float32"), np.zeros((30, 4), "float32"))


@pytest.mark.parametrize("fc_units", [100, 0])
def test_an_epoch_with_c_ops_equals_the_plain_graph(mnist, fc_units, monkeypatch):
    """Same updates in the same order: the parameters after an epoch (500 mini-batches of 10 real
    images) equal those of the plain Theano graph to float32 rounding, which after 500 steps
    has grown to about 2e-4 (a wrong gradient would differ by 1e-1)."""
    training, validation, _ = mnist
    params, accuracies = [], []
    for c_ops in (True, False):
        monkeypatch.setattr(cops, "ENABLED", c_ops)
        net = network3.Network([layer_from_config(c) for c in conv_net_layers(fc_units=fc_units)],
                               10, seed=0)
        ops = {type(node.op).__name__ for node in net._compile_train_mb(
            shared(subset(training, 100)), 0.1, 0.0, 10, None).maker.fgraph.toposort()}
        assert ("ConvPool" in ops and "DenseDot" in ops) == c_ops
        records = net.SGD(shared(subset(training, 5000)), 1, 10, 0.1,
                          shared(subset(validation, 1000)), quiet=True)
        params.append(net.get_params())
        accuracies.append(records[-1]["validation_accuracy"])
    for ours, plain in zip(*params):
        np.testing.assert_allclose(ours, plain, rtol=0, atol=1e-3 * max(1.0, np.abs(plain).max()))
    assert accuracies[0] == pytest.approx(accuracies[1], abs=0.002) and accuracies[0] > 0.3
