"""Compare run logs: a table, a plot and a Welch t-test (chapter 6, Exercise 1).

The exercise asks whether the fully connected layer helps the one conv-pool
network.  One run of each answers badly: two runs that differ only in their
seed can differ by more than the two networks do.  So we train each network
a few times and let this module say how large the difference is and how sure
we can be of it.

Runs are grouped by their config with the seed and the data file's path left
out: runs that differ only in those are repeats of one experiment.  For each
group we report

* the best of N, as Nielsen does: the run whose best validation accuracy is
  highest, with its test accuracy at that epoch.  Within a run, ties go to
  the later epoch (``Run.best_epoch``); across runs, to the run whose log
  path comes first in sorted order, so the choice never depends on the
  order the paths were given in;
* the mean and sample standard deviation (ddof=1) over runs of the test
  accuracy at each run's best-validation epoch, which is the fairer number
  to compare;
* the mean epoch of best validation accuracy.

Between two groups we give the difference of mean test accuracy with a 95%
Welch confidence interval and the Welch t-test's p-value.  Welch's test does
not assume that both networks vary as much from seed to seed, which there is
no reason to believe.

Unfinished runs (no summary line, or stopped on a NaN cost) are kept and
marked with their status: their epochs are real
results.  Runs without a single epoch record are listed and left out of the
statistics.  Nothing here imports Theano, so comparing is quick and needs no
compiler.

Command line::

    python -m network3.compare runs/exec_with runs/exec_without --out results/chap6ex1
"""
import argparse
import dataclasses
import itertools
import json
import math
import os
import statistics
import sys
import warnings

from .runlog import LOG_NAME, find_logs, read_log

CONFIDENCE = 0.95
NOT_ENOUGH_RUNS = "the Welch test needs at least two runs per config"


# ---------------------------------------------------------------------------
# Results

@dataclasses.dataclass
class GroupStats:
    """Statistics over the runs of one group that logged at least one epoch."""
    n_runs: int
    n_finished: int
    best_run: object            # the runlog.Run chosen as best of N
    best_record: dict           # its epoch record of best validation accuracy
    test_accuracies: list       # per run: test accuracy at its best-validation epoch
    mean_test: float            # None when no run logged a test accuracy
    sd_test: float              # None with fewer than two test accuracies
    mean_best_epoch: float

    @property
    def n_unfinished(self):
        return self.n_runs - self.n_finished


@dataclasses.dataclass
class Group:
    """Runs of one config (seed and data path aside), sorted by log path."""
    label: str
    config: dict
    runs: list
    stats: GroupStats = None    # None when no run has an epoch record

    @property
    def empty_runs(self):
        """Runs with no epoch records: reported, but left out of the statistics."""
        return [run for run in self.runs if not run.epochs]


@dataclasses.dataclass
class PairTest:
    """Group a against group b: mean test accuracy of a minus that of b."""
    a: str
    b: str
    n_a: int
    n_b: int
    difference: float = None    # None when either group has no test accuracy
    ci: tuple = None            # (low, high); None when the test cannot be made
    df: float = None            # Welch-Satterthwaite degrees of freedom
    p_value: float = None
    note: str = None            # why there is no test, when there is none


@dataclasses.dataclass
class Report:
    """Everything `compare` found; `to_text` and `to_markdown` render it."""
    groups: list
    tests: list
    warnings: list

    def to_text(self):
        lines = ["Comparison of %d run(s) in %d group(s)"
                 % (sum(len(g.runs) for g in self.groups), len(self.groups)), ""]
        lines += text_table(SUMMARY_COLUMNS, summary_rows(self.groups)) + [""]
        lines += text_table(RUN_COLUMNS, run_rows(self.groups))
        lines += [""] + [pair_sentence(test) for test in self.tests]
        return "\n".join(lines).rstrip() + "\n"

    def to_markdown(self, image=None):
        """Markdown; `image`, a path relative to the Markdown file, embeds the plot."""
        lines = ["# Comparison of run logs", "",
                 "Best of N: the run with the highest best validation accuracy "
                 "(ties: the earlier log path); test accuracy at that epoch. "
                 "Mean ± sd (ddof=1) over runs of the test accuracy at each run's "
                 "best-validation epoch. Epochs count from 0.", ""]
        lines += markdown_table(SUMMARY_COLUMNS, summary_rows(self.groups)) + [""]
        lines += ["## Runs", ""] + markdown_table(RUN_COLUMNS, run_rows(self.groups))
        if self.tests:
            lines += ["", "## Differences (Welch)", ""]
            lines += ["- " + pair_sentence(test) for test in self.tests]
        if self.warnings:
            lines += ["", "## Warnings", ""] + ["- " + w for w in self.warnings]
        if image:
            lines += ["", "![Validation accuracy per epoch](%s)" % image]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Comparing

