"""The results model and its run folder: what is written is what the records say, read back."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from greedylr.backends import Experiment
from greedylr.backends import TrialResult
from greedylr.backends import read_result
from greedylr.backends._results import TRIAL_COLUMNS
from greedylr.backends._results import build_result
from greedylr.backends._results import write_experiment
from greedylr.backends._results import write_result


MAX_EPOCHS = 4
TRACEBACK = 'Traceback (most recent call last):\n  File "task.py", line 3\nValueError: bad x\n'


def _epochs(losses: list[float], lr: float) -> list[dict[str, float]]:
    return [
        {"epoch": float(epoch), "loss": loss, "lr": lr / epoch, "seconds": 0.5 * epoch}
        for epoch, loss in enumerate(losses, start=1)
    ]


def _records() -> list[TrialResult]:
    """A defaults trial, two completed, a pruned one better than the best, a failed one with
    a traceback, a running one; ids out of order."""
    return [
        TrialResult(3, "pruned", "stopped early at epoch 1", {"lr": 0.3}, _epochs([0.01], 0.3)),
        TrialResult(
            0, "completed", "", {"lr": 0.1}, _epochs([1.0, 0.5, 0.3, 0.25], 0.1), 2.0, True
        ),
        TrialResult(1, "completed", "", {"lr": 0.2}, _epochs([0.9, 0.4, 0.2, 0.21], 0.2), 1.5),
        TrialResult(2, "completed", "", {"lr": 0.05}, _epochs([2.0, 1.0, 0.8, 0.7], 0.05)),
        TrialResult(
            4,
            "failed",
            "ValueError: bad x",
            {"lr": 9.0},
            _epochs([5.0, 50.0], 9.0),
            error=TRACEBACK,
        ),
        TrialResult(5, "running", "", {"lr": 0.07}, _epochs([1.1, 0.6, 0.5], 0.07)),
    ]


def _experiment(early_stopping: str = "hyperband") -> Experiment:
    return Experiment.create(
        "quadratic", n_trials=6, max_epochs=MAX_EPOCHS, early_stopping=early_stopping
    )


def _written(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    write_experiment(out, _experiment(), {})
    write_result(build_result(_experiment(), _records(), out))
    return out


def test_trial_result_keeps_its_positional_order_and_new_fields_default() -> None:
    record = TrialResult(7, "completed", "", {"lr": 0.1}, _epochs([0.5], 0.1), 3.0)
    assert (record.trial, record.seconds, record.is_default, record.error) == (7, 3.0, False, "")


def test_the_files_hold_every_record_epoch_by_epoch(tmp_path: Path) -> None:
    out = _written(tmp_path)
    records = _records()

    history = pd.read_csv(out / "history.csv")
    expected = [{"trial": r.trial, **row} for r in records for row in r.history]
    assert len(history) == len(expected)  # no row dropped, the last epochs included
    for row in expected:
        match = history[(history["trial"] == row["trial"]) & (history["epoch"] == row["epoch"])]
        assert len(match) == 1, row
        for key in ("loss", "lr", "seconds"):
            assert match[key].iloc[0] == pytest.approx(row[key]), (row, key)
    last = history.groupby("trial")["epoch"].max().to_dict()
    assert last == {r.trial: r.epochs for r in records}

    trials = pd.read_csv(out / "trials.csv", keep_default_na=False, na_values=[""])
    assert list(trials.columns) == [*TRIAL_COLUMNS, "config.lr"]
    assert list(trials["trial"]) == [0, 1, 2, 3, 4, 5]
    for record in records:
        row = trials[trials["trial"] == record.trial].iloc[0]
        assert row["status"] == record.status
        assert row["epochs"] == int(record.history[-1]["epoch"])
        assert row["final_loss"] == pytest.approx(record.history[-1]["loss"])
        assert row["best_loss"] == pytest.approx(min(r["loss"] for r in record.history))
        assert row["config.lr"] == pytest.approx(record.config["lr"])
        assert bool(row["defaults"]) is (record.trial == 0)
        if record.trial == 4:
            assert row["traceback"] == "failures/trial-4.txt"
        else:
            assert pd.isna(row["traceback"])
    assert (out / "failures" / "trial-4.txt").read_text() == TRACEBACK
    assert [p.name for p in (out / "failures").iterdir()] == ["trial-4.txt"]

    best = json.loads((out / "best.json").read_text())
    assert best["trial"] == 1  # the lowest final loss among completed trials, not pruned 3
    assert best["loss"] == pytest.approx(0.21)
    assert best["config"] == {"lr": 0.2}
    assert best["default_trial"] == 0
    assert best["default_loss"] == pytest.approx(0.25)
    assert best["epochs_run"] == 4 + 4 + 4 + 1 + 2  # finished trials only, not running 5
    assert best["epochs_without_early_stopping"] == 4 + 4 + 4 + MAX_EPOCHS + 2


def test_read_result_gives_back_what_was_written(tmp_path: Path) -> None:
    built = build_result(_experiment(), _records(), tmp_path / "run")
    write_experiment(built.out, built.experiment, {})
    write_result(built)
    read = read_result(built.out)
    assert read.experiment == built.experiment
    pd.testing.assert_frame_equal(read.trials, built.trials, check_dtype=False)
    pd.testing.assert_frame_equal(read.history, built.history, check_dtype=False)
    assert (read.best_trial, read.best_loss, read.best_config) == (1, 0.21, {"lr": 0.2})
    assert (read.default_trial, read.default_loss) == (0, 0.25)
    assert read.tracebacks == {4: TRACEBACK}


def test_both_sides_of_the_epoch_count_hold_the_same_trials() -> None:
    result = build_result(_experiment(), _records(), Path("unused"))
    # completed 0, 1, 2 ran 4 each; pruned 3 ran 1 of 4; failed 4 ran 2 (and would have
    # failed there anyway); running 5 is on neither side.
    assert result.epochs_run == 4 + 4 + 4 + 1 + 2
    assert result.epochs_saved == MAX_EPOCHS - 1
    assert result.epochs_without_early_stopping == result.epochs_run + MAX_EPOCHS - 1
    assert sorted(result.finished["trial"]) == [0, 1, 2, 3, 4]


def test_a_defaults_trial_that_did_not_complete_has_no_loss(tmp_path: Path) -> None:
    records = [
        TrialResult(
            0, "failed", "ValueError", {"lr": 1.0}, _epochs([3.0], 1.0), is_default=True, error="x"
        ),
        TrialResult(1, "completed", "", {"lr": 0.2}, _epochs([0.9, 0.4], 0.2)),
    ]
    result = build_result(_experiment(), records, tmp_path / "run")
    assert (result.default_trial, math.isnan(result.default_loss)) == (0, True)
    write_experiment(result.out, result.experiment, {})
    write_result(result)
    best = json.loads((result.out / "best.json").read_text())
    assert (best["default_trial"], best["default_loss"], best["trial"]) == (0, None, 1)
    read = read_result(result.out)
    assert (read.default_trial, math.isnan(read.default_loss)) == (0, True)


def test_an_interrupted_defaults_trial_counts_by_its_retry(tmp_path: Path) -> None:
    records = [
        TrialResult(0, "interrupted", "", {"lr": 1.0}, _epochs([3.0], 1.0), is_default=True),
        TrialResult(1, "completed", "", {"lr": 0.2}, _epochs([0.9, 0.4], 0.2)),
        TrialResult(2, "completed", "", {"lr": 1.0}, _epochs([3.0, 0.5], 1.0), is_default=True),
    ]
    result = build_result(_experiment(), records, tmp_path / "run")
    assert (result.default_trial, result.default_loss) == (2, 0.5)
    write_experiment(result.out, result.experiment, {})
    write_result(result)
    (result.out / "best.json").unlink()  # a run still going: derived from trials.csv alone
    read = read_result(result.out)
    assert (read.default_trial, read.default_loss) == (2, 0.5)


def test_a_run_with_no_trial_finished_yet_reads_as_empty(tmp_path: Path) -> None:
    out = tmp_path / "run"
    write_experiment(out, _experiment(), {})  # what the tuner writes before any trial ends
    result = read_result(out)
    assert len(result.trials) == 0
    assert len(result.history) == 0
    assert list(result.trials.columns) == TRIAL_COLUMNS
    assert (result.best_trial, result.best_config, result.default_trial) == (None, None, None)
    assert math.isnan(result.best_loss)
    assert (result.epochs_run, result.epochs_without_early_stopping) == (0, 0)


def test_a_run_with_only_a_trials_table_derives_its_best(tmp_path: Path) -> None:
    out = _written(tmp_path)
    (out / "best.json").unlink()
    (out / "history.csv").unlink()
    result = read_result(out)
    assert len(result.history) == 0
    assert (result.best_trial, result.best_loss, result.best_config) == (1, 0.21, {"lr": 0.2})
    assert (result.default_trial, result.default_loss) == (0, 0.25)
    assert list(result.trials["status"]).count("running") == 1


def test_a_folder_without_experiment_json_is_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "trials.csv").write_text("trial,status\n")
    with pytest.raises(ValueError, match="is not a run folder: it has no experiment.json"):
        read_result(tmp_path)
