"""One results model for every engine, and the run folder that holds it.

A run folder has ``experiment.json`` (everything needed to rerun the job, written when the run
starts), ``trials.csv`` (one row per trial: id, status, reason, epochs, final and best loss,
seconds, whether it is the untuned-defaults trial, the path of its traceback, then the config),
``history.csv`` (one row per trial and epoch: loss, lr, the other metrics, seconds),
``best.json`` (the best completed trial and the defaults trial's loss) and ``failures/`` (one
``trial-<N>.txt`` per failed trial with a traceback). A run that has not finished a trial yet
may have only ``experiment.json``.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal


if TYPE_CHECKING:  # pandas is imported when a table is built: the tuner forks its workers first
    import pandas as pd

from greedylr.backends._experiment import Experiment


Status = Literal["completed", "pruned", "failed", "interrupted", "running", "waiting"]
FINISHED: tuple[Status, ...] = ("completed", "pruned", "failed", "interrupted")
TRIAL_COLUMNS = [
    "trial",
    "status",
    "reason",
    "epochs",
    "final_loss",
    "best_loss",
    "seconds",
    "defaults",
    "traceback",
]
HISTORY_COLUMNS = ["trial", "epoch", "loss", "lr", "seconds"]


@dataclass(frozen=True)
class TrialResult:
    """One trial, whatever engine ran it.

    Args:
        trial: The trial's id (0, 1, ...).
        status: completed, pruned (stopped early), failed, interrupted (by Ctrl-C; a rerun runs
            it again), running, or waiting (a retry not started when the run stopped).
        reason: Why it was pruned or failed (empty when completed).
        config: The full config the trial function received.
        history: One dict per reported epoch: ``epoch``, ``loss``, ``seconds`` and the rest.
        seconds: Wall time of the trial.
        is_default: Whether this is the untuned-defaults trial (run first, so that tuning never
            ends worse than not tuning).
        error: A failed trial's full traceback (empty otherwise).
        retry_of: The trial whose config this trial runs again (its worker died, or it was
            interrupted); ``None`` for a trial the searcher sampled.
    """

    trial: int
    status: Status
    reason: str
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = math.nan
    is_default: bool = False
    error: str = ""
    retry_of: int | None = None

    @property
    def epochs(self) -> int:
        """Epochs reported."""
        return int(self.history[-1]["epoch"]) if self.history else 0

    @property
    def final_loss(self) -> float:
        """The loss of the last reported epoch (NaN if none)."""
        return float(self.history[-1]["loss"]) if self.history else math.nan

    @property
    def best_loss(self) -> float:
        """The lowest finite loss reported (NaN if none)."""
        finite = [row["loss"] for row in self.history if math.isfinite(row["loss"])]
        return min(finite) if finite else math.nan

    @property
    def traceback_path(self) -> str:
        """Where the run folder keeps this trial's traceback (empty if it has none)."""
        return traceback_path(self.trial) if self.status == "failed" and self.error else ""


def traceback_path(trial: int) -> str:
    """The path of a failed trial's traceback, relative to the run folder."""
    return f"failures/trial-{trial}.txt"


@dataclass(frozen=True)
class TuneResult:
    """What a tuning run produced (so far, while it runs).

    Attributes:
        experiment: The job.
        trials: One row per trial (``TRIAL_COLUMNS`` then one ``config.<key>`` column each).
        history: One row per trial and epoch.
        best_config: The config of the completed trial with the lowest final loss.
        best_loss: Its final loss.
        best_trial: Its id.
        out: The run folder.
        default_trial: The id of the untuned-defaults trial (None if the run has none).
        default_loss: Its final loss if it completed (NaN otherwise).
        tracebacks: The traceback of each failed trial that has one, by trial id.
    """

    experiment: Experiment
    trials: pd.DataFrame
    history: pd.DataFrame
    best_config: dict[str, Any] | None
    best_loss: float
    best_trial: int | None
    out: Path
    default_trial: int | None = None
    default_loss: float = math.nan
    tracebacks: dict[int, str] = field(default_factory=dict)

    @property
    def finished(self) -> pd.DataFrame:
        """The trials that are over: completed, stopped early, failed or interrupted."""
        if not len(self.trials):
            return self.trials
        return self.trials[self.trials["status"].isin(FINISHED)]

    @property
    def epochs_run(self) -> int:
        """Epochs run by the finished trials (running trials are left out until they end)."""
        return int(self.finished["epochs"].sum()) if len(self.finished) else 0

    @property
    def epochs_saved(self) -> int:
        """Epochs early stopping saved: what the stopped trials did not run."""
        if not len(self.trials):
            return 0
        pruned = self.trials[self.trials["status"] == "pruned"]
        return int((self.experiment.max_epochs - pruned["epochs"]).sum())

    @property
    def epochs_without_early_stopping(self) -> int:
        """Epochs the same finished trials would have run had none been stopped early.

        Both this and :attr:`epochs_run` count the finished trials (:attr:`finished`) and only
        them: a completed trial counts its epochs on both sides, a stopped one its epochs
        against ``max_epochs``, and a failed or interrupted one its epochs on both sides (it
        would have ended at the same epoch without early stopping). Running and waiting trials
        count on neither side.
        """
        return self.epochs_run + self.epochs_saved


