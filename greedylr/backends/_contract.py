"""The trial contract: a plain function ``train(config, reporter)`` that reports once per epoch.

The same function runs unchanged under every engine: each backend hands it a reporter whose
``report(epoch=e, loss=v, **more_metrics)`` forwards the epoch to the engine, and the engine may
stop the trial at any report (Optuna by raising :class:`TrialStopped` from ``report``; Ray Tune
and Syne Tune by ending the worker). Do not wrap ``report`` in a broad ``except``.

Checkpoints are optional: a trial may hand its state with a report
(``report(..., checkpoint=state)``) and, when it starts, ask ``reporter.checkpoint()`` for the
state to continue from (a :class:`Checkpoint`, or ``None``: start at epoch 1). A retried trial
then continues after its last checkpoint instead of at epoch 1, and population-based training
can hand a trial another trial's state. A trial without checkpoints works everywhere but PBT::

    def train(config, reporter):
        model, optimizer = build(config)
        start = 1
        restored = getattr(reporter, "checkpoint", lambda: None)()
        if restored is not None:
            model.load_state_dict(restored.state["model"])
            optimizer.load_state_dict(restored.state["optimizer"])
            start = restored.epoch + 1
        for epoch in range(start, config["epochs"] + 1):
            loss = train_one_epoch(model, optimizer)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
            reporter.report(epoch=epoch, loss=loss, checkpoint=state)
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Protocol


CHECKPOINT_FILE = "state.pt"


@dataclass(frozen=True)
class Checkpoint:
    """A trial's state, handed with the report of ``epoch``: continuing it starts at ``epoch + 1``.

    Args:
        epoch: The epoch whose report carried the state.
        state: Any object ``torch.save`` can write (model, optimizer and scheduler state dicts,
            RNG states, ...).
    """

    epoch: int
    state: Any


class Reporter(Protocol):
    """What a trial function reports to."""

    def report(self, *, epoch: int, loss: float, checkpoint: Any = None, **metrics: Any) -> None:
        """Report the end of ``epoch`` (1, 2, ...): its validation ``loss`` and more metrics.

        ``checkpoint``: the trial's state after this epoch, to continue from (optional).
        """

    def checkpoint(self) -> Checkpoint | None:
        """The state to continue from (``None``: start at epoch 1)."""


TrialFunction = Callable[[dict[str, Any], Reporter], None]


class TrialStopped(Exception):  # noqa: N818 - it is a signal, not an error
    """Raised from ``report`` when the engine stops the trial early (it is pruned)."""


class TrialDiverged(Exception):  # noqa: N818 - a trial outcome
    """The loss became NaN or infinite; the trial ends as failed and the study goes on."""

    def __init__(self, epoch: int, loss: float) -> None:
        super().__init__(f"diverged at epoch {epoch} (loss={loss})")
        self.epoch = epoch
        self.loss = loss


class TaskFailedError(RuntimeError):
    """The task failed in the first trials of a run, so the study stopped early.

    Attributes:
        details: The first failure's traceback (several lines), for the user to read.
    """

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class TrialContractError(ValueError):
    """A trial function broke the reporting contract (missing metric, epochs not increasing)."""


_RESERVED = ("trial", "seconds", "st_", "training_iteration", "time_total_s")


class ValidatingReporter:
    """Checks every report, keeps the trial's history, then forwards it to the engine.

    The metric must be present and finite (a NaN or infinite loss raises
    :class:`TrialDiverged`), epochs must be ints that strictly increase, every value becomes a
    ``float`` (tensors and NumPy scalars included), and names the engines reserve are refused.

    Args:
        forward: Called with ``(epoch, loss, metrics, checkpoint)`` after the checks (the state
            reported with the epoch, or ``None``); the engine's hook (it may raise
            :class:`TrialStopped`).
        max_epochs: Reports past this epoch are refused (``None``: no limit).
        restored: The checkpoint the trial continues from: :meth:`checkpoint` returns it until
            the trial reports one, and the next report must be for epoch ``restored.epoch + 1``
            or later.
        history: The rows the trial reported before it was stopped (a retry's, say): kept at the
            front of :attr:`history`; with ``restored``, only those up to ``restored.epoch``
            (the epochs after it run again). Their ``seconds`` go on counting from the last one.
        tags: String columns added to every row this reporter records, e.g.
            ``{"node": ..., "devices": ...}``; a metric of the same name is refused.
    """

    def __init__(
        self,
        forward: Callable[[int, float, dict[str, float], Any], None] | None = None,
        *,
        max_epochs: int | None = None,
        restored: Checkpoint | None = None,
        history: Sequence[Mapping[str, Any]] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self._forward = forward
        self._max_epochs = max_epochs
        self._restored = restored
        self._checkpoint = restored
        self._tags = {str(name): str(value) for name, value in (tags or {}).items()}
        rows = [dict(row) for row in history or ()]
        if restored is not None:
            rows = [row for row in rows if row["epoch"] <= restored.epoch]
        self.history: list[dict[str, Any]] = rows
        self._last_epoch = int(rows[-1]["epoch"]) if rows else 0
        if restored is not None:
            self._last_epoch = restored.epoch
        before = float(rows[-1].get("seconds", 0.0)) if rows else 0.0
        self._start = time.perf_counter() - (before if math.isfinite(before) else 0.0)

    @property
    def last_epoch(self) -> int:
        """The last epoch reported (or restored; 0 before the first report)."""
        return self._last_epoch

    def checkpoint(self) -> Checkpoint | None:
        """The last checkpoint reported in this run, else the one restored, else ``None``."""
        return self._checkpoint

    def report(
        self, *, epoch: int, loss: float | None = None, checkpoint: Any = None, **metrics: Any
    ) -> None:
        """Check and record one epoch (and its checkpoint), then hand it to the engine."""
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise TrialContractError(f"`epoch` must be an int, but got epoch={epoch!r}.")
        if epoch <= self.last_epoch:
            resumed = ""
            if self._restored is not None and epoch <= self._restored.epoch:
                resumed = (
                    f" (the trial continues from its checkpoint of epoch {self._restored.epoch}"
                    ": start at reporter.checkpoint().epoch + 1)"
                )
            raise TrialContractError(
                f"Epochs must strictly increase, but got epoch={epoch} after "
                f"{self.last_epoch}{resumed}."
            )
        if self._max_epochs is not None and epoch > self._max_epochs:
            raise TrialContractError(
                f"`epoch` must be <= max_epochs={self._max_epochs}, but got epoch={epoch}."
            )
        if loss is None:
            raise TrialContractError(
                f"Every report needs the metric `loss`, but epoch {epoch} reported only "
                f"{sorted(metrics)}."
            )
        for name in metrics:
            if name.startswith(_RESERVED) or name in self._tags:
                raise TrialContractError(f"The metric name `{name}` is reserved; rename it.")
        value = _to_float("loss", loss)
        values = {name: _to_float(name, metric) for name, metric in metrics.items()}
        row: dict[str, Any] = {"epoch": float(epoch), "loss": value, **values}
        row["seconds"] = time.perf_counter() - self._start
        row.update(self._tags)
        self.history.append(row)
        self._last_epoch = epoch
        if not math.isfinite(value):
            raise TrialDiverged(epoch, value)
        if checkpoint is not None:
            self._checkpoint = Checkpoint(epoch, checkpoint)
        if self._forward is not None:
            self._forward(epoch, value, values, checkpoint)


def _to_float(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TrialContractError(
            f"Metric `{name}` must be a number, but got {name}={value!r}."
        ) from None


def save_checkpoint(state: Any, folder: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``folder/state.pt`` (creating the folder), replacing the one there.

    The state is written to a temporary file, then renamed: a writer killed at any moment
    leaves the previous ``state.pt`` whole (or none), never a torn one.

    Returns:
        The path of ``state.pt``.
    """
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / CHECKPOINT_FILE
    partial = folder / f".{CHECKPOINT_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        torch.save(state, partial)
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    return target


def load_checkpoint(folder: str | os.PathLike[str]) -> Any:
    """Read the state :func:`save_checkpoint` wrote to ``folder``.

    Tensors saved on a GPU load onto this process's GPU (its first visible one), or onto the
    CPU when it has none; tensors saved on the CPU stay there (RNG states must).

    Raises:
        FileNotFoundError: ``folder`` holds no ``state.pt``.
    """
    import torch

    cuda = torch.cuda.is_available()

    def place(storage: Any, location: str) -> Any:  # `storage` is read onto the CPU first
        return storage.cuda() if cuda and location.startswith("cuda") else storage

    return torch.load(Path(folder) / CHECKPOINT_FILE, map_location=place, weights_only=False)


def load_trial_function(path: str) -> TrialFunction:
    """Import a trial function named ``package.module:function`` or ``path/to/file.py:function``.

    Raises:
        ValueError: The name has no ``:``, the module or file cannot be imported (a syntax
            error names the file and line; an error raised while importing names its type,
            message, file and line), or it has no such callable. The message is one line.
    """
    module_name, _, function_name = path.rpartition(":")  # a Windows drive keeps its colon
    if not module_name or not function_name:
        raise ValueError(
            f"A trial function is named `package.module:function` or `file.py:function`, "
            f"but got {path!r}."
        )
    try:
        if module_name.endswith(".py"):
            module = _import_file(Path(module_name))
        else:
            module = importlib.import_module(module_name)
    except SyntaxError as error:  # IndentationError included
        where = f"{error.filename}:{error.lineno}"
        raise ValueError(
            f"Cannot import the trial function {path!r}: {where}: "
            f"{type(error).__name__}: {error.msg}"
        ) from None
    except (ImportError, OSError) as error:
        raise ValueError(f"Cannot import the trial function {path!r}: {error}") from None
    except Exception as error:  # the module's own code raised while it was imported
        raise ValueError(
            f"Cannot import the trial function {path!r}: importing {module_name!r} raised "
            f"{type(error).__name__}: {error} (at {_raised_at(error)})"
        ) from None
    function: Any = module
    for part in function_name.split("."):
        function = getattr(function, part, None)
    if not callable(function):
        raise ValueError(f"{module_name!r} has no callable {function_name!r}.")
    return function


def _raised_at(error: BaseException) -> str:
    """``file:line`` of the innermost frame of ``error`` outside Python's import machinery."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if not frame.filename.startswith("<frozen ")
    ]
    if not frames:
        return "unknown line"
    return f"{frames[-1].filename}:{frames[-1].lineno}"


def _import_file(file: Path) -> Any:
    file = file.resolve()
    if not file.is_file():
        raise ImportError(f"no such file {str(file)!r}")
    name = f"_greedylr_trial_{abs(hash(str(file)))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {str(file)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]  # as `import` does: a failed module is not half-imported
        raise
    return module


def function_path(function: Callable[..., Any]) -> str:
    """The importable name of a module-level function (the inverse of ``load_trial_function``).

    A function defined in a script run as ``__main__`` is named by the script's file.
    """
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", "")
    if module is None or "<locals>" in qualname or "<lambda>" in qualname:
        raise ValueError(
            "A trial function must be defined at the top level of a module so that workers can "
            f"import it, but got {function!r}."
        )
    if module == "__main__" or module.startswith("_greedylr_trial_"):
        file = getattr(sys.modules[module], "__file__", None)
        if file is None:
            raise ValueError(
                "A trial function defined interactively cannot be imported by workers; put it in "
                "a module or a .py file."
            )
        return f"{Path(file).resolve()}:{qualname}"
    return f"{module}:{qualname}"
