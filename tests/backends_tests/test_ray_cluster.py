"""``greedylr tune --backend ray --address ...`` on a real 2-node Ray cluster started here.

The cluster (``ray start --head`` and ``ray start --address=...``, see ``ray_cluster.py``) and
every ``greedylr`` / ``ray`` command run inside a loopback-only network namespace, all as real
processes. The user's task (``TASK``) leaves marker files that tell which node and devices each
trial saw and when it ran; the tests wait for them instead of sleeping.

There is no GPU here: the GPU tests give the head node logical GPUs (``ray start --num-gpus=2``),
which Ray hands out through ``CUDA_VISIBLE_DEVICES`` exactly as it would real ones. The test that
trains on a real GPU runs only where torch sees one.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from greedylr.backends._contract import load_checkpoint
from greedylr.backends._ray_trainable import NODE_ID_CHARACTERS
from tests.backends_tests.netns import ONE_RAY_AT_A_TIME
from tests.backends_tests.netns import private_net  # noqa: F401 - a fixture
from tests.backends_tests.ray_cluster import RayCluster


pytest.importorskip("ray")
pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="network namespaces, /proc"),
    pytest.mark.usefixtures("private_net"),
    ONE_RAY_AT_A_TIME,
]

GREEDYLR = str(Path(sys.executable).with_name("greedylr"))
RAY = str(Path(sys.executable).with_name("ray"))
RUN_SECONDS = 240

TASK = '''
"""A user's task for the cluster tests: records where each trial ran and what it saw."""

import json
import os
import time
import uuid
from pathlib import Path

MARKS = Path({marks!r})
TOGETHER = {together}  # a trial starts training once this many trials have started
HOLD_ON_NODE = {hold!r}  # a trial on this node stops before epoch 2 (until the node is killed)
SLEEP = {sleep}
WAIT_SECONDS = 90


def _mark(name, record):
    temporary = MARKS / ("." + name)
    temporary.write_text(json.dumps(record))
    temporary.rename(MARKS / (name + ".json"))


def _wait(condition, what):
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("gave up waiting for " + what)
        time.sleep(0.05)


def train(config, reporter):
    import ray

    trial = uuid.uuid4().hex
    seen = {{
        "trial": trial,
        "node": ray.get_runtime_context().get_node_id(),
        "devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "lr": config["lr"],
    }}
    _mark("start-" + trial, dict(seen, time=time.time()))
    try:
        _wait(lambda: len(list(MARKS.glob("start-*.json"))) >= TOGETHER, "trials to start")
        restored = reporter.checkpoint()
        for epoch in range(1 if restored is None else restored.epoch + 1, config["epochs"] + 1):
            if epoch == 2 and seen["node"] == HOLD_ON_NODE:
                _wait(lambda: False, "the test to kill this node")
            time.sleep(SLEEP)
            loss = (config["lr"] - 0.01) ** 2 + 1.0 / epoch
            reporter.report(epoch=epoch, loss=loss, checkpoint={{"epoch": epoch}})
            _mark("epoch-" + trial + "-" + str(epoch), dict(seen, epoch=epoch))
    finally:
        _mark("end-" + trial, dict(seen, time=time.time()))
