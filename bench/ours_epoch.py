#!/usr/bin/env python
"""Time network3 training the Exercise 1 networks; print a RESULT {json} line.

Run by bench_epoch.py in a fresh process, so that compile time and peak
memory belong to this run alone.
"""
import argparse
import json
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-fc", action="store_true", help="exec_without instead of exec_with")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-limit", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import network3
    from network3.data import load_data, shared, subset
    from network3.experiment import conv_net_layers
    from network3.layers import layer_from_config

    training, validation, test = load_data(quiet=True)
    if args.train_limit:
        training = subset(training, args.train_limit)
    layers = [layer_from_config(c) for c in conv_net_layers(fc_units=0 if args.no_fc else 100)]
    net = network3.Network(layers, 10, seed=args.seed)
    start = time.perf_counter()
    records = net.SGD(shared(training), args.epochs, 10, 0.1, shared(validation), shared(test),
                      quiet=True)
    wall = time.perf_counter() - start
    spent = sum(r["train_seconds"] + r["eval_seconds"] for r in records)
    print("RESULT " + json.dumps({
        "impl": "network3", "n_train": len(training[0]), "compile_s": wall - spent,
        "epochs": [{"train_s": r["train_seconds"], "eval_s": r["eval_seconds"],
                    "valid_acc": r["validation_accuracy"], "test_acc": r["test_accuracy"]}
                   for r in records]}))


if __name__ == "__main__":
    main()
