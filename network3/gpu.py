"""Theano's GPU backend for network3: what it needs, where it lives, which device is in use.

Theano 1.1.2 reaches an NVIDIA GPU only through its gpuarray backend: the
Python package pygpu and the C library libgpuarray 0.7, neither on PyPI.
``scripts/gpu_setup.sh`` unpacks Debian's builds of both (made for Python
3.11) into ``.gpu/`` in the project, or ``$NETWORK3_GPU_HOME``; this module
knows that layout.  Three facts shape it:

* Theano fixes its device when it is imported, and when the GPU does not
  initialise it logs an error and computes on the CPU.  A run that asked for
  the GPU must fail instead, with the missing piece named: check_gpu_stack()
  finds the pieces without importing Theano, require_device() checks after
  the import that the GPU really is in use.
* The dynamic loader reads LD_LIBRARY_PATH only when a process starts, and
  ``network3`` has imported Theano (on the CPU) before it reads its command
  line.  So a run on another device goes to a fresh process: use_device()
  sets THEANO_FLAGS and the stack's paths in os.environ, which spawned
  processes inherit, and needs_fresh_process() says when one is needed.
* libgpuarray opens the CUDA libraries by their unversioned names
  (libcuda.so, libnvrtc.so, libcublas.so), which a driver-only install may
  lack; gpu_setup.sh links them into ``.gpu/lib``.
"""
import argparse
import glob
import importlib.machinery
import os
import re
import shutil
import subprocess
import sys

from . import theano_env

SETUP_SCRIPT = "scripts/gpu_setup.sh"
# The layout gpu_setup.sh makes under the GPU home.
PYTHON_DIR = "root/usr/lib/python3/dist-packages"  # pygpu
INCLUDE_DIR = "root/usr/include"                    # gpuarray/*.h, which Theano compiles against
LIB_DIR = "lib"                                     # links to libgpuarray and the CUDA libraries
# Searched after LD_LIBRARY_PATH and ldconfig's cache, as the dynamic loader does.
DEFAULT_LIB_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64",
                    "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu")
CUDA_LIBRARIES = (
    ("libcuda.so", "the NVIDIA driver's CUDA library", "install the NVIDIA driver"),
    ("libnvrtc.so", "CUDA's run-time compiler", "install the CUDA toolkit"),
    ("libcublas.so", "cuBLAS", "install the CUDA toolkit"),
)


class GpuError(RuntimeError):
    """The GPU was asked for and cannot be used; the message says why and what to do."""


def gpu_home():
    """Where gpu_setup.sh puts the GPU stack: $NETWORK3_GPU_HOME, else .gpu/ in the project."""
    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.environ.get("NETWORK3_GPU_HOME") or os.path.join(project, ".gpu")


def parse_device(text):
    """argparse type for --device: cpu, cuda or cudaN (Theano's names)."""
    if not re.fullmatch(r"cpu|cuda\d*", text):
        raise argparse.ArgumentTypeError("%r: expected cpu, cuda or cudaN (e.g. cuda0)" % text)
    return text


def stack_dirs(home=None):
    """{variable: [directories]} that a process using the stack in `home` needs first on
    PYTHONPATH, LD_LIBRARY_PATH, CPATH and LIBRARY_PATH; {} before gpu_setup.sh has run
    (pygpu may then come from the system).

    LD_LIBRARY_PATH also gets the directories of the real libraries that .gpu/lib links
    to, so that their own dependencies (libcublasLt beside libcublas) are found; not the
    system's, which the loader searches anyway and which must not shadow the user's.
    """
    home = home or gpu_home()
    lib = os.path.join(home, LIB_DIR)
    if not os.path.isdir(lib):
        return {}
    targets = sorted({os.path.dirname(os.path.realpath(p))
                      for p in glob.glob(os.path.join(lib, "*"))} - {lib, *DEFAULT_LIB_DIRS})
    return {"PYTHONPATH": [os.path.join(home, PYTHON_DIR)],
            "LD_LIBRARY_PATH": [lib] + targets,
            "CPATH": [os.path.join(home, INCLUDE_DIR)],
            "LIBRARY_PATH": [lib]}


def stack_environ(environ=None, home=None):
    """The variables of stack_dirs() with its directories put before those in `environ`."""
    environ = os.environ if environ is None else environ
    updated = {}
    for name, dirs in stack_dirs(home).items():
        current = [p for p in environ.get(name, "").split(os.pathsep) if p]
        updated[name] = os.pathsep.join([d for d in dirs if d not in current] + current)
    return updated


