"""Backpropagation through convolutional and max-pooling layers, written out in numpy.

This is Chapter 6, Problem 1 of the book done in code: the four fundamental
equations of backpropagation (Chapter 2), applied to a network with a
convolutional layer and a max-pooling layer,

    BP1   delta^L = nabla_a C (.) sigma'(z^L)              the output error
    BP2   delta^l = ((w^{l+1})^T delta^{l+1}) (.) sigma'(z^l)   the error one layer down
    BP3   dC/db^l_j = delta^l_j
    BP4   dC/dw^l_jk = a^{l-1}_k delta^l_j

Nothing here uses Theano to compute a gradient: every line is numpy, and each
one can be checked against the equation it comes from (docs/backprop_conv.md
walks through them).  Theano appears only in ``theano_gradient``, which
builds the same network as a float64 Theano graph so that the hand-written
gradients can be compared with ``T.grad``.

Two orderings of the convolutional layer are covered:

* ``ConvSigmoidPoolLayer`` -- the problem's network: convolve, add the shared
  bias, apply the sigmoid, then max-pool,
  a = pool(sigma(w (x) a_in + b)).  It uses the book's formula, a
  correlation, unless told otherwise.
* ``ConvPoolLayer`` -- network3's order: convolve, max-pool, then add the bias
  and apply the sigmoid, a = sigma(pool(w (x) a_in) + b).  Like Theano's
  ``conv2d`` (whose default is ``filter_flip=True``), it computes a true
  convolution: the filter is flipped before it slides over the image.

Conventions follow network3: a mini-batch of images has shape (n, channels,
height, width), filters have shape (n_filters, channels, fh, fw), a fully
connected layer computes a = sigma(a_in . w + b) with w of shape (n_in,
n_out), a convolutional output is flattened in C order (Theano's
``flatten(2)``), labels are integers, and every cost is the mean over the
mini-batch, so every gradient is the mean of the per-example gradients.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import expit

#### Activation functions


def sigmoid(z):
    """The sigmoid function (scipy's ``expit``, which does not overflow for large -z)."""
    return expit(z)


def sigmoid_prime(z):
    """Derivative of the sigmoid function: sigma(z) (1 - sigma(z))."""
    s = sigmoid(z)
    return s * (1 - s)


def softmax(z):
    """Softmax of each row of `z` (less the row's maximum: the same softmax, without overflow)."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


#### Shape checks


def _describe(shape):
    """A shape written as Python writes a tuple, but with symbolic entries left unquoted."""
    items = [str(s) for s in shape]
    return "(%s,)" % items[0] if len(items) == 1 else "(%s)" % ", ".join(items)


def _fits(expected, size):
    if isinstance(expected, str):
        return True
    if isinstance(expected, tuple):
        return size >= expected[1]
    return size == expected


def check_shape(name, array, expected):
    """Raise ValueError, naming `name`, unless `array` has the `expected` shape.

    An entry of `expected` may be an int (that size exactly), a string (any
    size; the string names it, e.g. 'n'), or a pair ('>=', k) (at least k).
    """
    shape = np.shape(array)
    if len(shape) != len(expected) or not all(map(_fits, expected, shape)):
        wanted = ["%s%d" % e if isinstance(e, tuple) else e for e in expected]
        raise ValueError("%s: expected shape %s, got %s"
                         % (name, _describe(wanted), _describe(shape)))


def _check_poolsize(poolsize):
    poolsize = tuple(poolsize)
    if len(poolsize) != 2 or not all(isinstance(p, (int, np.integer)) and p > 0 for p in poolsize):
        raise ValueError("poolsize: expected 2 positive integers, got %r" % (poolsize,))
    return tuple(int(p) for p in poolsize)


#### Convolution, as three linear maps


def patches(a, fh, fw):
    """Every fh x fw window of the maps in `a`, as a view of shape (n, c, h-fh+1, w-fw+1, fh, fw).

    ``patches(a, fh, fw)[n, c, j, k]`` is a[n, c, j:j+fh, k:k+fw]: the local
    receptive field of hidden neuron (j, k) in channel c.  It is a strided
    view, so no pixel is copied.
    """
    return sliding_window_view(a, (fh, fw), axis=(2, 3))


def correlate(a, w):
    """z[n, f, j, k] = sum_{c, l, m} w[f, c, l, m] a[n, c, j+l, k+m] -- the book's formula.

    Mathematicians call this a correlation; it is a convolution of `a` with
    the filter turned through 180 degrees.
    """
    fh, fw = w.shape[2:]
    z = np.tensordot(patches(a, fh, fw), w, axes=([1, 4, 5], [1, 2, 3]))  # (n, j, k, f)
    return z.transpose(0, 3, 1, 2)


def correlate_weight_gradient(a, delta, fh, fw):
    """The mean over the mini-batch of sum_{j,k} delta[n, f, j, k] a[n, c, j+l, k+m].

    This is BP4 for a shared weight: w[f, c, l, m] is used by every hidden
    neuron (j, k) of map f, touching input a[c, j+l, k+m] there, so its
    gradient collects delta times that input over the whole map.
    """
    nabla = np.tensordot(delta, patches(a, fh, fw), axes=([0, 2, 3], [0, 2, 3]))
    return nabla / len(a)


def correlate_transpose(delta, w):
    """(w)^T delta for a correlation: the error at each input pixel.

    dC/da_in[n, c, p, q] = sum_{f,j,k} delta[n, f, j, k] w[f, c, p-j, q-k].

    Input pixel (p, q) reaches every hidden neuron whose receptive field
    covers it, so its error sums over them.  That sum is a "full" correlation
    of the zero-padded error with the filters rotated through 180 degrees
    and with the roles of channels and maps swapped.
    """
    fh, fw = w.shape[2:]
    padded = np.pad(delta, ((0, 0), (0, 0), (fh - 1, fh - 1), (fw - 1, fw - 1)))
    return correlate(padded, w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


#### Max-pooling


def _blocks(a, poolsize):
    """`a` cut into pooling blocks, shape (n, f, rows, ph, cols, pw); leftover edges dropped.

    Dropping the rows and columns that do not fill a whole block is what
    Theano's ``pool_2d(..., ignore_border=True)`` does.
    """
    n, f, h, w = a.shape
    ph, pw = poolsize
    rows, cols = h // ph, w // pw
    return a[:, :, :rows * ph, :cols * pw].reshape(n, f, rows, ph, cols, pw)


def max_pool(a, poolsize):
    """The maximum of each ph x pw block of every map of `a`."""
    return _blocks(a, poolsize).max(axis=(3, 5))


TIE_RULES = ("all", "first")


def _check_ties(ties):
    if ties not in TIE_RULES:
        raise ValueError("ties: expected one of %s, got %r" % (TIE_RULES, ties))
    return ties


def pool_routes(a, poolsize, ties="all"):
    """Boolean mask, shape of `a`: True where a neuron's activation is passed on by max-pooling.

    Max-pooling passes on one value per block, the maximum, so only the
    neuron holding it influences the cost; the error flows back to it
    alone.  When two or more neurons in a block tie for the maximum:

    * ``ties="all"`` (Theano's rule, the default) marks every neuron equal to
      the maximum, and each receives the block's whole error;
    * ``ties="first"`` marks only the first in row-major order, so the block
      passes back its error once, as a derivative must when the tied
      neurons move together (a shared bias moves them all alike).

    At a tie the max is not differentiable in any one of the tied inputs
    alone: raising one raises the max, lowering it does not.  Neurons in
    the edges dropped by pooling are never marked.
    """
    _check_ties(ties)
    blocks = _blocks(a, poolsize)
    n, f, rows, ph, cols, pw = blocks.shape
    if ties == "all":
        marked = blocks == blocks.max(axis=(3, 5), keepdims=True)
    else:
        flat = blocks.transpose(0, 1, 2, 4, 3, 5).reshape(n, f, rows, cols, ph * pw)
        first = flat.argmax(axis=-1)  # argmax returns the first maximum
        marked = (np.arange(ph * pw) == first[..., None]).reshape(n, f, rows, cols, ph, pw)
        marked = marked.transpose(0, 1, 2, 4, 3, 5)
    marked = marked.reshape(n, f, rows * ph, cols * pw)
    edges = ((0, 0), (0, 0), (0, a.shape[2] - rows * ph), (0, a.shape[3] - cols * pw))
    return np.pad(marked, edges)


def unpool(delta, routes, poolsize):
    """Spread each block's error `delta` back to the neurons that `routes` marks; zero elsewhere."""
    ph, pw = poolsize
    spread = delta.repeat(ph, axis=2).repeat(pw, axis=3)
    edges = ((0, 0), (0, 0), (0, routes.shape[2] - spread.shape[2]),
             (0, routes.shape[3] - spread.shape[3]))
    return np.pad(spread, edges) * routes


#### Layers
#
# Every layer has the same four methods, one per step of backpropagation:
#
#   feedforward(a_in)        -> record: a dict of a_in, z, a and what else
#                               the backward pass needs
#   delta(record, nabla_a)   -> delta = dC/dz, given dC/da           (BP2)
#   gradients(record, delta) -> (nabla_w, nabla_b)                  (BP3, BP4)
#   backpropagate(record, delta) -> dC/da_in, i.e. (w)^T delta, which
#                               the layer below turns into its own delta
#
# delta always has the shape of the layer's weighted input z, and holds the
# error of each example separately; gradients() averages over the mini-batch.


class _ConvLayer:
    """What both convolutional layers share: shared filters, a shared bias per map, pooling."""

    def __init__(self, w, b, poolsize, filter_flip, ties):
        self.w = np.array(w)
        check_shape("w", self.w, ("n_filters", "channels", "fh", "fw"))
        self.b = np.array(b)
        check_shape("b", self.b, (self.w.shape[0],))
        self.poolsize = _check_poolsize(poolsize)
        self.filter_flip = bool(filter_flip)
        self.ties = _check_ties(ties)

    def check_input(self, a_in, name):
        """a_in: a mini-batch of images with the filters' channels, no smaller than a filter."""
        _, channels, fh, fw = self.w.shape
        check_shape(name, a_in, ("n", channels, (">=", fh), (">=", fw)))

    def kernel(self):
        """The filters as they are correlated with the image: flipped for a true convolution."""
        return self.w[:, :, ::-1, ::-1] if self.filter_flip else self.w

    def convolve(self, a_in):
        """w (x) a_in, without bias: a correlation, or a convolution when filter_flip is set."""
        return correlate(a_in, self.kernel())

    def weight_gradient(self, a_in, delta):
        """BP4 for the shared filters, given the error at each output of the convolution."""
        nabla = correlate_weight_gradient(a_in, delta, *self.w.shape[2:])
        return nabla[:, :, ::-1, ::-1] if self.filter_flip else nabla

    def conv_transpose(self, delta):
        """(w)^T delta: the error at the convolution's outputs carried back to its inputs."""
        return correlate_transpose(delta, self.kernel())

    @staticmethod
    def bias_gradient(delta):
        """BP3 for a shared bias: the sum of its map's errors, averaged over the mini-batch."""
        return delta.sum(axis=(2, 3)).mean(axis=0)

    @property
    def params(self):
        return [self.w, self.b]


class ConvSigmoidPoolLayer(_ConvLayer):
    """The problem's layer: z = w (x) a_in + b, then sigma, then max-pooling.

    For the problem itself, w has shape (1, 1, 5, 5), b shape (1,), and the
    image (n, 1, 28, 28): z and sigma(z) are 24 x 24 and the pooled output
    12 x 12.  ``filter_flip=False`` (the default) is the book's formula.
    """

    def __init__(self, w, b, poolsize=(2, 2), filter_flip=False, ties="all"):
        super().__init__(w, b, poolsize, filter_flip, ties)

    def feedforward(self, a_in, name="a_in"):
        self.check_input(a_in, name)
        z = self.convolve(a_in) + self.b[None, :, None, None]
        a_conv = sigmoid(z)
        return {"a_in": a_in, "z": z, "a_conv": a_conv,
                "routes": pool_routes(a_conv, self.poolsize, self.ties),
                "a": max_pool(a_conv, self.poolsize)}

    def delta(self, record, nabla_a):
        """BP2: the pooled error goes to the block maxima, then (.) sigma'(z); zero elsewhere."""
        return unpool(nabla_a, record["routes"], self.poolsize) * sigmoid_prime(record["z"])

    def gradients(self, record, delta):
        """BP4 and BP3 straight from delta: it already lives on the convolution's outputs."""
        return (self.weight_gradient(record["a_in"], delta), self.bias_gradient(delta))

    def backpropagate(self, record, delta):
        """(w)^T delta, for the layer below."""
        return self.conv_transpose(delta)


class ConvPoolLayer(_ConvLayer):
    """network3's ConvPoolLayer: convolve, max-pool, then z = pooled + b and a = sigma(z).

    Pooling commutes with the (increasing) sigmoid, so with the same
    filter_flip this computes the same function as ``ConvSigmoidPoolLayer``
    (up to ties, see ``pool_routes``); but z now lives on the pooled
    grid, one bias per map is added after pooling, and the pooling step
    sits between z and the weights, so the error is routed through the
    block maxima on its way to BP4 rather than in BP2.  ``filter_flip=True``
    (the default) matches Theano's ``conv2d``.
    """

    def __init__(self, w, b, poolsize=(2, 2), filter_flip=True, ties="all"):
        super().__init__(w, b, poolsize, filter_flip, ties)

    def feedforward(self, a_in, name="a_in"):
        self.check_input(a_in, name)
        conv = self.convolve(a_in)
        z = max_pool(conv, self.poolsize) + self.b[None, :, None, None]
        return {"a_in": a_in, "conv": conv, "routes": pool_routes(conv, self.poolsize, self.ties),
                "z": z, "a": sigmoid(z)}

    def delta(self, record, nabla_a):
        """BP2: dC/dz = dC/da (.) sigma'(z), on the pooled grid."""
        return nabla_a * sigmoid_prime(record["z"])

    def conv_error(self, record, delta):
        """The error at each output of the convolution: delta at its block's maximum, else 0."""
        return unpool(delta, record["routes"], self.poolsize)

    def gradients(self, record, delta):
        """BP4 from the error routed to the convolution's outputs; BP3 from delta itself.

        The bias is added after pooling, so it sees every pooled neuron's
        error directly; a weight only reaches the cost through the neurons
        that pooling passed on.
        """
        return (self.weight_gradient(record["a_in"], self.conv_error(record, delta)),
                self.bias_gradient(delta))

    def backpropagate(self, record, delta):
        """(w)^T delta, for the layer below, through the same routes."""
        return self.conv_transpose(self.conv_error(record, delta))


class _DenseLayer:
    """A layer whose every neuron sees every input: z = a_in . w + b, w of shape (n_in, n_out)."""

    def __init__(self, w, b):
        self.w = np.array(w)
        check_shape("w", self.w, ("n_in", "n_out"))
        self.b = np.array(b)
        check_shape("b", self.b, (self.w.shape[1],))

    def feedforward(self, a_in, name="a_in"):
        # Flatten feature maps in C order, as Theano's flatten(2) does.
        x = np.reshape(a_in, (len(a_in), -1))
        if np.ndim(a_in) > 2:
            name += ", flattened from %s" % _describe(np.shape(a_in))
        check_shape(name, x, ("n", self.w.shape[0]))
        z = x @ self.w + self.b
        return {"a_in": x, "in_shape": np.shape(a_in), "z": z, "a": self.activation(z)}

    def gradients(self, record, delta):
        """BP4 and BP3, averaged over the mini-batch: x^T delta / n and mean(delta)."""
        return record["a_in"].T @ delta / len(delta), delta.mean(axis=0)

    def backpropagate(self, record, delta):
        """(w)^T delta, reshaped back to the layer's input (feature maps, after a conv layer)."""
        return (delta @ self.w.T).reshape(record["in_shape"])

    @property
    def params(self):
        return [self.w, self.b]


class FullyConnectedLayer(_DenseLayer):
    """Sigmoid neurons: a = sigma(a_in . w + b)."""

    activation = staticmethod(sigmoid)

    def delta(self, record, nabla_a):
        """BP2: dC/dz = dC/da (.) sigma'(z)."""
        return nabla_a * sigmoid_prime(record["z"])


class SoftmaxLayer(_DenseLayer):
    """Softmax output neurons: a = softmax(a_in . w + b).  Only ever the last layer."""

    activation = staticmethod(softmax)


#### Costs
#
# Each cost has fn (the cost, averaged over the mini-batch) and delta (BP1,
# per example).  A cost is paired with the output layer its delta assumes.


class QuadraticCost:
    """C = (1/2n) sum_x ||y(x) - a^L(x)||^2, with sigmoid output neurons."""

    output_layer = FullyConnectedLayer

    @staticmethod
    def fn(a, y):
        return 0.5 * np.mean(np.sum((a - y) ** 2, axis=1))

    @staticmethod
    def delta(z, a, y):
        """BP1: delta^L = (a^L - y) (.) sigma'(z^L)."""
        return (a - y) * sigmoid_prime(z)


class CrossEntropyCost:
    """C = -(1/n) sum_x sum_j [y_j ln a_j + (1 - y_j) ln(1 - a_j)], with sigmoid output neurons."""

    output_layer = FullyConnectedLayer

    @staticmethod
    def fn(a, y):
        return -np.mean(np.sum(y * np.log(a) + (1 - y) * np.log(1 - a), axis=1))

    @staticmethod
    def delta(z, a, y):
        """BP1: delta^L = a^L - y; the sigma'(z) of BP1 cancels against the cost's 1/(a(1-a))."""
        return a - y


class LogLikelihoodCost:
    """C = -(1/n) sum_x ln a^L_{y(x)}, with softmax output neurons: network3's cost."""

    output_layer = SoftmaxLayer

    @staticmethod
    def fn(a, y):
        return -np.mean(np.log(np.sum(a * y, axis=1)))

    @staticmethod
    def delta(z, a, y):
        """BP1: delta^L = a^L - y, y one-hot: softmax's Jacobian cancels the cost's 1/a."""
        return a - y


#### The network


class Network:
    """A feedforward network of the layers above, with a cost; parameters are numpy arrays.

    ``params`` lists them in network3's order, [w, b] for each layer, and
    ``gradient`` returns dC/dp for each, in the same order.
    """

    def __init__(self, layers, cost=LogLikelihoodCost):
        self.layers = list(layers)
        self.cost = cost
        if not self.layers:
            raise ValueError("layers: expected at least one layer, got none")
        if type(self.layers[-1]) is not cost.output_layer:
            raise ValueError("layers: %s needs a %s as the last layer, got %s" % (
                cost.__name__, cost.output_layer.__name__, type(self.layers[-1]).__name__))
        for j, layer in enumerate(self.layers[:-1]):
            if isinstance(layer, SoftmaxLayer):
                raise ValueError("layers: a SoftmaxLayer can only be the last layer, got one at %d"
                                 % j)

    @property
    def params(self):
        """Every layer's [w, b], in order: the arrays themselves, so updating them trains."""
        return [p for layer in self.layers for p in layer.params]

    def targets(self, y, n):
        """The one-hot vectors of the integer labels `y` of a mini-batch of `n` examples."""
        n_out = self.layers[-1].w.shape[1]
        y = np.asarray(y)
        check_shape("y (integer labels)", y, (n,))
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_out:
            raise ValueError("y: expected integer labels in 0..%d, got %r" % (n_out - 1, y))
        return np.eye(n_out, dtype=self.layers[-1].w.dtype)[y]

    def feedforward(self, x):
        """The record of every layer (a_in, z, a, ...) for the mini-batch `x`, first layer first."""
        records = []
        a = x
        for j, layer in enumerate(self.layers):
            name = "x" if j == 0 else "layer %d (%s) input" % (j, type(layer).__name__)
            records.append(layer.feedforward(a, name))
            a = records[-1]["a"]
        return records

    def total_cost(self, x, y):
        """The cost C of the mini-batch (x, y), a mean over its examples."""
        a = self.feedforward(x)[-1]["a"]
        return self.cost.fn(a, self.targets(y, len(a)))

    def backprop(self, records, y):
        """The four equations, from the output down: [(nabla_w, nabla_b)] for each layer."""
        out = records[-1]
        delta = self.cost.delta(out["z"], out["a"], self.targets(y, len(out["a"])))  # BP1
        nablas = []
        for j in range(len(self.layers) - 1, -1, -1):
            layer, record = self.layers[j], records[j]
            nablas.append(layer.gradients(record, delta))  # BP3, BP4
            if j > 0:
                nabla_a = layer.backpropagate(record, delta)  # (w^{l+1})^T delta^{l+1}
                delta = self.layers[j - 1].delta(records[j - 1], nabla_a)  # BP2
        return nablas[::-1]

    def gradient(self, x, y):
        """dC/dp for every p in ``params``, for the mini-batch (x, y)."""
        return [g for pair in self.backprop(self.feedforward(x), y) for g in pair]

    def update_mini_batch(self, x, y, eta):
        """One step of gradient descent, p -> p - eta dC/dp; returns the cost before the step."""
        records = self.feedforward(x)
        cost = self.cost.fn(records[-1]["a"], self.targets(y, len(x)))
        gradient = [g for pair in self.backprop(records, y) for g in pair]
        for p, g in zip(self.params, gradient):
            p -= eta * g
        return cost


#### Checks


def finite_difference(net, x, y, param, index, h=1e-5):
    """The central difference (C(p + h) - C(p - h)) / 2h for one coordinate `index` of `param`.

    Where C is smooth its error is O(h^2) from truncation plus about
    eps C / h from rounding; in float64 h = 1e-5 keeps both near 1e-11.
    Near a tie inside a pooling block C need not be differentiable: the
    one-sided differences can disagree, and the central one lands between.
    """
    old = param[index]
    param[index] = old + h
    plus = net.total_cost(x, y)
    param[index] = old - h
    minus = net.total_cost(x, y)
    param[index] = old
    return (plus - minus) / (2 * h)


def crosses_kink(net, x, param, index, h=1e-5):
    """Whether moving param[index] by +h or -h changes the neuron that some pooling block passes on.

    If it does, a kink of C lies within h of the current point, and a
    central difference there mixes two different slopes: it checks nothing.
    With many pooling blocks some block is always nearly tied, so a
    gradient check has to look for this rather than hope.
    """
    def routes():
        return [record["routes"] for record in net.feedforward(x) if "routes" in record]
    old, here, moved = param[index], routes(), False
    for step in (h, -h):
        param[index] = old + step
        moved = moved or any((r != r0).any() for r, r0 in zip(routes(), here))
    param[index] = old
    return moved


def relative_error(g, g_check):
    """max |g - g_check| / max(max |g|, max |g_check|): the worst error, on the gradient's scale.

    Dividing each entry by its own size would instead measure, for entries
    near zero, the rounding noise of a finite difference (about eps C / h),
    not the gradient.  Returns 0 when both are zero.
    """
    g, g_check = np.asarray(g, dtype=np.float64), np.asarray(g_check, dtype=np.float64)
    scale = max(np.max(np.abs(g)), np.max(np.abs(g_check)))
    return float(np.max(np.abs(g - g_check)) / scale) if scale > 0 else 0.0


def theano_gradient(net, x, y):
    """dC/dp for every p in ``net.params``, by Theano's ``T.grad`` of the same network in float64.

    The graph is built from Theano's own ops -- ``conv2d``,
    ``pool_2d(ignore_border=True, mode='max')``, ``sigmoid``, ``softmax`` --
    so it checks the numpy code against an independent implementation.
    Theano is imported here and nowhere else in this module: the rest is numpy.
    """
    import theano
    import theano.tensor as T
    from theano.tensor.nnet import conv2d, sigmoid as t_sigmoid, softmax as t_softmax
    from theano.tensor.signal.pool import pool_2d

    def pool(a, layer):
        return pool_2d(a, ws=layer.poolsize, ignore_border=True, mode="max")

    def conv(a, w, layer):
        return conv2d(a, w, filter_flip=layer.filter_flip)

    def output(layer, a, w, b):
        if isinstance(layer, ConvSigmoidPoolLayer):
            return pool(t_sigmoid(conv(a, w, layer) + b.dimshuffle("x", 0, "x", "x")), layer)
        if isinstance(layer, ConvPoolLayer):
            return t_sigmoid(pool(conv(a, w, layer), layer) + b.dimshuffle("x", 0, "x", "x"))
        z = T.dot(a.flatten(2), w) + b
        return t_softmax(z) if isinstance(layer, SoftmaxLayer) else t_sigmoid(z)

    def cost(a, y_onehot):
        if net.cost is QuadraticCost:
            return 0.5 * T.mean(T.sum((a - y_onehot) ** 2, axis=1))
        if net.cost is CrossEntropyCost:
            return -T.mean(T.sum(y_onehot * T.log(a) + (1 - y_onehot) * T.log(1 - a), axis=1))
        return -T.mean(T.log(a)[T.arange(a.shape[0]), T.argmax(y_onehot, axis=1)])

    params = [theano.shared(np.asarray(p, dtype="float64")) for p in net.params]
    inpt = T.dtensor4("x")
    a = inpt
    for j, layer in enumerate(net.layers):
        a = output(layer, a, params[2 * j], params[2 * j + 1])
    y_onehot = T.dmatrix("y")
    grads = theano.function([inpt, y_onehot], T.grad(cost(a, y_onehot), params))
    return grads(np.asarray(x, dtype="float64"), net.targets(y, len(x)).astype("float64"))
