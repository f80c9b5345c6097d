"""network3.network: gradients, training on real MNIST, seeds, logs, checkpoints, errors."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import theano
import theano.tensor as T

import network3
from network3 import (ConvPoolLayer, FullyConnectedLayer, Network, SoftmaxLayer,
                      TrainingDiverged)
from network3.data import shared, subset
from network3.runlog import read_log
from conftest import ROOT

MBS = 10


def conv_fc_net(seed=0, mbs=MBS):
    """The book's first convolutional network."""
    return Network([ConvPoolLayer(filter_shape=(20, 1, 5, 5), image_shape=(mbs, 1, 28, 28)),
                    FullyConnectedLayer(n_in=2880, n_out=100),
                    SoftmaxLayer(n_in=100, n_out=10)], mbs, seed=seed)


def shared_sets(sets):
    return [shared(s) for s in sets]


def without_timing(records):
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in records]


# ------------------------------------------------------------------ gradients
def test_theano_gradients_match_finite_differences_float64():
    """T.grad of a tiny float64 conv-pool + FC + softmax graph against central differences."""
    with theano.config.change_flags(floatX="float64"):
        net = Network([ConvPoolLayer(filter_shape=(2, 1, 3, 3), image_shape=(3, 1, 6, 6)),
                       FullyConnectedLayer(n_in=8, n_out=5),
                       SoftmaxLayer(n_in=5, n_out=3)], 3, seed=4)
        rng = np.random.RandomState(5)
        for layer in net.layers:  # non-zero softmax weights, so every gradient is non-trivial
            layer.w.set_value(rng.normal(0, 0.5, layer.w.get_value().shape))
        cost = net.cost(lmbda=0.1, num_training_batches=2)
        f = theano.function([net.x, net.y], [cost] + T.grad(cost, net.params))
    x = rng.rand(3, 36)
    y = np.array([0, 2, 1], dtype="int32")
    analytic = f(x, y)[1:]
    eps = 1e-6
    for param, grad in zip(net.params, analytic):
        value = param.get_value()
        numeric = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            for sign in (1, -1):
                shifted = value.copy()
                shifted[index] += sign * eps
                param.set_value(shifted)
                numeric[index] += sign * f(x, y)[0] / (2 * eps)
        param.set_value(value)
        error = np.abs(grad - numeric).max() / max(np.abs(numeric).max(), 1e-12)
        assert error < 1e-6, (param.name, error)


# ------------------------------------------------------------------ training
def test_conv_fc_net_learns_on_5000_images(mnist, tmp_path):
    """2 epochs on 5,000 real images reach >= 85% (the straightforward design: 86.8-87.4%)."""
    training, validation, test = mnist
    net = conv_fc_net(seed=0)
    records = net.SGD(shared(subset(training, 5000)), 2, MBS, 0.1, shared(validation),
                      shared(test), run_dir=str(tmp_path), quiet=True)
    assert len(records) == 2
    assert records[-1]["validation_accuracy"] >= 0.85
    assert records[-1]["train_cost"] < records[0]["train_cost"]
    # every validation image counted: accuracy is a multiple of 1/10000
    assert round(records[-1]["validation_accuracy"] * 10000, 6) % 1 == 0
    run = read_log(str(tmp_path / "log.jsonl"))
    assert run.finished and without_timing(run.epochs) == without_timing(
        [dict(r, type="epoch") for r in records])
    assert run.summary["best_epoch"] == 1
    assert run.config["data"]["n_validation"] == 10000 and run.config["seed"] == 0
    # the trained network saves, loads and predicts the same
    net.save(str(tmp_path / "net.npz"))
    loaded = Network.load(str(tmp_path / "net.npz"))
    np.testing.assert_array_equal(loaded.predict(test[0][:300]), net.predict(test[0][:300]))
    assert np.mean(loaded.predict(test[0]) == test[1]) == pytest.approx(
        records[-1]["test_accuracy"])


