"""Ctrl-C, kill -INT / -TERM and kill -9 of a real ``greedylr tune`` and its worker processes.

Every test steers the trials through files (see ``stop_tasks.py``): it signals the tuner only
once the trials are where the test wants them, never after a fixed sleep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from greedylr.backends._optuna_worker import process_alive
from greedylr.searchers import FloatParam
from greedylr.searchers import space_to_json


optuna = pytest.importorskip("optuna")
TASKS = Path(__file__).with_name("stop_tasks.py")


def tune_command(tmp_path: Path, task: str, *extra: str, trials: int, **space: Any) -> list[str]:
    """``greedylr tune`` on a task of stop_tasks.py, its markers in ``tmp_path / "markers"``."""
    markers = tmp_path / "markers"
    markers.mkdir(exist_ok=True)
    space_file = tmp_path / "space.json"
    values = {"factor": FloatParam(0.5, 0.99), "marker_dir": str(markers), **space}
    space_file.write_text(space_to_json(values))
    return [
        sys.executable, "-m", "greedylr", "tune",
        "--task", f"{TASKS}:{task}",
        "--space", str(space_file),
        "--max-epochs", "3",
        "--trials", str(trials),
        "--searcher", "random",
        "--out", str(tmp_path / "run"),
        "--no-progress",
        *extra,
    ]  # fmt: skip


def wait_for(
    condition: Any,
    what: str,
    timeout: float = 120.0,
    *,
    process: subprocess.Popen[str] | None = None,
) -> Any:
    """Poll ``condition`` until it holds; fail at once if ``process`` ends meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            output = process.communicate()
            raise AssertionError(f"the tuner ended (code {process.returncode}): {output}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def children(pid: int) -> set[int]:
    """The live child processes of ``pid``."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text()
        found.update(int(child) for child in text.split())
    return found


def trials_of(run: Path) -> list[Any]:
    from optuna.storages.journal import JournalFileBackend
    from optuna.storages.journal import JournalStorage

    storage = JournalStorage(JournalFileBackend(str(run / "study.log")))
    return optuna.load_study(study_name=run.name, storage=storage).get_trials()


def stop_and_time_workers(tuner: subprocess.Popen[str], signum: int, *, group: bool) -> float:
    """Send ``signum`` (to the whole group, as a terminal's Ctrl-C, or to the tuner alone),
    return the seconds until every worker process is gone, after the tuner has ended too."""
    workers = children(tuner.pid)
    assert workers, "the tuner has no worker process"
    start = time.monotonic()
    if group:
        os.killpg(tuner.pid, signum)
    else:
        tuner.send_signal(signum)
    wait_for(lambda: not any(process_alive(pid) for pid in workers), "the workers to end", 30)
    seconds = time.monotonic() - start
    tuner.wait(timeout=60)
    return seconds


def start(command: list[str]) -> subprocess.Popen[str]:
    # A session of its own: os.killpg then reaches the tuner and its workers, like Ctrl-C.
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


@pytest.mark.parametrize(
    ("signum", "group", "code"),
    [
        (signal.SIGINT, False, 130),  # kill -INT PID: the tuner alone
        (signal.SIGTERM, False, 143),  # kill -TERM PID
        (signal.SIGINT, True, 130),  # Ctrl-C: the whole foreground group
    ],
    ids=["kill-INT", "kill-TERM", "ctrl-C"],
)
def test_a_stop_signal_ends_every_worker_at_once_and_the_rerun_finishes(
    tmp_path: Path, signum: int, group: bool, code: int
) -> None:
    markers = tmp_path / "markers"
    command = tune_command(
        tmp_path, "blocks", "--workers", "2", "--early-stopping", "none", trials=4
    )
    tuner = start(command)
    wait_for(lambda: len(list(markers.glob("started-*"))) == 2, "two trials", process=tuner)
    seconds = stop_and_time_workers(tuner, signum, group=group)
    stderr = tuner.stderr.read() if tuner.stderr else ""
    assert tuner.returncode == code, stderr
    assert seconds < 2.0, f"the workers ran on for {seconds:.1f} s after the signal"
    assert stderr.count("interrupted") == 1, stderr
    assert "Traceback" not in stderr, stderr
    trials = trials_of(tmp_path / "run")
    interrupted = [t for t in trials if t.user_attrs.get("fail_reason") == "interrupted"]
    assert len(interrupted) == 2, [(t.number, t.state, t.user_attrs) for t in trials]
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    statuses = (tmp_path / "run" / "trials.csv").read_text()
    assert statuses.count(",interrupted,") == 2, statuses

    (markers / "release").touch()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "continuing the study" in rerun.stderr
    trials = trials_of(tmp_path / "run")
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    assert retried == {t.number for t in interrupted}
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4
    assert ",failed," not in (tmp_path / "run" / "trials.csv").read_text()


def test_ctrl_c_inside_an_import_interrupts_the_trial_instead_of_failing_it(
    tmp_path: Path,
) -> None:
    markers = tmp_path / "markers"
    command = tune_command(
        tmp_path, "set_name_import", "--workers", "2", "--early-stopping", "none", trials=3
    )
    tuner = start(command)
    wait_for(lambda: len(list(markers.glob("importing-*"))) == 2, "imports", process=tuner)
    seconds = stop_and_time_workers(tuner, signal.SIGINT, group=True)
    stderr = tuner.stderr.read() if tuner.stderr else ""
    assert tuner.returncode == 130, stderr
    assert seconds < 2.0, f"the workers ran on for {seconds:.1f} s after Ctrl-C"
    trials = trials_of(tmp_path / "run")
    asked = [t for t in trials if t.state != optuna.trial.TrialState.WAITING]
    assert len(asked) == 2, "a worker went on asking trials after Ctrl-C"
    waiting = [t.user_attrs.get("retry_of") for t in trials if t not in asked]
    assert sorted(waiting) == [t.number for t in asked], "each is queued to run again"
    for trial in asked:
        assert trial.user_attrs.get("fail_reason") == "interrupted", trial.user_attrs
        assert "traceback" not in trial.user_attrs

    (markers / "release").touch()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    final = trials_of(tmp_path / "run")
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in final) == 3


def test_a_rerun_after_kill_9_is_not_held_up_by_the_dead_tuners_lock(tmp_path: Path) -> None:
    """A tuner killed while it holds the journal's lock: the rerun must not wait on it."""
    first = tune_command(tmp_path, "quick", "--workers", "1", trials=1)
    assert subprocess.run(first, capture_output=True, timeout=300).returncode == 0
    command = tune_command(tmp_path, "quick", "--workers", "1", trials=3)
    journal = tmp_path / "run" / "study.log"
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import sys, time; from greedylr.backends._optuna_storage import open_storage; "
            "lock = open_storage(sys.argv[1])._backend._lock; lock.acquire(); "
            "print('locked', flush=True); time.sleep(600)",
            str(journal),
        ],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    # Optuna's own lock would be broken only after its 30 s grace period.
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=25)
    assert rerun.returncode == 0, rerun.stderr
    assert "continuing the study" in rerun.stderr
    assert len(trials_of(tmp_path / "run")) == 3