'''


def write_task(
    folder: Path, marks: Path, *, together: int = 1, hold_on_node: str = "", sleep: float = 0.1
) -> Path:
    """Write ``TASK`` as ``folder/clustertask.py`` (trial function ``clustertask:train``)."""
    folder.mkdir(parents=True, exist_ok=True)
    marks.mkdir(parents=True, exist_ok=True)
    module = folder / "clustertask.py"
    text = TASK.format(marks=str(marks), together=together, hold=hold_on_node, sleep=sleep)
    module.write_text(text)
    return module


def marks(folder: Path, kind: str) -> list[dict[str, Any]]:
    """The marker records of one kind (start, epoch, end) the task wrote."""
    return [json.loads(path.read_text()) for path in sorted(folder.glob(f"{kind}-*.json"))]


def tune_command(address: str, *options: str) -> list[str]:
    """``greedylr tune --backend ray --address ADDRESS --task clustertask:train ...``."""
    return [
        GREEDYLR,
        "tune",
        "--backend",
        "ray",
        "--address",
        address,
        "--task",
        "clustertask:train",
        "--no-progress",
        *options,
    ]


def check_results(
    out: Path, n_trials: int, statuses: frozenset[str] = frozenset({"completed", "pruned"})
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run folder is complete and every trial finished; returns trials.csv, history.csv."""
    for name in ("experiment.json", "trials.csv", "history.csv", "best.json"):
        assert (out / name).is_file(), name
    trials = pd.read_csv(out / "trials.csv")
    history = pd.read_csv(out / "history.csv", dtype={"node": str, "devices": str})
    assert sorted(trials["trial"]) == list(range(n_trials))
    assert set(trials["status"]) <= statuses, trials[["trial", "status", "reason"]]
    assert not history.duplicated(["trial", "epoch"]).any()
    assert set(history["trial"]) == set(trials["trial"])
    best = json.loads((out / "best.json").read_text())
    assert best["trial"] in set(trials["trial"])
    return trials, history


def short(node_id: str) -> str:
    """The start of a Ray node id that the history's ``node`` column shows (``IP:ID``)."""
    return node_id[:NODE_ID_CHARACTERS]


def nodes(history: pd.DataFrame) -> pd.Series:
    """The node id part of each history row's ``node`` (``127.0.0.1:4f9c2a1b``)."""
    assert history["node"].str.fullmatch(r"127\.0\.0\.1:[0-9a-f]{8}").all(), history["node"]
    return history["node"].str.rsplit(":", n=1).str[1]


def finished(process: subprocess.CompletedProcess[str]) -> str:
    """The output of a command that must have succeeded (for the assertion message)."""
    output = f"exit {process.returncode}\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}"
    assert process.returncode == 0, output
    return output


class TestTwoNodes:
    """A head and a worker node, 1 CPU each: two trials at once run on different nodes.

    The tests run in this order; the last one kills the worker node.
    """

    @pytest.fixture(scope="class")
    @classmethod
    def cluster(cls) -> Iterator[RayCluster]:
        with RayCluster(head_cpus=1, worker_cpus=1) as cluster:
            yield cluster

    def test_trials_run_on_both_nodes(self, cluster: RayCluster, tmp_path: Path) -> None:
        write_task(tmp_path, tmp_path / "marks", together=2)
        out = tmp_path / "run"
        tuned = subprocess.run(
            tune_command(cluster.address, "--trials", "4", "--workers", "2", "--max-epochs", "2")
            + ["--out", str(out)],
            cwd=tmp_path,
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=RUN_SECONDS,
        )
        finished(tuned)
        (_, history) = check_results(out, 4)
        assert set(nodes(history)) == {short(cluster.head.node_id), short(cluster.worker.node_id)}
        started = marks(tmp_path / "marks", "start")
        assert {short(mark["node"]) for mark in started} == set(nodes(history))

    def test_a_submitted_job_runs_the_whole_study_on_the_cluster(
        self, cluster: RayCluster, tmp_path: Path
    ) -> None:
        # The user's folder: only the job's working dir carries the task module to the cluster.
        working_dir = tmp_path / "project"
        write_task(working_dir, tmp_path / "marks", together=2)
        out = tmp_path / "shared" / "run"  # an absolute path: where the head node writes it
        submitted = subprocess.run(
            [
                RAY,
                "job",
                "submit",
                "--address",
                cluster.dashboard_url,
                "--working-dir",
                str(working_dir),
                "--",
                *tune_command("auto", "--trials", "3", "--workers", "2", "--max-epochs", "2"),
                "--out",
                str(out),
            ],
            cwd=tmp_path,
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=RUN_SECONDS,
        )
        output = finished(submitted)
        assert "succeeded" in submitted.stdout, output
        assert f"Results in {out}/" in submitted.stdout, output  # the job's own output
        (_, history) = check_results(out, 3)
        assert set(nodes(history)) == {short(cluster.head.node_id), short(cluster.worker.node_id)}
        # Each node unpacked its own copy of the working dir (and imported the task from it).
        for node_dir in (cluster.head_dir, cluster.worker_dir):
            unpacked = "session_2*/runtime_resources/working_dir_files/*/clustertask.py"
            copies = node_dir.glob(unpacked)
            assert len(list(copies)) == 1, node_dir

    def test_through_ray_client_the_job_runs_there_and_the_run_folder_stays_here(
        self, cluster: RayCluster, tmp_path: Path
    ) -> None:
        # The user's folder, away from the cluster: only the working dir carries the task
        # there, and the run folder, inside it, stays here (and is not shipped).
        project = tmp_path / "project"
        folder = tmp_path / "marks"
        write_task(project, folder, together=2, sleep=1.0)
        out = project / "runs" / "client"
        command = tune_command(cluster.client_address, "--trials", "4", "--workers", "2")
        command += ["--max-epochs", "4", "--early-stopping", "none", "--out", "runs/client"]
        # 1. Ctrl-C here once a trial reported its second epoch on the cluster: the job there
        # stops, and the run folder here gets the interrupted trials and Tune's experiment.
        with subprocess.Popen(
            command, cwd=project, env=cluster.env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        ) as tuning:  # fmt: skip
            try:
                deadline = time.monotonic() + RUN_SECONDS
                while not any(mark["epoch"] == 2 for mark in marks(folder, "epoch")):
                    assert tuning.poll() is None, tuning.communicate()
                    assert time.monotonic() < deadline, "no trial reported"
                    time.sleep(0.1)
                tuning.send_signal(signal.SIGINT)
                (stdout, stderr) = tuning.communicate(timeout=RUN_SECONDS)
            finally:
                if tuning.poll() is None:
                    tuning.kill()
        assert tuning.returncode == 130, f"{stdout[-3000:]}\n{stderr[-3000:]}"
        trials = pd.read_csv(out / "trials.csv", keep_default_na=False)
        assert "interrupted" in set(trials["status"]), trials
        assert (out / "ray" / "tuner.pkl").is_file()
        epochs_before = len(marks(folder, "epoch"))
        # 2. The same command again ships the experiment back and finishes it there, going
        # on from the interrupted trials' checkpoints; the node keeps no copy of it.
        rerun = subprocess.run(
            command, cwd=project, env=cluster.env, capture_output=True, text=True,
            timeout=RUN_SECONDS,
        )  # fmt: skip
        output = finished(rerun)
        assert "continuing the Ray Tune experiment" in rerun.stderr, output
        assert str(out.resolve()) not in output  # the cluster's copy is named as the one here
        (trials, history) = check_results(out, 4, frozenset({"completed"}))
        assert (trials["epochs"] == 4).all()
        assert set(nodes(history)) == {short(cluster.head.node_id), short(cluster.worker.node_id)}
        # Restarted from epoch 1, the interrupted trials would run 4 * 4 epochs more.
        assert len(marks(folder, "epoch")) < epochs_before + 4 * 4
        assert not list(Path(tempfile.gettempdir(), "greedylr-ray-client").glob("*/ray"))
        for node_dir in (cluster.head_dir, cluster.worker_dir):  # the run folder was not shipped
            assert not list(node_dir.glob("session_2*/runtime_resources/working_dir_files/*/runs"))

    def test_without_address_greedylr_never_attaches(
        self, cluster: RayCluster, tmp_path: Path
    ) -> None:
        # Even with RAY_ADDRESS pointing at the running cluster, a private instance runs.
        write_task(tmp_path, tmp_path / "marks")
        out = tmp_path / "run"
        command = tune_command("-", "--trials", "2", "--workers", "1", "--max-epochs", "2")
        command.remove("--address")
        command.remove("-")
        tuned = subprocess.run(
            [*command, "--out", str(out)],
            cwd=tmp_path,
            env={**cluster.env, "RAY_ADDRESS": cluster.address},
            capture_output=True,
            text=True,
            timeout=RUN_SECONDS,
        )
        finished(tuned)
        (_, history) = check_results(out, 2)
        assert len(set(nodes(history))) == 1
        assert not set(nodes(history)) & {
            short(cluster.head.node_id),
            short(cluster.worker.node_id),
        }

    def test_the_study_completes_when_the_worker_node_dies(
        self, cluster: RayCluster, tmp_path: Path
    ) -> None:
        worker_node = cluster.worker.node_id
        folder = tmp_path / "marks"
        # A trial on the worker node reports epoch 1, then waits there until the node dies.
        write_task(tmp_path, folder, together=2, hold_on_node=worker_node)
        out = tmp_path / "run"
        command = tune_command(cluster.address, "--trials", "3", "--workers", "2")
        command += ["--max-epochs", "3", "--early-stopping", "none", "--out", str(out)]
        with subprocess.Popen(
            command,
            cwd=tmp_path,
            env=cluster.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as tuning:
            try:
                deadline = time.monotonic() + RUN_SECONDS
                while not any(m["node"] == worker_node for m in marks(folder, "epoch")):
                    assert tuning.poll() is None, tuning.communicate()
                    assert time.monotonic() < deadline, "no trial reported on the worker node"
                    time.sleep(0.1)
                cluster.kill_worker()
                (stdout, stderr) = tuning.communicate(timeout=RUN_SECONDS)
            finally:
                if tuning.poll() is None:
                    tuning.kill()
        assert tuning.returncode == 0, f"{stdout[-3000:]}\n{stderr[-3000:]}"
        assert not cluster.processes(cluster.worker_dir)
        # 3 trials, and the retry of the one whose node died (the worker node ran only that one).
        (trials, history) = check_results(out, 4, frozenset({"completed", "failed"}))
        on_worker = sorted(set(history[nodes(history) == short(worker_node)]["trial"]))
        assert len(on_worker) == 2
        (died, retry) = (trials.set_index("trial").loc[trial] for trial in on_worker)
        assert died["status"] == "failed"
        assert "worker died" in died["reason"]
        assert retry["status"] == "completed"
        assert (trials["status"] == "failed").sum() == 1
        # The retry went on from the checkpoint of epoch 1, on the head node.
        rows = history[history["trial"] == on_worker[1]]
        assert list(rows["epoch"]) == [1, 2, 3]
        assert list(nodes(rows)) == [short(worker_node)] + [short(cluster.head.node_id)] * 2
        assert len(marks(folder, "epoch")) == 3 * 3  # no epoch ran twice


class TestLogicalGpus:
    """A head node with 2 logical GPUs (no real GPU here) and 4 logical CPUs, no worker node.

    Two GPUs keep the trial processes at 4 (2 cores here) and still show both rules: with one
    GPU per trial Ray runs 2 of the 4 trials asked for at once, each on its own GPU; with half a
    GPU per trial the 4 trials run at once, two on each GPU.
    """

    @pytest.fixture(scope="class")
    @classmethod
    def cluster(cls) -> Iterator[RayCluster]:
        with RayCluster(head_cpus=4, head_gpus=2, worker_cpus=None, dashboard=False) as cluster:
            yield cluster

    def _tune(
        self, cluster: RayCluster, tmp_path: Path, *, gpus: str, together: int
    ) -> list[dict[str, Any]]:
        # The first `together` trials wait until all of them have started: they run at once.
        write_task(tmp_path, tmp_path / "marks", together=together)
        out = tmp_path / "run"
        command = tune_command(cluster.address, "--trials", "4", "--workers", "4")
        command += ["--max-epochs", "2", "--early-stopping", "none", "--gpus-per-trial", gpus]
        tuned = subprocess.run(
            [*command, "--out", str(out)],
            cwd=tmp_path,
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=RUN_SECONDS,
        )
        finished(tuned)
        (_, history) = check_results(out, 4)
        started = marks(tmp_path / "marks", "start")
        ended = {mark["trial"]: mark["time"] for mark in marks(tmp_path / "marks", "end")}
        assert len(started) == 4
        for mark in started:
            mark["end"] = ended[mark["trial"]]
        # Each trial saw one device, and the history records it.
        assert all(mark["devices"] in {"0", "1"} for mark in started)
        per_trial = history.groupby("trial")["devices"].agg(set)
        assert all(len(devices) == 1 for devices in per_trial)
        assert sorted(next(iter(devices)) for devices in per_trial) == sorted(
            mark["devices"] for mark in started
        )
        return started

    def test_each_trial_gets_its_own_gpu(self, cluster: RayCluster, tmp_path: Path) -> None:
        started = self._tune(cluster, tmp_path, gpus="1", together=2)
        assert running_at_once(started, lambda mark: "all") == {"all": 2}
        assert running_at_once(started, lambda mark: mark["devices"]) == {"0": 1, "1": 1}

    def test_half_a_gpu_per_trial_puts_two_trials_on_each(
        self, cluster: RayCluster, tmp_path: Path
    ) -> None:
        started = self._tune(cluster, tmp_path, gpus="0.5", together=4)
        assert Counter(mark["devices"] for mark in started) == {"0": 2, "1": 2}
        assert running_at_once(started, lambda mark: mark["devices"]) == {"0": 2, "1": 2}


def running_at_once(
    started: list[dict[str, Any]], group: Callable[[dict[str, Any]], str]
) -> dict[str, int]:
    """The most trials of each group (a device, say) that ran at the same time.

    A trial runs from its start mark's ``time`` to its ``end``; the most trials at once are
    found at some trial's start.
    """
    most: dict[str, int] = {}
    for mark in started:
        at_its_start = [
            other
            for other in started
            if group(other) == group(mark) and other["time"] <= mark["time"] < other["end"]
        ]
        most[group(mark)] = max(most.get(group(mark), 0), len(at_its_start))
    return most


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="torch sees no CUDA GPU here (the placement tests above use Ray's logical GPUs)",
)
def test_a_built_in_task_trains_on_a_real_gpu(tmp_path: Path) -> None:
    out = tmp_path / "run"
    tuned = subprocess.run(
        [GREEDYLR, "tune", "--backend", "ray", "--task", "digits-mlp", "--trials", "2"]
        + ["--workers", "1", "--max-epochs", "2", "--early-stopping", "none"]
        + ["--gpus-per-trial", "1", "--no-progress", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
    )
    finished(tuned)
    (trials, history) = check_results(out, 2)
    assert set(trials["status"]) == {"completed"}
    gpus = {str(index) for index in range(torch.cuda.device_count())}
    per_trial = history.groupby("trial")["devices"].agg(set)
    assert all(len(devices) == 1 and devices <= gpus for devices in per_trial), per_trial
    # The built-in tasks keep the GPU's RNG state in their checkpoint only when they train on it.
    checkpoints = sorted(out.glob("ray/trial_*/checkpoint_*"))
    assert checkpoints
    for folder in checkpoints:
        assert load_checkpoint(folder)["state"]["rng"]["cuda"] is not None