def _ldconfig_cache():
    """{file name: path} of the libraries in the dynamic loader's cache (ldconfig -p)."""
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    try:
        listing = subprocess.run([ldconfig, "-p"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    cache = {}
    for line in listing.splitlines():
        name, arrow, path = line.strip().partition(" => ")
        if arrow:
            cache.setdefault(name.split(" (")[0], path)
    return cache


def _visible_libraries(library_path):
    """{file name: path} of the libraries that dlopen() can find by name, in its order:
    the LD_LIBRARY_PATH directories, ldconfig's cache, the default directories."""
    found = {}
    for d in library_path:
        for path in glob.glob(os.path.join(d, "lib*.so*")):
            found.setdefault(os.path.basename(path), path)
    for name, path in _ldconfig_cache().items():
        found.setdefault(name, path)
    for d in DEFAULT_LIB_DIRS:
        for path in glob.glob(os.path.join(d, "lib*.so*")):
            found.setdefault(os.path.basename(path), path)
    return found


def cuda_devices():
    """(the GPUs `nvidia-smi -L` lists, or [], and the problem when there are none)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return [], "no CUDA device: nvidia-smi is not installed (no NVIDIA driver)"
    try:
        result = subprocess.run([smi, "-L"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return [], "no CUDA device: nvidia-smi -L failed (%s)" % e
    gpus = [line for line in result.stdout.splitlines() if line.startswith("GPU ")]
    if result.returncode or not gpus:
        return [], "no CUDA device: nvidia-smi -L says %r" % result.stdout.strip()
    return gpus, None


def _built_for_this_python(pygpu_spec):
    """Whether pygpu's C extension has a file name this interpreter imports."""
    return any(os.path.exists(os.path.join(d, "gpuarray" + suffix))
               for d in pygpu_spec.submodule_search_locations
               for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def check_gpu_stack(home=None):
    """The missing pieces of Theano's GPU stack, each with how to get it; [] when complete.

    Looks as a process started by use_device() would (with the stack's paths), without
    importing Theano or pygpu and without initialising CUDA.
    """
    home = home or gpu_home()
    env = stack_environ(home=home)
    paths = {name: [p for p in env.get(name, os.environ.get(name, "")).split(os.pathsep) if p]
             for name in ("PYTHONPATH", "LD_LIBRARY_PATH", "CPATH")}
    problems = []
    for module, what in (("pygpu", "pygpu 0.7 (Theano's GPU backend, not on PyPI)"),
                         ("mako", "mako (pygpu needs it)"), ("six", "six (pygpu needs it)")):
        spec = importlib.machinery.PathFinder.find_spec(module, paths["PYTHONPATH"] + sys.path)
        if spec is None:
            problems.append("%s is not importable: run %s" % (what, SETUP_SCRIPT))
        elif module == "pygpu" and not _built_for_this_python(spec):
            problems.append("pygpu in %s is built for another Python than this %d.%d "
                            "(Debian's is for 3.11): use a Python 3.11 venv"
                            % (os.path.dirname(spec.origin), *sys.version_info[:2]))
    libraries = _visible_libraries(paths["LD_LIBRARY_PATH"])
    if "libgpuarray.so.3" not in libraries:
        problems.append("libgpuarray.so.3 (libgpuarray 0.7) not found: run %s" % SETUP_SCRIPT)
    include_dirs = paths["CPATH"] + ["/usr/include", "/usr/local/include"]
    if not any(os.path.exists(os.path.join(d, "gpuarray", "array.h")) for d in include_dirs):
        problems.append("libgpuarray's headers (gpuarray/array.h), which Theano compiles "
                        "against, not found: run %s" % SETUP_SCRIPT)
    for name, what, remedy in CUDA_LIBRARIES:
        if name in libraries:
            continue
        versioned = sorted(n for n in libraries if n.startswith(name + "."))
        if versioned:
            problems.append("%s not found, only %s: libgpuarray opens the unversioned name; "
                            "run %s, which links it" % (name, versioned[-1], SETUP_SCRIPT))
        else:
            problems.append("%s (%s) not found: %s" % (name, what, remedy))
    problem = cuda_devices()[1]
    if problem:
        problems.append(problem)
    return problems


def stack_message(device, problems):
    """The GpuError text: what was asked for, every missing piece, where to get them."""
    return ("device=%s was asked for, but Theano's GPU stack is not usable here:\n  - %s\n"
            "Set-up: %s (see docs/gpu.md). network3 never falls back to the CPU silently; "
            "pass --device cpu to train on the CPU."
            % (device, "\n  - ".join(problems), SETUP_SCRIPT))


def device_flags(device, flags, user_keys):
    """THEANO_FLAGS `flags` with device=`device`; for a GPU also dnn__enabled=False unless
    the user chose dnn__enabled (in `user_keys`).

    cuDNN 8 removed cudnnGetConvolutionForwardAlgorithm, which Theano 1.1.2's cuDNN
    convolution calls; with cuDNN off Theano convolves with cuBLAS GEMM instead.
    """
    items = [item.replace("\0", "\\,") for item in flags.replace("\\,", "\0").split(",")
             if item and theano_env._normalise(item.split("=", 1)[0]) != "device"]
    items.append("device=%s" % device)
    if device != "cpu" and "dnn__enabled" not in user_keys:
        items.append("dnn__enabled=False")
    return ",".join(items)


def current_device():
    """This process's Theano device, or None while Theano is not imported."""
    theano = sys.modules.get("theano")
    return theano.config.device if theano else None


def gpu_active():
    """Whether this process's Theano has initialised its GPU."""
    gpuarray = sys.modules.get("theano.gpuarray")
    return bool(gpuarray and gpuarray.pygpu_activated)


def use_device(device=None):
    """Make processes started from now on run Theano on `device` (default: this process's
    Theano device); return it (None if neither is known).

    For a GPU, first checks the stack and raises GpuError naming what is missing, before
    any data is loaded or function compiled.  Then sets THEANO_FLAGS (device, cuDNN off
    unless the user chose) and the stack's paths in os.environ, which spawned processes
    inherit.
    """
    device = device or current_device()
    if device is None:
        return None
    if device != "cpu":
        problems = check_gpu_stack()
        if problems:
            raise GpuError(stack_message(device, problems))
        os.environ.update(stack_environ())
        # Spawned processes take their sys.path from this one, not from PYTHONPATH.
        sys.path[:0] = [d for d in stack_dirs().get("PYTHONPATH", []) if d not in sys.path]
        # Theano sets this when it initialises a GPU, to stop forked children from
        # initialising it again; spawned processes start clean, so it does not apply.
        os.environ.pop("THEANO_GPU_IS_ALREADY_ACTIVE", None)
    os.environ["THEANO_FLAGS"] = device_flags(device, os.environ.get("THEANO_FLAGS", ""),
                                              theano_env.user_keys())
    return device


def needs_fresh_process(device):
    """Whether training on `device` needs a new process: this one imported Theano for
    another device, or its GPU did not initialise (library paths count only at start)."""
    theano_device = current_device()
    if device is None or theano_device is None:
        return False
    return theano_device != device or (device != "cpu" and not gpu_active())


def require_device():
    """Raise GpuError unless Theano computes on the device it was configured for.

    Theano turns a failed GPU initialisation into a logged error and a CPU run; a run that
    asked for the GPU must not silently be a CPU run.  The GPU also needs float32: Theano's
    gpuarray backend leaves float64 computations on the CPU.
    """
    import theano
    device = current_device()
    if device == "cpu":
        return
    if not gpu_active():
        problems = check_gpu_stack()
        if not problems and "pygpu" not in sys.modules:
            problems = ["pygpu is installed in %s, but this process was started without its "
                        "paths: source %s, or use network3's --device %s"
                        % (gpu_home(), os.path.join(gpu_home(), "env.sh"), device)]
        elif not problems:
            problems = ["Theano could not initialise %s; its error is logged above" % device]
        raise GpuError(stack_message(device, problems))
    if theano.config.floatX != "float32":
        raise GpuError("device=%s needs floatX=float32 (this process has %s): Theano's GPU "
                       "backend leaves float64 computations on the CPU"
                       % (device, theano.config.floatX))


def device_name():
    """The device Theano computes on, for run logs: 'cpu', or e.g. 'cuda (NVIDIA H200)'."""
    import theano
    device = theano.config.device
    if device == "cpu" or not gpu_active():
        return device
    from theano.gpuarray.type import get_context
    return "%s (%s)" % (device, get_context(None).devname)


def describe_stack():
    """One line for `network3 info`: the GPUs when the stack is complete, else what lacks."""
    problems = check_gpu_stack()
    if problems:
        return "not usable: %d missing piece(s), see `network3 gpu check`" % len(problems)
    return "ready: " + "; ".join(cuda_devices()[0])


def shell_exports(home=None):
    """`export` lines that put the stack's directories first (gpu_setup.sh writes them to
    .gpu/env.sh, for running Theano on the GPU with THEANO_FLAGS=device=cuda directly)."""
    def quoted(text):  # for inside double quotes
        return re.sub(r'([\\"$`])', r"\\\1", text)
    return "".join('export %s="%s${%s:+:$%s}"\n' % (n, quoted(os.pathsep.join(dirs)), n, n)
                   for n, dirs in stack_dirs(home).items())