def test_the_defaults_trial_is_never_stopped_early(tmp_path: Path) -> None:
    # The defaults trial waits until 6 others are done, then reports the worst first epoch
    # of all: successive halving would stop it there, though its last epoch is the best.
    command = tune_command(
        tmp_path, "defaults_late", "--workers", "2", "--early-stopping", "asha",
        trials=8, others=6,
    )  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    trials = trials_of(tmp_path / "run")
    defaults = [t for t in trials if t.user_attrs.get("defaults")]
    assert len(defaults) == 1
    assert defaults[0].params["factor"] == 0.95
    assert defaults[0].state == optuna.trial.TrialState.COMPLETE, defaults[0].user_attrs
    assert defaults[0].value == pytest.approx(1 / 30)
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["trial"] == defaults[0].number


def test_never_more_workers_than_trials_and_one_note_on_cores(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    command = tune_command(tmp_path, "quick", "--workers", "1000", trials=cores + 1)
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(f"{cores + 1} workers on {cores} CPU cores") == 1, result.stderr
    assert "1000" not in result.stderr


def test_report_reads_a_study_that_is_still_running(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    command = tune_command(
        tmp_path, "blocks", "--workers", "2", "--early-stopping", "none", trials=4
    )
    tuner = start(command)
    try:
        wait_for(lambda: len(list(markers.glob("started-*"))) == 2, "two trials", process=tuner)
        trials_csv = tmp_path / "run" / "trials.csv"
        wait_for(lambda: trials_csv.exists() and ",running," in trials_csv.read_text(), "a save")
        report = subprocess.run(
            [sys.executable, "-m", "greedylr", "report", str(tmp_path / "run")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert report.returncode == 0, report.stderr
        assert "2 running" in report.stdout, report.stdout
        assert "No trial finished yet" in report.stdout
    finally:
        (markers / "release").touch()
        assert tuner.wait(timeout=300) == 0


def test_an_interrupted_worker_of_a_shared_study_leaves_its_trial_to_the_others(
    tmp_path: Path,
) -> None:
    markers = tmp_path / "markers"
    command = tune_command(
        tmp_path, "blocks", "--workers", "1", "--early-stopping", "none", trials=4
    )
    tuner = start(command)
    wait_for(lambda: len(list(markers.glob("started-*"))) == 1, "the tuner's trial", process=tuner)
    journal = tmp_path / "run" / "study.log"
    joined = start([sys.executable, "-m", "greedylr", "worker", "--storage", str(journal),
                    "--study", "run"])  # fmt: skip
    wait_for(lambda: len(list(markers.glob("started-*"))) == 2, "the joined worker's trial")
    joined.send_signal(signal.SIGINT)
    _, stderr = joined.communicate(timeout=60)
    assert joined.returncode == 130, stderr
    assert stderr.count("interrupted") == 1, stderr
    (markers / "release").touch()
    _, stderr = tuner.communicate(timeout=300)
    assert tuner.returncode == 0, stderr
    trials = trials_of(tmp_path / "run")
    interrupted = [t for t in trials if t.user_attrs.get("fail_reason") == "interrupted"]
    assert len(interrupted) == 1
    assert interrupted[0].user_attrs["worker"]["pid"] == joined.pid
    retries = [t for t in trials if t.user_attrs.get("retry_of") == interrupted[0].number]
    assert len(retries) == 1
    assert retries[0].params == interrupted[0].params
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4, [
        (t.number, t.state, t.user_attrs.get("fail_reason")) for t in trials
    ]


def test_sigterm_stops_a_run_whose_trials_run_in_the_tuner_itself(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    command = tune_command(
        tmp_path, "blocks", "--workers", "1", "--early-stopping", "none", trials=2
    )
    tuner = start(command)
    wait_for(lambda: list(markers.glob(f"started-{tuner.pid}")), "its trial", process=tuner)
    tuner.send_signal(signal.SIGTERM)
    _, stderr = tuner.communicate(timeout=60)
    assert tuner.returncode == 143, stderr
    assert stderr.count("interrupted") == 1, stderr
    trials = trials_of(tmp_path / "run")
    assert [t.user_attrs.get("fail_reason") for t in trials if "retry_of" not in t.user_attrs] == [
        "interrupted"
    ]
    (markers / "release").touch()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    done = [t for t in trials_of(tmp_path / "run") if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2
