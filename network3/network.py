"""Network: assembles layers into Theano graphs and trains them by mini-batch SGD.

The mathematics is the book's: log-likelihood cost of the last layer plus the
L2 term 0.5*lmbda*sum(w**2)/num_training_batches, plain SGD with learning
rate eta, mini-batches visited in the same order every epoch unless
``shuffle=True``, and the test accuracy reported at the epoch of best
validation accuracy (ties going to the later epoch).

What is added: validation and test accuracy over every image, computed in
batches of 100 by one separately compiled function; a run log and an atomic
checkpoint after every epoch, from which a killed run resumes to the same
result; a seed that fixes initialisation, dropout noise and shuffling.
"""
import json
import math
import os
import platform
import socket
import sys
import time
import zipfile

import numpy as np
import theano
import theano.tensor as T
from theano.sandbox.rng_mrg import MRG_RandomStream

from . import gpu
from . import layers as layers_mod
from .dense import dense_update
from .fileio import atomic_path
from .runlog import LOG_NAME, LogWriter, read_log, truncate_log

CHECKPOINT_NAME = "checkpoint.npz"
# Images per call when evaluating: 100 was faster than 50, 250, 1,000 or 2,500 here
# (10,000 images of exec_with: 0.262 s at 100, 0.311 s at 1,000; bench/eval_batch.py).
EVAL_BATCH_SIZE = 100


class TrainingDiverged(RuntimeError):
    """The cost became NaN or infinite; training stopped at the last good checkpoint."""


def size(data):
    """Number of examples in a (shared x, shared y) data set."""
    return data[0].get_value(borrow=True).shape[0]


def _layer_label(j, layer):
    return "layer %d (%s)" % (j, type(layer).__name__)