def build_result(experiment: Experiment, records: Sequence[TrialResult], out: Path) -> TuneResult:
    """The result tables from per-trial records; the best is over completed trials."""
    rows: list[dict[str, Any]] = []
    history_rows: list[dict[str, Any]] = []
    ordered_records = sorted(records, key=lambda r: r.trial)
    for record in ordered_records:
        row: dict[str, Any] = {
            "trial": record.trial,
            "status": record.status,
            "reason": record.reason,
            "epochs": record.epochs,
            "final_loss": record.final_loss,
            "best_loss": record.best_loss,
            "seconds": record.seconds,
            "defaults": record.is_default,
            "traceback": record.traceback_path,
        }
        row.update({f"config.{key}": value for key, value in record.config.items()})
        rows.append(row)
        history_rows.extend({"trial": record.trial, **epoch} for epoch in record.history)
    import pandas as pd

    trials = pd.DataFrame(rows, columns=None if rows else TRIAL_COLUMNS)
    history = pd.DataFrame(history_rows, columns=None if history_rows else HISTORY_COLUMNS)
    if len(history):
        history["epoch"] = history["epoch"].astype(int)
        ordered = [c for c in HISTORY_COLUMNS if c in history] + [
            c for c in history.columns if c not in HISTORY_COLUMNS
        ]
        history = history[ordered]
    completed = [r for r in records if r.status == "completed" and math.isfinite(r.final_loss)]
    best = min(completed, key=lambda r: (r.final_loss, r.trial), default=None)
    # A defaults trial that was interrupted or lost is run again, as a later trial: the last
    # one is the defaults trial that counts.
    default = max((r for r in records if r.is_default), key=lambda r: r.trial, default=None)
    return TuneResult(
        experiment=experiment,
        trials=trials,
        history=history,
        best_config=dict(best.config) if best else None,
        best_loss=best.final_loss if best else math.nan,
        best_trial=best.trial if best else None,
        out=out,
        default_trial=default.trial if default else None,
        default_loss=_completed_loss(default),
        tracebacks={r.trial: r.error for r in ordered_records if r.traceback_path},
    )


def write_result(result: TuneResult) -> None:
    """Write ``trials.csv``, ``history.csv``, ``best.json`` and ``failures/trial-<N>.txt``."""
    out = result.out
    out.mkdir(parents=True, exist_ok=True)
    for trial, text in result.tracebacks.items():
        path = out / traceback_path(trial)
        if not path.is_file() or path.read_text() != text:  # rewritten while the run goes on
            path.parent.mkdir(exist_ok=True)
            _atomic_write(path, text)
    _atomic_write(out / "trials.csv", result.trials.to_csv(index=False))
    _atomic_write(out / "history.csv", result.history.to_csv(index=False))
    best = {
        "trial": result.best_trial,
        "loss": _json_float(result.best_loss),
        "config": result.best_config,
        "default_trial": result.default_trial,
        "default_loss": _json_float(result.default_loss),
        "epochs_run": result.epochs_run,
        "epochs_without_early_stopping": result.epochs_without_early_stopping,
    }
    _atomic_write(out / "best.json", json.dumps(best, indent=2, sort_keys=True) + "\n")


