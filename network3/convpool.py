"""ConvPoolLayer's forward and backward passes as three fused C ops.

The plain graph (``conv2d``, max-pool, bias, activation, and Theano's
gradients of each) runs every stage as its own op, writing the 24x24
convolution output to memory and reading it back several times.  These ops
compute the same mathematics in one pass each (``kernels/convpool.h``):

* ``ConvPool``: convolution (filters flipped, as ``conv2d`` does), max-pool,
  bias, activation; it also returns a mask of which positions in each pooling
  block held the maximum.
* ``ConvPoolGrad``: weight and bias gradients.  Only the masked positions
  receive a gradient (every tied maximum, as Theano's pool gradient does), so
  it visits one convolution position in four for 2x2 pooling.
* ``ConvPoolInputGrad``: the gradient of the layer's input, needed only when
  another layer comes before this one; Theano leaves it out otherwise.

Results equal the plain graph's to float32 rounding (tests/test_convpool.py);
summation orders differ, and sigmoid uses a vectorised exp within 1e-7 of the
exact one.  ``use_fused`` says when a layer can use them.
"""
import numpy as np
import theano.tensor as T
from theano.gradient import grad_not_implemented
from theano.graph.basic import Apply

from . import backprop
from . import cops
from .cops import KernelOp, c_body, ctype, typenum

ACTIVATION_CODES = {"linear": 0, "sigmoid": 1, "tanh": 2, "ReLU": 3}
MAX_POOL_POSITIONS = 8  # the mask is one byte per pooled value


def use_fused(dtype, poolsize, activation):
    """Whether the fused ops apply: on the CPU, float32/64, small pools, known activations."""
    return (cops.enabled() and dtype in ("float32", "float64")
            and poolsize[0] * poolsize[1] <= MAX_POOL_POSITIONS
            and activation in ACTIVATION_CODES)


# numpy versions, for Theano's Python linker and as a second implementation in the tests.
_NP_ACTIVATIONS = {"linear": lambda z: z, "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
                   "tanh": np.tanh, "ReLU": lambda z: np.maximum(z, 0)}
_NP_SLOPES = {"linear": np.ones_like, "sigmoid": lambda a: a * (1 - a),
              "tanh": lambda a: 1 - a * a, "ReLU": lambda a: (a > 0).astype(a.dtype)}