class Network:
    """A feedforward network of network3 layers, trained with ``SGD``."""

    def __init__(self, layers, mini_batch_size, seed=None):
        """Build the network's graphs from `layers`.

        `seed`, when given, re-initialises every layer's parameters from
        ``numpy.random.RandomState(seed)`` (layers drawn in order) and seeds the
        dropout noise, so that two networks built with the same seed are equal.
        Without it, the parameters are those the layers drew from numpy's
        global generator, as in the book.
        """
        self.layers = list(layers)
        self.mini_batch_size = int(mini_batch_size)
        self.seed = seed
        self._check_layers()
        if seed is not None:
            rng = np.random.RandomState(seed)
            for layer in self.layers:
                layer.init_params(rng)
        self.params = [param for layer in self.layers for param in layer.params]
        # Dropout noise: its own stream, independent of the initialisation's.
        self.srng = MRG_RandomStream(int(_stream_seed(seed, "dropout") % (2 ** 30 - 1)) + 1)
        self.x = T.matrix("x")
        self.y = T.ivector("y")
        inpt, inpt_dropout = self.x, self.x
        for layer in self.layers:
            inpt, inpt_dropout = layer.set_inpt(inpt, inpt_dropout, self.mini_batch_size, self.srng)
        self.output = self.layers[-1].output
        self.output_dropout = self.layers[-1].output_dropout
        self._predict = None

    def _check_layers(self):
        if not self.layers:
            raise ValueError("Network needs at least one layer")
        if self.mini_batch_size < 1:
            raise ValueError("mini_batch_size must be at least 1, got %d" % self.mini_batch_size)
        for j, layer in enumerate(self.layers):
            if isinstance(layer, layers_mod.ConvPoolLayer) and \
                    layer.image_shape[0] != self.mini_batch_size:
                raise ValueError("%s: image_shape %r has batch size %d but mini_batch_size is %d"
                                 % (_layer_label(j, layer), layer.image_shape,
                                    layer.image_shape[0], self.mini_batch_size))
            previous = self.layers[j - 1] if j > 0 else None
            if isinstance(layer, layers_mod.ConvPoolLayer) and \
                    isinstance(previous, layers_mod.ConvPoolLayer) and \
                    layer.image_shape[1:] != previous.output_shape((None,))[1:]:
                raise ValueError("%s: image_shape %r expects %s feature maps but %s gives %s"
                                 % (_layer_label(j, layer), layer.image_shape,
                                    "x".join(map(str, layer.image_shape[1:])),
                                    _layer_label(j - 1, previous),
                                    "x".join(map(str, previous.output_shape((None,))[1:]))))
            if j > 0 and layer.n_in != self.layers[j - 1].n_out:
                raise ValueError("%s expects n_in=%d inputs but %s gives %d outputs"
                                 % (_layer_label(j, layer), layer.n_in,
                                    _layer_label(j - 1, self.layers[j - 1]),
                                    self.layers[j - 1].n_out))
        if not hasattr(self.layers[-1], "cost"):
            raise ValueError("%s cannot be the last layer: it has no cost; end with a SoftmaxLayer"
                             % _layer_label(len(self.layers) - 1, self.layers[-1]))

    # ------------------------------------------------------------------ graphs
    def cost(self, lmbda=0.0, num_training_batches=1):
        """Training cost: the last layer's cost plus the book's L2 term."""
        l2_norm_squared = sum((layer.w ** 2).sum() for layer in self.layers)
        return (self.layers[-1].cost(self)
                + 0.5 * lmbda * l2_norm_squared / num_training_batches)

    def _updates(self, cost, eta, lmbda, num_training_batches):
        """One SGD step: param - eta * dcost/dparam for every parameter.

        A weight matrix whose training product x w is a C op gets the same step
        as one in-place op, w (1 - eta*lmbda/n) - eta x^T dcost/d(x w), the L2
        term included; the other parameters get Theano's gradients.
        """
        dense = [layer for layer in self.layers if getattr(layer, "train_product", None)]
        dense_weights = {layer.w for layer in dense}
        others = [param for param in self.params if param not in dense_weights]
        grads = T.grad(cost, others + [layer.train_product[1] for layer in dense])
        updates = [(param, param - eta * grad) for param, grad in zip(others, grads)]
        decay = 1.0 - eta * lmbda / num_training_batches
        for layer, grad in zip(dense, grads[len(others):]):
            updates.append((layer.w, dense_update(layer.w, layer.train_product[0], grad, -eta,
                                                  decay, layer.n_in, layer.n_out)))
        return updates

    def compile_train_step(self, eta, lmbda=0.0, num_training_batches=1):
        """A compiled function (x, y) -> cost that applies one SGD step to the parameters."""
        cost = self.cost(lmbda, num_training_batches)
        return theano.function([self.x, self.y], cost, accept_inplace=True,
                               updates=self._updates(cost, eta, lmbda, num_training_batches))

    def _compile_train_mb(self, training_data, eta, lmbda, num_training_batches, order):
        """The book's training function: mini-batch i of the shared data, by index."""
        i = T.lscalar("i")
        mbs = self.mini_batch_size
        training_x, training_y = training_data
        rows = slice(i * mbs, (i + 1) * mbs) if order is None else order[i * mbs:(i + 1) * mbs]
        cost = self.cost(lmbda, num_training_batches)
        return theano.function([i], cost, accept_inplace=True,
                               updates=self._updates(cost, eta, lmbda, num_training_batches),
                               givens={self.x: training_x[rows], self.y: training_y[rows]})

    def _predict_fn(self):
        if self._predict is None:
            self._predict = theano.function([self.x], self.layers[-1].y_out)
        return self._predict

    def predict(self, images, batch_size=EVAL_BATCH_SIZE):
        """Predicted digit for each row of `images` (N x n_in), in batches of any size."""
        predict = self._predict_fn()
        images = np.asarray(images, dtype=theano.config.floatX)
        if images.ndim != 2 or images.shape[1] != self.layers[0].n_in:
            raise ValueError("predict expects an N x %d array of images, got shape %r"
                             % (self.layers[0].n_in, images.shape))
        return np.concatenate([predict(images[k:k + batch_size])
                               for k in range(0, len(images), batch_size)] or
                              [np.zeros(0, dtype=np.int64)])

    def accuracy(self, data, batch_size=EVAL_BATCH_SIZE):
        """Fraction of a data set classified correctly; every image counts."""
        x, y = (d.get_value(borrow=True) if hasattr(d, "get_value") else d for d in data)
        return float(np.mean(self.predict(x, batch_size) == y))

    # ------------------------------------------------------------------ training
    def describe(self):
        """The architecture as plain data, for logs and saved networks."""
        return {"layers": [layer.config() for layer in self.layers],
                "mini_batch_size": self.mini_batch_size}

    def SGD(self, training_data, epochs, mini_batch_size, eta, validation_data,
            test_data=None, lmbda=0.0, *, shuffle=False, run_dir=None, resume=False,
            overwrite=False, quiet=False, eval_batch_size=EVAL_BATCH_SIZE, config=None):
        """Train by mini-batch stochastic gradient descent; return the epoch records.

        The first seven arguments are the book's.  `run_dir` receives the run
        log (``log.jsonl``) and a checkpoint after every epoch; with
        ``resume=True`` a run whose checkpoint exists continues from it and ends
        exactly as an uninterrupted run would; a run_dir that already holds a
        log is refused unless ``overwrite=True``.  `config` adds entries (a
        name, the data file) to the config recorded in the log.
        """
        epochs, mini_batch_size = int(epochs), int(mini_batch_size)
        n_train = size(training_data)
        num_training_batches = n_train // max(mini_batch_size, 1)
        _check_sgd_args(epochs, mini_batch_size, self.mini_batch_size, eta, lmbda, n_train)
        run_config = dict(self.describe(), epochs=epochs, eta=float(eta), lmbda=float(lmbda),
                          seed=self.seed, shuffle=bool(shuffle), **(config or {}))
        run_config["data"] = dict(run_config.get("data") or {}, n_train=n_train,
                                  n_validation=size(validation_data),
                                  n_test=size(test_data) if test_data is not None else 0)
        state = TrainingState(run_config, run_dir)
        if resume:
            state.resume(self)
        else:
            state.start(overwrite)
        if state.finished:
            _say(quiet, "Run in %s already finished %d epochs." % (run_dir, epochs))
            return state.records
        shuffle_rng = np.random.RandomState(_stream_seed(self.seed, "shuffle"))
        if state.shuffle_rng_state is not None:
            shuffle_rng.set_state(state.shuffle_rng_state)
        order = theano.shared(np.arange(n_train, dtype="int64"), name="order") if shuffle else None
        train_mb = self._compile_train_mb(training_data, eta, lmbda, num_training_batches, order)
        # The indices are made int64 arrays here, so Theano can skip checking them per call.
        train_mb.trust_input = True
        indices = [np.asarray(j, dtype="int64") for j in range(num_training_batches)]
        self._predict_fn()
        start = time.time()
        for epoch in range(state.epochs_done, epochs):
            t0 = time.time()
            if shuffle:
                order.set_value(shuffle_rng.permutation(n_train).astype("int64"))
            costs = np.empty(num_training_batches)
            for minibatch_index in _progress(num_training_batches, epoch, quiet):
                costs[minibatch_index] = train_mb(indices[minibatch_index])
                if not math.isfinite(costs[minibatch_index]):
                    state.diverged(epoch, minibatch_index, costs[minibatch_index], eta)
            t1 = time.time()
            validation_accuracy = self.accuracy(validation_data, eval_batch_size)
            test_accuracy = (self.accuracy(test_data, eval_batch_size)
                             if test_data is not None else None)
            record = state.end_epoch(self, epoch, float(costs.mean()), validation_accuracy,
                                     test_accuracy, t1 - t0, time.time() - t1,
                                     shuffle_rng.get_state())
            _say(quiet, "Epoch {0}: validation accuracy {1:.2%}".format(epoch, validation_accuracy))
            if record["best"]:
                _say(quiet, "This is the best validation accuracy to date.")
                if test_accuracy is not None:
                    _say(quiet, "The corresponding test accuracy is {0:.2%}".format(test_accuracy))
        summary = state.finish(time.time() - start)
        _say(quiet, "Finished training network.")
        _say(quiet, "Best validation accuracy of {0:.2%} obtained at epoch {1} (iteration {2})"
             .format(summary["best_validation_accuracy"], summary["best_epoch"],
                     (summary["best_epoch"] + 1) * num_training_batches - 1))
        if summary["test_accuracy_at_best"] is not None:
            _say(quiet, "Corresponding test accuracy of {0:.2%}"
                 .format(summary["test_accuracy_at_best"]))
        return state.records

    # ------------------------------------------------------------------ save / load
    def get_params(self):
        return [param.get_value() for param in self.params]

    def set_params(self, values):
        if len(values) != len(self.params):
            raise ValueError("expected %d parameter arrays, got %d" % (len(self.params), len(values)))
        for param, value in zip(self.params, values):
            if param.get_value(borrow=True).shape != np.shape(value):
                raise ValueError("parameter %s: expected shape %r, got %r" % (
                    param.name, param.get_value(borrow=True).shape, np.shape(value)))
            param.set_value(layers_mod.param_array(value))

    def save(self, path, **extra):
        """Save the architecture and parameters to an .npz file (no pickle), atomically.

        `extra` arrays are stored beside them (a checkpoint's training state).
        """
        arrays = {"param_%d" % k: v for k, v in enumerate(self.get_params())}
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, network=json.dumps(self.describe()), **arrays, **extra)

    @classmethod
    def load(cls, path):
        """A Network rebuilt from a file written by ``save`` (or a checkpoint)."""
        try:
            with np.load(path, allow_pickle=False) as f:
                described = json.loads(str(f["network"]))
                params = [f["param_%d" % k] for k in range(sum(1 for n in f.files
                                                                if n.startswith("param_")))]
            net = cls([layers_mod.layer_from_config(c) for c in described["layers"]],
                      described["mini_batch_size"])
            net.set_params(params)
        except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as e:
            raise ValueError("%s: not a readable network3 network file (%s: %s)"
                             % (path, type(e).__name__, e)) from None
        return net


