"""Checkpoints in the trial contract, and the Optuna backend's retries that continue from them.

The Optuna runs drive ``greedylr.backends._optuna_local`` directly (real Optuna, real forked
workers, a journal file), as the Optuna backend does with the run folder's ``checkpoints/``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from greedylr.backends import Checkpoint
from greedylr.backends import Experiment
from greedylr.backends import TrialContractError
from greedylr.backends import ValidatingReporter
from greedylr.backends import _optuna
from greedylr.backends import _optuna_checkpoints
from greedylr.backends import _optuna_local
from greedylr.backends import _optuna_storage
from greedylr.backends import load_checkpoint
from greedylr.backends import save_checkpoint
from greedylr.backends._results import TrialResult
from greedylr.searchers import FloatParam


optuna = pytest.importorskip("optuna")

HERE = "tests.backends_tests.test_checkpoints"
WAIT_SECONDS = 120


# The contract: what a reporter does with checkpoints.


def test_a_report_s_checkpoint_is_forwarded_and_kept() -> None:
    seen = []
    reporter = ValidatingReporter(lambda e, loss, m, state: seen.append((e, state)))
    assert reporter.checkpoint() is None
    reporter.report(epoch=1, loss=1.0, checkpoint={"w": 1})
    reporter.report(epoch=2, loss=0.5)  # an epoch without a checkpoint keeps the last one
    assert seen == [(1, {"w": 1}), (2, None)]
    assert reporter.checkpoint() == Checkpoint(1, {"w": 1})
    assert "checkpoint" not in reporter.history[0]


def test_a_restored_reporter_continues_after_the_checkpoint() -> None:
    before = [
        {"epoch": 1.0, "loss": 3.0, "seconds": 10.0},
        {"epoch": 2.0, "loss": 2.0, "seconds": 20.0},
        {"epoch": 3.0, "loss": 1.5, "seconds": 30.0},  # after the checkpoint: run again
    ]
    restored = Checkpoint(2, {"w": 2})
    reporter = ValidatingReporter(restored=restored, history=before, tags={"devices": "1"})
    assert reporter.checkpoint() is restored
    assert reporter.last_epoch == 2
    with pytest.raises(TrialContractError, match="continues from its checkpoint of epoch 2"):
        reporter.report(epoch=2, loss=1.0)
    reporter.report(epoch=3, loss=1.0)
    assert [row["epoch"] for row in reporter.history] == [1, 2, 3]
    assert reporter.history[:2] == before[:2]  # kept as they were (no tag added)
    assert reporter.history[2]["devices"] == "1"
    assert 20.0 <= reporter.history[2]["seconds"] < 20.0 + WAIT_SECONDS  # the clock goes on
    assert reporter.checkpoint() is restored  # until the trial reports one
    with pytest.raises(TrialContractError, match="The metric name `devices` is reserved"):
        reporter.report(epoch=4, loss=1.0, devices=0)


def test_save_and_load_a_checkpoint(tmp_path: Path) -> None:
    state = {"weights": torch.arange(3.0), "step": 7, "rng": torch.get_rng_state()}
    path = save_checkpoint(state, tmp_path / "a" / "b")
    assert path == tmp_path / "a" / "b" / "state.pt"
    loaded = load_checkpoint(tmp_path / "a" / "b")
    assert torch.equal(loaded["weights"], state["weights"])
    assert loaded["step"] == 7
    assert torch.equal(loaded["rng"], state["rng"])
    assert os.listdir(tmp_path / "a" / "b") == ["state.pt"]  # no temporary file left
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none")


_WRITER = """
import sys, torch
from greedylr.backends import save_checkpoint
step = 0
while True:
    step += 1
    save_checkpoint({"step": step, "data": torch.full((2_000_000,), float(step))}, sys.argv[1])
