"""What the Optuna backend skips or sets for speed: epochs no pruner reads, torch threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import greedylr
from greedylr.backends import Experiment
from greedylr.backends._optuna import pruner_epochs
from greedylr.searchers import FloatParam


optuna = pytest.importorskip("optuna")


@pytest.mark.parametrize(
    ("rule", "min_epochs", "factor", "max_epochs", "read"),
    [
        ("hyperband", 1, 3, 50, [1, 3, 9, 27]),  # every bracket's rungs are among these
        ("asha", 2, 2, 20, [2, 4, 8, 16]),
        ("sha", 3, 3, 27, [3, 9, 27]),
        ("median", 1, 3, 6, [1, 2, 3, 4, 5, 6]),
        ("none", 1, 3, 6, []),
    ],
)
def test_only_the_epochs_a_pruner_reads_are_stored_while_a_trial_runs(
    rule: str, min_epochs: int, factor: int, max_epochs: int, read: list[int]
) -> None:
    experiment = Experiment.create(
        "quadratic",
        n_trials=4,
        max_epochs=max_epochs,
        min_epochs=min_epochs,
        reduction_factor=factor,
        early_stopping=rule,
    )
    stored = pruner_epochs(experiment)
    assert [epoch for epoch in range(1, max_epochs + 1) if stored(epoch)] == read


def test_a_task_reporting_every_other_epoch_is_stored_at_the_first_report_past_each_rung() -> None:
    experiment = Experiment.create("quadratic", n_trials=4, max_epochs=30)  # rungs 1, 3, 9, 27
    stored = pruner_epochs(experiment)
    assert [epoch for epoch in range(2, 31, 2) if stored(epoch)] == [2, 4, 10, 28]


def test_hyperband_stops_the_same_trials_as_when_every_epoch_is_stored(tmp_path: Path) -> None:
    """The rungs hold every value Hyperband compares: storing the others changes nothing."""
    result = greedylr.tune(
        "quadratic", n_trials=24, max_epochs=9, workers=1, out=tmp_path / "run", progress=False
    )
    study = optuna.load_study(
        study_name="run", storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp_path / "run" / "study.log"))
        ),
    )  # fmt: skip
    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3)
    replay = optuna.create_study(study_name="run", pruner=pruner)  # the name picks brackets
    for trial in study.get_trials():
        history = trial.user_attrs["history"]
        replayed = replay.ask()
        stopped_at = None
        for row in history:
            replayed.report(row["loss"], step=int(row["epoch"]))  # every epoch, as before
            exempt = row["epoch"] == 9 or trial.user_attrs.get("defaults")
            if not exempt and replayed.should_prune():
                stopped_at = int(row["epoch"])
                break
        replay.tell(replayed, state=optuna.trial.TrialState.PRUNED if stopped_at else None,
                    values=None if stopped_at else history[-1]["loss"])  # fmt: skip
        epochs = int(history[-1]["epoch"])
        assert (stopped_at or 9) == epochs, f"trial {trial.number} stopped at another epoch"
    assert (result.trials["status"] == "pruned").sum() > 0


def test_built_in_tasks_train_with_one_thread_and_user_tasks_with_the_cores(
    tmp_path: Path,
) -> None:
    task = tmp_path / "threads_task.py"
    task.write_text(
        "import torch\n"
        "from greedylr.tasks import declare_task\n\n"
        "def train(config, reporter):\n"
        "    reporter.report(epoch=1, loss=config['x'], threads=torch.get_num_threads())\n\n"
        "@declare_task(threads=1)\n"
        "def small(config, reporter):\n"
        "    train(config, reporter)\n"
    )
    space = {"x": FloatParam(0.0, 1.0)}
    for function, expected in (("train", len(os.sched_getaffinity(0))), ("small", 1)):
        result = greedylr.tune(
            f"{task}:{function}", space=space, n_trials=2, max_epochs=1, workers=1,
            out=tmp_path / function, progress=False,
        )  # fmt: skip
        assert set(result.history["threads"]) == {expected}, function
