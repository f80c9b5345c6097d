"""Experiments: a small config plus one ``train_and_evaluate(config, outdir)`` call.

A config is plain data (saved with the run as ``config.json`` and in the log
header)::

    {"name": "exec_with", "layers": [<layer configs>], "mini_batch_size": 10,
     "epochs": 60, "eta": 0.1, "lmbda": 0.0, "seed": 1, "shuffle": false,
     "data": null, "train_limit": null, "eval_limit": null}

``run_many`` trains N runs of one config with seeds seed, seed+1, ... in
parallel processes, one per run, each under ``outdir/run-K``; with
``resume=True`` it skips finished runs and continues unfinished ones.
``device`` ("cpu", "cuda", ...) picks Theano's device; as Theano fixes its
device when imported, a run on another device than this process's goes to a
fresh process (see network3.gpu).
"""
import argparse
import concurrent.futures
import copy
import json
import multiprocessing
import os
import sys
import time

from . import gpu
from .fileio import atomic_path

CONFIG_NAME = "config.json"
NETWORK_NAME = "network.npz"
DEFAULTS = {"mini_batch_size": 10, "epochs": 60, "eta": 0.1, "lmbda": 0.0, "seed": 0,
            "shuffle": False, "data": None, "train_limit": None, "eval_limit": None}
# --quick: a first look in well under three minutes.
QUICK = {"epochs": 3, "train_limit": 5000, "eval_limit": None}


def make_config(name, layers, **overrides):
    """A complete config: the defaults, the layers, then `overrides` (None values ignored)."""
    config = dict(DEFAULTS, name=name, layers=copy.deepcopy(layers))
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


def conv_net_layers(fc_units=100, mini_batch_size=10, n_filters=20, activation="sigmoid"):
    """The book's first convolutional network: conv 20x5x5, pool 2x2, [FC], softmax."""
    n_pooled = n_filters * 12 * 12
    layers = [{"type": "ConvPoolLayer", "filter_shape": [n_filters, 1, 5, 5],
               "image_shape": [mini_batch_size, 1, 28, 28], "poolsize": [2, 2],
               "activation": activation}]
    if fc_units:
        layers.append({"type": "FullyConnectedLayer", "n_in": n_pooled, "n_out": fc_units,
                       "activation": activation, "p_dropout": 0.0})
    layers.append({"type": "SoftmaxLayer", "n_in": fc_units or n_pooled, "n_out": 10,
                   "p_dropout": 0.0})
    return layers


def _write_json(path, obj):
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")


def train_and_evaluate(config, outdir, resume=False, overwrite=False, quiet=False):
    """Train one network as `config` says; log, checkpoint and save it under `outdir`.

    An `outdir` that already holds a run is continued with `resume`, replaced
    with `overwrite`, and otherwise refused (see ``Network.SGD``).
    """
    import network3
    gpu.require_device()  # never a silent CPU run when the GPU was asked for
    from .data import describe_file, load_data, shared, subset, default_data_path
    from .layers import layer_from_config

    config = dict(DEFAULTS, **config)
    os.makedirs(outdir, exist_ok=True)
    if overwrite and os.path.exists(os.path.join(outdir, NETWORK_NAME)):
        os.remove(os.path.join(outdir, NETWORK_NAME))
    data_path = config["data"] or default_data_path()
    training, validation, test = load_data(data_path, quiet=quiet)
    if config["train_limit"]:
        training = subset(training, config["train_limit"])
    if config["eval_limit"]:
        validation, test = subset(validation, config["eval_limit"]), subset(test, config["eval_limit"])
    layers = [layer_from_config(c) for c in config["layers"]]
    net = network3.Network(layers, config["mini_batch_size"], seed=config["seed"])
    logged = {"name": config["name"], "train_limit": config["train_limit"],
              "eval_limit": config["eval_limit"], "data": describe_file(data_path)}
    if not (resume and os.path.exists(os.path.join(outdir, CONFIG_NAME))):
        _write_json(os.path.join(outdir, CONFIG_NAME), config)
    records = net.SGD(shared(training), config["epochs"], config["mini_batch_size"],
                      config["eta"], shared(validation), shared(test), config["lmbda"],
                      shuffle=config["shuffle"], run_dir=outdir, resume=resume,
                      overwrite=overwrite, quiet=quiet, config=logged)
    net.save(os.path.join(outdir, NETWORK_NAME))
    return records


def _spawn_pool(jobs):
    """Processes that start afresh (no fork), so each imports Theano with os.environ's flags."""
    return concurrent.futures.ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("spawn"))


def train_on_device(config, outdir, device=None, resume=False, overwrite=False, quiet=False):
    """train_and_evaluate on `device` (default: Theano's), in a fresh process if need be."""
    device = gpu.use_device(device)
    if not gpu.needs_fresh_process(device):
        return train_and_evaluate(config, outdir, resume, overwrite, quiet)
    with _spawn_pool(1) as pool:
        return pool.submit(train_and_evaluate, config, outdir, resume, overwrite, quiet).result()


