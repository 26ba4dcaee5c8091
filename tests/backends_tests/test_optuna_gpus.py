"""The Optuna backend's local workers, each pinned to its own GPUs through CUDA_VISIBLE_DEVICES.

There is no GPU on the test machines: the runs set ``CUDA_VISIBLE_DEVICES="0,1,2,3"`` for the
tuner (a fake GPU list; the only thing mocked), and the trials, seeing no GPU that works
(``torch.cuda.is_available()`` is False here), train on the CPU. What is checked is the
placement: every trial records the devices it saw, and no two trials running at the same time
saw the same one. The last test trains on a real GPU when there is one.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from greedylr.backends import Experiment
from greedylr.backends import ValidatingReporter
from greedylr.backends import _optuna
from greedylr.backends import _optuna_local
from greedylr.backends import _optuna_storage
from greedylr.backends import load_trial_function
from greedylr.backends._optuna_local import gpu_slots
from greedylr.searchers import FloatParam


optuna = pytest.importorskip("optuna")

HERE = "tests.backends_tests.test_optuna_gpus"
WAIT_SECONDS = 120


@pytest.mark.parametrize(
    ("visible", "workers", "gpus", "slots"),
    [
        (["0", "1", "2", "3"], 4, 1, ["0", "1", "2", "3"]),
        (["0", "1", "2", "3"], 2, 1, ["0", "1"]),
        (["0", "1", "2", "3"], 6, 1, ["0", "1", "2", "3"]),  # 4 start: one GPU each
        (["0", "1", "2", "3"], 4, 2, ["0,1", "2,3"]),
        (["0", "1", "2"], 4, 2, ["0,1"]),  # GPU 2 stays idle: never shared
        (["5", "GPU-a1b2"], 3, 2.0, ["5,GPU-a1b2"]),  # ids as listed, a whole float
        (["0", "1"], 3, 0, ["", "", ""]),  # no GPU: the CPU
        ([], 2, 0, ["", ""]),
    ],
)
def test_each_worker_gets_its_own_gpus(
    visible: list[str], workers: int, gpus: float, slots: list[str]
) -> None:
    assert gpu_slots(visible, workers, gpus) == slots


@pytest.mark.parametrize(
    ("visible", "gpus", "match"),
    [
        (["0", "1"], 3, r"`gpus_per_trial` must be at most the 2 GPUs visible \(0,1\), but got "
         r"gpus_per_trial=3."),
        ([], 1, r"at most the 0 GPUs visible \(none\)"),
        (["0"], 0.5, r"`gpus_per_trial` must be a whole number >= 0 with the optuna backend, "
         r"but got gpus_per_trial=0.5."),
        (["0"], -1, "whole number >= 0"),
        (["0"], True, "whole number >= 0"),
    ],
)  # fmt: skip
def test_gpus_that_cannot_be_given_are_refused(
    visible: list[str], gpus: float, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        gpu_slots(visible, 2, gpus)


def test_the_refusal_names_where_the_gpus_came_from() -> None:
    match = r"at most the 1 GPUs visible \(CUDA_VISIBLE_DEVICES='7'\)"
    with pytest.raises(ValueError, match=match):
        gpu_slots(["7"], 1, 2, source="CUDA_VISIBLE_DEVICES='7'")


def test_the_visible_gpus_come_from_cuda_visible_devices_else_from_torch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0, 1,,3")
    assert _optuna_local.visible_gpus() == (["0", "1", "3"], "CUDA_VISIBLE_DEVICES='0, 1,,3'")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    count = torch.cuda.device_count()
    assert _optuna_local.visible_gpus()[0] == [str(index) for index in range(count)]


# A trial function that records what it saw (module level: workers import it).


def record_devices(config: dict[str, Any], reporter: Any) -> None:
    """Appends ``pid devices cuda start end`` to ``config["seen"]``; with ``config["together"]``
    it first waits until that many trials of its wave have started (so they overlap), and a
    trial with ``config["kill_first"]`` SIGKILLs its worker once, after recording.
    """
    start = time.time()  # the trial holds its worker (and its GPUs) from here
    arrivals = Path(config["arrivals"])
    me = f"{os.getpid()}-{config['x']!r}"
    with arrivals.open("a") as file:
        file.write(f"{me}\n")
    together = config.get("together", 1)
    position = arrivals.read_text().splitlines().index(me) + 1
    wave_end = together * math.ceil(position / together)
    deadline = time.monotonic() + WAIT_SECONDS
    while len(arrivals.read_text().splitlines()) < wave_end:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{wave_end} trials never ran at once")
        time.sleep(0.02)
    devices = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
    marker = Path(config.get("kill_first", "/nonexistent/marker"))
    if "kill_first" in config and not marker.exists():
        with Path(config["seen"]).open("a") as file:
            file.write(f"{os.getpid()} {devices!r} {torch.cuda.is_available()} {start} -1\n")
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    reporter.report(epoch=1, loss=config["x"])
    with Path(config["seen"]).open("a") as file:
        file.write(
            f"{os.getpid()} {devices!r} {torch.cuda.is_available()} {start} {time.time()}\n"
        )


def _study(tmp_path: Path, n_trials: int, **constants: Any) -> tuple[Any, str]:
    space = {
        "x": FloatParam(0.0, 1.0),
        "arrivals": str(tmp_path / "arrivals.txt"),
        "seen": str(tmp_path / "seen.txt"),
        **constants,
    }
    experiment = Experiment.create(
        f"{HERE}:record_devices", space=space, n_trials=n_trials, max_epochs=1, seed=4,
        searcher="random", early_stopping="none",
    )  # fmt: skip
    url = str(tmp_path / "study.log")
    study, _ = _optuna.create_or_load_study(
        _optuna_storage.open_storage(url, heartbeat=None), "study", experiment
    )
    return study, url


def _seen(tmp_path: Path) -> list[tuple[int, str, bool, float, float]]:
    rows = []
    for line in (tmp_path / "seen.txt").read_text().splitlines():
        pid, devices, cuda, start, end = line.split()
        ended = float(end) if float(end) >= 0 else float(start)  # killed at once
        rows.append((int(pid), devices.strip("'"), cuda == "True", float(start), ended))
    return rows


def _check_no_shared_device(seen: list[tuple[int, str, bool, float, float]]) -> int:
    """No two trials that ran at once saw a device in common; returns how many pairs overlap."""
    overlapping = 0
    for index, (pid, devices, _, start, end) in enumerate(seen):
        for other_pid, other_devices, _, other_start, other_end in seen[index + 1 :]:
            if start < other_end and other_start < end and pid != other_pid:
                overlapping += 1
                shared = set(devices.split(",")) & set(other_devices.split(","))
                assert not shared, f"trials of workers {pid} and {other_pid} shared {shared}"
    return overlapping


def _run(study: Any, url: str, workers: int, gpus: int) -> None:
    _optuna_local.run_worker_processes(
        study, url, "study", workers=workers, heartbeat=None, threads=1,
        lock=threading.Lock(), gpus_per_trial=gpus,
    )  # fmt: skip


def test_four_workers_on_four_gpus_never_share_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")  # fake GPUs: see the module
    study, url = _study(tmp_path, 8, together=4)
    _run(study, url, workers=4, gpus=1)
    seen = _seen(tmp_path)
    assert len(seen) == 8
    assert all(devices in ("0", "1", "2", "3") for _, devices, _, _, _ in seen)
    assert not any(cuda for _, _, cuda, _, _ in seen)  # no real GPU here: the CPU
    assert _check_no_shared_device(seen) >= 12  # two waves of 4 trials running at once
    by_worker = {(pid, devices) for pid, devices, _, _, _ in seen}
    assert len({pid for pid, _ in by_worker}) == len(by_worker) == 4  # one device per worker
    results = _optuna.trial_results(study)
    # The history records the devices too (the `devices` column).
    assert sorted(t.history[0]["devices"] for t in results) == sorted(d for _, d, *_ in seen)


def test_two_gpus_per_trial_start_two_workers_and_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")  # fake GPUs: see the module
    study, url = _study(tmp_path, 4, together=2)
    _run(study, url, workers=4, gpus=2)
    assert "greedylr: 2 of 4 workers start: each takes 2 of the 4 GPUs visible" in (
        capfd.readouterr().err
    )
    seen = _seen(tmp_path)
    assert sorted(devices for _, devices, *_ in seen) == ["0,1", "0,1", "2,3", "2,3"]
    assert _check_no_shared_device(seen) >= 2


def test_a_restarted_worker_takes_the_gpus_of_the_one_it_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # fake GPUs: see the module
    # 3 trials and the retry of the killed one: two waves of two trials at once.
    study, url = _study(tmp_path, 3, together=2, kill_first=str(tmp_path / "killed"))
    _run(study, url, workers=2, gpus=1)
    seen = _seen(tmp_path)
    assert len(seen) == 4
    first_wave = {pid for pid, *_ in seen[:2]}
    killed = next(row for row in seen[:2] if row[3] == row[4])
    replacement = next(row for row in seen[2:] if row[0] not in first_wave)
    assert replacement[1] == killed[1]
    assert _check_no_shared_device(seen) >= 2


def test_more_gpus_than_visible_are_refused_before_any_worker_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")  # fake GPUs: see the module
    study, url = _study(tmp_path, 2)
    with pytest.raises(
        ValueError,
        match=r"`gpus_per_trial` must be at most the 4 GPUs visible "
        r"\(CUDA_VISIBLE_DEVICES='0,1,2,3'\), but got gpus_per_trial=5.",
    ):
        _run(study, url, workers=2, gpus=5)
    assert not (tmp_path / "arrivals.txt").exists()


# With 0 GPUs the tuner's process keeps its GPUs: hiding them would be for good (see `work`).
@pytest.mark.parametrize(("gpus", "expected"), [(1, "2"), (2, "2,3"), (0, "2,3")])
def test_the_worker_in_the_tuner_s_process_is_pinned_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpus: int, expected: str
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # fake GPUs: see the module
    study, _ = _study(tmp_path, 2)
    _optuna_local.work(study, worker_index=0, ownerless=True, gpus_per_trial=gpus)
    assert [devices for _, devices, *_ in _seen(tmp_path)] == [expected, expected]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"  # the tuner's own is back
    # Every history row names the machine and the devices its trial saw, as on every engine.
    rows = [t.history[0] for t in _optuna.trial_results(study)]
    assert [row["devices"] for row in rows] == [expected, expected]
    assert all(row["node"] for row in rows)


def test_forked_workers_given_no_gpu_see_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # fake GPUs: see the module
    study, url = _study(tmp_path, 2)
    _run(study, url, workers=2, gpus=0)
    assert [devices for _, devices, *_ in _seen(tmp_path)] == ["", ""]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_built_in_task_trains_on_the_gpu_and_continues_there(tmp_path: Path) -> None:
    from greedylr.backends import Checkpoint
    from greedylr.backends import TrialStopped
    from greedylr.backends import load_checkpoint
    from greedylr.backends import save_checkpoint
    from greedylr.tasks._training import training_device

    assert training_device().type == "cuda"
    train = load_trial_function("greedylr.tasks._digits:train")
    config = {"epochs": 4, "seed": 0, "patience": 0, "min_lr_ratio": 0.01}
    whole = ValidatingReporter()
    train(dict(config), whole)

    def stop_at_two(epoch: int, loss: float, metrics: dict[str, float], state: Any) -> None:
        save_checkpoint({"epoch": epoch, "state": state}, tmp_path)
        if epoch == 2:
            raise TrialStopped("stopped")

    with pytest.raises(TrialStopped):
        train(dict(config), ValidatingReporter(stop_at_two))
    saved = load_checkpoint(tmp_path)
    assert saved["state"]["rng"]["cuda"] is not None  # the GPU's generator is kept
    continued = ValidatingReporter(restored=Checkpoint(2, saved["state"]))
    train(dict(config), continued)
    assert [row["lr"] for row in continued.history] == [row["lr"] for row in whole.history[2:]]
    for row, expected in zip(continued.history, whole.history[2:]):
        assert row["loss"] == pytest.approx(expected["loss"], rel=1e-5)
