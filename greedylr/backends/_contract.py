"""The trial contract: a plain function ``train(config, reporter)`` that reports once per epoch.

The same function runs unchanged under every engine: each backend hands it a reporter whose
``report(epoch=e, loss=v, **more_metrics)`` forwards the epoch to the engine, and the engine may
stop the trial at any report (Optuna by raising :class:`TrialStopped` from ``report``; Ray Tune
and Syne Tune by ending the worker). Do not wrap ``report`` in a broad ``except``.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any
from typing import Protocol


class Reporter(Protocol):
    """What a trial function reports to."""

    def report(self, *, epoch: int, loss: float, **metrics: Any) -> None:
        """Report the end of ``epoch`` (1, 2, ...): its validation ``loss`` and more metrics."""


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
        forward: Called with ``(epoch, loss, metrics)`` after the checks; the engine's hook
            (it may raise :class:`TrialStopped`).
        max_epochs: Reports past this epoch are refused (``None``: no limit).
    """

    def __init__(
        self,
        forward: Callable[[int, float, dict[str, float]], None] | None = None,
        *,
        max_epochs: int | None = None,
    ) -> None:
        self._forward = forward
        self._max_epochs = max_epochs
        self._start = time.perf_counter()
        self.history: list[dict[str, float]] = []

    @property
    def last_epoch(self) -> int:
        """The last epoch reported (0 before the first report)."""
        return int(self.history[-1]["epoch"]) if self.history else 0

    def report(self, *, epoch: int, loss: float | None = None, **metrics: Any) -> None:
        """Check and record one epoch, then hand it to the engine."""
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise TrialContractError(f"`epoch` must be an int, but got epoch={epoch!r}.")
        if epoch <= self.last_epoch:
            raise TrialContractError(
                f"Epochs must strictly increase, but got epoch={epoch} after {self.last_epoch}."
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
            if name.startswith(_RESERVED):
                raise TrialContractError(f"The metric name `{name}` is reserved; rename it.")
        value = _to_float("loss", loss)
        values = {name: _to_float(name, metric) for name, metric in metrics.items()}
        row = {"epoch": float(epoch), "loss": value, **values}
        row["seconds"] = time.perf_counter() - self._start
        self.history.append(row)
        if not math.isfinite(value):
            raise TrialDiverged(epoch, value)
        if self._forward is not None:
            self._forward(epoch, value, values)


def _to_float(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TrialContractError(
            f"Metric `{name}` must be a number, but got {name}={value!r}."
        ) from None


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
