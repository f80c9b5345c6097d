"""The chapter-6 listings run as printed (imports aside), on a small subset of MNIST.

Each listing is executed unchanged.  The test only shrinks the work: the
loader hands it 1,000 training (5,000 expanded) and 500 validation/test images, and SGD runs
two epochs instead of the listing's 40 or 60; the second must lower the cost.
"""
import os
import runpy

import numpy as np
import pytest

import network3
from network3.data import EXPANDED_NAME, expand, shared

LISTINGS = os.path.join(os.path.dirname(__file__), "book_listings")


@pytest.fixture
def small_book_run(monkeypatch, small_mnist):
    """Small data for the listings; the expanded file is the small set expanded for real."""
    created = []
    expanded = (expand(small_mnist[0]),) + tuple(small_mnist[1:])

    def load_small(filename=None):
        sets = expanded if filename and EXPANDED_NAME in filename else small_mnist
        return [shared(s) for s in sets]

    monkeypatch.setattr(network3, "load_data_shared", load_small)
    real_sgd = network3.Network.SGD

    def two_epochs(self, training_data, epochs, *args, **kwargs):
        records = real_sgd(self, training_data, 2, *args, quiet=True, **kwargs)
        created.append((self, records))
        return records

    monkeypatch.setattr(network3.Network, "SGD", two_epochs)
    return created


@pytest.mark.parametrize("listing, n_layers", [
    ("shallow.py", 2), ("conv_pool.py", 3), ("two_conv_pool.py", 4), ("relu.py", 4),
    ("expanded.py", 4), ("extra_fc.py", 5), ("dropout.py", 5)])
def test_listing_runs_unchanged(listing, n_layers, small_book_run, small_mnist):
    runpy.run_path(os.path.join(LISTINGS, listing), run_name="__main__")
    ((net, records),) = small_book_run
    assert len(net.layers) == n_layers
    assert records[1]["train_cost"] < records[0]["train_cost"]
    predictions = net.predict(small_mnist[2][0])
    assert predictions.shape == (500,)
    assert np.mean(predictions == small_mnist[2][1]) == records[1]["test_accuracy"]
