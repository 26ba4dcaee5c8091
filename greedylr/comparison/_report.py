"""A comparison's outputs: ``compare.csv``, ``report.md``, its figures and the terminal summary."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from greedylr.comparison import _analysis
from greedylr.comparison._compare import CompareResult
from greedylr.comparison._plan import DEFAULTS_PROTOCOL
from greedylr.comparison._plan import Plan
from greedylr.comparison._plan import atomic_write
from greedylr.comparison._plan import read_plan


def analyse(
    plan: Plan,
    out: Path,
    *,
    metric: str | None = None,
    metric_mode: str | None = None,
    tolerance: float | None = None,
    target: float | None = None,
) -> CompareResult:
    """Read the records of ``out``, judge them, and write ``compare.csv``, ``report.md`` and
    the figures (what is there so far, for a comparison still running)."""
    records, studies = _analysis.load_records(plan, out)
    settings = _analysis.resolve_settings(
        records, metric=metric, mode=metric_mode, tolerance=tolerance, target=target
    )
    runs = _analysis.runs_table(plan, records, settings)
    arms = _analysis.arms_table(runs) if len(runs) else pd.DataFrame()
    versus = _analysis.versus_table(runs, settings) if len(runs) else pd.DataFrame()
    kendall = _analysis.kendall_table(plan, out)
    anytime = _analysis.anytime_table(plan, out)
    notes = [
        f"{protocol} {schedule} study {study}: {record['note']}"
        for (protocol, schedule, study), record in studies.items()
        if record.get("note")
    ]
    rate = _analysis.overall_rate(versus) if len(versus) else math.nan
    atomic_write(out / "compare.csv", runs.to_csv(index=False))
    from greedylr.comparison import _figures

    figures = _figures.write_figures(plan, out, records, runs, anytime, settings)
    text = summary(runs, arms, versus, rate, settings)
    result = CompareResult(
        out=out,
        runs=runs,
        arms=arms,
        versus=versus,
        kendall=kendall,
        anytime=anytime,
        as_good_or_better=rate,
        metric=settings.metric,
        mode=settings.mode,
        tolerance=settings.tolerance,
        target=settings.target,
        text=text,
        figures=figures,
        notes=notes,
    )
    atomic_write(out / "report.md", markdown(plan, out, result, studies))
    return result


def summary(
    runs: pd.DataFrame,
    arms: pd.DataFrame,
    versus: pd.DataFrame,
    rate: float,
    settings: _analysis.Settings,
) -> str:
    """The terminal summary: each arm's test metric, then GreedyLR against each baseline."""
    if not len(runs):
        return "No retraining run finished yet."
    better = "higher" if settings.mode == "max" else "lower"
    lines = [f"{settings.metric} on the test split ({better} is better), mean [95 % CI]:"]
    for protocol, group in arms.groupby("protocol", sort=False):
        cells = [
            f"{row.arm} {row.test_metric:.4g} [{row.ci_low:.4g}, {row.ci_high:.4g}]"
            for row in group.itertuples()
        ]
        lines.append(f"  {protocol}: " + "; ".join(cells))
    lines.append(
        f"GreedyLR against each baseline (strict: CI of the difference excludes 0 and exceeds "
        f"{settings.tolerance:.3g}; paper: paired test losses, tie |delta| < 0.1 or 1 %):"
    )
    for protocol, group in versus.groupby("protocol", sort=False):
        cells = [
            f"{row.baseline} {row.strict} ({row.wins}/{row.ties}/{row.losses})"
            for row in group.itertuples()
        ]
        lines.append(f"  {protocol}: " + "; ".join(cells))
    if math.isfinite(rate):
        lines.append(
            f"As good or better (paper-style, tuned protocols): {100 * rate:.1f} % of "
            f"{int(versus[versus['protocol'] != DEFAULTS_PROTOCOL]['pairs'].sum())} pairs "
            "(the paper reports 86.7 %)."
        )
    return "\n".join(lines)


