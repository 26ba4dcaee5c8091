"""Lost trials are found and run again; nothing hangs; counts stay right."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections import Counter
from pathlib import Path

import pytest

import greedylr
from greedylr.backends import Experiment
from greedylr.backends import TuneResult
from greedylr.backends import _optuna
from greedylr.backends import _optuna_storage
from greedylr.backends import _optuna_worker
from greedylr.backends._optuna_storage import hide_password
from greedylr.backends._optuna_storage import mask_secrets
from tests.backends_tests.contract_suite import SPACE
from tests.backends_tests.contract_suite import TOY


optuna = pytest.importorskip("optuna")


def _tune(tmp_path: Path, function: str = "smooth", **options: object) -> TuneResult:
    settings: dict[str, object] = {
        "space": SPACE, "n_trials": 6, "max_epochs": 4, "seed": 1, "progress": False,
        "out": tmp_path / "run", "searcher": "random",
    }  # fmt: skip
    settings.update(options)
    return greedylr.tune(f"{TOY}:{function}", **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "shown", "secrets"),
    [
        ("postgresql://u:pw@h:5/db", "postgresql://u:***@h:5/db", ["pw"]),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db", ["p@ss"]),
        (
            "postgresql://u@h/db?password=hunter2&x=1",
            "postgresql://u@h/db?password=***&x=1",
            ["hunter2"],
        ),
        ("mysql://u@h/db?sslpassword=z9", "mysql://u@h/db?sslpassword=***", ["z9"]),
        ("sqlite:///runs/a.db", "sqlite:///runs/a.db", []),
        ("runs/study.log", "runs/study.log", []),
    ],
)
def test_passwords_are_hidden_wherever_they_sit(url: str, shown: str, secrets: list[str]) -> None:
    assert hide_password(url) == shown
    assert _optuna_storage.secrets_of(url) == secrets
    masked = mask_secrets(f"error for {url}: auth failed with {secrets}", url)
    assert not any(secret in masked for secret in secrets)


def test_a_trial_interrupted_while_sampling_is_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_suggest = _optuna_worker.suggest
    calls = {"n": 0}

    def interrupting_suggest(trial: object, space: object) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_suggest(trial, space)  # type: ignore[arg-type]

    monkeypatch.setattr(_optuna_worker, "suggest", interrupting_suggest)  # a Ctrl-C at that moment
    with pytest.raises(KeyboardInterrupt):
        _tune(tmp_path)
    monkeypatch.setattr(_optuna_worker, "suggest", real_suggest)
    trials = _tune(tmp_path).trials
    interrupted = trials[trials["status"] == "interrupted"]
    assert len(interrupted) == 1
    assert "retried as trial" in interrupted["reason"].iloc[0]
    assert (trials["status"].isin(["completed", "pruned"])).sum() == 6


def test_an_ownerless_running_trial_is_retried_on_resume(tmp_path: Path) -> None:
    _tune(tmp_path, n_trials=2)
    storage = _optuna_storage.open_storage(str(tmp_path / "run" / "study.log"))
    optuna.load_study(study_name="run", storage=storage).ask()  # a worker killed right here
    done = threading.Event()
    result: list[TuneResult] = []

    def resume() -> None:
        result.append(_tune(tmp_path, n_trials=4))
        done.set()

    threading.Thread(target=resume, daemon=True).start()
    assert done.wait(120), "the resume hung on a RUNNING trial without an owner"
    trials = result[0].trials
    lost = trials[trials["reason"].str.contains("before it started", na=False)]
    assert len(lost) == 1
    assert (trials["status"] != "running").all()


def test_a_trial_owned_by_this_very_process_is_dead_on_resume(tmp_path: Path) -> None:
    _tune(tmp_path, n_trials=2)
    study = optuna.load_study(
        study_name="run", storage=_optuna_storage.open_storage(str(tmp_path / "run" / "study.log"))
    )
    trial = study.ask()  # planted as if this process had run it before a restart
    trial.set_user_attr("worker", _optuna_worker.worker_identity())
    trials = _tune(tmp_path, n_trials=3).trials
    assert "died" in trials.loc[trials["trial"] == trial.number, "reason"].iloc[0]


def test_a_config_that_always_kills_its_worker_runs_three_times_then_is_given_up(
    tmp_path: Path,
) -> None:
    # The policy: a config whose worker dies is run at most 3 times (the original, 2 retries).
    runs_file = tmp_path / "runs.txt"  # a line per start of the trial function, from any worker
    result = _tune(
        tmp_path, "first_config_dies", workers=2, n_trials=4, early_stopping="none",
        space={**SPACE, "runs_file": str(runs_file)},
    )  # fmt: skip
    lines = runs_file.read_text().splitlines()
    runs = Counter(float(line) for line in lines)
    killer = float(lines[0])
    assert runs[killer] == 3, f"times each config ran: {runs}"
    assert sorted(runs.values()) == [1, 1, 1, 3], f"times each config ran: {runs}"
    trials = result.trials
    assert len(trials) == 6
    died = trials[trials["config.x"] == killer]
    assert list(died["status"]) == ["failed"] * 3
    assert died["reason"].iloc[-1].endswith("not run again: its worker died 3 times")
    assert (trials[trials["config.x"] != killer]["status"] == "completed").all()
    assert result.epochs_saved == 0


def test_early_stopping_savings_count_only_stopped_trials(tmp_path: Path) -> None:
    result = _tune(tmp_path, "troubled", n_trials=10, early_stopping="none")
    assert (result.trials["status"] == "failed").any()
    assert result.epochs_saved == 0
    assert result.epochs_without_early_stopping == result.epochs_run


@pytest.mark.parametrize("rule", ["hyperband", "asha", "median"])
def test_no_trial_stops_before_min_epochs(rule: str, tmp_path: Path) -> None:
    result = _tune(
        tmp_path, n_trials=20, max_epochs=6, min_epochs=3, early_stopping=rule, searcher="random"
    )
    pruned = result.trials[result.trials["status"] == "pruned"]
    assert len(pruned) > 0
    assert pruned["epochs"].min() >= 3


def test_workers_import_tasks_from_where_the_caller_does(tmp_path: Path) -> None:
    package = tmp_path / "elsewhere"
    package.mkdir()
    (package / "my_own_task.py").write_text(
        "def train(config, reporter):\n"
        "    for epoch in range(1, config['epochs'] + 1):\n"
        "        reporter.report(epoch=epoch, loss=(config['x'] - 0.5) ** 2 + 1 / epoch)\n"
    )
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import greedylr, my_own_task\n"
        "from greedylr.searchers import FloatParam\n"
        "r = greedylr.tune(my_own_task.train, space={'x': FloatParam(0, 1)}, n_trials=4,\n"
        "                  max_epochs=2, workers=2, out=sys.argv[2], progress=False)\n"
        "print(len(r.trials), r.experiment.function)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(package), str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["4", "my_own_task:train"]


def test_only_one_of_two_racing_tuners_creates_the_study_and_its_defaults() -> None:
    url = "postgresql://postgres@127.0.0.1:5432/test"
    name = f"greedylr-race-{uuid.uuid4().hex[:8]}"
    experiment = Experiment.create("quadratic", n_trials=5)
    barrier = threading.Barrier(2)
    outcomes: list[bool] = []

    def start() -> None:
        storage = _optuna_storage.open_storage(url)
        barrier.wait()
        outcomes.append(_optuna.create_or_load_study(storage, name, experiment)[1])

    threads = [threading.Thread(target=start) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(outcomes) == [False, True]
        study = optuna.load_study(study_name=name, storage=url)
        assert [t.user_attrs.get("defaults") for t in study.trials] == [True]
    finally:
        optuna.delete_study(study_name=name, storage=url)