def test_same_seed_same_log_and_parameters(small_mnist, tmp_path):
    runs = []
    for name in ("a", "b"):
        net = conv_fc_net(seed=7)
        records = net.SGD(*shared_sets(small_mnist[:1]), 2, MBS, 0.1,
                          *shared_sets(small_mnist[1:]), run_dir=str(tmp_path / name), quiet=True)
        runs.append((records, net.get_params()))
    assert without_timing(runs[0][0]) == without_timing(runs[1][0])
    for p, q in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(p, q)
    other = conv_fc_net(seed=8)
    assert not np.array_equal(other.get_params()[0], runs[0][1][0])


def test_test_accuracy_reported_at_best_validation_with_ties_to_later_epoch(small_mnist):
    from network3.network import TrainingState
    state = TrainingState({"epochs": 3}, None)
    net = None
    for epoch, (val, tst) in enumerate([(0.9, 0.8), (0.95, 0.85), (0.95, 0.86)]):
        state.end_epoch(net, epoch, 1.0, val, tst, 0, 0, None)
    summary = state.finish(0)
    assert summary["best_epoch"] == 2 and summary["test_accuracy_at_best"] == 0.86
    assert [r["best"] for r in state.records] == [True, True, True]


def test_shuffle_changes_order_reproducibly(small_mnist):
    results = []
    for shuffle, seed in ((True, 3), (True, 3), (False, 3)):
        net = conv_fc_net(seed=seed)
        net.SGD(*shared_sets(small_mnist[:1]), 1, MBS, 0.1, *shared_sets(small_mnist[1:2]),
                shuffle=shuffle, quiet=True)
        results.append(net.get_params()[0])
    np.testing.assert_array_equal(results[0], results[1])
    assert not np.allclose(results[0], results[2])


# ------------------------------------------------------------------ kill and resume
TRAIN_SCRIPT = """
import sys
from network3.experiment import conv_net_layers, make_config, train_and_evaluate
layers = conv_net_layers(fc_units=30)
layers[1]["p_dropout"] = 0.2  # dropout noise must continue where it stopped, too
config = make_config("resume-test", layers, epochs=5, seed=11,
                     train_limit=2000, eval_limit=1000, shuffle=True)
train_and_evaluate(config, sys.argv[1], resume=len(sys.argv) > 2, quiet=True)
"""


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
    subprocess.run([sys.executable, str(script), whole], cwd=ROOT, env=env, check=True,
                   timeout=600)
    proc = subprocess.Popen([sys.executable, str(script), killed], cwd=ROOT, env=env)
    log = os.path.join(killed, "log.jsonl")
    deadline = time.time() + 600
    while time.time() < deadline:  # kill it once two epochs are logged
        if os.path.exists(log) and sum(1 for _ in open(log)) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = read_log(log)
    assert not before.finished and 2 <= len(before.epochs) < 5
    assert os.path.exists(os.path.join(killed, "checkpoint.npz"))
    subprocess.run([sys.executable, str(script), killed, "--resume"], cwd=ROOT, env=env,
                   check=True, timeout=600)
    a, b = read_log(os.path.join(whole, "log.jsonl")), read_log(log)
    assert b.finished and without_timing(a.epochs) == without_timing(b.epochs)
    # continued, not started again: the first process's header and epochs are still there
    assert b.header["start_time"] == before.header["start_time"]
    with np.load(os.path.join(killed, "checkpoint.npz")) as f:
        assert json.loads(str(f["state"]))["epochs_done"] == 5
    assert b.epochs[:2] == before.epochs[:2]  # train_seconds included: not retrained
    assert {k: v for k, v in a.summary.items() if k != "wall_seconds"} == \
        {k: v for k, v in b.summary.items() if k != "wall_seconds"}
    with np.load(os.path.join(whole, "network.npz")) as p, \
            np.load(os.path.join(killed, "network.npz")) as q:
        for name in p.files:
            np.testing.assert_array_equal(p[name], q[name])


