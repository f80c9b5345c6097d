"""network3.gpu: a GPU run that cannot happen fails fast and says why; never a silent CPU run.

These run on machines without a GPU and without scripts/gpu_setup.sh having run: each test
points NETWORK3_GPU_HOME at a folder of its own, empty or holding a fake stack.
"""
import gzip
import importlib.util
import json
import os
import pickle
import sys
import time
from importlib.machinery import EXTENSION_SUFFIXES

import numpy as np
import pytest

from network3 import gpu
from network3.experiment import experiment_parser, run_experiment
from conftest import run_python

# A subprocess that does not see a GPU stack the developer may have installed in .gpu/.
NO_STACK = {"PYTHONPATH": ""}
pygpu_on_system = pytest.mark.skipif(importlib.util.find_spec("pygpu") is not None,
                                     reason="pygpu is installed system-wide here")


def no_stack_env(tmp_path, **extra):
    return dict(NO_STACK, NETWORK3_GPU_HOME=str(tmp_path / "no-gpu"), **extra)


@pytest.fixture
def fake_stack(tmp_path, monkeypatch):
    """A GPU home with every piece check_gpu_stack() looks for, and an nvidia-smi that lists
    one GPU; nothing in it can run, and the machine's own libraries are out of sight.
    Returns its path."""
    home = tmp_path / "gpu"
    for module in ("pygpu", "mako", "six"):
        package = home / gpu.PYTHON_DIR / module
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
    (home / gpu.PYTHON_DIR / "pygpu" / ("gpuarray" + EXTENSION_SUFFIXES[0])).write_text("")
    (home / gpu.INCLUDE_DIR / "gpuarray").mkdir(parents=True)
    (home / gpu.INCLUDE_DIR / "gpuarray" / "array.h").write_text("")
    (home / gpu.LIB_DIR).mkdir()
    for name in ("libgpuarray.so.3", "libcuda.so", "libnvrtc.so", "libcublas.so"):
        (home / gpu.LIB_DIR / name).write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: Fake GPU (UUID: GPU-0)'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", "%s%s%s" % (bin_dir, os.pathsep, os.environ["PATH"]))
    monkeypatch.setenv("NETWORK3_GPU_HOME", str(home))
    for name in ("PYTHONPATH", "LD_LIBRARY_PATH", "CPATH", "LIBRARY_PATH"):
        monkeypatch.setenv(name, "")
    for name in ("THEANO_FLAGS", "THEANO_GPU_IS_ALREADY_ACTIVE"):  # restored after the test
        monkeypatch.setenv(name, os.environ.get(name, ""))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(gpu, "_ldconfig_cache", dict)
    monkeypatch.setattr(gpu, "DEFAULT_LIB_DIRS", ())
    return home


def tiny_data(path, n_train=100, n_eval=20):
    """A small valid data file in Nielsen's format (random pixels, labels 0..9)."""
    rng = np.random.RandomState(0)
    sets = [(rng.uniform(0, 1, (n, 784)).astype(np.float32), np.arange(n) % 10)
            for n in (n_train, n_eval, n_eval)]
    with gzip.open(path, "wb") as f:
        pickle.dump(tuple(sets), f)
    return str(path)


def header(run_dir):
    with open(os.path.join(run_dir, "log.jsonl")) as f:
        return json.loads(f.readline())


# ------------------------------------------------------------------ the stack check
@pygpu_on_system
def test_check_reports_each_missing_piece(tmp_path, monkeypatch):
    monkeypatch.setenv("NETWORK3_GPU_HOME", str(tmp_path / "no-gpu"))
    monkeypatch.setenv("PYTHONPATH", "")
    problems = "\n".join(gpu.check_gpu_stack())
    assert "pygpu 0.7 (Theano's GPU backend, not on PyPI) is not importable" in problems
    assert "libgpuarray.so.3" in problems and "gpuarray/array.h" in problems
    assert problems.count(gpu.SETUP_SCRIPT) >= 3