def _mask_from_routes(routes, poolsize):
    n, f, h, w = routes.shape
    ph, pw = poolsize
    blocks = routes.reshape(n, f, h // ph, ph, w // pw, pw).transpose(0, 1, 2, 4, 3, 5)
    weights = (1 << np.arange(ph * pw)).reshape(ph, pw)
    return (blocks * weights).sum(axis=(4, 5)).astype(np.uint8)


def _routes_from_mask(mask, poolsize):
    n, f, rows, cols = mask.shape
    ph, pw = poolsize
    bits = (mask[..., None] >> np.arange(ph * pw)) & 1
    blocks = bits.reshape(n, f, rows, cols, ph, pw).transpose(0, 1, 2, 4, 3, 5)
    return blocks.reshape(n, f, rows * ph, cols * pw).astype(bool)


class _ConvPoolBase(KernelOp):
    __props__ = ("image_shape", "filter_shape", "poolsize", "activation")

    def __init__(self, image_shape, filter_shape, poolsize, activation):
        self.image_shape = tuple(int(v) for v in image_shape)      # (C, H, W)
        self.filter_shape = tuple(int(v) for v in filter_shape)    # (F, C, KH, KW)
        self.poolsize = tuple(int(v) for v in poolsize)
        self.activation = activation
        if activation not in ACTIVATION_CODES:
            raise ValueError("ConvPool: unknown activation %r" % (activation,))
        if self.poolsize[0] * self.poolsize[1] > MAX_POOL_POSITIONS:
            raise ValueError("ConvPool: pooling block %r has more than %d positions"
                             % (self.poolsize, MAX_POOL_POSITIONS))
        c, h, w = self.image_shape
        f, fc, kh, kw = self.filter_shape
        self.conv_shape = (h - kh + 1, w - kw + 1)
        if fc != c or self.conv_shape[0] % self.poolsize[0] or self.conv_shape[1] % self.poolsize[1]:
            raise ValueError("ConvPool: filters %r, images %r and pool %r do not fit"
                             % (self.filter_shape, self.image_shape, self.poolsize))
        self.pooled_shape = (self.conv_shape[0] // self.poolsize[0],
                             self.conv_shape[1] // self.poolsize[1])

    def _kernel(self, dtype):
        c, h, w = self.image_shape
        f, _, kh, kw = self.filter_shape
        return "n3::ConvPool<%s, %d, %d, %d, %d, %d, %d, %d, %d, %d>" % (
            dtype, c, h, w, f, kh, kw, self.poolsize[0], self.poolsize[1],
            ACTIVATION_CODES[self.activation])

    def _conv_error(self, a, mask, ga):
        """The gradient at the convolution's outputs: delta at every block maximum."""
        delta = ga * _NP_SLOPES[self.activation](a)
        return delta, backprop.unpool(delta, _routes_from_mask(mask, self.poolsize), self.poolsize)

    def _pooled(self, batch):
        return (batch, self.filter_shape[0]) + self.pooled_shape

    def _label(self):
        return "ConvPoolLayer (filters %s, images %s)" % (
            "x".join(map(str, self.filter_shape)), "x".join(map(str, self.image_shape)))


class ConvPool(_ConvPoolBase):
    """(images, w, b) -> (activations, max mask): ConvPoolLayer's output in one pass."""

    def make_node(self, x, w, b):
        x, w, b = (T.as_tensor_variable(v) for v in (x, w, b))
        if x.ndim != 4 or w.ndim != 4 or b.ndim != 1:
            raise ValueError("%s expects 4-d images, 4-d filters and 1-d biases" % self._label())
        if not x.dtype == w.dtype == b.dtype or x.dtype not in ("float32", "float64"):
            raise ValueError("%s: images, filters and biases must share float32 or float64, got "
                             "%s, %s, %s" % (self._label(), x.dtype, w.dtype, b.dtype))
        return Apply(self, [x, w, b], [T.TensorType(x.dtype, (False,) * 4)(),
                                       T.TensorType("uint8", (False,) * 4)()])

    def infer_shape(self, fgraph, node, shapes):
        shape = self._pooled(shapes[0][0])
        return [shape, shape]

    def perform(self, node, inputs, outputs):
        x, w, b = inputs
        conv = backprop.correlate(x, w[:, :, ::-1, ::-1])
        z = backprop.max_pool(conv, self.poolsize) + b[None, :, None, None]
        outputs[0][0] = _NP_ACTIVATIONS[self.activation](z).astype(x.dtype)
        outputs[1][0] = _mask_from_routes(backprop.pool_routes(conv, self.poolsize), self.poolsize)

    def connection_pattern(self, node):
        return [[True, False], [True, False], [True, False]]

    def grad(self, inputs, output_grads):
        x, w, b = inputs
        a, mask = self(x, w, b)
        ga = output_grads[0]
        gw, gb = ConvPoolGrad(*self._props())(x, a, mask, ga)
        gx = ConvPoolInputGrad(*self._props())(w, a, mask, ga)
        return [gx, gw, gb]

    def c_code(self, node, name, inputs, outputs, sub):
        x, w, b = inputs
        a, mask = outputs
        t, tnum = ctype(node.inputs[0]), typenum(node.inputs[0])
        pooled = ["PyArray_DIMS(cx)[0]"] + list(self._pooled(0)[1:])
        call = """
        %(kernel)s::forward((int)PyArray_DIMS(cx)[0], (const %(t)s*)PyArray_DATA(cx),
            (const %(t)s*)PyArray_DATA(cw), (const %(t)s*)PyArray_DATA(cb),
            (%(t)s*)PyArray_DATA(%(a)s), (uint8_t*)PyArray_DATA(%(mask)s));""" % dict(
            kernel=self._kernel(t), t=t, a=a, mask=mask)
        return c_body(self._label(),
                       [(x, "cx", "images", (None,) + self.image_shape, tnum),
                        (w, "cw", "filters", self.filter_shape, tnum),
                        (b, "cb", "biases", self.filter_shape[:1], tnum)],
                       [(a, pooled, tnum), (mask, pooled, "NPY_UINT8")], call, sub["fail"])


class ConvPoolOutput(ConvPool):
    """(images, w, b) -> activations: ConvPool for inference, without the mask."""

    def make_node(self, x, w, b):
        node = super().make_node(x, w, b)
        return Apply(self, node.inputs, [node.outputs[0].type()])

    def infer_shape(self, fgraph, node, shapes):
        return [self._pooled(shapes[0][0])]

    def connection_pattern(self, node):
        return [[True], [True], [True]]

    def perform(self, node, inputs, outputs):
        both = [[None], [None]]
        super().perform(node, inputs, both)
        outputs[0][0] = both[0][0]

    def grad(self, inputs, output_grads):
        return ConvPool(*self._props()).grad(inputs, list(output_grads) + [None])

    def c_code(self, node, name, inputs, outputs, sub):
        x, w, b = inputs
        (a,) = outputs
        t, tnum = ctype(node.inputs[0]), typenum(node.inputs[0])
        pooled = ["PyArray_DIMS(cx)[0]"] + list(self._pooled(0)[1:])
        call = """
        %(kernel)s::forward((int)PyArray_DIMS(cx)[0], (const %(t)s*)PyArray_DATA(cx),
            (const %(t)s*)PyArray_DATA(cw), (const %(t)s*)PyArray_DATA(cb),
            (%(t)s*)PyArray_DATA(%(a)s), nullptr);""" % dict(kernel=self._kernel(t), t=t, a=a)
        return c_body(self._label(),
                      [(x, "cx", "images", (None,) + self.image_shape, tnum),
                       (w, "cw", "filters", self.filter_shape, tnum),
                       (b, "cb", "biases", self.filter_shape[:1], tnum)],
                      [(a, pooled, tnum)], call, sub["fail"])


def _grad_inputs(op, a, mask, ga, tnum):
    """The inputs both gradient ops take: activations, mask and output gradient."""
    pooled = ("PyArray_DIMS(ca)[0]",) + op._pooled(0)[1:]
    return [(a, "ca", "activations", (None,) + pooled[1:], tnum),
            (mask, "cm", "mask", pooled, "NPY_UINT8"),
            (ga, "cg", "output gradient", pooled, tnum)]


class ConvPoolGrad(_ConvPoolBase):
    """(images, activations, mask, output gradient) -> (weight gradient, bias gradient)."""

    def make_node(self, x, a, mask, ga):
        x, a, mask, ga = (T.as_tensor_variable(v) for v in (x, a, mask, ga))
        return Apply(self, [x, a, mask, ga], [T.TensorType(x.dtype, (False,) * 4)(),
                                              T.TensorType(x.dtype, (False,))()])

    def infer_shape(self, fgraph, node, shapes):
        return [self.filter_shape, self.filter_shape[:1]]

    def perform(self, node, inputs, outputs):
        x, a, mask, ga = inputs
        delta, error = self._conv_error(a, mask, ga)
        kh, kw = self.filter_shape[2:]
        gk = backprop.correlate_weight_gradient(x, error, kh, kw) * len(x)
        outputs[0][0] = gk[:, :, ::-1, ::-1].astype(x.dtype)
        outputs[1][0] = delta.sum(axis=(0, 2, 3)).astype(x.dtype)

    def grad(self, inputs, output_grads):
        return [grad_not_implemented(self, k, v) for k, v in enumerate(inputs)]

    def c_code(self, node, name, inputs, outputs, sub):
        x, a, mask, ga = inputs
        gw, gb = outputs
        t, tnum = ctype(node.inputs[0]), typenum(node.inputs[0])
        call = """
        typedef %(kernel)s K;
        const int batch = (int)PyArray_DIMS(ca)[0];
        %(t)s* d = (%(t)s*)malloc(sizeof(%(t)s) * PyArray_SIZE(ca) + 1);
        %(t)s* xpad = (%(t)s*)malloc(sizeof(%(t)s) * K::padded_size(batch));
        double* total = (double*)malloc(sizeof(double) * K::GRAD_DOUBLES);
        if (d && xpad && total) {
            K::deltas(batch, (const %(t)s*)PyArray_DATA(ca), (const %(t)s*)PyArray_DATA(cg), d);
            K::weight_grads(batch, (const %(t)s*)PyArray_DATA(cx), d,
                            (const uint8_t*)PyArray_DATA(cm), (%(t)s*)PyArray_DATA(%(gw)s),
                            (%(t)s*)PyArray_DATA(%(gb)s), total, xpad);
        } else {
            ok = 0;
        }
        free(d); free(xpad); free(total);""" % dict(kernel=self._kernel(t), t=t, gw=gw, gb=gb)
        return c_body(self._label(),
                       _grad_inputs(self, a, mask, ga, tnum)
                       + [(x, "cx", "images", ("PyArray_DIMS(ca)[0]",) + self.image_shape,
                           tnum)],
                       [(gw, self.filter_shape, tnum), (gb, self.filter_shape[:1], tnum)],
                       call, sub["fail"])


class ConvPoolInputGrad(_ConvPoolBase):
    """(filters, activations, mask, output gradient) -> gradient of the images."""

    def make_node(self, w, a, mask, ga):
        w, a, mask, ga = (T.as_tensor_variable(v) for v in (w, a, mask, ga))
        return Apply(self, [w, a, mask, ga], [T.TensorType(w.dtype, (False,) * 4)()])

    def infer_shape(self, fgraph, node, shapes):
        return [(shapes[1][0],) + self.image_shape]

    def perform(self, node, inputs, outputs):
        w, a, mask, ga = inputs
        _, error = self._conv_error(a, mask, ga)
        outputs[0][0] = backprop.correlate_transpose(error, w[:, :, ::-1, ::-1]).astype(w.dtype)

    def grad(self, inputs, output_grads):
        return [grad_not_implemented(self, k, v) for k, v in enumerate(inputs)]

    def c_code(self, node, name, inputs, outputs, sub):
        w, a, mask, ga = inputs
        (gx,) = outputs
        t, tnum = ctype(node.inputs[0]), typenum(node.inputs[0])
        call = """
        typedef %(kernel)s K;
        const int batch = (int)PyArray_DIMS(ca)[0];
        %(t)s* d = (%(t)s*)malloc(sizeof(%(t)s) * PyArray_SIZE(ca) + 1);
        %(t)s* gxpad = (%(t)s*)malloc(sizeof(%(t)s) * K::padded_size(batch));
        K::V* filters = (K::V*)aligned_alloc(32, sizeof(K::V) * K::FILTER_VECTORS);
        if (d && gxpad && filters) {
            K::deltas(batch, (const %(t)s*)PyArray_DATA(ca), (const %(t)s*)PyArray_DATA(cg), d);
            K::input_grads(batch, (const %(t)s*)PyArray_DATA(cw), d,
                           (const uint8_t*)PyArray_DATA(cm), (%(t)s*)PyArray_DATA(%(gx)s), gxpad,
                           filters);
        } else {
            ok = 0;
        }
        free(d); free(gxpad); free(filters);""" % dict(kernel=self._kernel(t), t=t, gx=gx)
        return c_body(self._label(),
                       [(w, "cw", "filters", self.filter_shape, tnum)]
                       + _grad_inputs(self, a, mask, ga, tnum),
                       [(gx, ["PyArray_DIMS(ca)[0]"] + list(self.image_shape), tnum)],
                       call, sub["fail"])


def conv_pool(images, w, b, image_shape, filter_shape, poolsize, activation, training=True):
    """ConvPoolLayer's output, fused: `images` is (batch,) + image_shape.  Without
    `training` the op skips the mask that only the gradient needs."""
    if not training:
        return ConvPoolOutput(image_shape, filter_shape, poolsize, activation)(images, w, b)
    a, _ = ConvPool(image_shape, filter_shape, poolsize, activation)(images, w, b)
    return a