def compare(paths, markdown=None, plot=None):
    """Compare the run logs in `paths` (log files or run directories); return a Report.

    Writes a Markdown report to `markdown` and a PNG plot to `plot` when
    given.  Problems that do not stop the comparison (malformed lines,
    unreadable logs, configs that differ in more than one key) are issued as
    warnings and also kept in ``Report.warnings``.  Raises ValueError when
    `paths` hold no run log, FileNotFoundError for a path that is not there.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    log_paths = list(dict.fromkeys(os.path.normpath(p) for p in find_logs(paths)))
    if not log_paths:
        raise ValueError("no run logs (%s) found in %s"
                         % (LOG_NAME, ", ".join(map(str, paths))))
    runs, notes = read_runs(log_paths)
    groups = group_runs(runs)
    tests = []
    for a, b in itertools.combinations(groups, 2):
        tests.append(welch(a, b))
        notes += config_warnings(a, b)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    report = Report(groups=groups, tests=tests, warnings=notes)
    if plot:
        plot_curves(groups, plot)
    if markdown:
        image = os.path.relpath(plot, os.path.dirname(os.path.abspath(markdown))) if plot else None
        with open(markdown, "w") as f:
            f.write(report.to_markdown(image=image))
    return report


def read_runs(log_paths):
    """Read each log; return the runs and the warnings met on the way.

    `runlog.read_log` warns about each malformed line; we collect those
    warnings, and skip (with a warning) a file that is no run log at all,
    so that one bad file never hides the rest.
    """
    runs, notes = [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for path in log_paths:
            try:
                runs.append(read_log(path))
            except (OSError, ValueError) as e:
                notes.append("%s: skipped (%s)" % (path, e))
    return runs, [str(w.message) for w in caught] + notes


def config_key(config):
    """The config without what does not change the experiment: the seed and the data path."""
    key = {k: v for k, v in config.items() if k != "seed"}
    if isinstance(key.get("data"), dict):
        key["data"] = {k: v for k, v in key["data"].items() if k != "path"}
    return key


def group_runs(runs):
    """Group runs by config key, in the order the groups are first met.

    That order follows the paths as given, so ``compare(["a", "b"])``
    reports a - b.  Inside a group, runs are sorted by path.
    """
    by_key = {}
    for run in runs:
        key = config_key(run.config)
        by_key.setdefault(json.dumps(key, sort_keys=True), (key, []))[1].append(run)
    labels = unique_labels([group_label(key) for key, _ in by_key.values()])
    groups = []
    for label, (key, members) in zip(labels, by_key.values()):
        members = sorted(members, key=lambda run: run.path)
        groups.append(Group(label=label, config=key, runs=members, stats=group_stats(members)))
    return groups


def group_stats(runs):
    """Best of N, mean and sd of test accuracy, mean best epoch; None if no run has epochs."""
    runs = [run for run in runs if run.epochs]
    if not runs:
        return None
    best_run = runs[0]
    for run in runs[1:]:        # strictly greater: ties stay with the earlier path
        if run.best_epoch()["validation_accuracy"] > best_run.best_epoch()["validation_accuracy"]:
            best_run = run
    tests = [run.best_epoch().get("test_accuracy") for run in runs]
    tests = [t for t in tests if t is not None]
    return GroupStats(
        n_runs=len(runs),
        n_finished=sum(run.finished for run in runs),
        best_run=best_run,
        best_record=best_run.best_epoch(),
        test_accuracies=tests,
        mean_test=statistics.fmean(tests) if tests else None,
        sd_test=statistics.stdev(tests) if len(tests) >= 2 else None,
        mean_best_epoch=statistics.fmean(run.best_epoch()["epoch"] for run in runs))


def welch(a, b):
    """Welch's comparison of the mean test accuracies of groups `a` and `b`.

    The interval is difference ± t(0.975, df)·se with se² = s_a²/n_a + s_b²/n_b
    and the Welch-Satterthwaite df; the p-value is scipy's
    ``ttest_ind(equal_var=False)``, which uses the same se and df.  When both
    groups have zero spread, se is 0 and neither is defined.
    """
    xa = a.stats.test_accuracies if a.stats else []
    xb = b.stats.test_accuracies if b.stats else []
    test = PairTest(a=a.label, b=b.label, n_a=len(xa), n_b=len(xb))
    if xa and xb:
        test.difference = statistics.fmean(xa) - statistics.fmean(xb)
    if len(xa) < 2 or len(xb) < 2:
        test.note = NOT_ENOUGH_RUNS
        return test
    va, vb = statistics.variance(xa) / len(xa), statistics.variance(xb) / len(xb)
    if va + vb == 0:
        test.note = "both groups have zero spread, so the Welch test is undefined"
        return test
    from scipy import stats
    test.df = (va + vb) ** 2 / (va ** 2 / (len(xa) - 1) + vb ** 2 / (len(xb) - 1))
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, test.df) * math.sqrt(va + vb)
    test.ci = (test.difference - half, test.difference + half)
    test.p_value = float(stats.ttest_ind(xa, xb, equal_var=False).pvalue)
    return test


def config_warnings(a, b):
    """Warn when groups differ in more than one config key: then no single change explains them.

    The name is a label, not a variable, so it is not counted; a differing
    ``layers`` list counts as one key, as does ``data``.
    """
    keys = sorted(k for k in set(a.config) | set(b.config)
                  if k != "name" and a.config.get(k) != b.config.get(k))
    if len(keys) <= 1:
        return []
    shown = [k if k in ("layers", "data") else "%s (%s vs %s)" % (k, a.config.get(k),
                                                                    b.config.get(k))
             for k in keys]
    return ["%s vs %s: configs differ in %d keys, not one compared variable: %s"
            % (a.label, b.label, len(keys), ", ".join(shown))]


# ---------------------------------------------------------------------------
# Labels

def group_label(config):
    """The config's name, or failing that its architecture."""
    return config.get("name") or architecture(config.get("layers", [])) or "unnamed"


