"""Real processes on real storages: resume after SIGKILL, and a shared PostgreSQL study."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from greedylr.backends._optuna_worker import process_alive
from greedylr.searchers import FloatParam
from greedylr.searchers import space_to_json
from tests.backends_tests.contract_suite import TOY


optuna = pytest.importorskip("optuna")
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def _space_file(tmp_path: Path, sleep: float) -> Path:
    path = tmp_path / "space.json"
    path.write_text(space_to_json({"x": FloatParam(0.0, 1.0), "sleep": sleep}))
    return path


def _tune_command(tmp_path: Path, *extra: str, trials: int, sleep: float) -> list[str]:
    return [
        sys.executable, "-m", "greedylr", "tune",
        "--task", f"{TOY}:smooth",
        "--space", str(_space_file(tmp_path, sleep)),
        "--max-epochs", "6",
        "--trials", str(trials),
        "--searcher", "random",
        "--no-progress",
        *extra,
    ]  # fmt: skip


def _load(storage: Any, name: str) -> Any:
    return optuna.load_study(study_name=name, storage=storage)


def _journal(path: Path) -> Any:
    from optuna.storages.journal import JournalFileBackend
    from optuna.storages.journal import JournalStorage

    return JournalStorage(JournalFileBackend(str(path)))


def _wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (KeyError, FileNotFoundError, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _originals(trials: list[Any]) -> list[Any]:
    return [
        t for t in trials if "retry_of" not in t.user_attrs and not t.user_attrs.get("surplus")
    ]


def _check_study(trials: list[Any], n_trials: int) -> None:
    """No lost or duplicated trial: n originals, each done once (by itself or its retry)."""
    state = optuna.trial.TrialState
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    originals = _originals(trials)
    assert len(originals) == n_trials
    params = [round(t.params["x"], 12) for t in originals if t.params]
    assert len(params) == len(set(params)), "a config was run twice as two trials"
    assert not [t.number for t in trials if t.state in (state.RUNNING, state.WAITING)]
    retries = {t.user_attrs["retry_of"]: t for t in trials if "retry_of" in t.user_attrs}
    for trial in originals:
        final = trial
        while final.number in retries:
            retry = retries[final.number]
            assert final.state == state.FAIL
            assert retry.params == final.params
            final = retry
        assert final.state in (state.COMPLETE, state.PRUNED), (trial.number, final.state)


def test_resume_after_sigkill_keeps_every_trial_and_reaches_the_count(tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = _tune_command(tmp_path, "--workers", "2", "--out", str(out), trials=24, sleep=0.05)
    tuner = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for((out / "study.log").exists, 120, "the journal")
    storage = _journal(out / "study.log")
    state = optuna.trial.TrialState

    def some_done() -> bool:
        trials = _load(storage, "run").get_trials(states=(state.COMPLETE, state.PRUNED))
        return len(trials) >= 6

    _wait_for(some_done, 120, "6 finished trials")
    tuner.send_signal(signal.SIGKILL)
    tuner.wait()
    before = {
        t.number: (t.state, t.value, t.params)
        for t in _load(storage, "run").get_trials()
        if t.state in (state.COMPLETE, state.PRUNED)
    }
    assert 6 <= len(before) < 24
    running = _load(storage, "run").get_trials(states=(state.RUNNING,))
    pids = {t.user_attrs["worker"]["pid"] for t in running if "worker" in t.user_attrs}
    # The workers die with the tuner (PR_SET_PDEATHSIG).
    _wait_for(lambda: not any(process_alive(pid) for pid in pids), 10, "the workers to die")

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    trials = _load(storage, "run").get_trials()
    after = {t.number: (t.state, t.value, t.params) for t in trials}
    for number, outcome in before.items():
        assert after[number] == outcome, f"trial {number} changed on resume"
    _check_study(trials, 24)
    written = (out / "trials.csv").read_text().splitlines()
    assert len(written) == 1 + len(_originals(trials)) + sum(
        "retry_of" in t.user_attrs for t in trials
    )
    assert json.loads((out / "best.json").read_text())["loss"] is not None


def _postgres_available() -> bool:
    try:
        storage = optuna.storages.RDBStorage(POSTGRES)
    except Exception:
        return False
    storage.remove_session()
    return True


def test_four_workers_on_postgresql_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    if not _postgres_available():
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES}; .ci/run starts it")
    name = f"greedylr-test-{uuid.uuid4().hex[:8]}"
    storage = optuna.storages.RDBStorage(POSTGRES)
    command = _tune_command(
        tmp_path, "--workers", "2", "--out", str(tmp_path / "run"),
        "--storage", POSTGRES, "--study", name, "--heartbeat", "2",
        trials=20, sleep=0.05,
    )  # fmt: skip
    try:
        tuner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _wait_for(lambda: _load(storage, name) is not None, 120, "the study")
        joiners = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "greedylr",
                    "worker",
                    "--storage",
                    POSTGRES,
                    "--study",
                    name,
                    "--threads",
                    "1",
                    "--heartbeat",
                    "2",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )  # fmt: skip
            for _ in range(2)
        ]
        for process in [tuner, *joiners]:
            _, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr.decode()
        trials = _load(storage, name).get_trials()
        _check_study(trials, 20)
        pids = {t.user_attrs["worker"]["pid"] for t in trials if "worker" in t.user_attrs}
        assert len(pids) >= 3, f"the joining workers ran no trial: {pids}"
        assert len(json.loads((tmp_path / "run" / "best.json").read_text())["config"]) > 0
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=storage)


def test_a_killed_remote_worker_is_failed_by_the_heartbeat_and_retried(tmp_path: Path) -> None:
    if not _postgres_available():
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES}; .ci/run starts it")
    name = f"greedylr-test-{uuid.uuid4().hex[:8]}"
    storage = optuna.storages.RDBStorage(POSTGRES)
    state = optuna.trial.TrialState
    command = _tune_command(
        tmp_path, "--workers", "1", "--out", str(tmp_path / "run"), "--early-stopping", "none",
        "--storage", POSTGRES, "--study", name, "--heartbeat", "1",
        trials=10, sleep=0.1,
    )  # fmt: skip
    try:
        tuner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _wait_for(lambda: _load(storage, name) is not None, 120, "the study")
        remote = subprocess.Popen(
            [sys.executable, "-m", "greedylr", "worker", "--storage", POSTGRES,
             "--study", name, "--threads", "1", "--heartbeat", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

        def remote_running() -> list[Any]:
            return [
                t
                for t in _load(storage, name).get_trials(states=(state.RUNNING,))
                if t.user_attrs.get("worker", {}).get("pid") == remote.pid
            ]

        _wait_for(lambda: bool(remote_running()), 120, "a trial on the remote worker")
        lost = remote_running()[0].number
        remote.kill()
        remote.wait()
        _, stderr = tuner.communicate(timeout=300)
        assert tuner.returncode == 0, stderr.decode()
        trials = _load(storage, name).get_trials()
        _check_study(trials, 10)
        retries = [t for t in trials if t.user_attrs.get("retry_of") == lost]
        assert len(retries) == 1
        assert trials[lost].state == state.FAIL
        assert retries[0].state == state.COMPLETE
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=storage)


def test_every_worker_uses_the_heartbeat_the_study_was_created_with(tmp_path: Path) -> None:
    if not _postgres_available():
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES}; .ci/run starts it")
    name = f"greedylr-test-{uuid.uuid4().hex[:8]}"
    storage = optuna.storages.RDBStorage(POSTGRES)
    command = _tune_command(
        tmp_path, "--workers", "1", "--out", str(tmp_path / "run"), "--early-stopping", "none",
        "--storage", POSTGRES, "--study", name, "--heartbeat", "20",
        trials=3, sleep=1.2,
    )  # fmt: skip
    try:
        tuner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _wait_for(lambda: _load(storage, name) is not None, 120, "the study")
        # A joiner asking for a 2 s heartbeat would call the tuner's 7 s trials stale after 6 s.
        joiner = subprocess.Popen(
            [sys.executable, "-m", "greedylr", "worker", "--storage", POSTGRES,
             "--study", name, "--threads", "1", "--heartbeat", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        for process in (tuner, joiner):
            _, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr.decode()
        trials = _load(storage, name).get_trials()
        _check_study(trials, 3)
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=storage)
