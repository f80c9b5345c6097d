"""Max-pooling over non-overlapping blocks, as two small C ops.

Theano's general ``pool_2d`` handles strides, padding and borders; its
gradient ``MaxPoolGrad`` took a quarter of a training step of the book's
first conv net (see bench/README.md).  ConvPoolLayer only needs blocks that
tile the feature map exactly, which a single pass does in C.  The
mathematics is Theano's: the gradient of a block goes to every input equal
to the block's maximum (ties all receive it), so results are the same.
"""
import numpy as np
import theano.tensor as T
from theano.graph.basic import Apply
from theano.graph.op import COp

_CHECK = """
    if (PyArray_NDIM(%(x)s) != 4 || PyArray_DIMS(%(x)s)[2] %% %(ph)d ||
            PyArray_DIMS(%(x)s)[3] %% %(pw)d) {
        PyErr_SetString(PyExc_ValueError,
                        "max_pool: the %(ph)dx%(pw)d block must divide the feature map");
        %(fail)s;
    }
"""


class _BlockOp(COp):
    __props__ = ("ph", "pw")

    def __init__(self, ph, pw):
        self.ph, self.pw = int(ph), int(pw)

    def _blocks(self, x):
        n, c, h, w = x.shape
        return x.reshape(n, c, h // self.ph, self.ph, w // self.pw, self.pw)

    def c_code_cache_version(self):
        return (3,)


class MaxPool(_BlockOp):
    """The maximum of each ph x pw block of a (batch, maps, height, width) tensor."""

    def make_node(self, x):
        x = T.as_tensor_variable(x)
        if x.ndim != 4:
            raise ValueError("max_pool expects a 4-d tensor, got %d dimensions" % x.ndim)
        return Apply(self, [x], [x.type()])

    def perform(self, node, inputs, outputs):
        outputs[0][0] = self._blocks(inputs[0]).max(axis=(3, 5))

    def infer_shape(self, fgraph, node, shapes):
        n, c, h, w = shapes[0]
        return [(n, c, h // self.ph, w // self.pw)]

    def grad(self, inputs, output_grads):
        (x,), (gz,) = inputs, output_grads
        return [MaxPoolGrad(self.ph, self.pw)(x, self(x), gz)]

    def c_code(self, node, name, inputs, outputs, sub):
        x, z = inputs[0], outputs[0]
        return (_CHECK + """
    {
        PyArrayObject* xc = PyArray_GETCONTIGUOUS(%(x)s);
        if (!xc) %(fail)s;
        npy_intp n = PyArray_DIMS(xc)[0], c = PyArray_DIMS(xc)[1];
        npy_intp h = PyArray_DIMS(xc)[2], w = PyArray_DIMS(xc)[3];
        npy_intp dims[4] = {n, c, h / %(ph)d, w / %(pw)d};
        if (!%(z)s || !PyArray_IS_C_CONTIGUOUS(%(z)s) ||
                !PyArray_CompareLists(PyArray_DIMS(%(z)s), dims, 4)) {
            Py_XDECREF(%(z)s);
            %(z)s = (PyArrayObject*)PyArray_EMPTY(4, dims, PyArray_TYPE(xc), 0);
            if (!%(z)s) { Py_DECREF(xc); %(fail)s; }
        }
        const dtype_%(x)s* X = (const dtype_%(x)s*)PyArray_DATA(xc);
        dtype_%(z)s* Z = (dtype_%(z)s*)PyArray_DATA(%(z)s);
        const npy_intp oh = dims[2], ow = dims[3];
        for (npy_intp m = 0; m < n * c; ++m) {
            const dtype_%(x)s* xm = X + m * h * w;
            dtype_%(z)s* zm = Z + m * oh * ow;
            for (npy_intp i = 0; i < oh; ++i) {
                for (npy_intp j = 0; j < ow; ++j) {
                    const dtype_%(x)s* block = xm + i * %(ph)d * w + j * %(pw)d;
                    dtype_%(x)s best = block[0];
                    for (int a = 0; a < %(ph)d; ++a)
                        for (int b = 0; b < %(pw)d; ++b)
                            if (block[a * w + b] > best) best = block[a * w + b];
                    zm[i * ow + j] = best;
                }
            }
        }
        Py_DECREF(xc);
    }
""") % dict(x=x, z=z, ph=self.ph, pw=self.pw, fail=sub["fail"])


class MaxPoolGrad(_BlockOp):
    """Gradient of MaxPool: each block's gradient to every input equal to its maximum."""

    def make_node(self, x, z, gz):
        x, z, gz = (T.as_tensor_variable(v) for v in (x, z, gz))
        return Apply(self, [x, z, gz], [x.type()])

    def perform(self, node, inputs, outputs):
        x, z, gz = inputs
        at_max = self._blocks(x) == z[:, :, :, None, :, None]
        outputs[0][0] = (at_max * gz[:, :, :, None, :, None]).reshape(x.shape).astype(x.dtype)

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0]]

    def c_code(self, node, name, inputs, outputs, sub):
        x, z, gz = inputs
        gx = outputs[0]
        return (_CHECK + """
    {
        PyArrayObject* xc = PyArray_GETCONTIGUOUS(%(x)s);
        PyArrayObject* zc = PyArray_GETCONTIGUOUS(%(z)s);
        PyArrayObject* gc = PyArray_GETCONTIGUOUS(%(gz)s);
        if (!xc || !zc || !gc) { Py_XDECREF(xc); Py_XDECREF(zc); Py_XDECREF(gc); %(fail)s; }
        npy_intp n = PyArray_DIMS(xc)[0], c = PyArray_DIMS(xc)[1];
        npy_intp h = PyArray_DIMS(xc)[2], w = PyArray_DIMS(xc)[3];
        if (!%(gx)s || !PyArray_IS_C_CONTIGUOUS(%(gx)s) ||
                !PyArray_CompareLists(PyArray_DIMS(%(gx)s), PyArray_DIMS(xc), 4)) {
            Py_XDECREF(%(gx)s);
            %(gx)s = (PyArrayObject*)PyArray_EMPTY(4, PyArray_DIMS(xc), PyArray_TYPE(xc), 0);
            if (!%(gx)s) { Py_DECREF(xc); Py_DECREF(zc); Py_DECREF(gc); %(fail)s; }
        }
        const dtype_%(x)s* X = (const dtype_%(x)s*)PyArray_DATA(xc);
        const dtype_%(z)s* Z = (const dtype_%(z)s*)PyArray_DATA(zc);
        const dtype_%(gz)s* G = (const dtype_%(gz)s*)PyArray_DATA(gc);
        dtype_%(gx)s* GX = (dtype_%(gx)s*)PyArray_DATA(%(gx)s);
        const npy_intp oh = h / %(ph)d, ow = w / %(pw)d;
        /* Row by row through the input, so that reads and writes are sequential. */
        for (npy_intp m = 0; m < n * c; ++m) {
            for (npy_intp i = 0; i < oh; ++i) {
                const dtype_%(z)s* zr = Z + (m * oh + i) * ow;
                const dtype_%(gz)s* gzr = G + (m * oh + i) * ow;
                for (int a = 0; a < %(ph)d; ++a) {
                    const npy_intp offset = (m * h + i * %(ph)d + a) * w;
                    const dtype_%(x)s* xr = X + offset;
                    dtype_%(gx)s* gr = GX + offset;
                    for (npy_intp j = 0; j < ow; ++j)
                        for (int b = 0; b < %(pw)d; ++b)
                            gr[j * %(pw)d + b] = xr[j * %(pw)d + b] == zr[j] ? gzr[j] : 0;
                }
            }
        }
        Py_DECREF(xc); Py_DECREF(zc); Py_DECREF(gc);
    }
""") % dict(x=x, z=z, gz=gz, gx=gx, ph=self.ph, pw=self.pw, fail=sub["fail"])


def max_pool(x, poolsize):
    """Max-pool a (batch, maps, height, width) tensor over poolsize blocks that tile it."""
    return MaxPool(*poolsize)(x)
