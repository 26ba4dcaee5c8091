"""One results model for every engine, and the run folder that holds it.

A run folder has ``experiment.json`` (everything needed to rerun the job), ``trials.csv`` (one
row per trial: id, status, reason, epochs, final and best loss, seconds, then the config),
``history.csv`` (one row per trial and epoch: loss, lr, the other metrics, seconds) and
``best.json`` (the best completed trial).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import Literal

import pandas as pd

from greedylr.backends._experiment import Experiment


Status = Literal["completed", "pruned", "failed", "running", "waiting"]
TRIAL_COLUMNS = ["trial", "status", "reason", "epochs", "final_loss", "best_loss", "seconds"]
HISTORY_COLUMNS = ["trial", "epoch", "loss", "lr", "seconds"]


@dataclass(frozen=True)
class TrialResult:
    """One trial, whatever engine ran it.

    Args:
        trial: The trial's id (0, 1, ...).
        status: completed, pruned (stopped early), failed, running, or waiting (a retry not
            started when the run stopped).
        reason: Why it was pruned or failed (empty when completed).
        config: The full config the trial function received.
        history: One dict per reported epoch: ``epoch``, ``loss``, ``seconds`` and the rest.
        seconds: Wall time of the trial.
    """

    trial: int
    status: Status
    reason: str
    config: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = math.nan

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


@dataclass(frozen=True)
class TuneResult:
    """What a tuning run produced.

    Attributes:
        experiment: The job.
        trials: One row per trial (``TRIAL_COLUMNS`` then one ``config.<key>`` column each).
        history: One row per trial and epoch.
        best_config: The config of the completed trial with the lowest final loss.
        best_loss: Its final loss.
        best_trial: Its id.
        out: The run folder.
    """

    experiment: Experiment
    trials: pd.DataFrame
    history: pd.DataFrame
    best_config: dict[str, Any] | None
    best_loss: float
    best_trial: int | None
    out: Path

    @property
    def epochs_run(self) -> int:
        """Epochs run by all trials together."""
        return int(self.trials["epochs"].sum()) if len(self.trials) else 0

    @property
    def epochs_saved(self) -> int:
        """Epochs early stopping saved: what the stopped trials did not run."""
        if not len(self.trials):
            return 0
        pruned = self.trials[self.trials["status"] == "pruned"]
        return int((self.experiment.max_epochs - pruned["epochs"]).sum())

    @property
    def epochs_without_early_stopping(self) -> int:
        """Epochs the same trials would have run had none been stopped early."""
        return self.epochs_run + self.epochs_saved


def build_result(experiment: Experiment, records: Sequence[TrialResult], out: Path) -> TuneResult:
    """The result tables from per-trial records; the best is over completed trials."""
    rows: list[dict[str, Any]] = []
    history_rows: list[dict[str, Any]] = []
    for record in sorted(records, key=lambda r: r.trial):
        row: dict[str, Any] = {
            "trial": record.trial,
            "status": record.status,
            "reason": record.reason,
            "epochs": record.epochs,
            "final_loss": record.final_loss,
            "best_loss": record.best_loss,
            "seconds": record.seconds,
        }
        row.update({f"config.{key}": value for key, value in record.config.items()})
        rows.append(row)
        history_rows.extend({"trial": record.trial, **epoch} for epoch in record.history)
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
    return TuneResult(
        experiment=experiment,
        trials=trials,
        history=history,
        best_config=dict(best.config) if best else None,
        best_loss=best.final_loss if best else math.nan,
        best_trial=best.trial if best else None,
        out=out,
    )


def write_result(result: TuneResult) -> None:
    """Write ``trials.csv``, ``history.csv`` and ``best.json`` into the run folder."""
    out = result.out
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / "trials.csv", result.trials.to_csv(index=False))
    _atomic_write(out / "history.csv", result.history.to_csv(index=False))
    best = {
        "trial": result.best_trial,
        "loss": None if math.isnan(result.best_loss) else result.best_loss,
        "config": result.best_config,
        "epochs_run": result.epochs_run,
        "epochs_without_early_stopping": result.epochs_without_early_stopping,
    }
    _atomic_write(out / "best.json", json.dumps(best, indent=2, sort_keys=True) + "\n")


def write_experiment(out: Path, experiment: Experiment, extra: dict[str, Any]) -> None:
    """Write ``experiment.json``: the experiment plus how it was launched."""
    out.mkdir(parents=True, exist_ok=True)
    data = {"experiment": json.loads(experiment.to_json()), **extra}
    _atomic_write(out / "experiment.json", json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_result(out: Path) -> TuneResult:
    """Load a run folder written by :func:`write_result`.

    Raises:
        ValueError: ``out`` is not a run folder.
    """
    out = Path(out)
    missing = [
        name
        for name in ("experiment.json", "trials.csv", "history.csv", "best.json")
        if not (out / name).is_file()
    ]
    if missing:
        raise ValueError(f"{str(out)!r} is not a finished run folder: it has no {missing}.")
    experiment = Experiment(**json.loads((out / "experiment.json").read_text())["experiment"])
    best = json.loads((out / "best.json").read_text())
    trials = pd.read_csv(out / "trials.csv", keep_default_na=False, na_values=[""])
    history = pd.read_csv(out / "history.csv")
    return TuneResult(
        experiment=experiment,
        trials=trials,
        history=history,
        best_config=best["config"],
        best_loss=math.nan if best["loss"] is None else best["loss"],
        best_trial=best["trial"],
        out=out,
    )


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)