def test_complete_fake_stack_has_no_problems_and_missing_pieces_are_named(fake_stack):
    assert gpu.check_gpu_stack() == []
    (fake_stack / gpu.LIB_DIR / "libcublas.so").unlink()
    (fake_stack / gpu.LIB_DIR / "libcublas.so.13").write_text("")
    (fake_stack / gpu.LIB_DIR / "libnvrtc.so").unlink()
    assert gpu.check_gpu_stack() == [
        "libnvrtc.so (CUDA's run-time compiler) not found: install the CUDA toolkit",
        "libcublas.so not found, only libcublas.so.13: libgpuarray opens the unversioned "
        "name; run scripts/gpu_setup.sh, which links it"]


def test_pygpu_built_for_another_python_is_named(fake_stack):
    extension = fake_stack / gpu.PYTHON_DIR / "pygpu" / ("gpuarray" + EXTENSION_SUFFIXES[0])
    extension.rename(extension.with_name("gpuarray.cpython-27-x86_64-linux-gnu.so"))
    assert gpu.check_gpu_stack() == [
        "pygpu in %s is built for another Python than this %d.%d (Debian's is for 3.11): "
        "use a Python 3.11 venv" % (extension.parent, *sys.version_info[:2])]


def test_no_nvidia_smi_means_no_cuda_device(fake_stack, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert gpu.cuda_devices() == ([], "no CUDA device: nvidia-smi is not installed "
                                      "(no NVIDIA driver)")


# ------------------------------------------------------------------ flags and environment
def test_device_flags_add_dnn_off_unless_the_user_chose():
    assert gpu.device_flags("cuda", "floatX=float32", set()) == \
        "floatX=float32,device=cuda,dnn__enabled=False"
    assert gpu.device_flags("cuda", "dnn.enabled=True", {"dnn__enabled"}) == \
        "dnn.enabled=True,device=cuda"
    assert gpu.device_flags("cpu", "", set()) == "device=cpu"


def test_device_flags_replace_the_device_and_keep_escaped_commas():
    flags = r"device=cuda,blas__ldflags=-L/x -Wl\,-rpath\,/x"
    assert gpu.device_flags("cpu", flags, {"device", "blas__ldflags"}) == \
        r"blas__ldflags=-L/x -Wl\,-rpath\,/x,device=cpu"
    twice = gpu.device_flags("cuda1", gpu.device_flags("cuda1", "", set()), {"dnn__enabled"})
    assert twice == "dnn__enabled=False,device=cuda1"


def test_parse_device():
    assert [gpu.parse_device(d) for d in ("cpu", "cuda", "cuda1")] == ["cpu", "cuda", "cuda1"]
    with pytest.raises(Exception, match="expected cpu, cuda or cudaN"):
        gpu.parse_device("gpu0")
    assert experiment_parser("x", 1).parse_args(["--device", "cuda0"]).device == "cuda0"


def test_use_device_sets_flags_and_paths_for_new_processes(fake_stack, monkeypatch):
    monkeypatch.setenv("THEANO_FLAGS", "floatX=float32")
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/mine")
    monkeypatch.setenv("THEANO_GPU_IS_ALREADY_ACTIVE", "Yes")
    assert gpu.use_device("cuda") == "cuda"
    assert os.environ["THEANO_FLAGS"] == "floatX=float32,device=cuda,dnn__enabled=False"
    assert os.environ["LD_LIBRARY_PATH"].split(os.pathsep) == [
        str(fake_stack / gpu.LIB_DIR), "/opt/mine"]
    assert os.environ["PYTHONPATH"].startswith(str(fake_stack / gpu.PYTHON_DIR))
    assert sys.path[0] == str(fake_stack / gpu.PYTHON_DIR)  # what spawned processes use
    assert "THEANO_GPU_IS_ALREADY_ACTIVE" not in os.environ
    gpu.use_device("cuda")  # idempotent
    assert os.environ["LD_LIBRARY_PATH"].count("/opt/mine") == 1
    assert os.environ["THEANO_FLAGS"].count("dnn__enabled") == 1
    exports = gpu.shell_exports()
    assert 'export LD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"' % (
        fake_stack / gpu.LIB_DIR) in exports


def test_this_cpu_process_needs_a_fresh_one_for_the_gpu():
    assert gpu.current_device() == "cpu" and not gpu.gpu_active()
    assert gpu.needs_fresh_process("cuda") and gpu.needs_fresh_process("cuda0")
    assert not gpu.needs_fresh_process("cpu") and not gpu.needs_fresh_process(None)


def test_require_device_refuses_a_gpu_that_did_not_initialise(monkeypatch):
    gpu.require_device()  # this process: the CPU, as configured
    monkeypatch.setattr(gpu, "current_device", lambda: "cuda")
    monkeypatch.setattr(gpu, "check_gpu_stack", lambda: ["libcuda.so not found"])
    with pytest.raises(gpu.GpuError, match="device=cuda was asked for(.|\n)*libcuda.so"):
        gpu.require_device()
    monkeypatch.setattr(gpu, "check_gpu_stack", lambda: [])
    with pytest.raises(gpu.GpuError, match="started without its paths: source .*env.sh"):
        gpu.require_device()


# ------------------------------------------------------------------ the commands
@pygpu_on_system
def test_train_device_cuda_without_pygpu_fails_fast_and_clearly(tmp_path):
    start = time.time()
    result = run_python(["-m", "network3", "train", "--device", "cuda", "--data",
                         str(tmp_path / "never-read.pkl.gz"), "--out", str(tmp_path / "run")],
                        env=no_stack_env(tmp_path), timeout=120)
    assert result.returncode == 1
    assert "error: device=cuda was asked for" in result.stderr
    assert "pygpu 0.7 (Theano's GPU backend, not on PyPI) is not importable" in result.stderr
    assert "scripts/gpu_setup.sh" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # before the data, the log, any compile
    assert time.time() - start < 20


@pygpu_on_system
def test_user_theano_flags_device_cuda_is_honoured_not_a_cpu_run(tmp_path):
    env = no_stack_env(tmp_path, THEANO_FLAGS=os.environ.get("THEANO_FLAGS", "") + ",device=cuda")
    result = run_python(["-m", "network3", "train", "--data", str(tmp_path / "never-read.pkl.gz"),
                         "--out", str(tmp_path / "run")], env=env, timeout=120)
    assert result.returncode == 1
    assert "error: device=cuda was asked for" in result.stderr and "pygpu" in result.stderr
    assert not (tmp_path / "run").exists()


@pygpu_on_system
def test_experiment_device_cuda_without_the_stack_returns_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NETWORK3_GPU_HOME", str(tmp_path / "no-gpu"))
    monkeypatch.setenv("PYTHONPATH", "")
    status = run_experiment("x", [], ["--device", "cuda", "--out", str(tmp_path / "runs")])
    assert status == 1 and "device=cuda was asked for" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pygpu_on_system
def test_chap6ex1_main_passes_device_through(tmp_path):
    result = run_python(["experiments/chap6ex1/main.py", "--device", "cuda", "--out",
                         str(tmp_path / "runs")], env=no_stack_env(tmp_path), timeout=120)
    assert result.returncode == 1 and "device=cuda was asked for" in result.stderr


def test_experiment_device_cpu_trains_here_and_logs_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("THEANO_FLAGS", os.environ.get("THEANO_FLAGS", ""))  # restored after
    layers = [{"type": "SoftmaxLayer", "n_in": 784, "n_out": 10, "p_dropout": 0.0}]
    status = run_experiment("tiny", layers, [
        "--device", "cpu", "--runs", "1", "--jobs", "1", "--epochs", "1", "--quiet",
        "--data", tiny_data(tmp_path / "tiny.pkl.gz"), "--out", str(tmp_path / "runs")])
    assert status == 0
    assert header(tmp_path / "runs" / "run-1")["theano"]["device"] == "cpu"


def test_device_cpu_from_a_cuda_configured_process_trains_in_a_fresh_cpu_process(tmp_path):
    """THEANO_FLAGS says cuda (unusable here), --device cpu wins: the run goes to a spawned
    process whose Theano is on the CPU, and its log header says so."""
    env = no_stack_env(tmp_path, THEANO_FLAGS=os.environ.get("THEANO_FLAGS", "") + ",device=cuda")
    result = run_python(["-m", "network3", "train", "--device", "cpu", "--data",
                         tiny_data(tmp_path / "tiny.pkl.gz"), "--epochs", "1", "--quiet",
                         "--out", str(tmp_path / "run")], env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    theano = header(tmp_path / "run")["theano"]
    assert theano["device"] == "cpu"
    assert theano["flags"].endswith(",device=cpu")
