"""network3.runlog: logs written, read back, truncated for resume; status of a run."""
import json

import pytest

from network3.runlog import LogWriter, find_logs, read_log, truncate_log


def write_run(path, n_epochs, summary=None):
    log = LogWriter(str(path))
    log.start({"config": {"name": "x", "seed": 1}, "start_time": "t0"})
    for epoch in range(n_epochs):
        log.epoch({"epoch": epoch, "train_cost": 1.0 / (epoch + 1),
                   "validation_accuracy": 0.9 + epoch / 100, "test_accuracy": None,
                   "best": True, "train_seconds": 1.5, "eval_seconds": 0.5})
    if summary:
        log.finish(summary)
    return log


def test_round_trip(tmp_path):
    path = tmp_path / "run" / "log.jsonl"
    write_run(path, 3, {"status": "finished", "epochs_completed": 3})
    lines = [json.loads(l) for l in path.read_text().splitlines()]
    assert [l["type"] for l in lines] == ["run", "epoch", "epoch", "epoch", "summary"]
    run = read_log(str(path))
    assert run.header["config"] == {"name": "x", "seed": 1} and run.header["format"] == 1
    assert [r["epoch"] for r in run.epochs] == [0, 1, 2]
    assert run.epochs[1]["validation_accuracy"] == pytest.approx(0.91)
    assert run.finished and run.status == "finished"
    assert run.best_epoch()["epoch"] == 2


@pytest.mark.parametrize("summary, status", [
    (None, "unfinished"), ({"status": "diverged", "epochs_completed": 1}, "diverged")])
def test_unfinished_and_diverged_runs_are_not_finished(tmp_path, summary, status):
    write_run(tmp_path / "log.jsonl", 2, summary)
    run = read_log(str(tmp_path / "log.jsonl"))
    assert run.status == status and not run.finished


def test_truncate_keeps_header_and_first_epochs(tmp_path):
    path = tmp_path / "log.jsonl"
    write_run(path, 4, {"status": "finished"})
    kept = truncate_log(str(path), 2)
    run = read_log(str(path))
    assert [r["epoch"] for r in kept] == [0, 1] == [r["epoch"] for r in run.epochs]
    assert run.summary is None and run.header["start_time"] == "t0"
    assert [p.name for p in tmp_path.iterdir()] == ["log.jsonl"]


def test_malformed_lines_are_skipped_with_file_and_line(tmp_path):
    path = tmp_path / "log.jsonl"
    write_run(path, 2)
    with open(path, "a") as f:
        f.write('{"type": "epoch", "epoch": 2, "validation_acc\n')
    with pytest.warns(UserWarning, match=r"log.jsonl, line 4: skipped malformed record"):
        run = read_log(str(path))
    assert len(run.epochs) == 2


def test_no_header_is_an_error(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"type": "epoch", "epoch": 0, "validation_accuracy": 0.5}\n')
    with pytest.raises(ValueError, match="log.jsonl: not a network3 run log"):
        read_log(str(path))


def test_find_logs(tmp_path):
    write_run(tmp_path / "b" / "log.jsonl", 1)
    write_run(tmp_path / "a" / "run-1" / "log.jsonl", 1)
    assert find_logs([str(tmp_path)]) == [str(tmp_path / "a" / "run-1" / "log.jsonl"),
                                          str(tmp_path / "b" / "log.jsonl")]
    with pytest.raises(FileNotFoundError, match="nowhere: no such run log"):
        find_logs([str(tmp_path / "nowhere")])
