"""What network3's C ops share: their kernel source, argument checks and allocation.

The kernels live in ``kernels/*.h`` as C++ templates on the shapes, so the
compiler sees every loop bound.
"""
import hashlib
import os

import theano
from theano.graph.op import COp

# NETWORK3_C_OPS=0 builds the plain Theano graphs instead (for comparisons).
ENABLED = os.environ.get("NETWORK3_C_OPS", "1") != "0"


def enabled():
    """Whether layers use these ops: unless switched off, and only on the CPU."""
    return ENABLED and theano.config.device == "cpu"


KERNEL_DIR = os.path.join(os.path.dirname(__file__), "kernels")
KERNEL_FILES = ("convpool.h", "dense.h")  # dense.h uses convpool.h's vector helpers


def _read(path):
    with open(path) as f:
        return f.read()


KERNELS = "\n".join(_read(os.path.join(KERNEL_DIR, name)) for name in KERNEL_FILES)
# Theano keys its compile cache on this version instead of the code, so it hashes the
# kernels and the Python that writes the ops' C code: any edit of either recompiles.
_SOURCES = KERNELS + "".join(_read(os.path.join(os.path.dirname(__file__), name))
                             for name in ("cops.py", "convpool.py", "dense.py"))
VERSION = (2, int(hashlib.sha256(_SOURCES.encode()).hexdigest()[:12], 16))


class KernelOp(COp):
    """A C op whose code calls the kernels."""

    def c_support_code(self, **kwargs):
        return KERNELS

    def c_headers(self, **kwargs):
        return ["<stdint.h>", "<stdlib.h>", "<string.h>", "<math.h>"]

    def c_code_cache_version(self):
        return VERSION


def c_body(label, inputs, outputs, call, fail):
    """C code for one op: contiguous views of `inputs` checked against their
    shapes, `outputs` allocated (or reused), then `call`, then clean-up.

    inputs: (C name, local name, description, shape with None for any size,
    numpy type number); outputs: (C name, dims as C expressions, type number).
    """
    locals_ = [local for _, local, _, _, _ in inputs]
    release = " ".join("Py_XDECREF(%s);" % local for local in locals_)
    code = ["PyArrayObject %s;" % ", ".join("*%s = NULL" % local for local in locals_)]
    for var, local, what, shape, typenum in inputs:
        code.append("""
    if (PyArray_NDIM(%(var)s) != %(ndim)d || PyArray_TYPE(%(var)s) != %(typenum)s) {
        PyErr_SetString(PyExc_ValueError, "%(label)s: %(what)s must be a %(ndim)d-d array of %(typenum)s");
        %(release)s %(fail)s;
    }
    %(local)s = PyArray_GETCONTIGUOUS(%(var)s);
    if (!%(local)s) { %(release)s %(fail)s; }""" % dict(var=var, local=local, what=what,
                                                   ndim=len(shape), typenum=typenum,
                                                   label=label, release=release, fail=fail))
        for axis, size in enumerate(shape):
            if size is None:
                continue
            code.append("""
    if (PyArray_DIMS(%(local)s)[%(axis)d] != %(size)s) {
        PyErr_Format(PyExc_ValueError, "%(label)s: %(what)s has size %%ld in dimension %(axis)d, expected %%ld",
                     (long)PyArray_DIMS(%(local)s)[%(axis)d], (long)(%(size)s));
        %(release)s %(fail)s;
    }""" % dict(local=local, axis=axis, size=size, label=label, what=what, release=release,
                fail=fail))
    for var, dims, typenum in outputs:
        code.append("""
    {
        npy_intp dims[%(ndim)d] = {%(dims)s};
        if (!%(var)s || !PyArray_IS_C_CONTIGUOUS(%(var)s) || !PyArray_CompareLists(PyArray_DIMS(%(var)s), dims, %(ndim)d)) {
            Py_XDECREF(%(var)s);
            %(var)s = (PyArrayObject*)PyArray_EMPTY(%(ndim)d, dims, %(typenum)s, 0);
            if (!%(var)s) { %(release)s %(fail)s; }
        }
    }""" % dict(var=var, ndim=len(dims), dims=", ".join(map(str, dims)), typenum=typenum,
                release=release, fail=fail))
    code.append("""
    {
        int ok = 1;
%s
        %s
        if (!ok) { PyErr_NoMemory(); %s }
    }""" % (call, release, fail))
    return "{\n%s\n}" % "\n".join(code)


def typenum(variable):
    return "NPY_FLOAT32" if variable.dtype == "float32" else "NPY_FLOAT64"


def ctype(variable):
    return "float" if variable.dtype == "float32" else "double"
