"""Chapter 6, Exercise 1 scripts: quick runs, parallel jobs, resume, and compare on their logs."""
import os
import signal
import subprocess
import sys
import time

import pytest

from network3 import compare
from network3.runlog import read_log
from conftest import ROOT

SCRIPTS = os.path.join(ROOT, "experiments", "chap6ex1")
QUICK = ["--quick", "--epochs", "2", "--runs", "2", "--train-limit", "2000", "--eval-limit", "2000"]


def script(name, *args):
    return [sys.executable, os.path.join(SCRIPTS, name)] + list(args)


def run_script(name, *args):
    result = subprocess.run(script(name, *args), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=900)
    assert result.returncode == 0, result.stdout
    return result.stdout


def epochs_of(path):
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")}
            for r in read_log(path).epochs]


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """exec_with and exec_without in quick mode (2 runs x 2 epochs each), one job at a time."""
    out = tmp_path_factory.mktemp("chap6ex1")
    printed = {name: run_script(name + ".py", *QUICK, "--jobs", "1", "--out", str(out / name))
               for name in ("exec_with", "exec_without")}
    return out, printed


def test_quick_scripts_write_logs_that_compare_reads(quick_runs):
    out, printed = quick_runs
    for name in ("exec_with", "exec_without"):
        assert "Best val" in printed[name] and "wall time" in printed[name]
        for k in (1, 2):
            run = read_log(str(out / name / ("run-%d" % k) / "log.jsonl"))
            assert run.finished and len(run.epochs) == 2
            assert run.config["name"] == name and run.config["seed"] == k
            assert run.config["train_limit"] == 2000 and run.config["eval_limit"] == 2000
    with_fc = read_log(str(out / "exec_with" / "run-1" / "log.jsonl"))
    assert [l["type"] for l in with_fc.config["layers"]] == [
        "ConvPoolLayer", "FullyConnectedLayer", "SoftmaxLayer"]
    without = read_log(str(out / "exec_without" / "run-1" / "log.jsonl"))
    assert without.config["layers"][-1]["n_in"] == 2880
    assert without.epochs[-1]["validation_accuracy"] > 0.5
    report = compare.compare([str(out / "exec_with"), str(out / "exec_without")],
                             markdown=str(out / "report.md"), plot=str(out / "plot.png"))
    assert [g.label for g in report.groups] == ["exec_with", "exec_without"]
    assert all(g.stats.n_runs == 2 and g.stats.n_finished == 2 for g in report.groups)
    assert len(report.tests) == 1 and report.tests[0].p_value is not None
    assert os.path.getsize(out / "plot.png") > 1000
    cli = subprocess.run([sys.executable, "-m", "network3", "compare", str(out)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert cli.returncode == 0 and "exec_without" in cli.stdout


def test_parallel_jobs_give_the_same_logs(quick_runs, tmp_path):
    out, _ = quick_runs
    run_script("exec_without.py", *QUICK, "--jobs", "2", "--out", str(tmp_path))
    for k in (1, 2):
        name = os.path.join("run-%d" % k, "log.jsonl")
        assert epochs_of(str(tmp_path / name)) == epochs_of(str(out / "exec_without" / name))


def test_resume_skips_finished_runs_and_continues_the_killed_one(quick_runs, tmp_path):
    out, _ = quick_runs
    proc = subprocess.Popen(script("exec_without.py", *QUICK, "--jobs", "1", "--out",
                                   str(tmp_path)), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    log2 = tmp_path / "run-2" / "log.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline:  # kill it once run 2 has logged its first epoch
        if log2.exists() and len(log2.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_log(str(tmp_path / "run-1" / "log.jsonl")).finished
    assert not read_log(str(log2)).finished
    finished_mtime = os.path.getmtime(tmp_path / "run-1" / "log.jsonl")
    run_script("exec_without.py", *QUICK, "--jobs", "1", "--out", str(tmp_path), "--resume")
    assert os.path.getmtime(tmp_path / "run-1" / "log.jsonl") == finished_mtime
    assert read_log(str(log2)).finished
    assert epochs_of(str(log2)) == epochs_of(str(out / "exec_without" / "run-2" / "log.jsonl"))