def architecture(layers):
    """A short string for a layer list, e.g. ``conv20x5x5-pool2x2 > fc100 > softmax10``."""
    return " > ".join(layer_name(layer) for layer in layers)


def layer_name(layer):
    kind = layer.get("type", "?")
    try:
        if kind == "ConvPoolLayer":
            n, _, h, w = layer["filter_shape"]
            return "conv%dx%dx%d-pool%dx%d" % ((n, h, w) + tuple(layer["poolsize"]))
        if kind == "FullyConnectedLayer":
            return "fc%d" % layer["n_out"]
        if kind == "SoftmaxLayer":
            return "softmax%d" % layer["n_out"]
    except (KeyError, TypeError, ValueError):
        pass
    return str(kind).lower()


def unique_labels(labels):
    """Number repeated labels: ``a (1)``, ``a (2)``; others stay as they are."""
    repeated = {label for label in labels if labels.count(label) > 1}
    seen = {}
    unique = []
    for label in labels:
        if label in repeated:
            seen[label] = seen.get(label, 0) + 1
            label = "%s (%d)" % (label, seen[label])
        unique.append(label)
    return unique


def run_name(run):
    """A run's directory name (or file name, for a log not called log.jsonl)."""
    if os.path.basename(run.path) == LOG_NAME:
        return os.path.basename(os.path.dirname(os.path.abspath(run.path)))
    return os.path.basename(run.path)


# ---------------------------------------------------------------------------
# Tables and sentences

SUMMARY_COLUMNS = ["Group", "Runs", "Finished", "Unfinished", "Best val", "Test at best",
                   "Best run", "Epoch", "Test mean ± sd", "Mean best epoch"]
RUN_COLUMNS = ["Group", "Run", "Status", "Epochs", "Best epoch", "Best val", "Test at best"]


def percent(x):
    return "n/a" if x is None else "%.2f%%" % (100 * x)


def signed_percent(x):
    return "%+.2f%%" % (100 * x)


def summary_rows(groups):
    rows = []
    for g in groups:
        s = g.stats
        if s is None:
            rows.append([g.label, "0", "0", "0"] + ["n/a"] * 6)
            continue
        best_run = s.best_run.path + ("" if s.best_run.finished else " (%s)" % s.best_run.status)
        rows.append([g.label, str(s.n_runs), str(s.n_finished), str(s.n_unfinished),
                     percent(s.best_record["validation_accuracy"]),
                     percent(s.best_record.get("test_accuracy")),
                     best_run, str(s.best_record["epoch"]),
                     "%s ± %s" % (percent(s.mean_test), percent(s.sd_test)),
                     "%.1f" % s.mean_best_epoch])
    return rows


def run_rows(groups):
    rows = []
    for g in groups:
        for run in g.runs:
            if not run.epochs:
                rows.append([g.label, run.path, "no epochs: excluded", "0", "", "", ""])
                continue
            best = run.best_epoch()
            rows.append([g.label, run.path, run.status,
                         str(len(run.epochs)), str(best["epoch"]),
                         percent(best["validation_accuracy"]),
                         percent(best.get("test_accuracy"))])
    return rows


def pair_sentence(test):
    """One line on one pair of groups."""
    head = "%s - %s" % (test.a, test.b)
    if test.difference is None:
        return "%s: no test accuracies to compare." % head
    head += ": mean test accuracy differs by %s" % signed_percent(test.difference)
    if test.ci is None:
        return "%s; %s (%d and %d runs)." % (head, test.note, test.n_a, test.n_b)
    return ("%s (%d%% CI %s to %s, Welch df %.1f); Welch t-test p = %s (%d vs %d runs)."
            % (head, round(100 * CONFIDENCE), signed_percent(test.ci[0]),
               signed_percent(test.ci[1]), test.df, p_text(test.p_value), test.n_a, test.n_b))


