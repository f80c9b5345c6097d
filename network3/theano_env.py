"""Theano's flags for network3, set once before ``theano`` is first imported.

Theano reads its configuration when it is imported, from ``THEANO_FLAGS`` and
from ``.theanorc``.  network3 adds three defaults that make the book's code
fast and quiet on a plain pip install, and never overrides a key the user set
in either place:

* ``floatX=float32`` -- the book's choice; every shared variable is float32.
* ``blas__ldflags`` -- Theano's BLAS detector reads a numpy attribute that
  numpy 1.23 no longer has, so without this flag ``import theano`` fails.
  A system OpenBLAS is linked where there is one; otherwise the OpenBLAS
  that scipy's wheel bundles (it exports ``sgemm_``).  Either halves the
  time of a training step compared with Theano's numpy C-API fallback.
* ``base_compiledir`` -- one stable per-user cache, so that scripts, tests
  and experiments compile each function once.
* ``allow_gc=False`` -- keep each op's output buffers between calls instead of
  freeing and reallocating them at every mini-batch; for these small networks
  it costs a few megabytes and saves time on every call (bench/README.md).
"""
import configparser
import glob
import importlib.util
import logging
import os
import sys
import warnings

# Flag names the user had set (THEANO_FLAGS or .theanorc) when network3 configured Theano.
USER_KEYS = set()


def default_compiledir():
    """A stable per-user directory for Theano's compiled modules."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "network3", "theano")


def bundled_openblas():
    """Path of the OpenBLAS that scipy's wheel carries, or None (scipy is not imported)."""
    spec = importlib.util.find_spec("scipy")
    if spec is None or not spec.origin:
        return None
    libdir = os.path.dirname(os.path.dirname(spec.origin)) + "/scipy.libs"
    libs = sorted(glob.glob(os.path.join(libdir, "libopenblas*.so*")))
    return libs[0] if libs else None


def system_openblas():
    """True when the system's linker finds an OpenBLAS (Debian: libopenblas-dev)."""
    return any(glob.glob(pattern) for pattern in (
        "/usr/lib/*/libopenblas.so", "/usr/lib/libopenblas.so", "/usr/lib64/libopenblas.so"))


def blas_ldflags():
    """Linker flags for the OpenBLAS to use, or '' (Theano's slow fallback).

    A system OpenBLAS comes first: Debian bookworm's 0.3.21 trained the book's
    first conv net a third faster than the 0.3.18 in scipy's wheel
    (bench/README.md).  scipy's copy needs nothing but pip.
    """
    if system_openblas():
        return "-lopenblas"
    lib = bundled_openblas()
    if lib:
        libdir, name = os.path.split(lib)
        return "-L%s -l:%s -Wl,-rpath,%s" % (libdir, name, libdir)
    return ""


def _normalise(key):
    return key.strip().replace(".", "__").lower()


def _flags_keys(flags):
    """Keys named in a THEANO_FLAGS string ("a=1,b__c=2"; commas escaped as '\\,')."""
    keys = set()
    for item in flags.replace("\\,", "\0").split(","):
        if "=" in item:
            keys.add(_normalise(item.split("=", 1)[0]))
    return keys


def _theanorc_keys():
    """Keys set in the user's .theanorc files, in THEANO_FLAGS spelling."""
    default = os.pathsep.join(
        [os.path.expanduser("~/.theanorc"), os.path.expanduser("~/.theanorc.txt")])
    files = [f for f in os.environ.get("THEANORC", default).split(os.pathsep) if f]
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read([os.path.expanduser(f) for f in files])
    except configparser.Error:
        return set()  # Theano itself will report a broken .theanorc
    keys = set()
    for section in parser.sections():
        for option in parser.options(section):
            keys.add(_normalise(option if section == "global" else section + "__" + option))
    return keys


def user_keys():
    """Flag names (normalised) that the user set in THEANO_FLAGS or .theanorc."""
    return _flags_keys(os.environ.get("THEANO_FLAGS", "")) | _theanorc_keys()


def network3_flags():
    """network3's defaults for the managed flags, as a dict."""
    return {
        "floatX": "float32",
        "blas__ldflags": blas_ldflags(),
        "base_compiledir": default_compiledir(),
        "allow_gc": "False",
    }


def compose_flags(user_flags, taken):
    """THEANO_FLAGS value: network3's defaults for keys not in `taken`, then the user's."""
    ours = ["%s=%s" % (k, v.replace(",", "\\,"))
            for k, v in network3_flags().items() if _normalise(k) not in taken]
    return ",".join(ours + ([user_flags] if user_flags else []))


class _KnownNoise(logging.Filter):
    """Drops Theano log records that are known to be harmless here."""

    MESSAGES = (
        # scipy's OpenBLAS is linked by file name (-l:libopenblasp-...so), which
        # Theano's library-directory check does not recognise; linking works.
        "We did not find a dynamic library in the library_dir",
    )

    def filter(self, record):
        message = record.getMessage()
        return not any(m in message for m in self.MESSAGES)


def configure():
    """Set THEANO_FLAGS for network3 and filter known noise; call before importing theano."""
    if "theano" in sys.modules:
        import theano
        if theano.config.floatX != "float32":
            warnings.warn("theano was imported before network3 with floatX=%s; network3 "
                          "expects float32 (import network3 first, or set "
                          "THEANO_FLAGS=floatX=float32)" % theano.config.floatX)
    else:
        USER_KEYS.update(user_keys())
        os.environ["THEANO_FLAGS"] = compose_flags(os.environ.get("THEANO_FLAGS", ""), USER_KEYS)
    logging.getLogger("theano.tensor.blas").addFilter(_KnownNoise())
    # Theano 1.1.2 on Python 3.11 / numpy 1.23 triggers these at import and compile
    # time; they concern Theano's own code, not the user's.
    for category in (DeprecationWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=r"theano(\.|$)")