def _run_one(args):
    config, outdir, resume, overwrite, quiet = args
    try:
        train_and_evaluate(config, outdir, resume, overwrite, quiet)
    except Exception as e:  # reported by the parent, which goes on with the other runs
        return outdir, "%s: %s" % (type(e).__name__, e)
    return outdir, None


def run_many(config, outdir, runs=3, jobs=None, resume=False, overwrite=False, quiet=False,
             device=None):
    """Train `runs` runs of `config` (seeds seed, seed+1, ...), `jobs` at a time, on
    `device` (default: Theano's).

    Each run is a separate process; BLAS threads are divided among the jobs
    (unless OPENBLAS_NUM_THREADS is set) so that parallel runs don't fight
    over the cores.  Returns the run directories; raises RuntimeError naming
    each run that failed after all have ended, GpuError before any starts when
    the GPU was asked for and is not usable.
    """
    device = gpu.use_device(device)
    jobs = max(1, min(jobs or os.cpu_count() or 1, runs))
    tasks = []
    for k in range(runs):
        run_config = dict(config, seed=config["seed"] + k)
        tasks.append((run_config, os.path.join(outdir, "run-%d" % (k + 1)), resume, overwrite,
                      quiet or jobs > 1))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    failures = []
    pool = None
    if jobs == 1 and not gpu.needs_fresh_process(device):
        results = map(_run_one, tasks)
    else:
        pool = _spawn_pool(jobs)
        results = pool.map(_run_one, tasks)
    for run_dir, error in results:
        if error:
            failures.append("%s: %s" % (run_dir, error))
        elif not quiet:
            print("finished %s" % run_dir, flush=True)
    if pool:
        pool.shutdown()
    if failures:
        raise RuntimeError("%d of %d runs failed:\n  %s" % (len(failures), runs,
                                                           "\n  ".join(failures)))
    return [t[1] for t in tasks]


def experiment_parser(description, epochs):
    """The options shared by the experiment scripts."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--runs", type=int, default=3, help="number of runs (default 3)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per run (default %d)" % epochs)
    ap.add_argument("--seed", type=int, default=1, help="seed of the first run; run k uses seed+k")
    ap.add_argument("--jobs", type=int, default=None,
                    help="runs trained at once (default: the number of cores)")
    ap.add_argument("--out", default=None, help="run directory (default runs/<name>[-quick])")
    ap.add_argument("--resume", action="store_true",
                    help="continue unfinished runs in --out, skip finished ones")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace the runs in --out (--quick runs are replaced anyway)")
    ap.add_argument("--quick", action="store_true",
                    help="5000 training images, 3 epochs: a first look in about a minute")
    ap.add_argument("--train-limit", type=int, default=None,
                    help="use only the first N training images")
    ap.add_argument("--eval-limit", type=int, default=None,
                    help="use only the first N validation and test images")
    ap.add_argument("--data", default=None,
                    help="data file or IDX directory (default: MNIST, fetched when missing)")
    ap.add_argument("--quiet", action="store_true", help="print only the final result")
    ap.add_argument("--device", type=gpu.parse_device, default=None,
                    help="cpu, cuda or cudaN (default: Theano's, from THEANO_FLAGS, else cpu); "
                         "the GPU needs scripts/gpu_setup.sh, see docs/gpu.md")
    return ap


def run_experiment(name, layers, argv=None, description=None, epochs=60, eta=0.1, lmbda=0.0):
    """The body of an experiment script: parse options, run N runs, print the best of N."""
    args = experiment_parser(description or name, epochs).parse_args(argv)
    if args.runs < 1:
        raise SystemExit("--runs must be at least 1")
    overrides = dict(epochs=epochs, eta=eta, lmbda=lmbda, seed=args.seed, data=args.data)
    if args.quick:
        overrides.update(QUICK)
    for key in ("epochs", "train_limit", "eval_limit"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    config = make_config(name, layers, **overrides)
    outdir = args.out or os.path.join("runs", name + ("-quick" if args.quick else ""))
    from .data import DataError, ensure_data
    try:  # once, here, rather than in every run's process
        ensure_data(config["data"])
    except DataError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    start = time.time()
    print("%s: %d run(s) x %d epochs -> %s" % (name, args.runs, config["epochs"], outdir),
          flush=True)
    try:
        run_dirs = run_many(config, outdir, runs=args.runs, jobs=args.jobs, resume=args.resume,
                            overwrite=args.overwrite or (args.quick and not args.resume),
                            quiet=args.quiet, device=args.device)
    except RuntimeError as e:  # GpuError included
        print("error: %s" % e, file=sys.stderr)
        return 1
    from .compare import compare
    print(compare(run_dirs).to_text())  # these runs only, not others left in outdir
    print("wall time %.1f s" % (time.time() - start))
    return 0
