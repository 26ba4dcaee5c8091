"""A real 2-node Ray cluster (a head node and a worker node) on this machine, for the tests.

Both nodes are started with ``ray start`` as separate processes with their own ports and temp
dirs, the way an operator starts a cluster, and must run inside a loopback-only network namespace
(:mod:`tests.backends_tests.netns`): there Ray keeps ``127.0.0.1`` instead of rewriting it to the
machine's outward address. Every node and every driver gets the same ``RAY_AUTH_TOKEN``.

The cluster stops only the processes it started. Ray renames its processes (``ray::IDLE``,
``ray::ImplicitFunc``) and ``ray start`` leaves them as daemons, so they are found by what they
hold open: a process whose open files, working directory or command line lie under a node's
temp dir belongs to that node (``ray stop`` would kill every Ray process on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.backends_tests.netns import private_network


RAY = str(Path(sys.executable).with_name("ray"))
START_SECONDS = 120.0
STOP_SECONDS = 3.0
KILL_SECONDS = 10.0
# The head declares a node dead after this many missed health checks (Ray's default: 5 checks
# 3 s apart); shorter here, so a killed worker node is noticed within about 2 seconds.
HEAD_SYSTEM_CONFIG = {"health_check_period_ms": 500, "health_check_failure_threshold": 4}

# A short-lived driver: waits until `expected` nodes are alive, then prints them as JSON.
_NODES_SCRIPT = """
import json, sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
expected, deadline = int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while True:
    alive = [node for node in ray.nodes() if node["Alive"]]
    if len(alive) == expected or time.monotonic() > deadline:
        break
    time.sleep(0.2)
print("NODES " + json.dumps([{"id": node["NodeID"], "socket": node["ObjectStoreSocketName"],
                   "resources": node["Resources"]} for node in alive]), flush=True)
"""


def free_ports(count: int, taken: set[int]) -> list[int]:
    """``count`` distinct free TCP ports, none in ``taken`` (which gets them).

    The sockets stay bound until all are picked: the kernel cannot hand out one port twice.
    """
    sockets: list[socket.socket] = []
    try:
        ports: list[int] = []
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port not in taken:
                ports.append(port)
        taken.update(ports)
        return ports
    finally:
        for sock in sockets:
            sock.close()


def _free_port_range(size: int, taken: set[int]) -> tuple[int, int]:
    """``size`` consecutive free ports below the kernel's ephemeral range (32768 on)."""
    for low in range(20000, 32768 - size, size):
        ports = set(range(low, low + size))
        if ports & taken:
            continue
        try:
            for port in ports:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        taken.update(ports)
        return (low, low + size - 1)
    raise RuntimeError(f"no {size} consecutive free ports below 32768")


def _start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/PID/stat`` (the process start time), or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[22 - 3])


def _uses_folder(pid: int, folder: str) -> bool:
    """Whether the process's open files, working directory or command line lie in ``folder``."""
    proc = Path(f"/proc/{pid}")
    inside = re.compile(re.escape(folder) + r"(/|$)")
    try:
        arguments = proc.joinpath("cmdline").read_bytes().decode(errors="replace").split("\0")
        if any(inside.search(argument) for argument in arguments):
            return True
        links = [proc / "cwd", *proc.joinpath("fd").iterdir()]
    except OSError:
        return False
    for link in links:
        try:
            if inside.match(os.readlink(link)):
                return True
        except OSError:
            continue
    return False


def processes_under(folder: Path) -> dict[int, int]:
    """The processes (pid -> start time) that hold files, cwd or arguments under ``folder``."""
    owned = {}
    prefix = str(folder)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        started = _start_time(pid)
        if started is not None and _uses_folder(pid, prefix):
            owned[pid] = started
    return owned


def _alive(processes: dict[int, int]) -> dict[int, int]:
    return {pid: started for (pid, started) in processes.items() if _start_time(pid) == started}


def end_processes(processes: dict[int, int], *, term_seconds: float = STOP_SECONDS) -> None:
    """SIGTERM the processes (pid -> start time), then SIGKILL those left after a while.

    A pid whose start time changed belongs to another process by now and is left alone.

    Args:
        processes: the processes to end.
        term_seconds: how long they have to exit after SIGTERM; 0 kills at once.
    """
    for sig, seconds in ((signal.SIGTERM, term_seconds), (signal.SIGKILL, KILL_SECONDS)):
        if seconds == 0:
            continue
        for pid in _alive(processes):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if _wait_for(lambda: not _alive(processes), seconds):
            return
    raise RuntimeError(f"processes still alive after SIGKILL: {sorted(_alive(processes))}")


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@dataclass(frozen=True)
class RayNode:
    """One node of the cluster: its id (as Ray names it), temp dir and resources."""

    node_id: str
    temp_dir: Path
    resources: dict[str, float]


