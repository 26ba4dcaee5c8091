"""The loopback-only network namespace the Ray tests run in (tests/backends_tests/netns.py)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

from tests.backends_tests.netns import ONE_RAY_AT_A_TIME
from tests.backends_tests.netns import network_namespace_id
from tests.backends_tests.netns import private_network
from tests.backends_tests.netns import run_in_private_network


def _interfaces() -> set[str]:
    return {name for (_, name) in socket.if_nameindex()}


def _loopback_echo() -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=5) as client:
            (connection, _) = server.accept()
            with connection:
                client.sendall(b"ping")
                return connection.recv(4)


def test_only_loopback_inside_and_the_original_network_after() -> None:
    outside = network_namespace_id()
    interfaces_outside = _interfaces()
    with private_network() as namespace:
        assert namespace == network_namespace_id() != outside
        assert _interfaces() == {"lo"}
        assert _loopback_echo() == b"ping"
        # A process started from the thread inside lives in the same namespace.
        child = subprocess.run(
            ["readlink", "/proc/self/ns/net"], capture_output=True, text=True, check=True
        )
        assert child.stdout.strip() == namespace
    assert network_namespace_id() == outside
    assert _interfaces() == interfaces_outside


def test_only_the_calling_thread_moves() -> None:
    seen: list[str] = []
    with private_network() as namespace:
        other = threading.Thread(target=lambda: seen.append(network_namespace_id()))
        other.start()
        other.join()
        # A thread started from inside is inside too; the threads already running are not moved.
        assert seen == [namespace]
    assert network_namespace_id() != namespace


def test_each_block_gets_a_new_namespace_and_a_command_can_run_in_one() -> None:
    with private_network() as first:
        pass
    with private_network() as second:
        pass
    assert first != second
    listed = run_in_private_network(
        ["ip", "-o", "link"], capture_output=True, text=True, check=True
    )
    assert [line.split(":")[1].strip() for line in listed.stdout.splitlines()] == ["lo"]


@ONE_RAY_AT_A_TIME
def test_a_local_ray_instance_inside_uses_127_0_0_1() -> None:
    # tests/conftest.py gives this process a RAY_AUTH_TOKEN before Ray is imported.
    ray = pytest.importorskip("ray")
    temp_dir = tempfile.mkdtemp(prefix="rn-", dir="/tmp")
    try:
        with private_network():
            ray.init(
                address="local",
                num_cpus=1,
                include_dashboard=False,
                log_to_driver=False,
                _temp_dir=temp_dir,
            )
            try:
                gcs_address = ray.get_runtime_context().gcs_address
                node_addresses = [node["NodeManagerAddress"] for node in ray.nodes()]
                task_address = ray.get(ray.remote(lambda: ray.util.get_node_ip_address()).remote())
            finally:
                ray.shutdown()
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert gcs_address.startswith("127.0.0.1:")
    assert node_addresses == ["127.0.0.1"]
    assert task_address == "127.0.0.1"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
