"""Studies whose task is broken: they end non-zero, stop early when the task raises, keep
every traceback, and a bad run folder is refused before anything is stored."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.backends_tests.test_signals import trials_of
from tests.backends_tests.test_signals import tune_command


optuna = pytest.importorskip("optuna")


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_a_task_that_always_raises_stops_early_and_shows_its_traceback(tmp_path: Path) -> None:
    # No early stopping: a trial pruned at epoch 1, before it raises, would be a result.
    command = tune_command(
        tmp_path, "always_raises", "--workers", "2", "--early-stopping", "none", trials=40
    )
    result = run(command)
    assert result.returncode == 1, result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert "ZeroDivisionError: the task's own bug" in result.stderr
    assert "the study stopped" in result.stderr
    trials = trials_of(tmp_path / "run")
    assert 3 <= len(trials) <= 3 + 2, "the study ran on after its first trials all failed"
    table = pd.read_csv(tmp_path / "run" / "trials.csv", keep_default_na=False)
    failed = table[table["status"] == "failed"]
    # A trial the other worker was running when the study stopped is cut short: interrupted.
    assert set(table["status"]) <= {"failed", "interrupted"}, table["status"]
    assert len(table) == len(trials)
    assert len(failed) >= 3
    for _, row in failed.iterrows():
        text = (tmp_path / "run" / row["traceback"]).read_text()
        assert "ZeroDivisionError: the task's own bug" in text
        assert f"factor={row['config.factor']}" in text


def test_a_rerun_of_a_fixed_task_is_not_stopped_by_the_old_failures(tmp_path: Path) -> None:
    command = tune_command(
        tmp_path, "always_raises", "--workers", "1", "--early-stopping", "none", trials=8
    )
    broken = run(command)
    assert broken.returncode == 1
    # The user fixes the task (here: its marker) and runs the same command again.
    (tmp_path / "markers" / "fixed").touch()
    rerun = run(command)
    assert rerun.returncode == 0, rerun.stderr
    table = pd.read_csv(tmp_path / "run" / "trials.csv", keep_default_na=False)
    assert list(table["status"]) == ["failed"] * 3 + ["completed"] * 5


@pytest.mark.parametrize(
    ("task", "reason"),
    [("reports_nan", "diverged at epoch 1"), ("never_reports", "the trial reported no epoch")],
)
def test_no_completed_trial_exits_non_zero_after_every_trial(
    tmp_path: Path, task: str, reason: str
) -> None:
    result = run(tune_command(tmp_path, task, "--workers", "1", trials=5))
    assert result.returncode == 1, result.stderr
    assert "No trial completed" in result.stdout + result.stderr
    table = pd.read_csv(tmp_path / "run" / "trials.csv", keep_default_na=False)
    assert len(table) == 5, "NaN and silent trials are results: every trial runs"
    assert (table["status"] == "failed").all()
    assert table["reason"].str.startswith(reason).all(), table["reason"]
    assert json.loads((tmp_path / "run" / "best.json").read_text())["trial"] is None


def test_a_task_that_kills_its_worker_every_time_stops_early(tmp_path: Path) -> None:
    result = run(tune_command(tmp_path, "kills_worker", "--workers", "2", trials=30))
    assert result.returncode == 1, result.stderr
    runs = (tmp_path / "markers" / "runs").read_text().split()
    # The first 3 configs die 3 times each (a config is given up after 2 retries); the
    # other worker may meanwhile have started the next config up to 3 times.
    assert 9 <= len(runs) <= 12, runs
    assert "died" in result.stderr


def test_an_unwritable_run_folder_is_refused_before_the_study_is_stored(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    journal = tmp_path / "elsewhere" / "study.log"
    command = tune_command(tmp_path, "quick", trials=2)
    command[command.index("--out") + 1] = str(blocker / "run")
    result = run([*command, "--storage", str(journal)])
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "--out" in result.stderr
    assert "Traceback" not in result.stderr
    assert not journal.exists()
    assert not journal.parent.exists()


def test_a_rerun_with_fewer_trials_keeps_the_study_and_its_record(tmp_path: Path) -> None:
    assert run(tune_command(tmp_path, "quick", "--workers", "1", trials=4)).returncode == 0
    rerun = run(tune_command(tmp_path, "quick", "--workers", "1", trials=2))
    assert rerun.returncode == 0, rerun.stderr
    assert "continuing the study" in rerun.stderr
    assert "more than --trials 2" in rerun.stderr
    record = json.loads((tmp_path / "run" / "experiment.json").read_text())
    assert record["experiment"]["n_trials"] == 4
    assert len(pd.read_csv(tmp_path / "run" / "trials.csv")) == 4
    more = run(tune_command(tmp_path, "quick", "--workers", "1", trials=6))
    assert more.returncode == 0, more.stderr
    record = json.loads((tmp_path / "run" / "experiment.json").read_text())
    assert record["experiment"]["n_trials"] == 6
    assert len(pd.read_csv(tmp_path / "run" / "trials.csv")) == 6


def test_a_bad_storage_leaves_no_run_folder(tmp_path: Path) -> None:
    command = tune_command(tmp_path, "quick", trials=2)
    result = run([*command, "--storage", "nosuchdb://nowhere"])
    assert result.returncode == 2, result.stderr
    assert "Cannot open storage" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_record_torn_by_a_killed_writer_is_cut_off_before_the_next_append(
    tmp_path: Path,
) -> None:
    command = tune_command(tmp_path, "quick", "--workers", "1", trials=2)
    assert run(command).returncode == 0
    journal = tmp_path / "run" / "study.log"
    whole = journal.read_bytes()
    with journal.open("ab") as torn:  # what a SIGKILL in the middle of a write leaves
        torn.write(b'{"op_code": 8, "worker_id": "x", "trial_id": 0, "user_att')
    more = run(tune_command(tmp_path, "quick", "--workers", "1", trials=4))
    assert more.returncode == 0, more.stderr
    assert journal.read_bytes().startswith(whole)
    assert b'"worker_id": "x"' not in journal.read_bytes(), "the torn record is still there"
    assert len(trials_of(tmp_path / "run")) == 4


def test_a_task_broken_after_earlier_runs_completed_still_stops_the_run(tmp_path: Path) -> None:
    first = tune_command(
        tmp_path, "always_raises", "--workers", "1", "--early-stopping", "none", trials=4
    )
    (tmp_path / "markers" / "fixed").touch()
    assert run(first).returncode == 0
    (tmp_path / "markers" / "fixed").unlink()  # the task breaks; the user runs more trials
    more = tune_command(
        tmp_path, "always_raises", "--workers", "2", "--early-stopping", "none", trials=40
    )
    result = run(more)
    assert result.returncode == 1, result.stderr
    assert "ZeroDivisionError: the task's own bug" in result.stderr
    assert 4 + 3 <= len(trials_of(tmp_path / "run")) <= 4 + 3 + 1


def test_while_one_of_the_first_configs_runs_a_failing_run_waits_for_its_verdict() -> None:
    """Workers wait for a still-running first config once the others failed by the task,
    instead of starting configs a broken task would only fail (whatever the timing)."""
    import optuna

    from greedylr.backends._optuna import first_task_failure
    from greedylr.backends._optuna import task_verdict_pending

    study = optuna.create_study()

    def failed() -> None:
        trial = study.ask()
        trial.set_user_attr("traceback", "ZeroDivisionError")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)

    failed()
    running = study.ask()  # another worker's first config, still running
    failed()
    assert task_verdict_pending(study)
    assert first_task_failure(study) is None
    study.tell(running, 0.5)  # it completed: the task works
    assert not task_verdict_pending(study)
    assert first_task_failure(study) is None

    study = optuna.create_study()
    failed()
    running = study.ask()
    failed()
    running.set_user_attr("traceback", "ZeroDivisionError")
    study.tell(running, state=optuna.trial.TrialState.FAIL)  # it failed too: broken
    assert not task_verdict_pending(study)
    assert first_task_failure(study).number == 0
