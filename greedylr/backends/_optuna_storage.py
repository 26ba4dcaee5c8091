"""The Optuna backend's storages: journal files with a lock that dies with its holder, RDB
URLs with a heartbeat, and storage URLs shown without their passwords.
"""

from __future__ import annotations

import fcntl
import os
import warnings
from pathlib import Path
from typing import Any

from greedylr._imports import require


DEFAULT_HEARTBEAT = 10
_JOURNAL_SUFFIXES = (".log", ".journal")


class StorageError(ValueError):
    """A storage URL that cannot be opened; the message never shows a password."""


def optuna_module() -> Any:
    """``optuna``, or an error naming ``pip install greedylr[optuna]``."""
    optuna = require("optuna", extra="optuna", feature="The Optuna backend")
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # greedylr reports failures itself
    return optuna


_SECRET_KEYS = ("password", "passfile", "sslpassword")


def secrets_of(url: str) -> list[str]:
    """The secrets in a storage URL: the password of its netloc and of its query string."""
    if "://" not in url:
        return []
    rest = url.split("://", 1)[1]
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    found = []
    if "@" in netloc:
        credentials = netloc.rsplit("@", 1)[0]
        if ":" in credentials:
            found.append(credentials.split(":", 1)[1])
    query = url.split("?", 1)[1] if "?" in url else ""
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key.lower() in _SECRET_KEYS and value:
            found.append(value)
    return [secret for secret in found if secret]


def hide_password(url: str) -> str:
    """``url`` with every password (netloc or query string) replaced by ``***``."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    path_start = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:path_start], rest[path_start:]
    if "@" in netloc:
        credentials, host = netloc.rsplit("@", 1)
        if ":" in credentials:
            netloc = f"{credentials.split(':', 1)[0]}:***@{host}"
    if "?" in tail:
        path, query = tail.split("?", 1)
        pairs = []
        for pair in query.split("&"):
            key, equals, value = pair.partition("=")
            pairs.append(f"{key}=***" if key.lower() in _SECRET_KEYS and value else pair)
        tail = f"{path}?{'&'.join(pairs)}"
    return f"{scheme}://{netloc}{tail}"


def mask_secrets(text: str, url: str) -> str:
    """``text`` with the secrets of ``url`` replaced by ``***``."""
    for secret in sorted(secrets_of(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class FileLock:
    """The journal file's lock: ``flock`` on ``PATH.flock``, released by the kernel when its
    holder dies, so a killed tuner or worker never leaves a lock that others wait on.

    Optuna's own journal locks (a symlink or an ``O_EXCL`` file) outlive a killed holder and are
    broken only after a 30 s grace period. ``flock`` needs a local file system; for NFS, use an
    RDB storage. The file is opened per ``acquire`` so that forked workers never share the lock.
    A writer killed in the middle of a record leaves a torn last line; the next holder cuts it
    off before it appends, or every reader of the journal would fail on it.
    """

    def __init__(self, journal: str) -> None:
        self._journal = journal
        self._path = journal + ".flock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Block until this process holds the lock."""
        self.release()  # an acquire cut short by a signal may have left one behind
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        _cut_torn_line(self._journal)
        return True

    def release(self) -> None:
        """Let the next process in."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock


def _cut_torn_line(path: str) -> None:
    """Truncate a journal that does not end with a newline back to its last whole record."""
    with open(path, "rb+") as journal:
        size = journal.seek(0, os.SEEK_END)
        if size == 0:
            return
        journal.seek(size - 1)
        if journal.read(1) == b"\n":
            return
        end = size
        while end > 0:
            start = max(0, end - 65536)
            journal.seek(start)
            chunk = journal.read(end - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                journal.truncate(start + newline + 1)
                return
            end = start
        journal.truncate(0)


def is_journal(url: str) -> bool:
    """Whether ``url`` names a journal file (``journal:PATH`` or a path ending .log/.journal)."""
    return url.startswith("journal:") or ("://" not in url and url.endswith(_JOURNAL_SUFFIXES))


def open_storage(url: str, *, heartbeat: int | None = None, create: bool = True) -> Any:
    """An Optuna storage for ``url``: a journal file, or any RDB URL (with a heartbeat).

    Args:
        create: Create a journal file that does not exist (else it is an error).

    Raises:
        StorageError: The URL cannot be opened (the message hides the password).
    """
    optuna = optuna_module()
    shown = hide_password(url)
    try:
        if is_journal(url):
            from optuna.storages.journal import JournalFileBackend
            from optuna.storages.journal import JournalStorage

            path = Path(url.removeprefix("journal:")).expanduser()
            if not create and not path.is_file():
                raise StorageError(f"Cannot open storage {shown!r}: no such journal file.")
            path.parent.mkdir(parents=True, exist_ok=True)
            lock: Any = FileLock(str(path))  # duck-typed: Optuna calls acquire and release
            return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
        if "://" not in url:
            raise StorageError(
                f"Cannot open storage {shown!r}: give an Optuna URL (sqlite:///file.db, "
                "postgresql://user@host/db, ...) or a journal file ending in .log."
            )
        interval = heartbeat or DEFAULT_HEARTBEAT
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=interval,
                grace_period=3 * interval,
                heartbeat_stale_trial_callback=_retry_lost_trial_callback,
            )
    except StorageError:
        raise
    except Exception as error:  # SQLAlchemy and driver errors of every kind
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        message = mask_secrets(message, url)
        raise StorageError(f"Cannot open storage {shown!r}: {message}") from None


def _retry_lost_trial_callback(study: Any, trial: Any) -> None:
    from greedylr.backends._optuna_worker import retry_lost_trial

    retry_lost_trial(study, trial)
