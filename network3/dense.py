"""The training graph's x w products of FullyConnectedLayer and SoftmaxLayer as C ops.

At a mini-batch of 10, a general GEMM spends much of its time packing w
(2880 x 100 for the book's FC layer) into panels on every call.  ``DenseDot``
and its two gradient ops (``kernels/dense.h``) stream w in place instead:
forward, the input's gradient g w^T, and the weight gradient x^T g.  They are
used in training graphs only; evaluation in batches of 100 keeps Theano's
GEMM, which is faster there.  Results equal ``T.dot``'s to float32 rounding.
"""
import numpy as np
import theano.tensor as T
from theano.gradient import grad_not_implemented
from theano.graph.basic import Apply

from . import cops
from .cops import KernelOp, c_body, ctype, typenum


def use_dense(x, w):
    return cops.enabled() and x.dtype == w.dtype and x.dtype in ("float32", "float64")


def _with_scratch(call):
    """C code that runs `call` with `batch` (the rows of cx) and `scratch` (scratch_size)."""
    return """
        const int batch = (int)PyArray_DIMS(cx)[0];
        %(t)s* scratch = (%(t)s*)malloc(sizeof(%(t)s) * %(K)s::scratch_size(batch));
        if (scratch) {
""" + call + """
        } else {
            ok = 0;
        }
        free(scratch);"""


class _DenseBase(KernelOp):
    __props__ = ("n_in", "n_out")

    def __init__(self, n_in, n_out):
        self.n_in, self.n_out = int(n_in), int(n_out)

    def _kernel(self, t):
        return "n3::Dense<%s, %d, %d>" % (t, self.n_in, self.n_out)

    def _label(self):
        return "dense %dx%d" % (self.n_in, self.n_out)

    def _matrix(self, v):
        v = T.as_tensor_variable(v)
        if v.ndim != 2:
            raise ValueError("%s expects matrices, got %d dimensions" % (self._label(), v.ndim))
        return v

    def _call(self, node, sub, inputs, output, out_dims, body):
        t = ctype(node.inputs[0])
        tnum = typenum(node.inputs[0])
        return c_body(self._label(), [(var, local, what, shape, tnum)
                                      for var, local, what, shape in inputs],
                      [(output, out_dims, tnum)], body % dict(K=self._kernel(t), t=t), sub["fail"])


class DenseDot(_DenseBase):
    """x (batch, n_in) times w (n_in, n_out)."""

    def make_node(self, x, w):
        x, w = self._matrix(x), self._matrix(w)
        return Apply(self, [x, w], [T.TensorType(x.dtype, (False, False))()])

    def infer_shape(self, fgraph, node, shapes):
        return [(shapes[0][0], self.n_out)]

    def perform(self, node, inputs, outputs):
        outputs[0][0] = np.dot(*inputs).astype(node.outputs[0].dtype)

    def grad(self, inputs, output_grads):
        x, w = inputs
        (g,) = output_grads
        return [DenseInputGrad(self.n_in, self.n_out)(g, w),
                DenseWeightGrad(self.n_in, self.n_out)(x, g)]

    def c_code(self, node, name, inputs, outputs, sub):
        x, w = inputs
        return self._call(node, sub, [(x, "cx", "x", (None, self.n_in)),
                                      (w, "cw", "w", (self.n_in, self.n_out))],
                          outputs[0], ["PyArray_DIMS(cx)[0]", self.n_out], _with_scratch("""
            %(K)s::forward(batch, (const %(t)s*)PyArray_DATA(cx), (const %(t)s*)PyArray_DATA(cw),
                           (%(t)s*)PyArray_DATA(""" + outputs[0] + "), scratch);"))


class DenseInputGrad(_DenseBase):
    """g (batch, n_out) times w^T: the gradient of the layer's input."""

    def make_node(self, g, w):
        g, w = self._matrix(g), self._matrix(w)
        return Apply(self, [g, w], [T.TensorType(g.dtype, (False, False))()])

    def infer_shape(self, fgraph, node, shapes):
        return [(shapes[0][0], self.n_in)]

    def perform(self, node, inputs, outputs):
        g, w = inputs
        outputs[0][0] = np.dot(g, w.T).astype(node.outputs[0].dtype)

    def grad(self, inputs, output_grads):
        return [grad_not_implemented(self, k, v) for k, v in enumerate(inputs)]

    def c_code(self, node, name, inputs, outputs, sub):
        g, w = inputs
        return self._call(node, sub, [(g, "cg", "output gradient", (None, self.n_out)),
                                      (w, "cw", "w", (self.n_in, self.n_out))],
                          outputs[0], ["PyArray_DIMS(cg)[0]", self.n_in], """
        %(K)s::input_grad((int)PyArray_DIMS(cg)[0], (const %(t)s*)PyArray_DATA(cg),
                          (const %(t)s*)PyArray_DATA(cw), (%(t)s*)PyArray_DATA(""" + outputs[0] + "));")


