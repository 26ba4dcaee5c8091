"""``greedylr report``: a run's summary table and its figures."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from greedylr.backends._results import TuneResult


def summary(result: TuneResult, *, top: int = 10) -> str:
    """The run's summary: counts, the best trial, early stopping's savings, the top trials."""
    trials = result.trials
    experiment = result.experiment
    counts = trials["status"].value_counts().to_dict() if len(trials) else {}
    lines = [
        f"{experiment.task} / {experiment.schedule}: {len(trials)} trials "
        f"({counts.get('completed', 0)} completed, {counts.get('pruned', 0)} stopped early, "
        f"{counts.get('failed', 0)} failed), {experiment.searcher} + "
        f"{experiment.early_stopping}, seed {experiment.seed}",
        early_stopping_line(result),
    ]
    if result.best_config is None:
        lines.append("No trial completed.")
        return "\n".join(lines)
    lines.append(f"Best: trial {result.best_trial}, loss {result.best_loss:.6g}")
    lines.append(best_config_line(result))
    ranked = trials[trials["status"] == "completed"].sort_values(["final_loss", "trial"])
    columns = ["trial", "final_loss", "best_loss", "epochs", "seconds"]
    config_columns = [c for c in ranked.columns if c.startswith("config.")]
    tuned = [c for c in config_columns if ranked[c].nunique(dropna=False) > 1]
    table = ranked[columns + tuned].head(top).rename(columns=lambda c: c.removeprefix("config."))
    lines.append(f"Top {min(top, len(ranked))} completed trials:")
    lines.append(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return "\n".join(lines)


def early_stopping_line(result: TuneResult) -> str:
    """How many epochs early stopping saved against running every trial to the end."""
    run, full, saved = result.epochs_run, result.epochs_without_early_stopping, result.epochs_saved
    if not full:
        return "No epoch was run."
    return (
        f"Early stopping ran {run} of {full} epochs: it saved {saved} epochs "
        f"({100 * saved / full:.0f} %)."
    )


def best_config_line(result: TuneResult) -> str:
    """The best config, one ``key=value`` each, without the constants every trial shares."""
    config = result.best_config or {}
    constant = {"schedule", "epochs", "seed"}
    parts = [f"{key}={_short(value)}" for key, value in config.items() if key not in constant]
    return "Best config: " + ", ".join(parts)


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_figures(result: TuneResult, *, top: int = 5, folder: Path | None = None) -> list[Path]:
    """``lr_schedules.png`` and ``loss_histories.png`` of the ``top`` completed trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder or result.out)
    folder.mkdir(parents=True, exist_ok=True)
    trials = result.trials
    history = result.history
    ranked = trials[trials["status"] == "completed"].sort_values(["final_loss", "trial"])
    chosen = list(ranked["trial"].head(top))
    paths = []
    for column, name, title, log in (
        ("lr", "lr_schedules.png", "Learning-rate schedules of the best trials", True),
        ("loss", "loss_histories.png", "Validation loss of the best trials", True),
    ):
        figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
        for rank, trial in enumerate(chosen, start=1):
            rows: pd.DataFrame = history[history["trial"] == trial]
            if column not in rows or rows[column].isna().all():
                continue
            loss = float(trials.loc[trials["trial"] == trial, "final_loss"].iloc[0])
            axes.plot(
                rows["epoch"],
                rows[column],
                marker="o",
                markersize=3,
                label=f"#{rank}: trial {trial} (loss {loss:.4g})",
            )
        if column == "loss" and len(history):
            everyone = history.groupby("trial")
            for _, rows in everyone:
                if rows["trial"].iloc[0] not in chosen:
                    axes.plot(rows["epoch"], rows["loss"], color="0.85", linewidth=0.7, zorder=0)
        if column == "loss":  # frame the best trials; diverging ones would squash them
            focus = history[history["trial"].isin(chosen)]["loss"]
            focus = focus[focus.map(math.isfinite)]
            if len(focus):
                axes.set_ylim(focus.min() * 0.9, focus.max() * 1.5)
        axes.set_xlabel("epoch")
        axes.set_ylabel("learning rate" if column == "lr" else "validation loss")
        if log and _positive(history, column):
            axes.set_yscale("log")
        axes.set_title(f"{title}\n{result.experiment.task}, {result.experiment.schedule}")
        if chosen:
            axes.legend(fontsize=8)
        axes.grid(alpha=0.3)
        figure.tight_layout()
        path = folder / name
        figure.savefig(path)
        plt.close(figure)
        paths.append(path)
    return paths


def _positive(history: pd.DataFrame, column: str) -> bool:
    if column not in history or not len(history):
        return False
    values = history[column].dropna()
    return bool(len(values)) and bool((values > 0).all()) and math.isfinite(values.max())


def report(run: str | Path, *, top: int = 5) -> tuple[str, list[Path]]:
    """``greedylr report RUN`` as a call: the summary text and the figures written.

    Raises:
        ValueError: ``run`` is not a finished run folder.
    """
    from greedylr.backends._results import read_result

    result = read_result(Path(run))
    return summary(result), write_figures(result, top=top)
