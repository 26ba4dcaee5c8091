"""Ctrl-C, ``kill -INT`` and ``kill -TERM``: one way to stop a tuner and its workers.

The first SIGINT or SIGTERM a process gets raises :class:`Interrupted` (a ``KeyboardInterrupt``)
wherever the process is, and marks the process as stopping. The second is ignored, so the
clean-up that the first started (marking the running trials as interrupted, stopping the
workers, writing the results; about a second) is not itself cut short; a third ends the
process at once. Code that catches broad exceptions asks :func:`stopping` to tell an
interruption from a failure: a ``KeyboardInterrupt`` raised inside an import surfaces as another
exception (``RuntimeError: Error calling __set_name__ ...``).
"""

from __future__ import annotations

import contextlib
import os
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


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_FORCE_AFTER = 3  # the third stop signal ends the process without clean-up


class _State:
    """What this process has seen: the stop signals, the first one's number."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.count = 0
        self.first = signal.SIGINT
        self.last = signal.SIGINT


_state = _State()


def stopping() -> bool:
    """Whether this process got a stop signal while the handlers were installed."""
    return _state.stopping.is_set()


def interruption() -> Interrupted:
    """The :class:`Interrupted` of the first stop signal (SIGINT if none came)."""
    return Interrupted(_state.first)


def exit_code(error: BaseException) -> int:
    """The exit code for an interruption: 143 after SIGTERM, else 130 (Ctrl-C)."""
    return error.exit_code if isinstance(error, Interrupted) else 130


def _handler(signum: int, frame: FrameType | None) -> None:
    _state.count += 1
    _state.last = signal.Signals(signum)
    if _state.count >= _FORCE_AFTER:
        os._exit(128 + signum)
    if _state.stopping.is_set():
        return
    _state.stopping.set()
    _state.first = signal.Signals(signum)
    raise Interrupted(signum)


def record_stop_signal(signum: int, frame: FrameType | None = None) -> None:
    """Count a stop signal as the handler does, without raising :class:`Interrupted`.

    For an engine that stops its own loop gracefully (Ray Tune): the first signal sets
    :func:`stopping`, the second is ignored, the third still ends the process at once.
    """
    with contextlib.suppress(Interrupted):
        _handler(signum, frame)


def install_stop_handlers() -> None:
    """Install the handlers for good, with a fresh state (a forked worker's whole life)."""
    global _state
    _state = _State()  # a forked child must not share its parent's lock
    for signum in STOP_SIGNALS:
        signal.signal(signum, _handler)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn the first SIGINT or SIGTERM into :class:`Interrupted` (see the module).

    Only the main thread can install signal handlers; elsewhere this only resets
    :func:`stopping`. On exit the handlers before are back and the process is no longer
    stopping: a later run starts afresh.
    """
    if threading.current_thread() is not threading.main_thread():
        _state.stopping.clear()
        try:
            yield
        finally:
            _state.stopping.clear()
        return
    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    install_stop_handlers()
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        _state.stopping.clear()


@contextlib.contextmanager
def clean_up() -> Iterator[None]:
    """Ignore stop signals while the block runs (a clean-up: marking trials, writing files).

    In a process that was not stopping yet, a signal that came meanwhile is raised as
    :class:`Interrupted` once the block is done; otherwise it was the second, ignored.
    """
    was_stopping, seen = _state.stopping.is_set(), _state.count
    _state.stopping.set()
    try:
        yield
    finally:
        if not was_stopping:
            _state.stopping.clear()
    if not was_stopping and _state.count > seen:
        _state.stopping.set()
        _state.first = _state.last
        raise Interrupted(_state.last)


@contextlib.contextmanager
def deferred_stop_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block is done (they arrive right after it).

    For steps that must not be cut in two: creating a study and storing what it is, starting
    a worker process and recording it. A process forked inside starts with them held back
    too, until it calls :func:`release_stop_signals`.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def release_stop_signals() -> None:
    """Let SIGINT and SIGTERM in again (in a worker forked inside a deferred block)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