class DenseWeightGrad(_DenseBase):
    """x^T (n_in, batch) times g (batch, n_out): the gradient of w."""

    def make_node(self, x, g):
        x, g = self._matrix(x), self._matrix(g)
        return Apply(self, [x, g], [T.TensorType(x.dtype, (False, False))()])

    def infer_shape(self, fgraph, node, shapes):
        return [(self.n_in, self.n_out)]

    def perform(self, node, inputs, outputs):
        x, g = inputs
        outputs[0][0] = np.dot(x.T, g).astype(node.outputs[0].dtype)

    def grad(self, inputs, output_grads):
        return [grad_not_implemented(self, k, v) for k, v in enumerate(inputs)]

    def c_code(self, node, name, inputs, outputs, sub):
        x, g = inputs
        return self._call(node, sub, [(x, "cx", "x", (None, self.n_in)),
                                      (g, "cg", "output gradient", ("PyArray_DIMS(cx)[0]", self.n_out))],
                          outputs[0], [self.n_in, self.n_out], _with_scratch("""
            %(K)s::weight_grad(batch, (const %(t)s*)PyArray_DATA(cx), (const %(t)s*)PyArray_DATA(cg),
                               (%(t)s*)PyArray_DATA(""" + outputs[0] + "), scratch);"))


class DenseUpdate(_DenseBase):
    """(w, x, g, alpha, beta) -> w updated in place to beta w + alpha x^T g.

    With alpha = -eta and beta = 1 - eta*lmbda/n this is the book's SGD step
    on a layer's weights, L2 term included, in one pass over w; the plain
    graph writes the gradient x^T g out and then reads it back to update w.
    Theano runs it after every other use of the old w.
    """
    destroy_map = {0: [0]}

    def make_node(self, w, x, g, alpha, beta):
        w, x, g = self._matrix(w), self._matrix(x), self._matrix(g)
        alpha, beta = (T.as_tensor_variable(v).astype(w.dtype) for v in (alpha, beta))
        if alpha.ndim or beta.ndim:
            raise ValueError("%s: alpha and beta must be scalars" % self._label())
        return Apply(self, [w, x, g, alpha, beta], [w.type()])

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0]]

    def perform(self, node, inputs, outputs):
        w, x, g, alpha, beta = inputs
        w *= beta
        w += (alpha * np.dot(x.T, g)).astype(w.dtype)
        outputs[0][0] = w

    def grad(self, inputs, output_grads):
        return [grad_not_implemented(self, k, v) for k, v in enumerate(inputs)]

    def c_code(self, node, name, inputs, outputs, sub):
        w, x, g, alpha, beta = inputs
        (out,) = outputs
        t, tnum = ctype(node.inputs[0]), typenum(node.inputs[0])
        label, fail = self._label(), sub["fail"]
        return """
    if (!PyArray_IS_C_CONTIGUOUS(%(w)s) || !PyArray_ISWRITEABLE(%(w)s) || PyArray_NDIM(%(w)s) != 2
            || PyArray_TYPE(%(w)s) != %(tnum)s
            || PyArray_DIMS(%(w)s)[0] != %(n_in)d || PyArray_DIMS(%(w)s)[1] != %(n_out)d) {
        PyErr_SetString(PyExc_ValueError, "%(label)s: w must be a writeable C-contiguous %(n_in)d x %(n_out)d array of %(tnum)s");
        %(fail)s;
    }
    Py_XDECREF(%(out)s);
    %(out)s = %(w)s;
    Py_INCREF(%(out)s);
""" % dict(w=w, out=out, tnum=tnum, n_in=self.n_in, n_out=self.n_out, label=label,
           fail=fail) + c_body(label, [(x, "cx", "x", (None, self.n_in), tnum),
                               (g, "cg", "output gradient", ("PyArray_DIMS(cx)[0]", self.n_out), tnum)],
                        [], _with_scratch("""
            %(K)s::update(batch, (const %(t)s*)PyArray_DATA(cx), (const %(t)s*)PyArray_DATA(cg),
                          (%(t)s*)PyArray_DATA(%(w)s), ((%(t)s*)PyArray_DATA(%(alpha)s))[0],
                          ((%(t)s*)PyArray_DATA(%(beta)s))[0], scratch);""") % dict(K=self._kernel(t), t=t, w=w, alpha=alpha, beta=beta), fail)


def dense_update(w, x, g, alpha, beta, n_in, n_out):
    """The SGD step w <- beta w + alpha x^T g, as one in-place op."""
    return DenseUpdate(n_in, n_out)(w, x, g, alpha, beta)


def dense_dot(x, w, n_in, n_out):
    """x w for a training graph: the C ops where they apply, else ``T.dot``."""
    if use_dense(x, w):
        return DenseDot(n_in, n_out)(x, w)
    return T.dot(x, w)