def write_experiment(out: Path, experiment: Experiment, extra: dict[str, Any]) -> None:
    """Write ``experiment.json``: the experiment plus how it was launched."""
    out.mkdir(parents=True, exist_ok=True)
    data = {"experiment": json.loads(experiment.to_json()), **extra}
    _atomic_write(out / "experiment.json", json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_experiment(out: Path) -> Experiment | None:
    """The experiment a run folder holds (``None``: no ``experiment.json``).

    Raises:
        ValueError: The file is not an experiment greedylr wrote.
    """
    path = Path(out) / "experiment.json"
    if not path.is_file():
        return None
    try:
        return Experiment(**json.loads(path.read_text())["experiment"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"Cannot read {str(path)!r}: {error}") from None


def read_result(out: Path) -> TuneResult:
    """Load a run folder written by :func:`write_experiment` and :func:`write_result`.

    A run still going may lack ``trials.csv``, ``history.csv`` and ``best.json`` (no trial
    finished yet): their tables are then empty and the best is derived from the trials.

    Raises:
        ValueError: ``out`` has no ``experiment.json``: it is not a run folder.
    """
    out = Path(out)
    experiment = read_experiment(out)
    if experiment is None:
        raise ValueError(f"{str(out)!r} is not a run folder: it has no experiment.json.")
    trials = _read_table(out / "trials.csv", TRIAL_COLUMNS, keep_default_na=False, na_values=[""])
    for column, missing in (("defaults", False), ("traceback", math.nan)):  # older run folders
        if column not in trials:
            fixed = [c for c in trials.columns if not c.startswith("config.")]
            trials.insert(len(fixed), column, missing)
    trials["defaults"] = trials["defaults"].astype(bool)
    for column in ("reason", "traceback"):  # text, empty where there is none (as written)
        trials[column] = trials[column].astype(object).fillna("").astype(str)
    history = _read_table(out / "history.csv", HISTORY_COLUMNS)
    tracebacks = {}
    for trial, relative in zip(trials["trial"], trials["traceback"]):
        if relative and (out / relative).is_file():
            tracebacks[int(trial)] = (out / relative).read_text()
    best = json.loads((out / "best.json").read_text()) if (out / "best.json").is_file() else {}
    best_trial, best_loss, best_config = _best_of(trials)
    default_trial, default_loss = _default_of(trials)
    if best:
        best_trial, best_loss, best_config = best["trial"], best["loss"], best["config"]
        default_trial = best.get("default_trial", default_trial)
        default_loss = best.get("default_loss", default_loss)
    return TuneResult(
        experiment=experiment,
        trials=trials,
        history=history,
        best_config=best_config,
        best_loss=math.nan if best_loss is None else float(best_loss),
        best_trial=best_trial,
        out=out,
        default_trial=default_trial,
        default_loss=math.nan if default_loss is None else float(default_loss),
        tracebacks=tracebacks,
    )


def _read_table(path: Path, columns: list[str], **options: Any) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file() or not path.stat().st_size:
        return pd.DataFrame(columns=columns)
    return pd.read_csv(path, **options)


def _best_of(trials: pd.DataFrame) -> tuple[int | None, float, dict[str, Any] | None]:
    """The best completed trial of a table: its id, final loss and config."""
    import pandas as pd

    if not len(trials):
        return None, math.nan, None
    completed = trials[(trials["status"] == "completed") & trials["final_loss"].map(_finite)]
    if not len(completed):
        return None, math.nan, None
    row = completed.sort_values(["final_loss", "trial"]).iloc[0]
    config = {
        column.removeprefix("config."): _plain(row[column])
        for column in trials.columns
        if column.startswith("config.") and not pd.isna(row[column])
    }
    return int(row["trial"]), float(row["final_loss"]), config


def _default_of(trials: pd.DataFrame) -> tuple[int | None, float]:
    """The defaults trial of a table (the last run of its config): its id and, if it
    completed, its final loss."""
    defaults = trials[trials["defaults"]] if len(trials) else trials
    if not len(defaults):
        return None, math.nan
    row = defaults.sort_values("trial").iloc[-1]
    completed = row["status"] == "completed" and _finite(row["final_loss"])
    return int(row["trial"]), float(row["final_loss"]) if completed else math.nan


def _completed_loss(record: TrialResult | None) -> float:
    """A completed trial's final loss; NaN if it did not complete or its loss is not finite."""
    if record is None or record.status != "completed" or not math.isfinite(record.final_loss):
        return math.nan
    return record.final_loss


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _atomic_write(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all; writers in other threads or processes never meet."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(text)
    temporary.replace(path)
