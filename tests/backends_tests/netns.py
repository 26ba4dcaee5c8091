"""A private network namespace with only loopback, for the tests that start Ray.

Ray rewrites ``--node-ip-address=127.0.0.1`` (and the address of a local instance) to the
machine's outward address, so a Ray node started on a normal machine talks to itself through
its outward interface. Inside a network namespace that holds only ``lo``, Ray finds no outward
address and falls back to 127.0.0.1: every byte the tests send stays on loopback.

:func:`private_network` moves the *calling thread* (not the whole process) into a new network
namespace and back out on exit. Processes and threads started from that thread while it is
inside (``ray start``, Ray's GCS, raylet and workers, ``subprocess`` CLIs) live in the private
namespace, also after the thread has left it. PostgreSQL stays reachable there only through its
unix socket. It needs ``CAP_SYS_ADMIN`` (root).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

import pytest


CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sH14x"  # struct ifreq: the name, then ifr_flags (the union is 24 bytes)

_libc = ctypes.CDLL(None, use_errno=True)

ONE_RAY_AT_A_TIME = pytest.mark.xdist_group("ray")
"""The mark of every test that starts Ray: under pytest-xdist (the README's ``-n 2 --dist
loadgroup``) they run one after another on one worker, while the other tests run beside them:
two Ray instances starting at once on 2 cores starve each other's start-up."""


def _net_namespace_path() -> str:
    return f"/proc/self/task/{threading.get_native_id()}/ns/net"


def network_namespace_id() -> str:
    """The calling thread's network namespace, e.g. ``net:[4026531840]``."""
    return os.readlink(_net_namespace_path())


def _check(result: int, call: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        message = f"{call} failed: {os.strerror(errno)} (it needs CAP_SYS_ADMIN, e.g. root)"
        raise OSError(errno, message)


def _set_loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack(_IFREQ, b"lo", 0)
        (_, flags) = struct.unpack(_IFREQ, fcntl.ioctl(sock, _SIOCGIFFLAGS, request))
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))


@contextlib.contextmanager
def private_network() -> Iterator[str]:
    """Run the body in a new network namespace that holds only ``lo`` (up, 127.0.0.1).

    Yields:
        The private namespace's id (``net:[...]``), as :func:`network_namespace_id` shows it.

    Raises:
        OSError: when the namespace cannot be created (not root) or left again.
    """
    original = os.open(_net_namespace_path(), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        try:
            _set_loopback_up()
            yield network_namespace_id()
        finally:
            _check(_libc.setns(original, CLONE_NEWNET), "setns(back to the original network)")
    finally:
        os.close(original)


def run_in_private_network(
    command: Sequence[str], **kwargs: Any
) -> subprocess.CompletedProcess[Any]:
    """Run ``command`` (``subprocess.run``) in a fresh loopback-only network namespace.

    Inside a :func:`private_network` block a plain ``subprocess.run`` already runs there; this
    is for one command on its own.

    Args:
        command: the program and its arguments.
        **kwargs: passed to ``subprocess.run`` (``check``, ``env``, ``capture_output``, ...).

    Returns:
        The finished process.
    """
    with private_network():
        return subprocess.run(list(command), **kwargs)  # noqa: PLW1510 - the caller chooses


@pytest.fixture(scope="module")
def private_net() -> Iterator[str]:
    """Module fixture: the module's tests run in a loopback-only network namespace.

    Yields:
        The namespace's id.
    """
    with private_network() as namespace:
        yield namespace
