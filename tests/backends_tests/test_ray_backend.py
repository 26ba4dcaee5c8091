"""The Ray Tune backend against a real private Ray instance: PBT, retries, signals, the run folder.

Every test runs inside a loopback-only network namespace. The trial functions are defined here
(Ray's workers import them from this file); they report a checkpoint every epoch and leave
their progress in files the tests wait for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import greedylr
from greedylr.backends._contract import load_checkpoint
from greedylr.backends._ray_trainable import CheckpointsNeededError
from greedylr.searchers import FloatParam
from tests.backends_tests.netns import ONE_RAY_AT_A_TIME
from tests.backends_tests.netns import private_network
from tests.backends_tests.waiting import WAIT_SECONDS
from tests.backends_tests.waiting import alive
from tests.backends_tests.waiting import wait_until


pytest.importorskip("ray.tune")
pytestmark = ONE_RAY_AT_A_TIME

HERE = Path(__file__).resolve()
SPACE = {"x": FloatParam(0.0, 1.0)}
GREEDYLR = str(Path(sys.executable).with_name("greedylr"))


@pytest.fixture(scope="module", autouse=True)
def _loopback_only() -> Iterator[None]:
    with private_network():
        yield


# Trial functions (imported by Ray's workers from this file) --------------------------------


def lineage(config: dict[str, Any], reporter: Any) -> None:
    """Checkpoints its "weights" and the x that started them (its lineage's origin).

    With ``config["marker_dir"]``: once the file ``armed`` is there, the first trial to start
    its last epoch SIGKILLs its worker there (and leaves ``killed``). With
    ``config["session_log"]``: writes the private Ray instance's temporary folder there.
    """
    if config.get("session_log"):
        Path(config["session_log"]).write_text(str(ray_session_folder(os.getppid())))  # the raylet
    marks = Path(config["marker_dir"]) if config.get("marker_dir") else None
    restored = reporter.checkpoint()
    if restored is None:
        state, start, resumed = {"w": 0.0, "origin": config["x"]}, 1, 0
    else:
        state, start, resumed = dict(restored.state), restored.epoch + 1, restored.epoch
    for epoch in range(start, config["epochs"] + 1):
        armed = marks and (marks / "armed").exists() and not (marks / "killed").exists()
        if armed and epoch == config["epochs"]:
            (marks / "killed").write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(config.get("sleep", 0.0))
        state["w"] += config["x"]
        loss = (config["x"] - 0.3) ** 2 + 0.01 + 1.0 / epoch
        reporter.report(
            epoch=epoch,
            loss=loss,
            origin=state["origin"],
            weights=state["w"],
            resumed=resumed,
            x=config["x"],
            checkpoint=dict(state),
        )
        if config.get("log"):
            with open(config["log"], "a") as log:
                log.write(f"{os.getpid()} {config['x']!r} {epoch} {resumed}\n")


def without_checkpoints(config: dict[str, Any], reporter: Any) -> None:
    for epoch in range(1, config["epochs"] + 1):
        reporter.report(epoch=epoch, loss=config["x"])


def late_bloomer(config: dict[str, Any], reporter: Any) -> None:
    """The first 3 trials to start: loss 10 at epoch 1, then 0.1; the others: 0.5 throughout.

    Run one trial at a time: the median of the others' losses at epoch 2 is 0.1 (their mean
    loss up to epoch 2, what Ray's own median rule compares with, is 5.05).
    """
    starts = Path(config["starts"])
    with starts.open("a") as file:
        file.write("start\n")
    late = len(starts.read_text().splitlines()) <= 3
    for epoch in range(1, config["epochs"] + 1):
        loss = (10.0 if epoch == 1 else 0.1) if late else 0.5
        reporter.report(epoch=epoch, loss=loss)


def dies_once(config: dict[str, Any], reporter: Any) -> None:
    """Like ``lineage``; the first trial with x > 0.5 SIGKILLs its worker at epoch 4, once."""
    marker = Path(config["marker"])
    restored = reporter.checkpoint()
    start = restored.epoch + 1 if restored else 1
    for epoch in range(start, config["epochs"] + 1):
        if config["x"] > 0.5 and epoch == 4 and not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        reporter.report(
            epoch=epoch,
            loss=config["x"] + 1.0 / epoch,
            resumed=restored.epoch if restored else 0,
            checkpoint={"epoch": epoch},
        )


# Helpers ----------------------------------------------------------------------------------


def tune(function: str, tmp_path: Path, **options: Any) -> greedylr.backends.TuneResult:
    settings: dict[str, Any] = {
        "space": SPACE,
        "n_trials": 6,
        "max_epochs": 6,
        "workers": 2,
        "seed": 1,
        "searcher": "random",
        "progress": False,
        "out": tmp_path / "run",
    }
    settings.update(options)
    return greedylr.tune(f"{HERE}:{function}", backend="ray", **settings)


def open_files(pid: int) -> list[str]:
    try:
        folder = f"/proc/{pid}/fd"
        return [os.readlink(f"{folder}/{fd}") for fd in os.listdir(folder)]
    except OSError:
        return []


def ray_session_folder(driver: int) -> Path:
    """The temporary folder of the private Ray instance the driver ``driver`` started."""
    prefix = "/tmp/greedylr-ray-"
    folders = {Path(*Path(f).parts[:3]) for f in open_files(driver) if f.startswith(prefix)}
    assert len(folders) == 1, f"the driver holds no single Ray session folder: {folders}"
    return folders.pop()


def holders(folder: Path) -> list[int]:
    """The processes with a file open under ``folder``."""
    pids = [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    return [pid for pid in pids if any(f.startswith(f"{folder}/") for f in open_files(pid))]


def log_lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def cli(tmp_path: Path, log: Path, *extra: str) -> list[str]:
    """``greedylr tune --backend ray`` on ``lineage``, 4 trials of 6 slow epochs, 2 at once
    (``marker_dir``: ``tmp_path / "marks"``)."""
    space = tmp_path / "space.json"
    (tmp_path / "marks").mkdir(exist_ok=True)
    constants = {"log": str(log), "sleep": 0.3, "marker_dir": str(tmp_path / "marks")}
    space.write_text(
        json.dumps(
            {"params": {"x": {"type": "float", "low": 0.0, "high": 1.0}}, "constants": constants}
        )
    )
    return [
        GREEDYLR, "tune", "--backend", "ray", "--task", f"{HERE}:lineage", "--trials", "4",
        "--max-epochs", "6", "--workers", "2", "--searcher", "random", "--early-stopping",
        "none", "--seed", "2", "--space", str(space), "--out", str(tmp_path / "run"),
        "--no-progress", *extra,
    ]  # fmt: skip


RAY_OUTPUT = (
    "(raylet)", "(pid=", "ImplicitFunc", "network_util", "Token authentication", "╭",
    "Trial status", "Resume experiment", "ray_results", "INFO", "WARNING",
)  # fmt: skip


def assert_no_ray_output(text: str) -> None:
    shown = [marker for marker in RAY_OUTPUT if marker in text]
    assert not shown, f"Ray's own output is shown: {shown}\n{text}"


def environment(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {**os.environ, "HOME": str(home), "PYTHONPATH": str(HERE.parents[2])}


# Tests ------------------------------------------------------------------------------------


def test_pbt_continues_exploited_trials_from_the_donors_checkpoint(tmp_path: Path) -> None:
    result = tune("lineage", tmp_path, early_stopping="pbt", max_epochs=9, n_trials=6)
    history, trials = result.history, result.trials
    assert (trials["status"] == "completed").all()
    assert set(history.groupby("trial")["epoch"].max()) == {9}
    own = history[history["epoch"] == 1].set_index("trial")["origin"]  # each trial's first x
    exploited = history[history["origin"] != history["trial"].map(own)]
    assert len(exploited), "PBT exploited no trial"
    from_donor = 0
    for trial, rows in exploited.groupby("trial"):
        row = rows.iloc[0]
        # It went on after a checkpoint, not from epoch 1, with explored hyperparameters.
        assert row["epoch"] > 1
        assert row["resumed"] == row["epoch"] - 1
        assert row["x"] != own[trial]
        donors = history[
            (history["trial"] != trial)
            & (history["origin"] == row["origin"])
            & (history["epoch"] == row["resumed"])
        ]
        # The donor's weights at its checkpoint, plus one epoch at the trial's new x.
        from_donor += any(abs(donors["weights"] + row["x"] - row["weights"]) < 1e-9)
    assert from_donor >= 1, "no exploited trial continued from a donor's weights"


def test_pbt_refuses_a_task_without_checkpoints(tmp_path: Path) -> None:
    # The first report without a checkpoint ends the run (a ValueError: the CLI exits 2).
    with pytest.raises(CheckpointsNeededError, match="needs a task that checkpoints"):
        tune("without_checkpoints", tmp_path, early_stopping="pbt")
    trials = pd.read_csv(tmp_path / "run" / "trials.csv")
    failed = trials[trials["status"] == "failed"]
    assert 1 <= len(failed) <= 2  # the trials running at once (2 workers), not 3 in a row
    assert failed["reason"].str.contains("needs a task that checkpoints").all()
    assert (trials["status"] != "completed").all()
    assert (trials["epochs"] <= 1).all()


def test_a_killed_worker_is_retried_from_its_last_checkpoint(tmp_path: Path) -> None:
    space = {**SPACE, "marker": str(tmp_path / "killed")}
    result = tune("dies_once", tmp_path, space=space, early_stopping="none", n_trials=4)
    assert (tmp_path / "killed").exists(), "no trial killed its worker"
    trials, history = result.trials.set_index("trial"), result.history
    killed = trials[trials["reason"].str.contains("its worker died", na=False)]
    assert len(killed) == 1
    assert killed["status"].iloc[0] == "failed"
    retry = int(killed["reason"].iloc[0].rsplit("retried as trial ", 1)[1])
    assert retry == 4  # after the 4 sampled trials
    assert trials.loc[retry, "status"] == "completed"
    assert trials.loc[retry, "config.x"] == killed["config.x"].iloc[0]
    rows = history[history["trial"] == retry]
    assert list(rows["epoch"]) == [1, 2, 3, 4, 5, 6]
    # Epochs 1-3 ran before the kill; the retry went on from the epoch-3 checkpoint.
    assert list(rows["resumed"]) == [0, 0, 0, 3, 3, 3]
    assert list(history[history["trial"] == killed.index[0]]["epoch"]) == [1, 2, 3]


def test_without_retries_a_killed_worker_fails_its_trial(tmp_path: Path) -> None:
    space = {**SPACE, "marker": str(tmp_path / "killed")}
    result = tune(
        "dies_once", tmp_path, space=space, early_stopping="none", n_trials=2, max_failures=0
    )
    trials = result.trials
    assert len(trials) == 2
    killed = trials[trials["status"] == "failed"]
    assert list(killed["reason"]) == ["its worker died"]
    assert (trials[trials["status"] != "failed"]["status"] == "completed").all()


def test_the_run_folder_holds_the_results_and_nothing_goes_to_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    session_log = tmp_path / "session"
    space = {
        **SPACE,
        "lr": FloatParam(0.01, 1.0, log=True),  # its untuned default: 0.1
        "session_log": str(session_log),
    }
    result = tune(
        "lineage", tmp_path, space=space, early_stopping="asha", n_trials=4, max_epochs=3
    )
    session = Path(session_log.read_text())  # this run's private Ray instance's folder
    assert session.name.startswith("greedylr-ray-")
    assert not session.exists(), "Ray's temp folder is left"
    shown = capfd.readouterr()
    assert_no_ray_output(shown.out + shown.err)
    run = tmp_path / "run"
    for name in ("trials.csv", "history.csv", "best.json", "experiment.json", "ray"):
        assert (run / name).exists(), name
    assert not list(home.iterdir()), "Ray wrote to the home folder"
    history = pd.read_csv(run / "history.csv", keep_default_na=False)
    # The node's address and the start of its id, e.g. 127.0.0.1:4f9c2a1b (one node here).
    assert history["node"].str.fullmatch(r"\d+\.\d+\.\d+\.\d+:[0-9a-f]{8}").all()
    assert history["node"].nunique() == 1
    assert (history["devices"] == "").all()  # no GPU was given
    assert len(history.groupby(["trial", "epoch"])) == len(history)
    assert json.loads((run / "best.json").read_text())["trial"] == result.best_trial
    trials = result.trials.set_index("trial")
    assert list(trials["defaults"]) == [True, False, False, False]  # the defaults run first
    assert trials.loc[0, "config.lr"] == pytest.approx(0.1)
    # A rerun of another job is refused before Ray starts; one asking for more trials grows
    # the experiment: its trials stay as they were (none runs again), and the new ones run.
    with pytest.raises(ValueError, match="holds another experiment"):
        tune("lineage", tmp_path, space=space, early_stopping="asha", n_trials=4, max_epochs=4)
    grown = tune(
        "lineage", tmp_path, space=space, early_stopping="asha", n_trials=6, max_epochs=3
    )
    columns = ["trial", "status", "epochs", "final_loss", "config.x", "config.lr"]
    assert len(grown.trials) == 6
    pd.testing.assert_frame_equal(grown.trials[columns].iloc[:4], result.trials[columns])
    added = grown.trials.iloc[4:]
    assert list(added["trial"]) == [4, 5]
    assert added["status"].isin(["completed", "pruned"]).all()
    assert not added["config.x"].isin(result.trials["config.x"]).any()
    assert grown.history.groupby("trial")["epoch"].min().eq(1).all()
    assert len(grown.history) == len(result.history) + added["epochs"].sum()


def trial_checkpoints(run: Path) -> dict[str, list[int]]:
    """The epochs of the checkpoints each trial folder of Tune's experiment holds."""
    return {
        folder.name: [load_checkpoint(c)["epoch"] for c in sorted(folder.glob("checkpoint_*"))]
        for folder in sorted((run / "ray").glob("trial_*"))
    }


def test_stop_signals_and_a_killed_driver_leave_a_restorable_experiment(tmp_path: Path) -> None:
    log, env, run = tmp_path / "epochs.log", environment(tmp_path), tmp_path / "run"
    # 0. A Ctrl-C as soon as the run folder's experiment.json is written (before Tune listens
    # for its graceful stop) ends the run at once: no trial runs all its epochs.
    started = time.monotonic()
    driver = subprocess.Popen(
        cli(tmp_path, log), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    wait_until(lambda: (run / "experiment.json").exists(), "experiment.json", driver)
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=WAIT_SECONDS)
    assert driver.returncode == 130, output
    epochs = [int(line[2]) for line in log_lines(log)]
    assert max(epochs, default=0) < 6, f"trials ran on after the Ctrl-C: {epochs}"
    assert time.monotonic() - started < 60
    # 1. Ctrl-C once a trial completed and a third started: the running trials are
    # interrupted, the files written, Ray's output hidden; the completed trial keeps only its
    # last checkpoint (the running ones keep theirs: the rerun continues from them).
    before = len(log_lines(log))

    def one_completed_and_a_third_started() -> bool:
        lines = log_lines(log)[before:]
        return any(line[2] == "6" for line in lines) and len({line[1] for line in lines}) >= 3

    driver = subprocess.Popen(
        cli(tmp_path, log), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    wait_until(
        one_completed_and_a_third_started, "a trial to complete and a third to start", driver
    )
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=WAIT_SECONDS)
    assert driver.returncode == 130, output
    assert_no_ray_output(output)
    trials = pd.read_csv(run / "trials.csv", keep_default_na=False)
    interrupted = trials[trials["status"] == "interrupted"]
    assert len(interrupted) >= 1
    assert interrupted["reason"].str.contains("Ctrl-C").all()
    assert (interrupted["epochs"] < 6).all()
    # A trial's folder is trial_<experiment>_<its number>. A worker may have written the
    # checkpoint of epoch 6 before Tune stopped it unseen: that trial was interrupted, as
    # Tune's snapshot has it, and keeps its checkpoints like the other interrupted ones.
    checkpoints = {int(name.rsplit("_", 1)[1]): c for name, c in trial_checkpoints(run).items()}
    completed = trials.loc[trials["status"] == "completed", "trial"]
    assert len(completed) >= 1
    assert all(checkpoints[trial] == [6] for trial in completed), checkpoints
    for trial, epochs in zip(interrupted["trial"], interrupted["epochs"]):
        assert max(checkpoints[trial], default=0) >= epochs, checkpoints  # it goes on from there
    # 2. The rerun (asking for fewer trials: a rerun never lowers them) goes on from the
    # checkpoints; its driver is then killed with SIGKILL: its trial workers must not go on.
    before = len(log_lines(log))
    driver = subprocess.Popen(
        cli(tmp_path, log, "--trials", "2"), env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip

    def continued_from_a_checkpoint() -> bool:
        return any(int(line[3]) > 0 for line in log_lines(log)[before:])

    wait_until(continued_from_a_checkpoint, "a trial to go on from its checkpoint", driver)
    session = ray_session_folder(driver.pid)
    driver.kill()
    output, _ = driver.communicate(timeout=WAIT_SECONDS)
    assert "continuing the Ray Tune experiment" in output
    workers = {int(line[0]) for line in log_lines(log)[before:]}
    wait_until(lambda: not any(alive(pid) for pid in workers), "the trial workers to exit")
    # Nothing of the private instance is left: its agents and its temporary folder are gone.
    wait_until(lambda: not holders(session), f"the processes holding {session} to exit")
    wait_until(lambda: not session.exists(), f"{session} to be removed")
    # 3. The next rerun finishes the experiment with its own --workers and --max-failures
    # (not the first run's): one trial at a time (the two left would run together), and the
    # first trial to start its last epoch kills its worker, which is not retried.
    before = len(log_lines(log))
    (tmp_path / "marks" / "armed").touch()
    rerun = subprocess.run(
        cli(tmp_path, log, "--workers", "1", "--max-failures", "0"),
        env=env, capture_output=True, text=True, timeout=WAIT_SECONDS,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert_no_ray_output(rerun.stdout + rerun.stderr)
    assert (tmp_path / "marks" / "killed").exists()
    settings = json.loads((run / "experiment.json").read_text())
    assert (settings["workers"], settings["max_failures"]) == (1, 0), settings
    order = [line[1] for line in log_lines(log)[before:]]  # the x of each epoch, in order
    runs = [x for number, x in enumerate(order) if number == 0 or order[number - 1] != x]
    assert len(runs) == len(set(order)), f"trials ran at the same time: {order}"
    trials = pd.read_csv(run / "trials.csv", keep_default_na=False)
    assert len(trials) == 4, trials  # no retry of the killed trial
    died = trials[trials["status"] == "failed"]
    assert list(died["reason"]) == ["its worker died"]
    completed = trials[trials["status"] == "completed"]
    assert len(completed) == 3
    history = pd.read_csv(run / "history.csv")
    epochs = history[history["trial"].isin(completed["trial"])].groupby("trial")["epoch"]
    assert (epochs.apply(list).map(lambda e: e == [1, 2, 3, 4, 5, 6])).all(), epochs
    assert len(history.groupby(["trial", "epoch"])) == len(history)
    # A finished experiment keeps each trial's last checkpoint at most.
    assert all(len(epochs) <= 1 for epochs in trial_checkpoints(run).values())
    assert not list((tmp_path / "home").iterdir()), "Ray wrote to the home folder"


def test_hyperband_and_median_judge_trials_at_the_epochs_asked(tmp_path: Path) -> None:
    # HyperBand, max_epochs 10, reduction factor 3, min_epochs 2: brackets with first rungs
    # 10 (all run to the end) and 3 (1 in 3 goes on, to epoch 10); Ray's own rungs would
    # include epoch 1 (before min_epochs), and its last rung, 9, would end the survivors.
    result = tune(
        "lineage", tmp_path / "hyperband", early_stopping="hyperband", max_epochs=10,
        min_epochs=2, n_trials=6,
    )  # fmt: skip
    trials = result.trials
    completed = trials[trials["status"] == "completed"]
    pruned = trials[trials["status"] == "pruned"]
    assert (completed["epochs"] == 10).all()
    # Ray halves the trials of a bracket that reached its rung, so how many it stops depends
    # on how many were running then; where it stops them does not.
    assert set(pruned["epochs"]) == {3}, trials[["trial", "status", "epochs"]]
    assert len(completed) + len(pruned) == 6
    assert result.best_trial in set(completed["trial"])
    # The median rule, one trial at a time: the fourth trial's loss, 0.5 throughout, is
    # worse than the other three's at epoch 2 (0.1): it stops there (Ray's own rule compares
    # with their mean loss so far, 5.05, and lets it run).
    space = {**SPACE, "starts": str(tmp_path / "starts")}
    result = tune(
        "late_bloomer", tmp_path / "median", space=space, early_stopping="median",
        max_epochs=4, n_trials=4, workers=1,
    )  # fmt: skip
    statuses = result.trials.set_index("trial")[["status", "epochs"]]
    assert statuses.loc[3].tolist() == ["pruned", 2], statuses
    assert (statuses.loc[[0, 1, 2], "status"] == "completed").all(), statuses


def test_the_command_line_refuses_a_trial_no_node_can_hold(tmp_path: Path) -> None:
    import torch

    more = torch.cuda.device_count() + 1  # than this machine has
    refused = subprocess.run(
        cli(tmp_path, tmp_path / "epochs.log", "--gpus-per-trial", str(more)),
        env=environment(tmp_path), capture_output=True, text=True, timeout=WAIT_SECONDS,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stdout + refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert "--gpus-per-trial" in lines[0]
    assert "at most the GPUs of one node" in lines[0]
    assert not (tmp_path / "run" / "experiment.json").exists()
    assert not (tmp_path / "run" / "ray").exists()


def test_through_ray_client_a_task_file_outside_the_current_directory_is_refused(
    tmp_path: Path,
) -> None:
    # Only the current directory travels to the cluster: a task file elsewhere is refused in
    # one line before any connection (no cluster listens at this address).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    refused = subprocess.run(
        [GREEDYLR, "tune", "--backend", "ray", "--address", "ray://127.0.0.1:9",
         "--task", f"{HERE}:lineage", "--trials", "2", "--max-epochs", "2",
         "--out", str(tmp_path / "run")],
        cwd=elsewhere, env=environment(tmp_path), capture_output=True, text=True,
        timeout=WAIT_SECONDS,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stdout + refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert f"The task file {str(HERE)!r} lies outside the current directory" in lines[0]
    assert not (tmp_path / "run" / "experiment.json").exists()
