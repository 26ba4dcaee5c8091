"""Real processes on real storages: resume after SIGKILL, and a shared PostgreSQL study."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from greedylr.backends._optuna import EXPERIMENT_ATTR
from greedylr.backends._optuna_worker import process_alive
from greedylr.searchers import FloatParam
from greedylr.searchers import space_to_json
from tests.backends_tests.contract_suite import TOY


optuna = pytest.importorskip("optuna")
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def _space_file(tmp_path: Path, constants: dict[str, Any]) -> Path:
    path = tmp_path / "space.json"
    path.write_text(space_to_json({"x": FloatParam(0.0, 1.0), **constants}))
    return path


def _tune_command(
    tmp_path: Path, *extra: str, trials: int, task: str = "smooth", **constants: Any
) -> list[str]:
    """``greedylr tune`` of a toy task; ``constants`` join the space (``sleep=0.05``, ...)."""
    return [
        sys.executable, "-m", "greedylr", "tune",
        "--task", f"{TOY}:{task}",
        "--space", str(_space_file(tmp_path, constants)),
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
            _check_retry(final, retry)
            final = retry
        assert final.state in (state.COMPLETE, state.PRUNED), (trial.number, final.state)
        _check_sample(final)


def _check_retry(failed: Any, retry: Any) -> None:
    """A retry runs its failed trial's config; with none (died before sampling) it samples."""
    if not retry.params:  # the retry died before sampling too (its own retry is checked next)
        assert retry.state == optuna.trial.TrialState.FAIL, (retry.number, retry.state)
    elif failed.params:
        assert retry.params == failed.params, (failed.number, retry.number)
    else:
        _check_sample(retry)


def _check_sample(trial: Any) -> None:
    """The trial's config is a sample of the space."""
    assert trial.distributions == {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    assert 0.0 <= trial.params["x"] <= 1.0


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


@pytest.fixture
def pg_study() -> Iterator[tuple[str, Any]]:
    """A fresh study name on the test PostgreSQL, and its storage; the study is dropped after."""
    try:
        storage = optuna.storages.RDBStorage(POSTGRES)
    except Exception as error:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES} ({error}); .ci/run starts it")
    name = f"greedylr-test-{uuid.uuid4().hex[:8]}"
    yield name, storage
    with contextlib.suppress(KeyError):
        optuna.delete_study(study_name=name, storage=storage)


def _start_tuner(command: list[str], storage: Any, name: str) -> subprocess.Popen[bytes]:
    tuner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # A joining worker reads the experiment, stored just after the study is created.
    _wait_for(lambda: EXPERIMENT_ATTR in _load(storage, name).user_attrs, 120, "the study")
    return tuner


def _join(name: str, *, heartbeat: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "greedylr", "worker", "--storage", POSTGRES, "--study", name]
    command += ["--threads", "1", "--heartbeat", str(heartbeat)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr.decode()


def _postgres_command(
    tmp_path: Path, name: str, *extra: str, trials: int, task: str = "smooth", **constants: Any
) -> list[str]:
    return _tune_command(
        tmp_path, "--out", str(tmp_path / "run"), "--storage", POSTGRES, "--study", name,
        *extra, trials=trials, task=task, **constants,
    )  # fmt: skip


def test_four_workers_on_postgresql_lose_and_duplicate_nothing(
    tmp_path: Path, pg_study: tuple[str, Any]
) -> None:
    name, storage = pg_study
    # No trial gets past its start until all 4 workers (2 local, 2 joining) have started one.
    command = _postgres_command(
        tmp_path, name, "--workers", "2", "--heartbeat", "2", trials=20,
        task="rendezvous", arrived=str(tmp_path / "arrived"), quorum=4,
    )  # fmt: skip
    tuner = _start_tuner(command, storage, name)
    joiners = [_join(name, heartbeat=2), _join(name, heartbeat=2)]
    _finish(tuner, *joiners)
    trials = _load(storage, name).get_trials()
    _check_study(trials, 20)
    pids = {t.user_attrs["worker"]["pid"] for t in trials if "worker" in t.user_attrs}
    assert len(pids) == 4, f"4 workers were expected to run trials: {pids}"
    assert {joiner.pid for joiner in joiners} <= pids
    assert len(json.loads((tmp_path / "run" / "best.json").read_text())["config"]) > 0


def test_a_killed_remote_worker_is_failed_by_the_heartbeat_and_retried(
    tmp_path: Path, pg_study: tuple[str, Any]
) -> None:
    name, storage = pg_study
    state = optuna.trial.TrialState
    gate, waiting = tmp_path / "gate", tmp_path / "waiting"
    # Every trial waits after epoch 2 until the gate opens: the remote worker surely gets one.
    command = _postgres_command(
        tmp_path, name, "--workers", "1", "--early-stopping", "none", "--heartbeat", "1",
        trials=10, task="gated", gate=str(gate), waiting=str(waiting),
    )  # fmt: skip
    tuner = _start_tuner(command, storage, name)
    remote = _join(name, heartbeat=1)
    _wait_for((waiting / str(remote.pid)).exists, 120, "a trial held on the remote worker")
    running = _load(storage, name).get_trials(states=(state.RUNNING,))
    held = [t.number for t in running if t.user_attrs.get("worker", {}).get("pid") == remote.pid]
    assert len(held) == 1
    lost = held[0]
    remote.kill()
    remote.wait()
    gate.touch()
    _finish(tuner)
    trials = _load(storage, name).get_trials()
    _check_study(trials, 10)
    retries = [t for t in trials if t.user_attrs.get("retry_of") == lost]
    assert len(retries) == 1
    assert trials[lost].state == state.FAIL
    assert retries[0].state == state.COMPLETE


def test_every_worker_uses_the_heartbeat_the_study_was_created_with(
    tmp_path: Path, pg_study: tuple[str, Any]
) -> None:
    name, storage = pg_study
    command = _postgres_command(
        tmp_path, name, "--workers", "1", "--early-stopping", "none", "--heartbeat", "20",
        trials=3, sleep=1.2,
    )  # fmt: skip
    tuner = _start_tuner(command, storage, name)
    # A joiner asking for a 2 s heartbeat would call the tuner's 7 s trials stale after 6 s.
    _finish(tuner, _join(name, heartbeat=2))
    trials = _load(storage, name).get_trials()
    _check_study(trials, 3)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