def markdown_table(frame: pd.DataFrame, *, digits: int = 4) -> str:
    """A DataFrame as a Markdown table (numbers to ``digits`` significant digits)."""
    if not len(frame):
        return "(none)"

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "-" if math.isnan(value) else f"{value:.{digits}g}"
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([header, rule, *body])


def markdown(
    plan: Plan, out: Path, result: CompareResult, studies: dict[tuple[str, ...], Any]
) -> str:
    """``report.md``: the answer, the evidence, and everything needed to rerun it."""
    stored = read_plan(out) or {}
    better = "higher" if result.mode == "max" else "lower"
    sections = [
        f"# GreedyLR against tuned baselines on {plan.task}",
        f"Test metric: `{result.metric}` ({better} is better). Strict tolerance: "
        f"{result.tolerance:.4g}. Time-to-target: validation loss <= {result.target:.4g}.",
        "## The answer",
        result.text.replace("\n", "  \n"),
        "## Arms: test metric (mean, 95 % bootstrap CI) and time to the target",
        markdown_table(result.arms),
        "## GreedyLR against each baseline",
        "`strict`: the 95 % bootstrap CI of the difference of mean test metric (GreedyLR minus "
        "the baseline) excludes 0 and the difference exceeds the tolerance. `wins/ties/losses`: "
        "the paper's rule on paired test losses (same study index and seed): a tie when "
        "|delta| < 0.1 or within 1 % of the baseline. `as_good_or_better` = (wins + ties) / "
        "pairs, as the paper's 86.7 %.",
        markdown_table(result.versus),
        "## Horizon bias: do early rungs predict the final ranking?",
        "Kendall's tau between each full-fidelity trial's validation loss at an ASHA rung and "
        "at the last epoch (1: same ranking; near 0: the rung ranks at random; a low tau means "
        "early stopping judges this arm unfairly).",
        markdown_table(result.kendall)
        if len(result.kendall)
        else "(needs the full-fidelity trials of `--protocol full` or `both`)",
        "## Figures",
        *[f"![{path.stem}]({path.name})" for path in result.figures],
        "## Studies",
        markdown_table(_studies_table(studies)),
        *(["Notes:", *[f"- {note}" for note in result.notes]] if result.notes else []),
        "## How to rerun it",
        f"```\n{stored.get('command', '')}\n```",
        "Rerunning the same command continues the comparison; finished studies and retraining "
        "runs are kept.",
        "Plan:",
        f"```json\n{json.dumps(plan.to_dict(), indent=2)}\n```",
        f"Tuning seeds: {plan.study_seeds}; retraining seeds: {plan.retrain_seeds}. Protocol "
        "`asha`: searcher "
        f"`{plan.searcher}` with ASHA (first rung {plan.min_epochs}, reduction factor "
        f"{plan.reduction_factor}); `full`: random search, no early stopping. Each study counts "
        f"its finished trials in trial order while their epochs fit {plan.budget_epochs}.",
        "Versions:",
        f"```json\n{json.dumps(stored.get('versions', {}), indent=2)}\n```",
        "Search spaces:",
        *_spaces(plan, studies),
    ]
    return "\n\n".join(sections) + "\n"


def _studies_table(studies: dict[tuple[str, ...], Any]) -> pd.DataFrame:
    rows = [
        {
            "protocol": protocol,
            "arm": schedule,
            "study": int(study),
            "seed": record["seed"],
            "trials": record["trials"],
            "epochs": record["epochs"],
            "epochs_run": record["epochs_run"],
            "best_val_loss": record["best_val_loss"],
        }
        for (protocol, schedule, study), record in studies.items()
    ]
    return pd.DataFrame(rows)


def _spaces(plan: Plan, studies: dict[tuple[str, ...], Any]) -> list[str]:
    from greedylr.comparison._protocol import defaults_config

    lines = []
    for schedule in plan.schedules:
        record = next((r for (_, s, _), r in studies.items() if s == schedule), None)
        space = record["space"] if record is not None else defaults_config(plan, schedule)[1]
        lines.append(f"`{schedule}`:\n```json\n{json.dumps(space, sort_keys=True)}\n```")
    return lines
