"""The network3 command: train, resume, overwrite, data."""
import json
import os
import sys

from network3.runlog import read_log
from conftest import ROOT, run_python

TRAIN = ["-m", "network3", "train", "--conv", "4x5x5", "--fc", "10", "--epochs", "2",
         "--train-limit", "300", "--eval-limit", "200", "--quiet", "--seed", "3"]


def test_train_then_resume_uses_the_runs_own_config(tmp_path):
    out = str(tmp_path / "run")
    first = run_python(TRAIN + ["--out", out])
    assert first.returncode == 0, first.stderr
    run = read_log(os.path.join(out, "log.jsonl"))
    assert run.finished and len(run.epochs) == 2
    assert [l["type"] for l in run.config["layers"]] == [
        "ConvPoolLayer", "FullyConnectedLayer", "SoftmaxLayer"]
    assert run.config["layers"][1]["n_in"] == 4 * 12 * 12
    log = open(os.path.join(out, "log.jsonl")).read()
    again = run_python(["-m", "network3", "train", "--out", out, "--resume"])
    assert again.returncode == 0, again.stderr
    assert open(os.path.join(out, "log.jsonl")).read() == log  # finished: nothing to do
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["layers"] == run.config["layers"]


def test_train_refuses_to_replace_a_run_unless_told(tmp_path):
    out = str(tmp_path / "run")
    assert run_python(TRAIN + ["--out", out]).returncode == 0
    refused = run_python(TRAIN + ["--out", out])
    assert refused.returncode == 1
    assert "already holds a run log: resume it" in refused.stderr
    assert "Traceback" not in refused.stderr
    replaced = run_python(TRAIN + ["--out", out, "--overwrite", "--seed", "4"])
    assert replaced.returncode == 0, replaced.stderr
    assert read_log(os.path.join(out, "log.jsonl")).config["seed"] == 4


def test_train_reports_bad_config_file(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{"layers": [{"type": "Pool"}]}')
    result = run_python(["-m", "network3", "train", "--config", str(bad), "--out",
                         str(tmp_path / "run")])
    assert result.returncode == 1 and "unknown layer type 'Pool'" in result.stderr


def test_non_square_filters_give_consistent_layers():
    from argparse import Namespace
    from network3.cli import layers_from_flags
    from network3.layers import layer_from_config
    args = Namespace(mini_batch=10, conv=["6x5x3"], pool="2x2", fc=[20], activation="tanh",
                     dropout=0.0)
    layers = [layer_from_config(c) for c in layers_from_flags(args)]
    assert layers[0].n_out == 6 * 12 * 13 == layers[1].n_in


def test_data_check_and_fetch_of_an_existing_file(mnist):
    check = run_python(["-m", "network3", "data", "check"])
    assert check.returncode == 0 and "valid (training 50000, validation 10000, test 10000)" \
        in check.stdout
    fetch = run_python(["-m", "network3", "data", "fetch"])
    assert fetch.returncode == 0 and "SHA-256 verified" in fetch.stdout


def test_data_check_names_a_corrupt_file(tmp_path):
    bad = tmp_path / "mnist.pkl.gz"
    bad.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    result = run_python(["-m", "network3", "data", "check", str(bad)])
    assert result.returncode == 1
    assert str(bad) in result.stderr and "SHA-256" in result.stderr