STREAMS = {"dropout": 1, "shuffle": 2}


def _stream_seed(seed, stream):
    """A 32-bit seed for one random stream, independent of the others drawn from `seed`."""
    sequence = np.random.SeedSequence([seed if seed is not None else 0, STREAMS[stream]])
    return int(sequence.generate_state(1)[0])


def _check_sgd_args(epochs, mini_batch_size, net_mini_batch_size, eta, lmbda, n_train):
    if epochs < 1:
        raise ValueError("epochs must be at least 1, got %d" % epochs)
    if not eta > 0:
        raise ValueError("eta must be positive, got %r" % eta)
    if not lmbda >= 0:
        raise ValueError("lmbda must be non-negative, got %r" % lmbda)
    if mini_batch_size != net_mini_batch_size:
        raise ValueError("SGD mini_batch_size %d differs from the network's %d"
                         % (mini_batch_size, net_mini_batch_size))
    if mini_batch_size > n_train:
        raise ValueError("mini_batch_size %d is larger than the training set (%d images)"
                         % (mini_batch_size, n_train))


def _say(quiet, message):
    if not quiet:
        print(message, flush=True)


def _progress(n, epoch, quiet):
    """Mini-batch indices, with a progress bar when attached to a terminal."""
    if quiet or not sys.stderr.isatty():
        return range(n)
    from tqdm import tqdm
    return tqdm(range(n), desc="Epoch %d" % epoch, unit="mb", leave=False, mininterval=0.5)