def test_resume_of_a_finished_run_does_nothing(small_mnist, tmp_path):
    net = conv_fc_net(seed=1)
    first = net.SGD(*shared_sets(small_mnist[:1]), 1, MBS, 0.1, *shared_sets(small_mnist[1:]),
                    run_dir=str(tmp_path), quiet=True)
    mtime = os.path.getmtime(tmp_path / "log.jsonl")
    again = conv_fc_net(seed=1).SGD(*shared_sets(small_mnist[:1]), 1, MBS, 0.1,
                                    *shared_sets(small_mnist[1:]), run_dir=str(tmp_path),
                                    resume=True, quiet=True)
    assert again == first and os.path.getmtime(tmp_path / "log.jsonl") == mtime
    with pytest.raises(ValueError, match="checkpoint was written for a different config; "
                                         "differing keys: eta"):
        conv_fc_net(seed=1).SGD(*shared_sets(small_mnist[:1]), 1, MBS, 0.2,
                                *shared_sets(small_mnist[1:]), run_dir=str(tmp_path),
                                resume=True, quiet=True)


# ------------------------------------------------------------------ divergence
def test_nan_cost_stops_with_last_good_checkpoint(small_mnist, tmp_path, monkeypatch):
    net = conv_fc_net(seed=2)
    real_compile = Network._compile_train_mb
    calls = {"n": 0}

    def compile_then_poison(self, *args):
        step = real_compile(self, *args)

        def poisoned(i):  # a NaN in the second epoch's 5th mini-batch
            calls["n"] += 1
            return float("nan") if calls["n"] == 100 + 5 else step(i)
        return poisoned

    monkeypatch.setattr(Network, "_compile_train_mb", compile_then_poison)
    with pytest.raises(TrainingDiverged, match="cost became nan at epoch 1, mini-batch 4 "
                                               r"\(eta=0.1\).*last good checkpoint \(1 epochs\)"):
        net.SGD(*shared_sets(small_mnist[:1]), 3, MBS, 0.1, *shared_sets(small_mnist[1:]),
                run_dir=str(tmp_path), quiet=True)
    run = read_log(str(tmp_path / "log.jsonl"))
    assert len(run.epochs) == 1 and run.summary["status"] == "diverged"
    with np.load(tmp_path / "checkpoint.npz") as f:
        assert json.loads(str(f["state"]))["epochs_done"] == 1


def test_real_nan_cost_is_caught(small_mnist):
    images, labels = subset(small_mnist[0], 100)
    images = images.copy()
    images[55, 300] = np.nan  # bypasses validation: shared variables go straight to SGD
    net = conv_fc_net(seed=2)
    with pytest.raises(TrainingDiverged, match="at epoch 0, mini-batch 5 "):
        net.SGD(shared((images, labels)), 1, MBS, 0.1, *shared_sets(small_mnist[1:2]), quiet=True)


def test_existing_run_is_not_overwritten_by_accident(small_mnist, tmp_path):
    net = conv_fc_net(seed=1)
    args = (*shared_sets(small_mnist[:1]), 1, MBS, 0.1, *shared_sets(small_mnist[1:]))
    net.SGD(*args, run_dir=str(tmp_path), quiet=True)
    log = (tmp_path / "log.jsonl").read_text()
    with pytest.raises(ValueError, match="already holds a run log: resume it"):
        conv_fc_net(seed=1).SGD(*args, run_dir=str(tmp_path), quiet=True)
    assert (tmp_path / "log.jsonl").read_text() == log
    conv_fc_net(seed=2).SGD(*args, run_dir=str(tmp_path), overwrite=True, quiet=True)
    assert read_log(str(tmp_path / "log.jsonl")).config["seed"] == 2


