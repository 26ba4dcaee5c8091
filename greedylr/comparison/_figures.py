"""A comparison's figures: the test metric per arm, the studies' anytime curves, and (as in the
GreedyLR article) the winners' LR schedules side by side and their loss histories."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import pandas as pd

from greedylr.comparison._analysis import Settings
from greedylr.comparison._plan import REFERENCE
from greedylr.comparison._plan import Plan


if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def write_figures(
    plan: Plan,
    out: Path,
    records: list[dict[str, Any]],
    runs: pd.DataFrame,
    anytime: pd.DataFrame,
    settings: Settings,
) -> list[Path]:
    """Write the PNGs into ``out``; the paths written (none before the first retraining run)."""
    if not len(runs):
        return []
    winners = _winners(plan, records, runs, settings)
    drawings = {
        "test_metric.png": _metric_figure(plan, runs, settings),
        "best_so_far.png": _anytime_figure(plan, anytime),
        "winners_lr.png": _winners_lr_figure(plan, winners),
        "winners_loss.png": _winners_loss_figure(plan, winners),
    }
    paths = []
    for name, figure in drawings.items():
        if figure is None:
            continue
        figure.savefig(out / name)
        paths.append(out / name)
    return paths


def _color(schedule: str, index: int) -> str:
    return "tab:red" if schedule == REFERENCE else f"C{index % 10}"


def _metric_figure(plan: Plan, runs: pd.DataFrame, settings: Settings) -> Figure:
    from greedylr.comparison._stats import bootstrap_ci

    figure, axes = _figure(f"{settings.metric} on the test split, mean and 95 % CI\n{plan.task}")
    protocols = list(dict.fromkeys(runs["protocol"]))
    width = 0.8 / max(1, len(protocols))
    for offset, protocol in enumerate(protocols):
        for index, schedule in enumerate(plan.schedules):
            values = runs[(runs["protocol"] == protocol) & (runs["schedule"] == schedule)]
            if not len(values):
                continue
            mean = values["test_metric"].mean()
            low, high = bootstrap_ci(values["test_metric"])
            x = index + (offset - (len(protocols) - 1) / 2) * width
            axes.errorbar(
                x,
                mean,
                yerr=[[max(0.0, mean - low)], [max(0.0, high - mean)]],
                fmt="os^D"[offset % 4],
                color=_color(schedule, index),
                capsize=3,
                label=protocol if index == 0 else None,
            )
    axes.set_xticks(range(len(plan.schedules)), plan.schedules, rotation=30)
    axes.set_ylabel(settings.metric)
    axes.legend(fontsize=8, title="protocol")
    return figure


def _anytime_figure(plan: Plan, anytime: pd.DataFrame) -> Figure | None:
    if not len(anytime):
        return None
    from matplotlib.figure import Figure

    protocols = list(dict.fromkeys(anytime["protocol"]))
    figure = Figure(figsize=(6 * len(protocols), 4.2), dpi=110, layout="tight")
    for axes, protocol in zip(figure.subplots(1, len(protocols), squeeze=False)[0], protocols):
        rows = anytime[anytime["protocol"] == protocol]
        for index, schedule in enumerate(plan.schedules):
            for study, curve in rows[rows["arm"] == schedule].groupby("study"):
                axes.step(
                    curve["epochs"],
                    curve["best"],
                    where="post",
                    color=_color(schedule, index),
                    alpha=0.8,
                    label=schedule if study == 0 else None,
                )
        axes.set_title(f"Best validation loss so far, {protocol}")
        axes.set_xlabel("epochs spent tuning")
        axes.set_ylabel("best validation loss")
        _log_if_positive(axes, rows["best"])
        axes.grid(alpha=0.3, which="both")
        axes.legend(fontsize=8)
    return figure


def _winners(
    plan: Plan, records: list[dict[str, Any]], runs: pd.DataFrame, settings: Settings
) -> dict[str, dict[str, Any]]:
    """Each arm's winner in the unbiased protocol (``full`` if it ran, else ``asha``): the
    retraining run, on the first seed, of the study whose config scored best on average."""
    protocol = "full" if "full" in plan.protocols else plan.protocols[0]
    chosen = runs[runs["protocol"] == protocol]
    if not len(chosen):
        chosen = runs
        protocol = str(runs["protocol"].iloc[0])
    winners: dict[str, dict[str, Any]] = {}
    ascending = settings.mode == "min"
    for schedule, group in chosen.groupby("schedule", sort=False):
        means = group.groupby("study")["test_metric"].mean().sort_values(ascending=ascending)
        if not len(means) or not math.isfinite(float(means.iloc[0])):
            continue
        study = int(means.index[0])
        for record in records:
            if (record["protocol"], record["schedule"], record["study"]) == (
                protocol,
                schedule,
                study,
            ):
                winners[str(schedule)] = record["record"]
                break
    return winners


def _winners_lr_figure(plan: Plan, winners: dict[str, dict[str, Any]]) -> Figure | None:
    if not winners:
        return None
    from matplotlib.figure import Figure

    arms = [schedule for schedule in plan.schedules if schedule in winners]
    figure = Figure(figsize=(2.6 * len(arms), 3.0), dpi=110, layout="tight")
    panels = figure.subplots(1, len(arms), squeeze=False, sharey=True)[0]
    for axes, schedule in zip(panels, arms):
        history = winners[schedule]["history"]
        epochs = [row["epoch"] for row in history]
        lrs = [row.get("lr", math.nan) for row in history]
        axes.plot(epochs, lrs, color=_color(schedule, plan.schedules.index(schedule)))
        axes.set_title(schedule, fontsize=10)
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3, which="both")
        _log_if_positive(axes, pd.Series(lrs))
    panels[0].set_ylabel("learning rate")
    figure.suptitle(f"The winners' learning-rate schedules, {plan.task}")
    return figure


def _winners_loss_figure(plan: Plan, winners: dict[str, dict[str, Any]]) -> Figure | None:
    if not winners:
        return None
    figure, axes = _figure(f"The winners' validation loss, {plan.task}")
    drawn = []
    for index, schedule in enumerate(plan.schedules):
        if schedule not in winners:
            continue
        history = winners[schedule]["history"]
        losses = [row["loss"] for row in history]
        reference = schedule == REFERENCE
        axes.plot(
            [row["epoch"] for row in history],
            losses,
            label=schedule,
            color="black" if reference else _color(schedule, index),
            linewidth=2.0 if reference else 1.0,
            zorder=3 if reference else 2,
        )
        drawn += losses
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation loss")
    _log_if_positive(axes, pd.Series(drawn))
    axes.legend(fontsize=8)
    return figure


def _figure(title: str) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2), dpi=110, layout="tight")
    axes = figure.subplots()
    axes.set_title(title)
    axes.grid(alpha=0.3, which="both")
    return figure, axes


def _log_if_positive(axes: Axes, values: pd.Series) -> None:
    finite = values[values.map(lambda v: isinstance(v, (int, float)) and math.isfinite(v))]
    if len(finite) and (finite > 0).all() and finite.max() > finite.min():
        axes.set_yscale("log")
