"""Run logs: one JSON Lines file per training run.

Line 1 is a header (``"type": "run"``) with the config, versions, Theano's
device and flags, host and start time.  Then one ``"type": "epoch"`` object
per epoch, appended and flushed as soon as the epoch ends, so a killed run
keeps every finished epoch.  A finished run ends with a ``"type": "summary"``
object.  ``pandas.read_json(path, lines=True)`` reads the file as it is.

Epoch records carry: ``epoch`` (0-based, as the book prints it),
``train_cost`` (mean over the epoch's mini-batches), ``validation_accuracy``,
``test_accuracy`` (or null), ``best`` (best validation so far, ties going to
the later epoch), ``train_seconds`` and ``eval_seconds``.
"""
import dataclasses
import json
import os
import warnings

from .fileio import atomic_path

LOG_NAME = "log.jsonl"
FORMAT_VERSION = 1


class LogWriter:
    """Appends records to a run log, flushing each one to disk."""

    def __init__(self, path):
        self.path = path

    def _append(self, record):
        line = json.dumps(record, sort_keys=True, allow_nan=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def start(self, header):
        """Begin a new log (replacing any old one) with its header."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "w"):
            pass
        self._append(dict(header, type="run", format=FORMAT_VERSION))

    def epoch(self, record):
        self._append(dict(record, type="epoch"))

    def finish(self, summary):
        self._append(dict(summary, type="summary"))


@dataclasses.dataclass
class Run:
    """A run log read back: its header, epoch records and summary (None if unfinished)."""
    path: str
    header: dict
    epochs: list
    summary: dict = None

    @property
    def config(self):
        return self.header.get("config", {})

    @property
    def status(self):
        """'finished', 'diverged' (stopped on a NaN cost) or 'unfinished' (still running, or killed)."""
        return self.summary.get("status", "finished") if self.summary else "unfinished"

    @property
    def finished(self):
        return self.status == "finished"

    def best_epoch(self):
        """The epoch record with the best validation accuracy; ties go to the later epoch."""
        best = None
        for record in self.epochs:
            if best is None or record["validation_accuracy"] >= best["validation_accuracy"]:
                best = record
        return best


def read_log(path):
    """Read a run log; malformed lines are skipped with a warning naming file and line.

    Raises ValueError when the file has no valid header line.
    """
    header, epochs, summary = None, [], None
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                kind = record["type"]
                if kind == "epoch":
                    int(record["epoch"]), float(record["validation_accuracy"])
            except (ValueError, KeyError, TypeError) as e:
                warnings.warn("%s, line %d: skipped malformed record (%s)" % (path, number, e))
                continue
            if kind == "run" and header is None:
                header = record
            elif kind == "epoch":
                epochs.append(record)
            elif kind == "summary":
                summary = record
            else:
                warnings.warn("%s, line %d: skipped unexpected record type %r"
                              % (path, number, kind))
    if header is None:
        raise ValueError("%s: not a network3 run log (no header line with \"type\": \"run\")"
                         % path)
    return Run(path=path, header=header, epochs=epochs, summary=summary)


def truncate_log(path, epochs_done):
    """Keep the header and the first `epochs_done` epochs of a log; drop the rest.

    Used by resume: epochs logged after the last checkpoint are run again.
    """
    run = read_log(path)
    kept = [r for r in run.epochs if r["epoch"] < epochs_done]
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            for record in [run.header] + kept:
                f.write(json.dumps(record, sort_keys=True) + "\n")
    return kept


def find_logs(paths):
    """Run logs named by `paths`: files as given, directories searched for log.jsonl."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                if LOG_NAME in files:
                    found.append(os.path.join(root, LOG_NAME))
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise FileNotFoundError("%s: no such run log or directory" % path)
    return found
