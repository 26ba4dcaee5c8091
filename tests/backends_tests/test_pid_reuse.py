"""A pid reused by another process does not keep a dead worker's trial alive.

A trial records its worker as (host, pid, process start time). Once the worker is dead, the
kernel may give its pid to an unrelated process; only the start time (field 22 of
``/proc/PID/stat``) tells the two apart.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from greedylr.backends import _optuna_storage
from greedylr.backends._optuna_worker import owner_alive
from greedylr.backends._optuna_worker import retry_dead_local_trials
from greedylr.backends._optuna_worker import worker_identity


optuna = pytest.importorskip("optuna")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _start_time(pid: int) -> int:
    """Field 22 of ``/proc/PID/stat`` (the command name, field 2, may hold spaces)."""
    after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(after_name[22 - 3])


@pytest.fixture
def other_process() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not this one: it holds the pid a dead worker once had."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def _owner(pid: int, started: int) -> dict[str, object]:
    return {"host": worker_identity()["host"], "pid": pid, "started": started}


def test_a_live_pid_with_another_start_time_is_a_dead_owner(
    other_process: subprocess.Popen[bytes],
) -> None:
    started = _start_time(other_process.pid)
    assert owner_alive(_owner(other_process.pid, started))
    assert not owner_alive(_owner(other_process.pid, started - 1))
    assert not owner_alive(_owner(other_process.pid, 1))


def test_a_trial_whose_owner_pid_was_reused_is_retried(
    tmp_path: Path, other_process: subprocess.Popen[bytes]
) -> None:
    study = optuna.create_study(
        study_name="reuse", storage=_optuna_storage.open_storage(str(tmp_path / "study.log"))
    )
    pid, started = other_process.pid, _start_time(other_process.pid)
    reused = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
    reused.set_user_attr("worker", _owner(pid, 1))  # its worker died; pid went to `sleep`
    alive = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
    alive.set_user_attr("worker", _owner(pid, started))  # `sleep` itself runs this one

    assert retry_dead_local_trials(study) == 1

    state = optuna.trial.TrialState
    trials = study.get_trials()
    assert trials[reused.number].state == state.FAIL
    assert trials[reused.number].user_attrs["fail_reason"] == f"worker {pid} died"
    assert trials[alive.number].state == state.RUNNING
    retries = [t for t in trials if t.user_attrs.get("retry_of") == reused.number]
    assert len(retries) == 1
    assert retries[0].state == state.WAITING
    assert retries[0].system_attrs["fixed_params"] == trials[reused.number].params


def test_a_trial_that_never_recorded_its_worker_is_retried_once_it_is_old(
    tmp_path: Path, other_process: subprocess.Popen[bytes]
) -> None:
    """A worker killed between asking a trial and recording itself leaves a trial no pid and
    no heartbeat can tell dead; its age does."""
    study = optuna.create_study(
        study_name="orphans", storage=_optuna_storage.open_storage(str(tmp_path / "study.log"))
    )
    orphan = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    owned = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    owned.set_user_attr("worker", _owner(other_process.pid, _start_time(other_process.pid)))
    assert retry_dead_local_trials(study, ownerless_after=3600.0) == 0, "a young trial is kept"
    assert retry_dead_local_trials(study, ownerless_after=0.0) == 1
    trials = study.get_trials()
    assert trials[orphan.number].state == optuna.trial.TrialState.FAIL
    assert trials[orphan.number].user_attrs["fail_reason"] == "its worker died before it started"
    assert trials[owned.number].state == optuna.trial.TrialState.RUNNING
    retries = [t for t in trials if t.user_attrs.get("retry_of") == orphan.number]
    assert len(retries) == 1
    assert retries[0].state == optuna.trial.TrialState.WAITING
