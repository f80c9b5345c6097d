"""The ``network3`` command: info, data, train, compare, gpu."""
import argparse
import json
import os
import sys

from . import gpu


def cmd_info(args):
    """Print Python, Theano, numpy, BLAS, device, floatX, compile dir and data status."""
    import platform

    import numpy
    import scipy
    import theano

    from . import cops, data, theano_env
    path = args.data or data.default_data_path()
    if not os.path.exists(path):
        status = "missing (run `network3 data fetch`)"
    else:
        try:
            data.verify(path)
            status = "present, SHA-256 verified"
        except data.DataError as e:
            status = "present but %s" % e
    blas = theano.config.blas__ldflags
    rows = [
        ("python", "%s (%s)" % (platform.python_version(), sys.executable)),
        ("theano", "%s (%s)" % (theano.__version__, os.path.dirname(theano.__file__))),
        ("numpy", numpy.__version__),
        ("scipy", scipy.__version__),
        ("blas", _blas_description(blas)),
        ("blas__ldflags", blas or "(empty)"),
        ("device", gpu.device_name()),
        ("gpu stack", gpu.describe_stack()),
        ("floatX", theano.config.floatX),
        ("C ops", "on" if cops.enabled() else
         "off (%s)" % ("NETWORK3_C_OPS=0" if not cops.ENABLED else "not on the CPU")),
        ("compiledir", theano.config.compiledir),
        ("THEANO_FLAGS", os.environ.get("THEANO_FLAGS", "")),
        ("OPENBLAS_NUM_THREADS", os.environ.get("OPENBLAS_NUM_THREADS", "(not set: all cores)")),
        ("data", "%s: %s" % (path, status)),
        ("user's flags kept", ", ".join(sorted(theano_env.USER_KEYS)) or "(none)"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print("%-*s  %s" % (width, key, value))
    return 0


def _blas_description(ldflags):
    if not ldflags:
        return "none: Theano's numpy C-API fallback (slow)"
    for token in ldflags.split():
        if token.startswith("-l:"):
            return "OpenBLAS %s" % token[3:]
        if token.startswith("-l"):
            return "lib%s (system)" % token[2:]
    return ldflags


def cmd_data(args):
    from . import data
    path = args.path or data.default_data_path()
    try:
        if args.action == "fetch":
            data.fetch(path, quiet=args.quiet)
            print("%s: SHA-256 verified" % path)
        elif args.action == "expand":
            target = args.path or os.path.join(os.path.dirname(data.default_data_path()),
                                               data.EXPANDED_NAME)
            data.write_expanded(target, quiet=args.quiet)
        else:  # check: verify and validate
            sets = data.load_data(path, fetch_missing=False)
            sizes = ", ".join("%s %d" % (n, len(s[0])) for n, s in zip(data.SET_NAMES, sets))
            print("%s: valid (%s)" % (path, sizes))
    except data.DataError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 0


def _parse_shape(text, what):
    try:
        return [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise SystemExit("error: %s %r: expected numbers joined by x, e.g. 20x5x5" % (what, text))


def layers_from_flags(args):
    """Layer configs from --conv/--pool/--fc flags: conv-pool layers, FC layers, softmax."""
    mbs, channels, height, width = args.mini_batch, 1, 28, 28
    layers = []
    for conv in args.conv or []:
        n_filters, fh, fw = _parse_shape(conv, "--conv")
        pool = _parse_shape(args.pool, "--pool")
        layers.append({"type": "ConvPoolLayer", "filter_shape": [n_filters, channels, fh, fw],
                       "image_shape": [mbs, channels, height, width], "poolsize": pool,
                       "activation": args.activation})
        channels = n_filters
        height, width = (height - fh + 1) // pool[0], (width - fw + 1) // pool[1]
    n_in = channels * height * width
    for units in args.fc or []:
        layers.append({"type": "FullyConnectedLayer", "n_in": n_in, "n_out": units,
                       "activation": args.activation, "p_dropout": args.dropout})
        n_in = units
    layers.append({"type": "SoftmaxLayer", "n_in": n_in, "n_out": 10, "p_dropout": args.dropout})
    return layers


def cmd_train(args):
    from .data import DataError
    from .experiment import CONFIG_NAME, make_config, train_on_device
    from .network import TrainingDiverged
    out = args.out or os.path.join("runs", args.name)
    saved = os.path.join(out, CONFIG_NAME)
    try:
        if args.config or (args.resume and not (args.conv or args.fc) and os.path.exists(saved)):
            with open(args.config or saved) as f:  # a config file, or the run's own
                config = json.load(f)
        else:
            config = make_config(args.name, layers_from_flags(args),
                                 mini_batch_size=args.mini_batch)
        for key in ("epochs", "eta", "lmbda", "seed", "data", "train_limit", "eval_limit"):
            if getattr(args, key) is not None:
                config[key] = getattr(args, key)
        if args.shuffle:
            config["shuffle"] = True
        train_on_device(config, out, device=args.device, resume=args.resume,
                        overwrite=args.overwrite, quiet=args.quiet)
    except (OSError, ValueError, DataError, TrainingDiverged, gpu.GpuError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    print("run directory: %s" % out)
    return 0


def cmd_gpu(args):
    """`check`: the GPU stack's missing pieces (exit 1) or the GPUs; `env`: shell exports."""
    if args.action == "env":
        print(gpu.shell_exports(), end="")
        return 0
    problems = gpu.check_gpu_stack()
    if problems:
        print("GPU stack in %s: not usable" % gpu.gpu_home())
        print("".join("  - %s\n" % p for p in problems), end="")
        return 1
    print("GPU stack in %s: complete" % gpu.gpu_home())
    print("".join("  %s\n" % line for line in gpu.cuda_devices()[0]), end="")
    return 0


def build_parser():
    ap = argparse.ArgumentParser(prog="network3", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="versions, BLAS, device, compile dir, data status")
    p.add_argument("--data", default=None, help="data file to check (default: MNIST)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("data", help="fetch, check or expand the MNIST data")
    p.add_argument("action", choices=["fetch", "check", "expand"],
                   help="expand: write Nielsen's 250,000-image expanded training set")
    p.add_argument("path", nargs="?", default=None,
                   help="default: data/mnist.pkl.gz (expand: data/mnist_expanded.pkl.gz)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="train a network from a config file or flags",
                       description="Train one network; the log, checkpoints and the trained "
                                   "network go to --out.  Without --config the network is "
                                   "[--conv ...] + [--fc ...] + softmax, e.g. "
                                   "--conv 20x5x5 --fc 100 (the book's first conv net).")
    p.add_argument("--config", help="JSON config (see network3.experiment)")
    p.add_argument("--name", default="train")
    p.add_argument("--conv", action="append", help="conv-pool layer FILTERSxHxW (repeatable)")
    p.add_argument("--pool", default="2x2", help="pooling of every conv layer (default 2x2)")
    p.add_argument("--fc", action="append", type=int, help="fully-connected units (repeatable)")
    p.add_argument("--activation", default="sigmoid", choices=["sigmoid", "tanh", "ReLU", "linear"])
    p.add_argument("--dropout", type=float, default=0.0, help="p_dropout of FC and softmax layers")
    p.add_argument("--mini-batch", type=int, default=10, help="default 10 (flags only)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--eta", type=float)
    p.add_argument("--lmbda", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--shuffle", action="store_true", help="shuffle the mini-batches each epoch")
    p.add_argument("--data", help="data file or IDX directory (default: MNIST)")
    p.add_argument("--train-limit", type=int, help="use only the first N training images")
    p.add_argument("--eval-limit", type=int, help="use only the first N validation/test images")
    p.add_argument("--out", help="run directory (default runs/NAME)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (its architecture comes from its config.json)")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--device", type=gpu.parse_device,
                   help="cpu, cuda or cudaN (default: Theano's, from THEANO_FLAGS, else cpu); "
                        "the GPU needs scripts/gpu_setup.sh, see docs/gpu.md")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("gpu", help="check Theano's GPU stack (see docs/gpu.md)")
    p.add_argument("action", nargs="?", choices=["check", "env"], default="check",
                   help="check: list missing pieces, exit 1 if any (default); env: shell "
                        "exports of the stack's paths")
    p.set_defaults(func=cmd_gpu)

    from . import compare
    p = sub.add_parser("compare", help="table, plot and Welch t-test over run logs",
                       description=compare.DESCRIPTION)
    compare.add_arguments(p)
    p.set_defaults(func=compare.run)
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