def test_corrupt_checkpoint_and_network_files_are_named(small_mnist, tmp_path):
    (tmp_path / "log.jsonl").write_text("")
    (tmp_path / "checkpoint.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="checkpoint.npz: not a readable network3 checkpoint"):
        conv_fc_net().SGD(*shared_sets(small_mnist[:1]), 1, MBS, 0.1,
                          *shared_sets(small_mnist[1:]), run_dir=str(tmp_path), resume=True)
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz: not a readable network3 network file"):
        Network.load(str(tmp_path / "other.npz"))


# ------------------------------------------------------------------ errors before compiling
@pytest.mark.parametrize("layers, mbs, message", [
    (lambda: [ConvPoolLayer((20, 1, 5, 5), (10, 1, 28, 28)), FullyConnectedLayer(2000, 100),
              SoftmaxLayer(100, 10)], 10,
     r"layer 1 \(FullyConnectedLayer\) expects n_in=2000 inputs but layer 0 \(ConvPoolLayer\) "
     r"gives 2880 outputs"),
    (lambda: [ConvPoolLayer((20, 1, 5, 5), (10, 1, 28, 28)), SoftmaxLayer(2880, 10)], 20,
     r"layer 0 \(ConvPoolLayer\): image_shape \(10, 1, 28, 28\) has batch size 10 but "
     r"mini_batch_size is 20"),
    (lambda: [ConvPoolLayer((20, 1, 5, 5), (10, 1, 28, 28)),
              ConvPoolLayer((5, 5, 5, 5), (10, 5, 24, 24)), SoftmaxLayer(500, 10)], 10,
     r"layer 1 \(ConvPoolLayer\): image_shape \(10, 5, 24, 24\) expects 5x24x24 feature maps "
     r"but layer 0 \(ConvPoolLayer\) gives 20x12x12"),
    (lambda: [FullyConnectedLayer(784, 10)], 10, r"layer 0 \(FullyConnectedLayer\) cannot be "
                                                 r"the last layer"),
    (lambda: [], 10, "at least one layer"),
])
def test_network_errors_name_layers_and_numbers(layers, mbs, message):
    with pytest.raises(ValueError, match=message):
        Network(layers(), mbs)


@pytest.mark.parametrize("kwargs, message", [
    ({"eta": 0.0}, "eta must be positive, got 0.0"),
    ({"eta": -1}, "eta must be positive"),
    ({"epochs": 0}, "epochs must be at least 1, got 0"),
    ({"lmbda": -0.1}, "lmbda must be non-negative"),
    ({"mini_batch_size": 5}, "SGD mini_batch_size 5 differs from the network's 10"),
])
def test_sgd_errors_before_compiling(small_mnist, kwargs, message, monkeypatch):
    monkeypatch.setattr(theano, "function", None)  # any compile attempt would fail differently
    args = dict(epochs=1, mini_batch_size=MBS, eta=0.1, lmbda=0.0)
    args.update(kwargs)
    net = conv_fc_net()
    with pytest.raises(ValueError, match=message):
        net.SGD(shared(small_mnist[0]), args["epochs"], args["mini_batch_size"], args["eta"],
                shared(small_mnist[1]), lmbda=args["lmbda"])


def test_mini_batch_larger_than_data(small_mnist, monkeypatch):
    monkeypatch.setattr(theano, "function", None)
    net = Network([FullyConnectedLayer(784, 10), SoftmaxLayer(10, 10)], 10)
    with pytest.raises(ValueError, match="mini_batch_size 10 is larger than the training set "
                                         r"\(7 images\)"):
        net.SGD(shared(subset(small_mnist[0], 7)), 1, 10, 0.1, shared(small_mnist[1]))


def test_predict_rejects_wrong_shape():
    net = Network([FullyConnectedLayer(784, 10), SoftmaxLayer(10, 10)], 10)
    with pytest.raises(ValueError, match=r"predict expects an N x 784 array of images, "
                                         r"got shape \(3, 100\)"):
        net.predict(np.zeros((3, 100)))


def test_fortran_order_parameters_are_accepted(small_mnist):
    """set_params takes any memory order; the C ops update weights in place, row by row."""
    net = conv_fc_net(seed=4)
    net.set_params([np.asfortranarray(p) for p in net.get_params()])
    assert all(p.get_value(borrow=True).flags.c_contiguous for p in net.params)
    records = net.SGD(*shared_sets(small_mnist[:1]), 1, MBS, 0.1, *shared_sets(small_mnist[1:]),
                      quiet=True)
    assert records[-1]["validation_accuracy"] > 0.1
