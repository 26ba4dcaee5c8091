"""``greedylr report``: a run's summary table and its figures.

Works on a finished run and on one still going (the tuner rewrites the tables as trials end).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import pandas as pd

from greedylr.backends._results import TuneResult


if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Report:
    """What ``greedylr report RUN`` shows; unpacks as ``text, figures = report(run)``.

    Attributes:
        text: The summary (:func:`summary`).
        figures: The figures written (none if writing them failed).
        figures_error: Why the figures could not be written, as one line
            (``"cannot write figures to DIR: Permission denied"``); empty if they were.
    """

    text: str
    figures: list[Path]
    figures_error: str = ""

    def __iter__(self) -> Iterator[Any]:
        """``text, figures``: what ``report`` returned before it told figure errors apart."""
        return iter((self.text, self.figures))


def report(run: str | Path, *, top: int = 5, figures_folder: str | Path | None = None) -> Report:
    """``greedylr report RUN`` as a call: the summary, and the figures written into a folder.

    A folder where the figures cannot be written does not lose the summary: the error comes
    back in ``figures_error`` instead of being raised.

    Args:
        run: The run folder (finished or still running).
        top: How many of the best completed trials the figures draw.
        figures_folder: Where the figures go (default: the run folder).

    Raises:
        ValueError: ``top`` is below 1, or ``run`` is not a run folder.
    """
    from greedylr.backends._results import read_result

    _check_top(top)
    result = read_result(Path(run))
    text = summary(result)
    folder = Path(figures_folder if figures_folder is not None else result.out)
    try:
        figures = write_figures(result, top=top, folder=folder)
    except OSError as error:
        reason = error.strerror or str(error)
        return Report(text, [], f"cannot write figures to {folder}: {reason}")
    return Report(text, figures, "")


def summary(result: TuneResult, *, top: int = 10) -> str:
    """The run's summary: counts, early stopping's savings, the best trial against the untuned
    defaults, the ``top`` completed trials (and the defaults trial, marked)."""
    _check_top(top)
    lines = [counts_line(result)]
    if not len(result.finished):
        lines.append("No trial finished yet.")
        return "\n".join(lines)
    lines.append(early_stopping_line(result))
    if result.tracebacks:
        lines.append(f"Tracebacks of failed trials: {result.out}/failures/")
    if result.best_config is None:
        lines.append("No trial completed.")
        return "\n".join(lines)
    lines.append(f"Best: trial {result.best_trial}, loss {result.best_loss:.6g}")
    lines.append(tuning_gain_line(result))
    lines.append(best_config_line(result))
    trials = result.trials
    ranked = trials[trials["status"] == "completed"].sort_values(["final_loss", "trial"])
    shown = ranked.head(top)
    heading = f"Top {len(shown)} completed trials"
    defaults = ranked[ranked["defaults"]]
    if len(defaults) and not shown["defaults"].any():
        shown = pd.concat([shown, defaults.head(1)])
        heading += " and the defaults trial"
    columns = ["trial", "defaults", "final_loss", "best_loss", "epochs", "seconds"]
    config_columns = [c for c in ranked.columns if c.startswith("config.")]
    tuned = [c for c in config_columns if ranked[c].nunique(dropna=False) > 1]
    table = shown[columns + tuned].rename(columns=lambda c: c.removeprefix("config."))
    table["defaults"] = table["defaults"].map({True: "yes", False: ""})
    lines.append(heading + ":")
    lines.append(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return "\n".join(lines)


def counts_line(result: TuneResult) -> str:
    """The job and its trials by status, running and waiting ones included."""
    experiment = result.experiment
    trials = result.trials
    counts = trials["status"].value_counts().to_dict() if len(trials) else {}
    parts = [
        f"{counts.get('completed', 0)} completed",
        f"{counts.get('pruned', 0)} stopped early",
        f"{counts.get('failed', 0)} failed",
    ]
    others = ("interrupted", "running", "waiting")
    parts += [f"{counts[status]} {status}" for status in others if counts.get(status)]
    return (
        f"{experiment.task} / {experiment.schedule_label}: {len(trials)} trials "
        f"({', '.join(parts)}), {experiment.searcher} + {experiment.early_stopping}, "
        f"seed {experiment.seed}"
    )


def early_stopping_line(result: TuneResult) -> str:
    """How many epochs early stopping saved against running every finished trial to the end.

    Both numbers count the finished trials (completed, stopped early, failed, interrupted)
    and only them; see :attr:`TuneResult.epochs_without_early_stopping`. Without early
    stopping, the line says how many epochs ran and nothing about savings.
    """
    run, full, saved = result.epochs_run, result.epochs_without_early_stopping, result.epochs_saved
    finished = len(result.finished)
    unfinished = len(result.trials) - finished
    note = f" ({_plural(unfinished, 'unfinished trial')} not counted)" if unfinished else ""
    if not full:
        return f"No finished trial ran an epoch{note}."
    if result.experiment.early_stopping == "none":
        trials = _plural(finished, "finished trial")
        return f"Ran {run} epochs in {trials}; no early stopping{note}."
    return (
        f"Early stopping ran {run} of {full} epochs: it saved {saved} epochs "
        f"({100 * saved / full:.0f} %){note}."
    )


_NOT_COMPLETED = {
    "pruned": "was stopped early",
    "failed": "failed",
    "running": "is still running",
    "waiting": "has not started",
    "interrupted": "was interrupted",
}


def tuning_gain_line(result: TuneResult) -> str:
    """The best loss against the untuned defaults' loss, as a signed relative change.

    For example ``"Best 0.0712 vs untuned defaults 0.0792: -10 %"``.
    """
    if result.default_trial is None:
        return "No untuned-defaults trial in this run: no tuning gain to show."
    if math.isnan(result.default_loss):
        trials = result.trials
        rows = trials[trials["trial"] == result.default_trial] if len(trials) else trials
        status = str(rows["status"].iloc[0]) if len(rows) else "waiting"
        what = _NOT_COMPLETED.get(status, "ended with a loss that is not finite")
        return (
            f"The untuned-defaults trial (trial {result.default_trial}) {what}: "
            "no tuning gain to show."
        )
    if result.best_trial is None:
        return "No trial completed: no tuning gain to show."
    best, default = result.best_loss, result.default_loss
    line = f"Best {best:.4g} vs untuned defaults {default:.4g}: "
    if default == 0:
        line += f"{best - default:+.4g} (absolute)"
    else:
        change = 100 * (best - default) / abs(default)
        line += f"{change:+.0f} %" if abs(change) >= 10 else f"{change:+.1f} %"
    if result.best_trial == result.default_trial:
        line += " (the defaults are the best config found)"
    return line


def best_config_line(result: TuneResult) -> str:
    """The best config, one ``key=value`` each, without the constants every trial shares."""
    config = result.best_config or {}
    constant = {"schedule", "epochs", "seed"}
    parts = [f"{key}={_short(value)}" for key, value in config.items() if key not in constant]
    return "Best config: " + ", ".join(parts)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _check_top(top: int) -> None:
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"`top` must be >= 1, but got {top=}.")


def write_figures(
    result: TuneResult, *, top: int = 5, folder: str | Path | None = None
) -> list[Path]:
    """Save ``lr_schedules.png`` and ``loss_histories.png`` (see :func:`loss_figure`).

    Raises:
        OSError: The folder or a figure cannot be written.
    """
    _check_top(top)
    folder = Path(folder if folder is not None else result.out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in (("lr_schedules.png", lr_figure), ("loss_histories.png", loss_figure)):
        path = folder / name
        draw(result, top=top).savefig(path)
        paths.append(path)
    return paths


def lr_figure(result: TuneResult, *, top: int = 5) -> Figure:
    """The learning rate per epoch of the ``top`` completed trials and the defaults trial."""
    figure, axes = _figure(result, "Learning-rate schedules of the best trials", "learning rate")
    chosen = _top_trials(result, top)
    history = result.history
    if not chosen:
        return _message(figure, axes, "no completed trial yet")
    if "lr" not in history or history["lr"].isna().all():
        return _message(figure, axes, "the trials reported no learning rate")
    _draw_trials(axes, result, chosen, "lr")
    values = history.loc[history["trial"].isin(chosen), "lr"].dropna()
    log = bool(len(values)) and bool((values > 0).all()) and math.isfinite(values.max())
    if log:
        axes.set_yscale("log")
    if len(values) and math.isfinite(values.max()) and values.max() > values.min():
        _label_ticks(axes, log=log)
    axes.legend(fontsize=8)
    return figure


def loss_figure(result: TuneResult, *, top: int = 5) -> Figure:
    """The validation loss per epoch of the ``top`` completed trials, zoomed on what matters.

    The y-axis runs from just below the lowest loss of the drawn trials to the 60th percentile
    of their losses (or the defaults trial's final loss, if higher): the first epochs and
    diverging values fall outside. A dotted line and a labelled tick mark the best final loss;
    the defaults trial is dashed black; the other trials are grey, behind.
    """
    figure, axes = _figure(result, "Validation loss of the best trials", "validation loss")
    chosen = _top_trials(result, top)
    history = result.history
    if not chosen:
        return _message(figure, axes, "no completed trial yet")
    for trial, rows in history.groupby("trial"):
        if trial not in chosen and trial != result.default_trial:
            axes.plot(rows["epoch"], rows["loss"], color="0.85", linewidth=0.7, zorder=0)
    _draw_trials(axes, result, chosen, "loss")
    trials = result.trials
    best = float(trials.loc[trials["trial"] == chosen[0], "final_loss"].iloc[0])
    axes.axhline(
        best, color="tab:green", linestyle=":", linewidth=1.2, label=f"best final loss {best:.4g}"
    )
    drawn = history[history["trial"].isin([*chosen, result.default_trial])]["loss"]
    drawn = drawn[drawn.map(math.isfinite)]
    low = min(float(drawn.min()), best) if len(drawn) else best
    high = float(drawn.quantile(0.6)) if len(drawn) else best
    if math.isfinite(result.default_loss):
        high = max(high, result.default_loss)
    log = low > 0
    if log:
        high = max(high, low * 1.2)
        axes.set_yscale("log")
        axes.set_ylim(low / 1.06, high * 1.1)
    else:
        margin = max(high - low, abs(low) * 0.1, 1e-12) * 0.06
        axes.set_ylim(low - margin, high + margin)
    _label_ticks(axes, log=log, mark=best)
    axes.legend(fontsize=8)
    return figure


def _figure(result: TuneResult, title: str, ylabel: str) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(7, 4.2), dpi=110, layout="tight")
    axes = figure.subplots()
    experiment = result.experiment
    axes.set_title(f"{title}\n{experiment.task}, {experiment.schedule_label}")
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3, which="both")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    return figure, axes


def _message(figure: Figure, axes: Axes, text: str) -> Figure:
    axes.text(0.5, 0.5, text, ha="center", va="center", fontsize=13, transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])
    return figure


def _top_trials(result: TuneResult, top: int) -> list[int]:
    trials = result.trials
    if not len(trials):
        return []
    completed = trials[(trials["status"] == "completed") & trials["final_loss"].map(_finite)]
    return [int(t) for t in completed.sort_values(["final_loss", "trial"])["trial"].head(top)]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _draw_trials(axes: Axes, result: TuneResult, chosen: list[int], column: str) -> None:
    """The chosen trials in colour, ranked, and the defaults trial dashed black."""
    trials, history = result.trials, result.history
    for rank, trial in enumerate(chosen, start=1):
        if trial == result.default_trial:
            continue
        rows = history[history["trial"] == trial]
        loss = float(trials.loc[trials["trial"] == trial, "final_loss"].iloc[0])
        label = f"#{rank}: trial {trial} (loss {loss:.4g})"
        axes.plot(rows["epoch"], rows[column], marker="o", markersize=3, label=label)
    default = result.default_trial
    rows = history[history["trial"] == default] if default is not None else history.iloc[:0]
    if len(rows) and column in rows and rows[column].notna().any():
        status = trials.loc[trials["trial"] == default, "status"].iloc[0]
        ending = f"loss {result.default_loss:.4g}" if status == "completed" else status
        ranked = f"#{chosen.index(default) + 1} " if default in chosen else ""
        label = f"defaults: {ranked}trial {default} ({ending})"
        axes.plot(rows["epoch"], rows[column], "k--", linewidth=1.6, label=label, zorder=3)


def _label_ticks(axes: Axes, *, log: bool, mark: float | None = None) -> None:
    """Plain labelled ticks over the y-range (dense enough on a log axis spanning less than a
    decade), one of them at ``mark`` with its 4 digits (its neighbours too close go)."""
    from matplotlib.ticker import FixedLocator
    from matplotlib.ticker import FuncFormatter
    from matplotlib.ticker import LogLocator
    from matplotlib.ticker import MaxNLocator
    from matplotlib.ticker import NullFormatter

    low, high = axes.get_ylim()

    def position(value: float) -> float:  # 0 at the bottom of the axes, 1 at the top
        if log:
            return math.log(value / low) / math.log(high / low)
        return (value - low) / (high - low)

    candidates: Callable[[float, float], Any]
    if log:
        decades = math.log10(high / low)
        subs = tuple(range(1, 10)) if decades <= 1.3 else (1, 2, 5) if decades <= 3 else (1,)
        candidates = LogLocator(base=10, subs=subs, numticks=30).tick_values
        axes.yaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10)), numticks=30))
        axes.yaxis.set_minor_formatter(NullFormatter())
    else:
        candidates = MaxNLocator(8).tick_values
    ticks = [float(t) for t in candidates(low, high) if low <= t <= high]
    if mark is not None:
        ticks = [t for t in ticks if abs(position(t) - position(mark)) > 0.05] + [mark]
    axes.yaxis.set_major_locator(FixedLocator(sorted(ticks)))
    axes.yaxis.set_major_formatter(
        FuncFormatter(lambda value, _: f"{value:.4g}" if value == mark else f"{value:.3g}")
    )
    axes.set_ylim(low, high)