class RayCluster:
    """A head node and (optionally) a worker node started with ``ray start``.

    Create it inside :func:`~tests.backends_tests.netns.private_network` and use it as a
    context manager; it stops every process of both nodes on exit.

    Args:
        head_cpus: the head node's logical CPUs.
        head_gpus: the head node's logical GPUs (Ray hands out ids 0..N-1 through
            ``CUDA_VISIBLE_DEVICES``; no real GPU is needed).
        worker_cpus: the worker node's logical CPUs; None starts no worker node.
        worker_gpus: the worker node's logical GPUs.
        dashboard: start the head's dashboard, which also serves ``ray job submit``.
    """

    def __init__(
        self,
        *,
        head_cpus: int = 1,
        head_gpus: int = 0,
        worker_cpus: int | None = 1,
        worker_gpus: int = 0,
        dashboard: bool = True,
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))  # unix sockets < 108 chars
        self.head_dir = self.root / "h"
        self.worker_dir = self.root / "w"
        self._taken: set[int] = set()
        self.port, self.dashboard_port, self.client_port = free_ports(3, self._taken)
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        self.client_address = f"ray://127.0.0.1:{self.client_port}"
        self.env = _cluster_environment()
        self._head_args = [
            "--head",
            f"--port={self.port}",
            f"--num-cpus={head_cpus}",
            f"--num-gpus={head_gpus}",
            f"--include-dashboard={str(dashboard).lower()}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={self.client_port}",
            f"--system-config={json.dumps(HEAD_SYSTEM_CONFIG)}",
        ]
        self._worker_args = (
            None
            if worker_cpus is None
            else [
                f"--address={self.address}",
                f"--num-cpus={worker_cpus}",
                f"--num-gpus={worker_gpus}",
            ]
        )
        self._head: RayNode | None = None
        self._worker: RayNode | None = None

    @property
    def head(self) -> RayNode:
        """The head node (once started)."""
        if self._head is None:
            raise RuntimeError("the cluster is not started")
        return self._head

    @property
    def worker(self) -> RayNode:
        """The worker node (once started, when the cluster has one)."""
        if self._worker is None:
            raise RuntimeError("the cluster has no worker node")
        return self._worker

    def __enter__(self) -> RayCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _node_args(self, temp_dir: Path) -> list[str]:
        (low, high) = _free_port_range(50, self._taken)
        node, objects, runtime_env, metrics, agent, agent_grpc = free_ports(6, self._taken)
        return [
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={temp_dir}",
            f"--node-manager-port={node}",
            f"--object-manager-port={objects}",
            f"--runtime-env-agent-port={runtime_env}",
            f"--metrics-export-port={metrics}",
            f"--dashboard-agent-listen-port={agent}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--min-worker-port={low}",
            f"--max-worker-port={high}",
            "--object-store-memory=100000000",
            "--disable-usage-stats",
        ]

    def _ray_start(self, args: list[str], temp_dir: Path) -> None:
        temp_dir.mkdir()
        started = subprocess.run(
            [RAY, "start", *args, *self._node_args(temp_dir)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=START_SECONDS,
            check=False,
        )
        if started.returncode != 0:
            raise RuntimeError(f"ray start failed:\n{started.stdout}\n{started.stderr}")

    def start(self) -> None:
        """Start the head node, then the worker node; return once all are alive in the GCS."""
        self._ray_start(self._head_args, self.head_dir)
        expected = 1
        if self._worker_args is not None:
            self._ray_start(self._worker_args, self.worker_dir)
            expected = 2
        nodes = self.alive_nodes(expected)
        if len(nodes) != expected:
            raise RuntimeError(f"{expected} Ray nodes expected alive, got {nodes}")
        self._head = next(node for node in nodes if node.temp_dir == self.head_dir)
        self._worker = next((node for node in nodes if node.temp_dir == self.worker_dir), None)

    def alive_nodes(self, expected: int, seconds: float = START_SECONDS) -> list[RayNode]:
        """The nodes alive, once there are ``expected`` of them (or after ``seconds``).

        A short-lived driver asks the GCS (``ray.nodes()``).
        """
        listed = subprocess.run(
            [sys.executable, "-c", _NODES_SCRIPT, self.address, str(expected), str(seconds)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=seconds + START_SECONDS,
            check=True,
        )
        nodes = []
        lines = [line for line in listed.stdout.splitlines() if line.startswith("NODES ")]
        if len(lines) != 1:
            raise RuntimeError(f"no node list from ray.nodes():\n{listed.stdout}\n{listed.stderr}")
        for node in json.loads(lines[0].removeprefix("NODES ")):
            # The object store's socket lies under the node's temp dir: it tells the nodes apart.
            parents = Path(node["socket"]).parents
            temp_dir = self.head_dir if self.head_dir in parents else self.worker_dir
            nodes.append(RayNode(node["id"], temp_dir, node["resources"]))
        return nodes

    def processes(self, temp_dir: Path | None = None) -> dict[int, int]:
        """The live processes (pid -> start time) of one node, or of the whole cluster."""
        return processes_under(temp_dir or self.root)

    def kill_worker(self) -> None:
        """Crash the worker node: SIGKILL all its processes (trial workers included) at once.

        Returns once they are gone and the head counts one node alive.
        """
        end_processes(self.processes(self.worker_dir), term_seconds=0)
        nodes = self.alive_nodes(1)
        if [node.temp_dir for node in nodes] != [self.head_dir]:
            raise RuntimeError(f"the head still lists the killed worker node: {nodes}")

    def stop(self) -> None:
        """End every process of both nodes (SIGTERM, then SIGKILL) and remove the temp dirs."""
        end_processes(self.processes())
        shutil.rmtree(self.root, ignore_errors=True)


def _cluster_environment() -> dict[str, str]:
    """This process's environment, with the token every node and driver must share."""
    env = {key: value for (key, value) in os.environ.items() if key != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "token"
    env.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    """Module fixture: a 2-node cluster (1 CPU each) in a loopback-only network namespace.

    The module's tests run inside the namespace too, so their subprocesses reach the cluster.

    Yields:
        The running cluster.
    """
    with private_network(), RayCluster() as cluster:
        yield cluster
