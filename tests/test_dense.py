"""network3.dense: the training graph's products equal numpy's, and an epoch equals the plain one."""
import numpy as np
import pytest
import theano
import theano.tensor as T

from conftest import run_python
from network3.dense import DenseDot, dense_dot


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


TRAIN_ONE_EPOCH = """
import sys, network3, numpy as np
from network3 import cops
from network3.data import load_data, shared, subset
from network3.experiment import conv_net_layers
from network3.layers import layer_from_config
training, validation, _ = load_data(quiet=True)
params = {}
for c_ops in (True, False):
    cops.ENABLED = c_ops
    net = network3.Network([layer_from_config(c) for c in conv_net_layers(fc_units=int(sys.argv[1]))],
                           10, seed=0)
    ops = {type(node.op).__name__ for node in net._compile_train_mb(
        shared(subset(training, 100)), 0.1, 0.0, 10, None).maker.fgraph.toposort()}
    assert ("ConvPool" in ops and "DenseDot" in ops) == c_ops, ops
    net.SGD(shared(subset(training, 5000)), 1, 10, 0.1, shared(subset(validation, 1000)), quiet=True)
    for k, p in enumerate(net.get_params()):
        params["%s%d" % ("c" if c_ops else "plain", k)] = p
np.savez(sys.argv[2], **params)
"""


def relative_error(params, exact):
    """Largest difference of any parameter array from the exact one, relative to its scale."""
    return max(np.abs(p - e).max() / np.abs(e).max() for p, e in zip(params, exact))


@pytest.mark.parametrize("fc_units", [100, 0])
def test_an_epoch_with_c_ops_equals_the_plain_graph(fc_units, tmp_path):
    """Same updates in the same order: after an epoch of 500 mini-batches of 10 real images the
    parameters equal the plain Theano graph's to 1e-10 in float64.  In float32 both paths drift
    from the float64 result by rounding, which grows over 500 steps (a near-tie in a pooling
    block can go either way); the C ops' drift stays within 5 times the plain graph's
    (measured: 3.7 times with the FC layer, 1.0 without; bench/README.md)."""
    runs = {}
    for floatx in ("float64", "float32"):
        out = str(tmp_path / (floatx + ".npz"))
        result = run_python(["-c", TRAIN_ONE_EPOCH, str(fc_units), out],
                            env={"THEANO_FLAGS": "floatX=" + floatx})
        assert result.returncode == 0, result.stderr[-3000:]
        runs[floatx] = np.load(out)
    n = len(runs["float64"].files) // 2
    c64, plain64, c32, plain32 = ([runs[fx][name + str(k)] for k in range(n)]
                                  for fx, name in [("float64", "c"), ("float64", "plain"),
                                                   ("float32", "c"), ("float32", "plain")])
    assert all(p.dtype == np.float32 for p in c32) and all(p.dtype == np.float64 for p in c64)
    assert relative_error(c64, plain64) < 1e-10
    plain_drift = relative_error(plain32, plain64)
    assert 0 < plain_drift < 0.05
    assert relative_error(c32, plain64) < 5 * plain_drift


SSE2_ONLY = """
import sys
import network3
import numpy as np, theano, theano.tensor as T
from network3.dense import dense_dot
from network3.layers import ConvPoolLayer, FullyConnectedLayer
np.random.seed(0)  # the layers draw their weights from numpy's global generator
rng = np.random.RandomState(0)
x = T.matrix()
conv = ConvPoolLayer((4, 1, 5, 5), (3, 1, 12, 12))
fc = FullyConnectedLayer(4 * 4 * 4, 9)
out = fc.output_dropout_for(conv.output_dropout_for(x, None), None)
cost = out.sum()
f = theano.function([x], [out] + T.grad(cost, [conv.w, fc.w]))
xv = rng.rand(3, 144).astype("float32")
np.save(sys.argv[1], np.concatenate([v.ravel() for v in f(xv)]))
"""


def test_c_ops_build_for_a_cpu_without_avx(tmp_path):
    """Compiled for plain x86-64 (SSE2), the C ops give what the native build gives."""
    results = []
    for name, flags in (("native", ""), ("sse2", ",gcc__cxxflags=-march=x86-64")):
        out = str(tmp_path / (name + ".npy"))
        result = run_python(["-c", SSE2_ONLY, out], env={
            "THEANO_FLAGS": "base_compiledir=%s%s" % (tmp_path / ("cache-" + name), flags)})
        assert result.returncode == 0, result.stderr[-3000:]
        results.append(np.load(out))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-6)