"""


def test_a_writer_killed_while_writing_leaves_a_whole_checkpoint(tmp_path: Path) -> None:
    for attempt in range(5):
        folder = tmp_path / f"trial-{attempt}"
        writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(folder)])
        try:
            deadline = time.monotonic() + WAIT_SECONDS
            first = None
            while time.monotonic() < deadline:  # until it has replaced one checkpoint
                if (folder / "state.pt").exists():
                    first = first or (folder / "state.pt").stat().st_mtime_ns
                    if (folder / "state.pt").stat().st_mtime_ns != first:
                        break
                time.sleep(0.001 * attempt)  # kill at different points of a write
        finally:
            writer.kill()
            writer.wait()
        state = load_checkpoint(folder)  # a torn file would not load
        assert torch.equal(state["data"], torch.full((2_000_000,), float(state["step"])))
        assert state["step"] >= 2


# Trial functions for the Optuna runs (module level: workers import them).


def _loss(x: float, epoch: int) -> float:
    return ((x - 0.3) ** 2 + 0.01) * (1.0 + 2.0 / epoch)


def counting(config: dict[str, Any], reporter: Any) -> None:
    """Checkpoints ``{"total": 1 + 2 + ... + epoch}`` and reports it as ``total``.

    Appends ``"<x> <first epoch>"`` to ``config["starts"]`` at each start. The first trial
    that reaches ``config["kill_at"]`` SIGKILLs its worker right after reporting it (once:
    ``config["marker"]``). A trial that reaches ``config["wait_at"]`` waits there for the
    file ``config["go"]`` after creating ``config["waiting"]``. With ``config["folders"]``,
    appends the checkpoint folders there (``config["checkpoints"]``) at each start.
    """
    restored = reporter.checkpoint()
    start, total = (restored.epoch + 1, restored.state["total"]) if restored else (1, 0)
    with open(config["starts"], "a") as starts:
        starts.write(f"{config['x']!r} {start}\n")
    if "folders" in config:
        with open(config["folders"], "a") as folders:
            folders.write(f"{sorted(os.listdir(config['checkpoints']))}\n")
    for epoch in range(start, config["epochs"] + 1):
        if epoch == config.get("wait_at"):
            Path(config["waiting"]).touch()
            _wait_for(Path(config["go"]))
        total += epoch
        reporter.report(
            epoch=epoch, loss=_loss(config["x"], epoch), total=total, checkpoint={"total": total}
        )
        marker = Path(config.get("marker", "/nonexistent/marker"))
        if epoch == config.get("kill_at") and not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)


def _study(tmp_path: Path, n_trials: int, **constants: Any) -> tuple[Any, str]:
    space = {"x": FloatParam(0.0, 1.0), **constants, "starts": str(tmp_path / "starts.txt")}
    experiment = Experiment.create(
        f"{HERE}:counting", space=space, n_trials=n_trials, max_epochs=6, seed=2,
        searcher="random", early_stopping="median",  # reads every epoch; prunes none of 3
    )  # fmt: skip
    url = str(tmp_path / "study.log")
    storage = _optuna_storage.open_storage(url, heartbeat=None)
    study, _ = _optuna.create_or_load_study(storage, "study", experiment)
    return study, url


def _starts(tmp_path: Path) -> list[tuple[float, int]]:
    lines = (tmp_path / "starts.txt").read_text().split()
    return [(float(x), int(epoch)) for x, epoch in zip(lines[::2], lines[1::2])]


def _check_complete(trial: TrialResult) -> None:
    assert [row["epoch"] for row in trial.history] == [1, 2, 3, 4, 5, 6]
    assert [row["total"] for row in trial.history] == [1, 3, 6, 10, 15, 21]
    assert trial.history[-1]["loss"] == pytest.approx(_loss(trial.config["x"], 6))


def test_a_trial_whose_worker_was_killed_continues_from_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every checkpoint is written at once (the forked workers inherit the setting): the
    # killed trial's last one is epoch 3's.
    monkeypatch.setattr(_optuna_checkpoints, "SAVE_SECONDS", 0.0)
    monkeypatch.setattr(_optuna_checkpoints, "_WRITE_SHARE", 0)
    study, url = _study(tmp_path, 3, kill_at=3, marker=str(tmp_path / "killed"))
    checkpoints = tmp_path / "checkpoints"
    _optuna_local.run_worker_processes(
        study, url, "study", workers=2, heartbeat=None, threads=1, lock=threading.Lock(),
        checkpoints=checkpoints,
    )  # fmt: skip
    trials = {t.trial: t for t in _optuna.trial_results(study)}
    killed = next(t for t in trials.values() if t.status == "failed")
    assert killed.reason.startswith(f"worker {(tmp_path / 'killed').read_text()} died")
    retry = next(t for t in trials.values() if t.retry_of == killed.trial)
    assert retry.status == "completed"
    _check_complete(retry)  # epochs 1-3 copied from the killed trial, 4-6 run by the retry
    # What the killed trial stored of epochs 1-3 (the losses the pruner read) is the retry's.
    assert [row["loss"] for row in killed.history] == [row["loss"] for row in retry.history[:3]]
    x = killed.config["x"]
    assert sorted(epoch for seen, epoch in _starts(tmp_path) if seen == x) == [1, 4]
    stored = optuna.load_study(study_name="study", storage=study._storage)
    assert stored.trials[retry.trial].user_attrs["continued"] == {
        "trial": killed.trial,
        "epoch": 3,
    }
    # The pruner sees the retry's epochs 1-6, the copied ones included.
    assert sorted(stored.trials[retry.trial].intermediate_values) == [1, 2, 3, 4, 5, 6]
    others = [t for t in trials.values() if t.trial not in (killed.trial, retry.trial)]
    assert len(others) == 2
    for trial in others:
        _check_complete(trial)
    assert not list(checkpoints.glob("trial-*"))  # every trial ended: none is kept


_INTERRUPTED_TUNER = """
import sys
from pathlib import Path
from greedylr._signals import stop_on_signals
from greedylr.backends import _optuna, _optuna_local, _optuna_storage

url, checkpoints = sys.argv[1], Path(sys.argv[2])
study = _optuna.load_study(url, "study")
with stop_on_signals():
    _optuna_local.work(study, worker_index=0, ownerless=True, checkpoints=checkpoints)
