"""network3: Michael Nielsen's convolutional networks (chapter 6) on Theano-PyMC.

``import network3`` sets Theano's flags (float32, OpenBLAS, a per-user compile
cache; the user's own THEANO_FLAGS and .theanorc win) and then imports Theano.
The names below are the book's, so its code runs with only its imports changed.
"""
import sys

if sys.version_info[:2] not in ((3, 10), (3, 11)):
    raise ImportError(
        "network3 needs Python 3.10 or 3.11 (this is %d.%d): Theano-PyMC 1.1.2 imports "
        "distutils, which Python 3.12 removed, and its C code needs numpy 1.23.5, whose wheels "
        "stop at Python 3.11; 3.10 and 3.11 are the versions network3 is tested on."
        % sys.version_info[:2])

from . import theano_env

theano_env.configure()

from .data import load_data, load_data_shared  # noqa: E402
from .layers import (ConvPoolLayer, FullyConnectedLayer, ReLU, SoftmaxLayer,  # noqa: E402
                     linear, sigmoid, tanh)
from .network import Network, TrainingDiverged, size  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Network", "ConvPoolLayer", "FullyConnectedLayer", "SoftmaxLayer", "sigmoid", "tanh",
           "ReLU", "linear", "load_data_shared", "load_data", "size", "TrainingDiverged"]
