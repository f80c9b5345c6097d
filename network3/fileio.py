"""Files that are either complete or absent: write to a temporary name, then rename."""
import contextlib
import hashlib
import os
import tempfile
import time

STALE_SECONDS = 3600


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds.

    A crash, a kill or an exception inside the block leaves `path` as it was
    (absent, or its previous complete version).  An exception removes the
    temporary file; one left by a killed process is removed by the next write
    to the same path once it is an hour old (a younger one may be another
    process's write in progress).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    prefix = "." + os.path.basename(path) + "."
    _remove_stale(directory, prefix)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 is not what a plain open() gives
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _remove_stale(directory, prefix):
    for name in os.listdir(directory):
        stale = os.path.join(directory, name)
        with contextlib.suppress(FileNotFoundError):  # another process may remove it first
            if name.startswith(prefix) and name.endswith(".tmp") and \
                    time.time() - os.path.getmtime(stale) > STALE_SECONDS:
                os.remove(stale)


def sha256_of(path, chunk=1 << 20):
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
