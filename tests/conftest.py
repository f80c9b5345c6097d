"""Shared fixtures: the real MNIST data (fetched once if missing), small subsets of it."""
import os
import subprocess
import sys

import pytest

# One BLAS thread per test process: results that do not depend on the machine's cores, and
# no thread fight with a training run in the background. Set before OpenBLAS is loaded.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import network3  # noqa: F401  (configures Theano before any test imports it)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def mnist():
    """(training, validation, test) numpy pairs of the real, verified MNIST file."""
    from network3.data import load_data
    return load_data()


@pytest.fixture(scope="session")
def small_mnist(mnist):
    """1,000 training, 500 validation and 500 test images, as numpy pairs."""
    from network3.data import subset
    training, validation, test = mnist
    return subset(training, 1000), subset(validation, 500), subset(test, 500)


def run_python(code_or_args, env=None, timeout=600, **kwargs):
    """Run the venv's Python in a subprocess from the project root; return the result."""
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else list(code_or_args)
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable] + args, cwd=ROOT, env=full_env, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
