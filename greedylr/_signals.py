"""Ctrl-C, ``kill -INT`` and ``kill -TERM``: one way to stop a tuner and its workers.

The first SIGINT or SIGTERM a process gets raises :class:`Interrupted` (a ``KeyboardInterrupt``)
wherever the process is, and marks the process as stopping; later ones are ignored, so the
clean-up that the first started (marking the running trial as interrupted, stopping the workers)
is not itself interrupted. Code that catches broad exceptions asks :func:`stopping` to tell an
interruption from a failure: a ``KeyboardInterrupt`` raised inside an import surfaces as another
exception (``RuntimeError: Error calling __set_name__ ...``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; ``exit_code`` is the shell's ``128 + signal number``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


_stopping = threading.Event()
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stopping() -> bool:
    """Whether this process got a stop signal while :func:`stop_on_signals` was active."""
    return _stopping.is_set()


def exit_code(error: BaseException) -> int:
    """The exit code for an interruption: 143 after SIGTERM, else 130 (Ctrl-C)."""
    return error.exit_code if isinstance(error, Interrupted) else 130


def _handler(signum: int, frame: FrameType | None) -> None:
    if _stopping.is_set():
        return
    _stopping.set()
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn the first SIGINT or SIGTERM into :class:`Interrupted`; ignore later ones.

    Only the main thread can install signal handlers; elsewhere this only resets
    :func:`stopping`. On exit the process is no longer stopping: a later run starts afresh.
    """
    if threading.current_thread() is not threading.main_thread():
        _stopping.clear()
        try:
            yield
        finally:
            _stopping.clear()
        return
    before = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}
    install_stop_handlers()
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        _stopping.clear()


def install_stop_handlers() -> None:
    """Install the handlers of :func:`stop_on_signals` for good (a worker process's life)."""
    global _stopping
    _stopping = threading.Event()  # a fresh one: a forked child must not share its lock
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _handler)


def ignore_stop_signals() -> None:
    """From now on this process ignores SIGINT and SIGTERM (its clean-up is under way)."""
    _stopping.set()
