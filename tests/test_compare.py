"""Tests for network3.compare on hand-written run logs."""
import json
import math
import os
import statistics

import numpy as np
import pytest
from scipy import stats

from network3 import compare as cmp

CONV = {"type": "ConvPoolLayer", "filter_shape": [20, 1, 5, 5],
        "image_shape": [10, 1, 28, 28], "poolsize": [2, 2], "activation": "sigmoid"}
FC = {"type": "FullyConnectedLayer", "n_in": 2880, "n_out": 100,
      "activation": "sigmoid", "p_dropout": 0.0}
SOFTMAX_100 = {"type": "SoftmaxLayer", "n_in": 100, "n_out": 10, "p_dropout": 0.0}
SOFTMAX_2880 = {"type": "SoftmaxLayer", "n_in": 2880, "n_out": 10, "p_dropout": 0.0}


def config(**changes):
    base = {"name": "exec_with", "layers": [CONV, FC, SOFTMAX_100], "mini_batch_size": 10,
            "epochs": 60, "eta": 0.1, "lmbda": 0.0, "seed": 1, "shuffle": False,
            "data": {"path": "data/mnist.pkl.gz", "sha256": "f11b", "n_train": 50000,
                     "n_validation": 10000, "n_test": 10000}}
    base.update(changes)
    return base


