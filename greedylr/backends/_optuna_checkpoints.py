"""The Optuna backend's checkpoints: each trial's last one, and where a retry continues from.

Given a ``checkpoints`` folder (the run folder's ``checkpoints/``), a worker keeps the last
checkpoint each trial reported and writes it to ``checkpoints/trial-<N>/state.pt``, with the
trial's history up to it: every ``SAVE_SECONDS`` at most (and less often when writing takes
long: the writes stay under 5 % of the trial's time), and when the trial is interrupted
(Ctrl-C, SIGTERM). A trial whose worker is killed loses the epochs after its last write.

A retry (``retry_of``: its worker died, or it was interrupted) continues from the newest
checkpoint along its ``retry_of`` chain: it copies that trial's history rows, reports their
losses to the pruner again (it sees epochs 1..k as the retried trial did), and its trial
function gets the checkpoint (it starts at epoch k + 1).

Disk use stays bounded: only a trial's last checkpoint is kept; it is deleted when the trial
completes, is pruned or fails (those are not run again), together with those of the trials it
retried. An interrupted or killed trial's checkpoint stays until its retry ends; when a study is
done, whatever no trial can continue from is deleted (:func:`drop_stale`).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from greedylr.backends._contract import Checkpoint
from greedylr.backends._contract import load_checkpoint
from greedylr.backends._contract import save_checkpoint
from greedylr.backends._optuna import INTERRUPTED
from greedylr.backends._optuna import retries_of
from greedylr.backends._optuna_storage import optuna_module


SAVE_SECONDS = 2.0  # a running trial's checkpoint is written at most this often
_WRITE_SHARE = 20  # and at most once per 20 times the last write took: <= 5 % of the time


class TrialCheckpoints:
    """One running trial's last checkpoint: kept in memory, written now and then.

    Args:
        folder: The trial's checkpoint folder.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._pending: tuple[int, Any, list[dict[str, Any]]] | None = None
        self._due = time.monotonic() + SAVE_SECONDS

    def offer(self, epoch: int, state: Any, history: Sequence[dict[str, Any]]) -> None:
        """The state reported at ``epoch`` (and the history up to it): written if it is time."""
        self._pending = (epoch, state, list(history))
        if time.monotonic() >= self._due:
            self.flush()

    def flush(self) -> None:
        """Write the last state offered, if it is not written yet."""
        if self._pending is None:
            return
        started = time.monotonic()
        save(self.folder, *self._pending)
        self._pending = None
        now = time.monotonic()
        self._due = now + max(SAVE_SECONDS, _WRITE_SHARE * (now - started))


def folder_of(checkpoints: Path, trial_number: int) -> Path:
    """Where trial ``trial_number`` keeps its last checkpoint."""
    return checkpoints / f"trial-{trial_number}"


def save(folder: Path, epoch: int, state: Any, history: Sequence[dict[str, Any]]) -> None:
    """Replace the trial's checkpoint with the state reported at ``epoch`` (atomically)."""
    save_checkpoint({"epoch": epoch, "state": state, "history": list(history)}, folder)


def retried_chain(trial: Any) -> list[int]:
    """The trials whose config ``trial`` runs again, newest first (its ``retry_of`` chain)."""
    by_number = {t.number: t for t in trial.study.get_trials(deepcopy=False)}
    chain: list[int] = []
    number = trial.user_attrs.get("retry_of")
    while isinstance(number, int) and number not in chain:
        chain.append(number)
        earlier = by_number.get(number)
        number = earlier.user_attrs.get("retry_of") if earlier is not None else None
    return chain


def continue_retry(
    trial: Any, checkpoints: Path
) -> tuple[Checkpoint | None, list[dict[str, Any]]]:
    """The checkpoint a retry continues from, and the history up to it (``None, []``: none).

    The newest checkpoint along the ``retry_of`` chain wins (a retry killed before its first
    checkpoint leaves the one it started from); one that cannot be read is passed over, with
    a note on stderr. The trial records where it continued from
    (``continued``: trial and epoch) and the copied history.
    """
    for number in retried_chain(trial):
        try:
            saved = load_checkpoint(folder_of(checkpoints, number))
        except FileNotFoundError:
            continue
        except Exception as error:  # unreadable (written by other code): start without it
            print(
                f"greedylr: trial {trial.number} does not continue from the checkpoint of "
                f"trial {number}: {type(error).__name__}: {error}",
                file=sys.stderr,
                flush=True,
            )
            continue
        history = [dict(row) for row in saved["history"]]
        epoch = int(saved["epoch"])
        trial.set_user_attr("continued", {"trial": number, "epoch": epoch})
        trial.set_user_attr("history", history)
        return Checkpoint(epoch, saved["state"]), history
    return None, []


def drop_ended(trial: Any, checkpoints: Path) -> None:
    """Delete the checkpoints of a trial that ended for good, and of the trials it retried."""
    for number in (trial.number, *retried_chain(trial)):
        with contextlib.suppress(OSError):
            shutil.rmtree(folder_of(checkpoints, number))


def drop_stale(study: Any, checkpoints: Path) -> int:
    """Delete the checkpoint folders no trial will continue from; return how many.

    Kept: those of running trials, and of interrupted or killed trials whose config runs
    again (their retry waits or runs, or an interrupted trial waits for the next run).
    """
    if not checkpoints.is_dir():
        return 0
    state = optuna_module().trial.TrialState
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    retries = retries_of(list(trials.values()))
    dropped = 0
    for folder in checkpoints.glob("trial-*"):
        number = folder.name.removeprefix("trial-")
        trial = trials.get(int(number)) if number.isdigit() else None
        if trial is None or trial.state == state.RUNNING:
            continue
        retry = trials.get(retries.get(trial.number, -1))
        if trial.state == state.FAIL and (
            (retry is not None and retry.state in (state.WAITING, state.RUNNING))
            or (retry is None and trial.user_attrs.get("fail_reason") == INTERRUPTED)
        ):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        dropped += 1
    return dropped