def p_text(p):
    return "%.4f" % p if p >= 1e-4 else "%.1e" % p


def text_table(columns, rows):
    widths = [max(len(str(cell)) for cell in column) for column in zip(columns, *rows)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
             for row in [columns] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def markdown_table(columns, rows):
    lines = ["| " + " | ".join(row) + " |" for row in [columns] + rows]
    lines.insert(1, "|" + "---|" * len(columns))
    return lines


# ---------------------------------------------------------------------------
# Plot

def plot_curves(groups, path, skip_epochs=3):
    """Plot validation accuracy (%) per epoch to a PNG at `path`.

    Each run is a thin line, each group's mean a thick one in the same
    colour; unfinished runs are dashed and named in the legend.  The mean
    at an epoch is over the runs that reached it.  The y axis starts at the
    5th percentile of the values after the first `skip_epochs` epochs: the
    early climb would otherwise squash the last few tenths of a percent,
    which is where the networks differ.

    We draw on a bare ``Figure`` (Agg canvas) rather than through pyplot,
    so plotting neither needs a display nor changes the caller's backend.
    """
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5.5), dpi=110)
    ax = fig.add_subplot()
    all_values, late_values = [], []
    for i, group in enumerate(groups):
        colour = "C%d" % (i % 10)
        curves = []
        for run in (run for run in group.runs if run.epochs):
            epochs, values = curve(run)
            curves.append((epochs, values))
            all_values += values
            late_values += [v for e, v in zip(epochs, values) if e >= skip_epochs]
            label = None if run.finished else "%s: %s (%s)" % (group.label, run_name(run), run.status)
            ax.plot(epochs, values, color=colour, linewidth=0.8, alpha=0.45,
                    linestyle="-" if run.finished else "--", label=label)
        if curves:
            epochs, means = mean_curve(curves)
            ax.plot(epochs, means, color=colour, linewidth=2.5,
                    label="%s: mean of %d run(s)" % (group.label, len(curves)))
    if all_values:
        low, high = np.percentile(late_values or all_values, 5), max(all_values)
        margin = max(0.05, 0.05 * (high - low))
        ax.set_ylim(low - margin, high + margin)
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Validation accuracy (%)")
    ax.set_title("Validation accuracy per epoch: " + " vs ".join(g.label for g in groups))
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, format="png")


def curve(run):
    """A run's (epochs, validation accuracies in %), by epoch."""
    points = sorted((r["epoch"], 100 * r["validation_accuracy"]) for r in run.epochs)
    return [e for e, _ in points], [v for _, v in points]


def mean_curve(curves):
    """Per epoch, the mean over the curves that have that epoch."""
    by_epoch = {}
    for epochs, values in curves:
        for e, v in zip(epochs, values):
            by_epoch.setdefault(e, []).append(v)
    epochs = sorted(by_epoch)
    return epochs, [statistics.fmean(by_epoch[e]) for e in epochs]


# ---------------------------------------------------------------------------
# Command line

def add_arguments(parser):
    """Add compare's arguments to `parser` (also used by the network3 command)."""
    parser.add_argument("paths", nargs="+", metavar="RUN_DIR_OR_LOG",
                        help="run logs, or directories searched for %s" % LOG_NAME)
    parser.add_argument("--out", metavar="DIR",
                        help="write DIR/compare.md and DIR/compare.png")
    parser.add_argument("--plot", metavar="FILE", help="write the plot (PNG) here")
    parser.add_argument("--markdown", metavar="FILE", help="write the Markdown report here")


DESCRIPTION = "Compare network3 run logs: best of N, mean ± sd, Welch test, plot."


def main(argv=None):
    """Parse the command line and run the comparison (see ``run``)."""
    parser = argparse.ArgumentParser(prog="network3 compare", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args):
    """Print the comparison; write the report and plot asked for.

    Returns 0, or 2 when no readable run log is found.  Warnings go to stderr.
    """
    markdown, plot = args.markdown, args.plot
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        markdown = markdown or os.path.join(args.out, "compare.md")
        plot = plot or os.path.join(args.out, "compare.png")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # we print report.warnings ourselves
            report = compare(args.paths, markdown=markdown, plot=plot)
    except (FileNotFoundError, ValueError) as e:
        print("network3 compare: %s" % e, file=sys.stderr)
        return 2
    for note in report.warnings:
        print("warning: %s" % note, file=sys.stderr)
    if not report.groups:
        print("network3 compare: no readable run logs", file=sys.stderr)
        return 2
    print(report.to_text(), end="")
    for written in (markdown, plot):
        if written:
            print("wrote %s" % written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