def write_log(run_dir, cfg, validation, test, finished=True, extra_lines=()):
    """Write run_dir/log.jsonl with one epoch per validation accuracy; return its path."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(str(run_dir), "log.jsonl")
    lines = [{"type": "run", "format": 1, "config": cfg, "host": "test"}]
    for epoch, (v, t) in enumerate(zip(validation, test)):
        lines.append({"type": "epoch", "epoch": epoch, "train_cost": 0.5,
                      "validation_accuracy": v, "test_accuracy": t, "best": True,
                      "train_seconds": 1.0, "eval_seconds": 0.1})
    if finished:
        lines.append({"type": "summary", "status": "finished",
                      "epochs_completed": len(validation)})
    with open(path, "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
        for line in extra_lines:
            f.write(line + "\n")
    return path


@pytest.fixture
def two_groups(tmp_path):
    """exec_with: 3 runs; exec_without: 3 runs (one unfinished). Test accuracies chosen."""
    with_tests = [0.9880, 0.9870, 0.9890]
    without_tests = [0.9850, 0.9860, 0.9830]
    for seed, t in enumerate(with_tests, start=1):
        write_log(tmp_path / "with" / ("seed%d" % seed), config(seed=seed),
                  [0.97, 0.98 + seed / 1000], [0.96, t])
    for seed, t in enumerate(without_tests, start=1):
        write_log(tmp_path / "without" / ("seed%d" % seed),
                  config(name="exec_without", seed=seed, layers=[CONV, SOFTMAX_2880]),
                  [0.97, 0.975 + seed / 1000], [0.96, t], finished=seed != 3)
    return tmp_path, with_tests, without_tests


def test_best_of_n_tie_rules_mean_and_sd(tmp_path):
    # seed1: tie inside the run (epochs 1 and 2): the later epoch wins.
    write_log(tmp_path / "a_seed1", config(seed=1), [0.95, 0.98, 0.98], [0.94, 0.970, 0.975])
    # seed2: same best validation as seed1: seed1 wins, its path sorts first.
    write_log(tmp_path / "b_seed2", config(seed=2), [0.98, 0.97], [0.985, 0.96])
    write_log(tmp_path / "c_seed3", config(seed=3), [0.96, 0.97, 0.975, 0.97],
              [0.95, 0.96, 0.965, 0.96])
    # Given in reverse order: the choice must not depend on it.
    paths = [str(tmp_path / d) for d in ("c_seed3", "b_seed2", "a_seed1")]
    report = cmp.compare(paths)

    assert len(report.groups) == 1
    group = report.groups[0]
    assert group.label == "exec_with"
    s = group.stats
    assert s.best_run.path.endswith(os.path.join("a_seed1", "log.jsonl"))
    assert s.best_record["epoch"] == 2
    assert s.best_record["test_accuracy"] == 0.975
    assert s.test_accuracies == [0.975, 0.985, 0.965]      # runs in path order
    assert s.mean_test == pytest.approx(0.975, abs=1e-12)
    assert s.sd_test == pytest.approx(0.01, abs=1e-12)
    assert s.mean_best_epoch == pytest.approx((2 + 0 + 2) / 3)
    assert (s.n_runs, s.n_finished, s.n_unfinished) == (3, 3, 0)
    text = report.to_text()
    assert "97.50% ± 1.00%" in text
    assert "98.00%" in text and "1.3" in text
    assert report.tests == []


def test_groups_ignore_seed_and_data_path_but_not_checksum(tmp_path):
    other_path = config(seed=5)
    other_path["data"] = dict(other_path["data"], path="/elsewhere/mnist.pkl.gz")
    other_data = config(seed=6)
    other_data["data"] = dict(other_data["data"], sha256="beef")
    write_log(tmp_path / "r1", config(seed=1), [0.9], [0.9])
    write_log(tmp_path / "r2", other_path, [0.9], [0.9])
    write_log(tmp_path / "r3", other_data, [0.9], [0.9])
    report = cmp.compare([str(tmp_path)])
    assert [g.label for g in report.groups] == ["exec_with (1)", "exec_with (2)"]
    assert [len(g.runs) for g in report.groups] == [2, 1]
    assert "seed" not in report.groups[0].config
    assert "path" not in report.groups[0].config["data"]


def test_label_from_architecture_when_no_name(tmp_path):
    cfg = config()
    del cfg["name"]
    write_log(tmp_path / "r", cfg, [0.9], [0.9])
    report = cmp.compare(tmp_path / "r")                  # one path, not in a list
    assert report.groups[0].label == "conv20x5x5-pool2x2 > fc100 > softmax10"


def test_welch_interval_and_p_value_match_scipy(two_groups):
    root, a, b = two_groups
    report = cmp.compare([str(root / "with"), str(root / "without")])
    assert [g.label for g in report.groups] == ["exec_with", "exec_without"]
    assert report.groups[0].stats.test_accuracies == a
    assert report.groups[1].stats.test_accuracies == b
    (test,) = report.tests

    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    diff = np.mean(a) - np.mean(b)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert test.difference == pytest.approx(diff, abs=1e-12)
    assert test.df == pytest.approx(df, rel=1e-9)
    assert test.ci[0] == pytest.approx(diff - half, abs=1e-12)
    assert test.ci[1] == pytest.approx(diff + half, abs=1e-12)
    expected_p = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert test.p_value == pytest.approx(expected_p, rel=1e-9)
    # The interval and the p-value agree: both come from the same t and df.
    t = diff / math.sqrt(va + vb)
    assert 2 * stats.t.sf(abs(t), df) == pytest.approx(test.p_value, rel=1e-9)
    assert test.note is None
    assert "+0.33% (95% CI +0.02% to +0.65%, Welch df 3.4)" in cmp.pair_sentence(test)
    assert "p = %.4f" % expected_p in cmp.pair_sentence(test)


def test_partial_log_is_counted_and_marked_unfinished(two_groups):
    root, _, _ = two_groups
    report = cmp.compare([str(root)])
    without = report.groups[1]
    s = without.stats
    assert (s.n_runs, s.n_finished, s.n_unfinished) == (3, 2, 1)
    assert len(s.test_accuracies) == 3
    assert s.best_run.path.endswith(os.path.join("seed3", "log.jsonl"))
    text = report.to_text()
    assert "seed3/log.jsonl (unfinished)" in text
    (row,) = [line for line in text.splitlines()
              if line.startswith("exec_without") and line.split()[1].endswith("seed3/log.jsonl")]
    assert row.split()[2] == "unfinished"


def test_single_run_group(tmp_path):
    write_log(tmp_path / "with" / "s1", config(), [0.98], [0.979])
    write_log(tmp_path / "without" / "s1",
              config(name="exec_without", layers=[CONV, SOFTMAX_2880]), [0.97], [0.969])
    write_log(tmp_path / "without" / "s2",
              config(name="exec_without", seed=2, layers=[CONV, SOFTMAX_2880]), [0.97], [0.971])
    report = cmp.compare([str(tmp_path / "with"), str(tmp_path / "without")])
    single = report.groups[0].stats
    assert single.n_runs == 1 and single.sd_test is None
    assert single.mean_test == 0.979
    (test,) = report.tests
    assert test.ci is None and test.p_value is None
    assert test.note == cmp.NOT_ENOUGH_RUNS
    assert test.difference == pytest.approx(0.979 - 0.970, abs=1e-12)
    text = report.to_text()
    assert "97.90% ± n/a" in text
    assert "needs at least two runs per config" in text


def test_malformed_line_is_skipped_with_file_and_line(tmp_path):
    path = write_log(tmp_path / "r", config(), [0.95], [0.94], finished=False,
                     extra_lines=['{"type": "epoch", "epoch": 1, "validation_acc',
                                  json.dumps({"type": "epoch", "epoch": 2,
                                              "validation_accuracy": 0.96,
                                              "test_accuracy": 0.955})])
    # Line 1 header, line 2 epoch 0, line 3 the broken record.
    with pytest.warns(UserWarning, match=r"log\.jsonl, line 3: skipped malformed"):
        report = cmp.compare([path])
    assert any(path in w and "line 3" in w for w in report.warnings)
    run = report.groups[0].runs[0]
    assert [r["epoch"] for r in run.epochs] == [0, 2]
    assert report.groups[0].stats.best_record["test_accuracy"] == 0.955


def test_log_with_no_epochs_is_reported_and_excluded(tmp_path):
    write_log(tmp_path / "r1", config(seed=1), [0.98], [0.97])
    write_log(tmp_path / "r2", config(seed=2), [0.97], [0.99])
    empty = write_log(tmp_path / "r3", config(seed=3), [], [], finished=False)
    report = cmp.compare([str(tmp_path)])
    group = report.groups[0]
    assert len(group.runs) == 3
    assert [r.path for r in group.empty_runs] == [os.path.normpath(empty)]
    assert group.stats.n_runs == 2
    assert group.stats.mean_test == pytest.approx(0.98, abs=1e-12)
    assert group.stats.sd_test == pytest.approx(statistics.stdev([0.97, 0.99]), abs=1e-12)
    assert "no epochs: excluded" in report.to_text()


def test_group_of_only_empty_runs_does_not_crash(tmp_path):
    write_log(tmp_path / "a", config(), [0.98, 0.99], [0.97, 0.98])
    write_log(tmp_path / "b", config(name="other", layers=[CONV, SOFTMAX_2880]), [], [])
    report = cmp.compare([str(tmp_path / "a"), str(tmp_path / "b")])
    assert report.groups[1].stats is None
    (test,) = report.tests
    assert test.difference is None and test.ci is None
    assert "no test accuracies" in report.to_text()


def test_warns_when_configs_differ_in_more_than_one_key(tmp_path):
    write_log(tmp_path / "a", config(), [0.98], [0.97])
    write_log(tmp_path / "b", config(name="exec_without", eta=0.03,
                                     layers=[CONV, SOFTMAX_2880]), [0.97], [0.96])
    with pytest.warns(UserWarning, match="differ in 2 keys") as record:
        report = cmp.compare([str(tmp_path / "a"), str(tmp_path / "b")])
    message = [w for w in report.warnings if "differ" in w][0]
    assert "eta (0.1 vs 0.03)" in message and "layers" in message
    assert any(message == str(w.message) for w in record)


def test_no_warning_when_only_the_layers_differ(two_groups):
    root, _, _ = two_groups
    report = cmp.compare([str(root)])
    assert report.warnings == []


def test_markdown_and_png(two_groups):
    root, a, b = two_groups
    md, png = root / "out.md", root / "out.png"
    report = cmp.compare([str(root / "with"), str(root / "without")],
                         markdown=str(md), plot=str(png))
    text = md.read_text()
    assert text == report.to_markdown(image="out.png")
    assert "| exec_with | 3 | 3 | 0 |" in text
    assert "| exec_without | 3 | 2 | 1 |" in text
    assert "98.80% ± 0.10%" in text                         # exec_with mean ± sd
    assert "98.47% ± 0.15%" in text                         # exec_without
    assert "unfinished" in text and "![Validation accuracy per epoch](out.png)" in text
    assert "p = %.4f" % stats.ttest_ind(a, b, equal_var=False).pvalue in text
    check_png(png)


def check_png(path):
    import matplotlib.image
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    image = matplotlib.image.imread(str(path))
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300


def test_cli_writes_files_and_warns_on_stderr(two_groups, capsys):
    root, _, _ = two_groups
    with open(root / "with" / "seed1" / "log.jsonl", "a") as f:
        f.write("not json\n")
    out = root / "report"
    assert cmp.main([str(root / "with"), str(root / "without"), "--out", str(out)]) == 0
    assert (out / "compare.md").read_text().startswith("# Comparison of run logs")
    check_png(out / "compare.png")
    captured = capsys.readouterr()
    assert "exec_with - exec_without" in captured.out
    assert "seed1/log.jsonl, line 5: skipped malformed" in captured.err


def test_cli_separate_markdown_and_plot(two_groups, capsys):
    root, _, _ = two_groups
    md, png = root / "x.md", root / "x.png"
    assert cmp.main([str(root), "--markdown", str(md), "--plot", str(png)]) == 0
    assert md.exists() and png.exists()
    assert "wrote %s" % md in capsys.readouterr().out


def test_cli_returns_2_without_logs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cmp.main([str(tmp_path / "empty")]) == 2
    assert cmp.main([str(tmp_path / "missing")]) == 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "log.jsonl").write_text("garbage\n")
    assert cmp.main([str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "no run logs" in err and "no such run log" in err
    assert "not a network3 run log" in err
