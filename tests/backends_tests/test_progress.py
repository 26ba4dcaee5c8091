"""The progress bar: counts, best loss, elapsed and ETA, on a terminal or in a log."""

from __future__ import annotations

import io

import pytest

from greedylr._progress import Progress
from greedylr.backends import Experiment
from greedylr.backends._optuna import census


optuna = pytest.importorskip("optuna")


def _study() -> object:
    study = optuna.create_study()
    for value in (0.9, 0.5):
        trial = study.ask()
        study.tell(trial, value)
    study.tell(study.ask(), state=optuna.trial.TrialState.PRUNED)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    study.ask()  # running
    return study


def test_the_line_counts_trials_and_shows_the_best_loss() -> None:
    study = _study()
    experiment = Experiment.create("quadratic", n_trials=10)
    snapshot = lambda: census(study.get_trials())  # type: ignore[attr-defined]  # noqa: E731
    line = Progress(experiment, snapshot, stream=io.StringIO()).line()
    assert line.startswith("[########............] 4/10 trials ")
    assert "(pruned 1, failed 1, running 1) best 0.5 | " in line
    assert line.endswith("elapsed, ETA --:--")


def test_a_log_gets_whole_lines_and_a_final_one() -> None:
    study = _study()
    stream = io.StringIO()
    experiment = Experiment.create("quadratic", n_trials=10)
    snapshot = lambda: census(study.get_trials())  # type: ignore[attr-defined]  # noqa: E731
    with Progress(experiment, snapshot, stream=stream, interval=0.01):
        pass
    lines = stream.getvalue().splitlines()
    assert lines
    assert all("4/10 trials" in line and "\r" not in line for line in lines)
