"""The three layer types of network3, and their activation functions.

A layer owns its parameters (Theano shared variables ``w`` and ``b``) and
describes two pure functions of its input: ``output`` (inference, with the
weights scaled for dropout) and ``output_dropout`` (training, with a fresh
dropout mask).  Both accept a mini-batch of any size, so the same graph
serves training at mini-batch 10 and evaluation in batches of 100.

``set_inpt`` keeps the book's stateful interface (``layer.output``,
``layer.output_dropout``, ``layer.y_out`` after the network is built).
"""
import numpy as np
import theano
import theano.tensor as T
from theano.tensor.nnet import conv2d, sigmoid, softmax

from . import convpool
from .dense import DenseDot, dense_dot
from .pool import max_pool


# Activation functions, under the names the book uses.
def linear(z):
    return z


def ReLU(z):
    return T.maximum(0.0, z)


tanh = T.tanh
ACTIVATIONS = {"sigmoid": sigmoid, "tanh": tanh, "ReLU": ReLU, "linear": linear}


def activation_name(fn):
    """The name under which an activation function is logged and saved."""
    for name, known in ACTIVATIONS.items():
        if fn is known:
            return name
    return getattr(fn, "__name__", repr(fn))


def activation_by_name(name):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError("unknown activation %r; expected one of %s"
                         % (name, ", ".join(ACTIVATIONS))) from None


def param_array(value):
    """A parameter's value as stored: floatX and C-contiguous (the C ops update weights in
    place and read them row by row)."""
    return np.ascontiguousarray(value, dtype=theano.config.floatX)


def _shared(value, name):
    return theano.shared(param_array(value), name=name, borrow=True)


def _positive_ints(values, what, length):
    values = tuple(values)
    if len(values) != length or not all(isinstance(v, (int, np.integer)) and v > 0
                                        for v in values):
        raise ValueError("%s must be %d positive integers, got %r" % (what, length, values))
    return tuple(int(v) for v in values)


def _check_dropout(p_dropout, layer):
    if not 0.0 <= p_dropout < 1.0:
        raise ValueError("%s: p_dropout must be in [0, 1), got %r" % (layer, p_dropout))
    return float(p_dropout)


def dropout_layer(layer, p_dropout, srng):
    """Zero each unit of `layer` with probability `p_dropout` (a new mask per call)."""
    if p_dropout == 0.0:
        return layer
    mask = srng.binomial(n=1, p=1 - p_dropout, size=layer.shape, dtype=theano.config.floatX)
    return layer * mask


class Layer:
    """What the three layer types share: parameters, book-style state, config."""

    n_in = n_out = None
    p_dropout = 0.0

    def _make_params(self, w, b):
        if getattr(self, "w", None) is None:
            self.w, self.b = _shared(w, "w"), _shared(b, "b")
            self.params = [self.w, self.b]
        else:
            self.w.set_value(param_array(w))
            self.b.set_value(param_array(b))

    def set_inpt(self, inpt, inpt_dropout, mini_batch_size, srng=None):
        """The book's interface: wire this layer to its input, keeping the results."""
        self.inpt, self.inpt_dropout = inpt, inpt_dropout
        self.output = self.output_for(inpt)
        self.output_dropout = self.output_dropout_for(inpt_dropout, srng)
        self.y_out = T.argmax(self.output.flatten(2), axis=1)
        return self.output, self.output_dropout

    def output_dropout_for(self, inpt, srng):
        return self.output_for(inpt)

    def accuracy(self, y):
        """Fraction of the mini-batch classified correctly."""
        return T.mean(T.eq(y, self.y_out))

    def _train_product(self, inpt):
        """inpt w for the training graph; remembers (inpt, product) when it is a C op,
        so that Network can update w with one in-place op (``dense.DenseUpdate``)."""
        product = dense_dot(inpt, self.w, self.n_in, self.n_out)
        self.train_product = (inpt, product) if isinstance(product.owner.op, DenseDot) else None
        return product