"""


def test_an_interrupted_trial_continues_after_its_checkpoint_on_the_rerun(
    tmp_path: Path,
) -> None:
    # The epochs take milliseconds: no checkpoint is written before the Ctrl-C (SAVE_SECONDS),
    # which writes the last one reported (epoch 2's).
    waiting, go = tmp_path / "waiting", tmp_path / "go"
    study, url = _study(tmp_path, 2, wait_at=3, waiting=str(waiting), go=str(go))
    checkpoints = tmp_path / "checkpoints"
    tuner = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPTED_TUNER, url, str(checkpoints)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(waiting)  # the first trial reported epochs 1 and 2
    finally:
        tuner.send_signal(signal.SIGINT)  # Ctrl-C
        _, errors = tuner.communicate(timeout=WAIT_SECONDS)
    assert tuner.returncode != 0
    assert "KeyboardInterrupt" in errors or "Interrupted" in errors
    interrupted = _optuna.trial_results(study)[0]
    assert interrupted.status == "interrupted"
    assert [row["total"] for row in interrupted.history] == [1, 3]
    assert (checkpoints / f"trial-{interrupted.trial}" / "state.pt").exists()

    go.touch()
    _optuna_local.work(study, worker_index=0, ownerless=True, checkpoints=checkpoints)  # rerun
    trials = _optuna.trial_results(study)
    retry = next(t for t in trials if t.retry_of == interrupted.trial)
    assert retry.status == "completed"
    _check_complete(retry)
    x = interrupted.config["x"]
    assert sorted(epoch for seen, epoch in _starts(tmp_path) if seen == x) == [1, 3]
    assert sum(t.status == "completed" for t in trials) == 2
    assert not list(checkpoints.glob("trial-*"))


def test_a_running_trial_s_checkpoint_is_written_at_most_every_save_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_optuna_checkpoints, "SAVE_SECONDS", 3600.0)
    kept = _optuna_checkpoints.TrialCheckpoints(tmp_path / "trial-0")
    for epoch in (1, 2, 3):
        kept.offer(epoch, {"epoch": epoch}, [{"epoch": float(e)} for e in range(1, epoch + 1)])
    assert not (tmp_path / "trial-0").exists()  # not yet time
    kept.flush()  # as an interruption does
    saved = load_checkpoint(tmp_path / "trial-0")
    assert (saved["epoch"], saved["state"], len(saved["history"])) == (3, {"epoch": 3}, 3)
    monkeypatch.setattr(_optuna_checkpoints, "SAVE_SECONDS", 0.0)
    kept = _optuna_checkpoints.TrialCheckpoints(tmp_path / "trial-1")
    kept.offer(1, {"epoch": 1}, [])
    assert load_checkpoint(tmp_path / "trial-1")["epoch"] == 1  # written at once
    # The next write waits 20 times as long as this one took (writes <= 5 % of the time).
    kept.offer(2, {"epoch": 2}, [])
    assert load_checkpoint(tmp_path / "trial-1")["epoch"] == 1


def test_a_trial_s_checkpoint_is_deleted_when_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_optuna_checkpoints, "SAVE_SECONDS", 0.0)
    checkpoints, folders = tmp_path / "checkpoints", tmp_path / "folders.txt"
    checkpoints.mkdir()
    study, _ = _study(tmp_path, 3, checkpoints=str(checkpoints), folders=str(folders))
    _optuna_local.work(study, worker_index=0, ownerless=True, checkpoints=checkpoints)
    assert len(_starts(tmp_path)) == 3
    # Each trial started after the one before ended: its checkpoint was gone already.
    assert folders.read_text().splitlines() == ["[]", "[]", "[]"]


def test_without_a_checkpoints_folder_a_retry_starts_at_epoch_one(tmp_path: Path) -> None:
    study, url = _study(tmp_path, 2, kill_at=3, marker=str(tmp_path / "killed"))
    _optuna_local.run_worker_processes(
        study, url, "study", workers=2, heartbeat=None, threads=1, lock=threading.Lock(),
    )  # fmt: skip
    trials = _optuna.trial_results(study)
    killed = next(t for t in trials if t.status == "failed")
    retry = next(t for t in trials if t.retry_of == killed.trial)
    _check_complete(retry)
    x = killed.config["x"]
    assert sorted(epoch for seen, epoch in _starts(tmp_path) if seen == x) == [1, 1]


def test_a_retry_passes_over_a_checkpoint_it_cannot_read(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    study, _ = _study(tmp_path, 1)
    checkpoints = tmp_path / "checkpoints"
    first = study.ask()
    (checkpoints / f"trial-{first.number}").mkdir(parents=True)
    (checkpoints / f"trial-{first.number}" / "state.pt").write_bytes(b"not a checkpoint")
    study.tell(first.number, state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial(first.params, user_attrs={"retry_of": first.number})
    _optuna_local.work(study, worker_index=0, ownerless=True, checkpoints=checkpoints)
    assert f"trial 1 does not continue from the checkpoint of trial {first.number}" in (
        capfd.readouterr().err
    )
    retry = _optuna.trial_results(study)[-1]
    assert retry.status == "completed"
    assert [row["total"] for row in retry.history] == [1, 3, 6, 10, 15, 21]