def run_header(config):
    """The run log's header: config, versions, Theano's device and flags, host, time."""
    return {
        "config": config,
        "versions": {"python": platform.python_version(), "theano": theano.__version__,
                     "numpy": np.__version__, "network3": _network3_version()},
        "theano": {"device": theano.config.device, "device_name": gpu.device_name(),
                   "floatX": theano.config.floatX,
                   "blas__ldflags": theano.config.blas__ldflags,
                   "flags": os.environ.get("THEANO_FLAGS", "")},
        "host": {"name": socket.gethostname(), "machine": platform.machine(),
                 "cpus": os.cpu_count(), "platform": platform.platform()},
        "start_time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }


def _network3_version():
    from . import __version__
    return __version__


class TrainingState:
    """Best-so-far bookkeeping, the run log and the checkpoint of one training run."""

    def __init__(self, config, run_dir):
        self.config = config
        self.run_dir = run_dir
        self.records = []
        self.best = None
        self.shuffle_rng_state = None
        self.log = LogWriter(os.path.join(run_dir, LOG_NAME)) if run_dir else None
        self.checkpoint = os.path.join(run_dir, CHECKPOINT_NAME) if run_dir else None
        self.finished = False

    @property
    def epochs_done(self):
        return len(self.records)

    def start(self, overwrite=False):
        if self.log:
            if os.path.exists(self.log.path) and not overwrite:
                raise ValueError("%s already holds a run log: resume it (resume=True, "
                                 "--resume) or start again (overwrite=True, --overwrite)"
                                 % self.run_dir)
            if os.path.exists(self.checkpoint):
                os.remove(self.checkpoint)
            self.log.start(run_header(self.config))

    def resume(self, net):
        """Continue from the checkpoint in run_dir, if any; else start afresh."""
        if not self.checkpoint:
            raise ValueError("resume=True needs a run_dir")
        if not os.path.exists(self.checkpoint):  # killed before its first epoch ended
            return self.start(overwrite=True)
        try:
            with np.load(self.checkpoint, allow_pickle=False) as f:
                saved = json.loads(str(f["state"]))
                params = [f["param_%d" % k] for k in range(len(net.params))]
                srng_states = [f["srng_%d" % k] for k in range(saved["n_srng"])]
                rng_keys = f["shuffle_rng_keys"]
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
            raise ValueError("%s: not a readable network3 checkpoint (%s: %s)"
                             % (self.checkpoint, type(e).__name__, e)) from None
        if not os.path.exists(self.log.path):
            raise ValueError("%s: the checkpoint has no run log beside it; cannot resume"
                             % self.run_dir)
        if _comparable(saved["config"]) != _comparable(self.config):
            raise ValueError("%s: checkpoint was written for a different config; differing "
                             "keys: %s" % (self.checkpoint, ", ".join(
                                 _diff_keys(saved["config"], self.config))))
        try:
            net.set_params(params)
        except ValueError as e:
            raise ValueError("%s: %s" % (self.checkpoint, e)) from None
        shared_states = [update[0] for update in net.srng.state_updates]
        for shared, value in zip(shared_states, srng_states):
            shared.set_value(value)
        self.shuffle_rng_state = ("MT19937", rng_keys) + tuple(saved["shuffle_rng_rest"])
        self.best = saved["best"]
        logged = read_log(self.log.path)
        if logged.finished and saved["epochs_done"] >= self.config["epochs"]:
            self.records, self.finished = _epoch_records(logged.epochs), True
            return
        self.records = _epoch_records(truncate_log(self.log.path, saved["epochs_done"]))
        if len(self.records) != saved["epochs_done"]:
            raise ValueError("%s: log has %d epochs but the checkpoint has %d"
                             % (self.log.path, len(self.records), saved["epochs_done"]))

    def end_epoch(self, net, epoch, train_cost, validation_accuracy, test_accuracy,
                  train_seconds, eval_seconds, shuffle_rng_state):
        is_best = self.best is None or validation_accuracy >= self.best["validation_accuracy"]
        record = {"epoch": epoch, "train_cost": train_cost,
                  "validation_accuracy": validation_accuracy, "test_accuracy": test_accuracy,
                  "best": is_best, "train_seconds": round(train_seconds, 3),
                  "eval_seconds": round(eval_seconds, 3)}
        if is_best:
            self.best = {"epoch": epoch, "validation_accuracy": validation_accuracy,
                         "test_accuracy": test_accuracy}
        self.records.append(record)
        if self.log:
            # Log first, then checkpoint: a kill between the two leaves a log epoch
            # without its checkpoint, which resume drops and trains again.
            self.log.epoch(record)
            self._write_checkpoint(net, shuffle_rng_state)
        return record

    def _write_checkpoint(self, net, shuffle_rng_state):
        state = {"config": self.config, "epochs_done": self.epochs_done, "best": self.best,
                 "n_srng": len(net.srng.state_updates),
                 "shuffle_rng_rest": [int(v) if not isinstance(v, float) else v
                                      for v in shuffle_rng_state[2:]]}
        noise = {"srng_%d" % k: update[0].get_value()
                 for k, update in enumerate(net.srng.state_updates)}
        net.save(self.checkpoint, state=json.dumps(state),
                 shuffle_rng_keys=shuffle_rng_state[1], **noise)

    def diverged(self, epoch, minibatch_index, cost, eta):
        message = ("training stopped: the cost became %s at epoch %d, mini-batch %d (eta=%g); "
                   "try a smaller eta." % (cost, epoch, minibatch_index, eta))
        if self.log:
            self.log.finish({"status": "diverged", "epochs_completed": self.epochs_done,
                             "message": message})
            message += " The log and the last good checkpoint (%d epochs) are in %s." % (
                self.epochs_done, self.run_dir)
        raise TrainingDiverged(message)

    def finish(self, wall_seconds):
        summary = {"status": "finished", "epochs_completed": self.epochs_done,
                   "best_epoch": self.best["epoch"],
                   "best_validation_accuracy": self.best["validation_accuracy"],
                   "test_accuracy_at_best": self.best["test_accuracy"],
                   "wall_seconds": round(wall_seconds, 3)}
        if self.log:
            self.log.finish(summary)
        self.finished = True
        return summary


def _epoch_records(logged):
    """Epoch records as SGD returns them: the log's lines without their "type"."""
    return [{k: v for k, v in r.items() if k != "type"} for r in logged]


def _comparable(config):
    """A config without the entries that may differ between a run and its resumption."""
    config = json.loads(json.dumps(config))
    config.get("data", {}).pop("path", None)
    return config


def _diff_keys(a, b):
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