class ConvPoolLayer(Layer):
    """A convolutional layer followed by max-pooling, then bias and activation.

    `filter_shape` is (number of filters, input feature maps, filter height,
    filter width); `image_shape` is (mini-batch size, input feature maps,
    image height, image width); `poolsize` is the pooling block (y, x).
    Like the book, the activation is applied after pooling (pooling commutes
    with a monotonic activation, and pooling first is cheaper).

    On the CPU the whole layer runs as fused C ops (``network3.convpool``),
    with the same results to float32 rounding; with ``NETWORK3_C_OPS=0`` it
    is the plain graph of ``conv2d``, max-pool, bias and activation.
    """

    def __init__(self, filter_shape, image_shape, poolsize=(2, 2), activation_fn=sigmoid):
        self.filter_shape = _positive_ints(filter_shape, "ConvPoolLayer filter_shape", 4)
        self.image_shape = _positive_ints(image_shape, "ConvPoolLayer image_shape", 4)
        self.poolsize = _positive_ints(poolsize, "ConvPoolLayer poolsize", 2)
        self.activation_fn = activation_fn
        n_maps, channels, fh, fw = self.filter_shape
        _, image_channels, h, w = self.image_shape
        if channels != image_channels:
            raise ValueError("ConvPoolLayer: filter_shape %r expects %d input feature maps but "
                             "image_shape %r has %d" % (self.filter_shape, channels,
                                                         self.image_shape, image_channels))
        if fh > h or fw > w:
            raise ValueError("ConvPoolLayer: filter %dx%d is larger than the %dx%d image"
                             % (fh, fw, h, w))
        self.conv_shape = (h - fh + 1, w - fw + 1)
        if self.conv_shape[0] % self.poolsize[0] or self.conv_shape[1] % self.poolsize[1]:
            raise ValueError("ConvPoolLayer: poolsize %r does not divide the %dx%d feature map "
                             "(image %dx%d, filter %dx%d)" % (self.poolsize, self.conv_shape[0],
                                                              self.conv_shape[1], h, w, fh, fw))
        self.pooled_shape = (self.conv_shape[0] // self.poolsize[0],
                             self.conv_shape[1] // self.poolsize[1])
        self.n_in = image_channels * h * w
        self.n_out = n_maps * self.pooled_shape[0] * self.pooled_shape[1]
        self.init_params(np.random)

    def init_params(self, rng):
        """The book's initialisation: w ~ N(0, 1/n_out) with n_out = maps*h*w/pool, b ~ N(0, 1)."""
        n_out = (self.filter_shape[0] * np.prod(self.filter_shape[2:]) / np.prod(self.poolsize))
        self._make_params(rng.normal(0.0, np.sqrt(1.0 / n_out), size=self.filter_shape),
                          rng.normal(0.0, 1.0, size=(self.filter_shape[0],)))

    def output_shape(self, input_shape):
        """(batch, feature maps, height, width) of the output for an input of `input_shape`."""
        return (input_shape[0], self.filter_shape[0]) + self.pooled_shape

    def output_for(self, inpt, training=False):
        images = inpt.reshape((inpt.shape[0],) + self.image_shape[1:])
        activation = activation_name(self.activation_fn)
        if convpool.use_fused(images.dtype, self.poolsize, activation):
            return convpool.conv_pool(images, self.w, self.b, self.image_shape[1:],
                                      self.filter_shape, self.poolsize, activation, training)
        conv_out = conv2d(images, self.w, input_shape=(None,) + self.image_shape[1:],
                          filter_shape=self.filter_shape)
        pooled_out = max_pool(conv_out, self.poolsize)
        return self.activation_fn(pooled_out + self.b.dimshuffle("x", 0, "x", "x"))

    def output_dropout_for(self, inpt, srng):
        return self.output_for(inpt, training=True)

    def config(self):
        return {"type": "ConvPoolLayer", "filter_shape": list(self.filter_shape),
                "image_shape": list(self.image_shape), "poolsize": list(self.poolsize),
                "activation": activation_name(self.activation_fn)}


class FullyConnectedLayer(Layer):
    """Every input connected to each of `n_out` neurons; dropout optional."""

    def __init__(self, n_in, n_out, activation_fn=sigmoid, p_dropout=0.0):
        self.n_in, self.n_out = _positive_ints((n_in, n_out), "FullyConnectedLayer (n_in, n_out)", 2)
        self.activation_fn = activation_fn
        self.p_dropout = _check_dropout(p_dropout, "FullyConnectedLayer")
        self.init_params(np.random)

    def init_params(self, rng):
        """The book's initialisation: w ~ N(0, 1/n_out), b ~ N(0, 1)."""
        self._make_params(rng.normal(0.0, np.sqrt(1.0 / self.n_out), size=(self.n_in, self.n_out)),
                          rng.normal(0.0, 1.0, size=(self.n_out,)))

    def output_shape(self, input_shape):
        return (input_shape[0], self.n_out)

    def output_for(self, inpt):
        # At inference every unit is present, so scale by the keep probability.
        return self.activation_fn((1 - self.p_dropout) * T.dot(inpt.flatten(2), self.w) + self.b)

    def output_dropout_for(self, inpt, srng):
        dropped = dropout_layer(inpt.flatten(2), self.p_dropout, srng)
        return self.activation_fn(self._train_product(dropped) + self.b)

    def config(self):
        return {"type": "FullyConnectedLayer", "n_in": self.n_in, "n_out": self.n_out,
                "activation": activation_name(self.activation_fn), "p_dropout": self.p_dropout}


class SoftmaxLayer(Layer):
    """Softmax output layer with the log-likelihood cost; weights start at zero, as in the book."""

    def __init__(self, n_in, n_out, p_dropout=0.0):
        self.n_in, self.n_out = _positive_ints((n_in, n_out), "SoftmaxLayer (n_in, n_out)", 2)
        self.p_dropout = _check_dropout(p_dropout, "SoftmaxLayer")
        self.init_params(np.random)

    def init_params(self, rng):
        self._make_params(np.zeros((self.n_in, self.n_out)), np.zeros((self.n_out,)))

    def output_shape(self, input_shape):
        return (input_shape[0], self.n_out)

    def output_for(self, inpt):
        return softmax((1 - self.p_dropout) * T.dot(inpt.flatten(2), self.w) + self.b)

    def output_dropout_for(self, inpt, srng):
        dropped = dropout_layer(inpt.flatten(2), self.p_dropout, srng)
        return softmax(self._train_product(dropped) + self.b)

    def cost(self, net):
        """Log-likelihood cost of the training (dropout) output, averaged over the mini-batch."""
        return -T.mean(T.log(self.output_dropout)[T.arange(net.y.shape[0]), net.y])

    def config(self):
        return {"type": "SoftmaxLayer", "n_in": self.n_in, "n_out": self.n_out,
                "p_dropout": self.p_dropout}


LAYER_TYPES = {cls.__name__: cls for cls in (ConvPoolLayer, FullyConnectedLayer, SoftmaxLayer)}


def layer_from_config(config):
    """Rebuild a layer from the dict its ``config()`` returned."""
    config = dict(config)
    kind = config.pop("type", None)
    if kind not in LAYER_TYPES:
        raise ValueError("unknown layer type %r; expected one of %s" % (kind, ", ".join(LAYER_TYPES)))
    if "activation" in config:
        config["activation_fn"] = activation_by_name(config.pop("activation"))
    try:
        return LAYER_TYPES[kind](**config)
    except TypeError as e:
        raise ValueError("bad %s config %r: %s" % (kind, config, e)) from None
