"""The progress bar: counts, best loss, elapsed and ETA, on a terminal or in a log."""

from __future__ import annotations

import fcntl
import io
import os
import struct
import termios
import threading

import pytest

from greedylr._progress import Progress
from greedylr.backends import Experiment
from greedylr.backends import TrialResult
from greedylr.backends._backend import Census
from greedylr.backends._backend import census_of
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
    assert line.startswith("4/10 trials |########            | ")
    assert "| pruned 1, failed 1, running 1, best 0.5 | 00:00 elapsed, ETA ?" in line


def test_every_engine_feeds_the_bar_from_neutral_trial_results() -> None:
    records = [
        TrialResult(0, "completed", "", {}, [{"epoch": 1.0, "loss": 0.25}]),
        TrialResult(1, "failed", "worker died; retried as trial 3", {}),
        TrialResult(2, "pruned", "stopped early at epoch 1", {}, [{"epoch": 1.0, "loss": 0.5}]),
        TrialResult(3, "running", "", {}, retry_of=1),
        TrialResult(4, "interrupted", "stopped by Ctrl-C", {}),
    ]
    now = census_of(records)
    # Trial 1 counts by its retry (3, running); the interrupted trial 4 runs again: waiting.
    assert now == Census(
        done=2, completed=1, pruned=1, failed=0, running=1, waiting=1, best_loss=0.25, originals=4
    )
    experiment = Experiment.create("quadratic", n_trials=8)
    line = Progress(experiment, lambda: now, stream=io.StringIO()).line()
    assert "2/8 trials" in line
    assert "pruned 1, failed 0, running 1, best 0.25" in line


def test_a_terminal_gets_one_line_redrawn_in_place() -> None:
    main, side = os.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    done = iter([1, 2, 2, 3])
    experiment = Experiment.create("quadratic", n_trials=3)
    finished = threading.Event()

    def snapshot() -> Census:
        count = next(done, 3)
        if count == 3:
            finished.set()
        return Census(count, count, 0, 0, 3 - count, 0, 0.5, 3)

    with (
        os.fdopen(side, "w") as terminal,
        Progress(experiment, snapshot, stream=terminal, interval=0.01),
    ):
        assert finished.wait(30)
    os.set_blocking(main, False)
    drawn = os.read(main, 1 << 16).decode()
    os.close(main)
    assert "\r" in drawn  # redrawn in place
    assert drawn.rstrip().endswith("ETA 00:00")
    assert "3/3 trials" in drawn.splitlines()[-1]
    frames = drawn.split("\r")
    first = [
        next(i for i, f in enumerate(frames) if f.startswith(n)) for n in ("1/3", "2/3", "3/3")
    ]
    assert first == sorted(first)


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
