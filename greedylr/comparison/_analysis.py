"""From a comparison's records to its tables: runs, arms, GreedyLR against each baseline,
early rungs' ranking quality, anytime curves."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greedylr.comparison import _stats
from greedylr.comparison._plan import DEFAULTS_PROTOCOL
from greedylr.comparison._plan import REFERENCE
from greedylr.comparison._plan import Plan
from greedylr.comparison._plan import read_retrain_record
from greedylr.comparison._protocol import retrain_file
from greedylr.comparison._protocol import study_folder
from greedylr.comparison._protocol import within_budget


_HIGHER_IS_BETTER = ("accuracy", "auc", "f1", "r2", "precision", "recall")


@dataclass(frozen=True)
class Settings:
    """How the runs are judged (may change between reruns without rerunning anything).

    Attributes:
        metric: The test metric (``test_accuracy``, ``test_loss``, ...).
        mode: ``min`` or ``max``: which way the metric is better.
        tolerance: The strict rule's tolerance on the metric.
        target: The validation loss that ``epochs_to_target`` waits for.
    """

    metric: str
    mode: str
    tolerance: float
    target: float


def arm_name(schedule: str, protocol: str) -> str:
    """``cosine`` for a tuned arm, ``cosine-defaults`` for the untuned one."""
    return f"{schedule}-defaults" if protocol == DEFAULTS_PROTOCOL else schedule


def protocols_run(plan: Plan) -> list[str]:
    """The untuned defaults first, then the tuning protocols."""
    return [DEFAULTS_PROTOCOL, *plan.protocols]


def load_records(plan: Plan, out: Path) -> tuple[list[dict[str, Any]], dict[tuple[str, ...], Any]]:
    """Every retraining record there is, with its study's record; and each study's record."""
    runs: list[dict[str, Any]] = []
    studies: dict[tuple[str, ...], Any] = {}
    for protocol in protocols_run(plan):
        count = 1 if protocol == DEFAULTS_PROTOCOL else plan.studies
        for schedule in plan.schedules:
            for study in range(count):
                study_record: dict[str, Any] = {"trials": 0, "epochs": 0, "config": None}
                path = study_folder(out, protocol, schedule, study) / "study.json"
                if protocol != DEFAULTS_PROTOCOL:
                    if not path.is_file():
                        continue
                    study_record = json.loads(path.read_text())
                    studies[(protocol, schedule, str(study))] = study_record
                for seed in plan.retrain_seeds:
                    file = retrain_file(out, protocol, schedule, study, seed)
                    if file.is_file():
                        runs.append(
                            {
                                "protocol": protocol,
                                "schedule": schedule,
                                "study": study,
                                "study_record": study_record,
                                "record": read_retrain_record(file),
                            }
                        )
    return runs, studies


def resolve_settings(
    runs: list[dict[str, Any]],
    *,
    metric: str | None,
    mode: str | None,
    tolerance: float | None,
    target: float | None,
) -> Settings:
    """The metric (default: ``test_accuracy`` if reported, else ``test_loss``), its direction
    (default: ``max`` for accuracy-like names, else ``min``), the tolerance (default: the median
    seed-to-seed standard deviation of the metric within a study) and the target (default: the
    median final validation loss of the tuned runs).

    Raises:
        ValueError: ``metric`` is not a ``test_`` metric the runs reported, or a bad ``mode``.
    """
    last_rows = [run["record"]["history"][-1] for run in runs if run["record"]["history"]]
    reported = sorted({key for row in last_rows for key in row if key.startswith("test_")})
    if metric is None:
        metric = next((m for m in ("test_accuracy", "test_loss") if m in reported), None)
        metric = metric or (reported[0] if reported else "test_loss")
    elif reported and metric not in reported:
        raise ValueError(f"`metric` must be one the task reports, {reported}, but got {metric!r}.")
    if mode is None:
        mode = "max" if any(word in metric for word in _HIGHER_IS_BETTER) else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"`metric_mode` must be 'min' or 'max', but got {mode!r}.")
    tuned = [run for run in runs if run["protocol"] != DEFAULTS_PROTOCOL]
    if tolerance is None:
        spreads = []
        groups: dict[tuple[str, str, int], list[float]] = {}
        for run in tuned:
            key = (run["protocol"], run["schedule"], run["study"])
            groups.setdefault(key, []).append(_last(run["record"], metric))
        for values in groups.values():
            finite = [v for v in values if math.isfinite(v)]
            if len(finite) >= 2:
                spreads.append(float(np.std(finite, ddof=1)))
        tolerance = float(np.median(spreads)) if spreads else 0.0
    if target is None:
        finals = [_last(run["record"], "loss") for run in tuned or runs]
        finite = [v for v in finals if math.isfinite(v)]
        target = float(np.median(finite)) if finite else math.nan
    return Settings(metric=metric, mode=mode, tolerance=float(tolerance), target=float(target))


def _last(record: dict[str, Any], key: str) -> float:
    history = record["history"]
    if record["status"] != "completed" or not history:
        return math.nan
    value = history[-1].get(key)
    return math.nan if value is None else float(value)


def runs_table(plan: Plan, runs: list[dict[str, Any]], settings: Settings) -> pd.DataFrame:
    """``compare.csv``: one row per (task, arm, protocol, study, seed)."""
    rows = []
    for run in runs:
        record, study = run["record"], run["study_record"]
        losses = [row["loss"] for row in record["history"]]
        reached = _stats.epochs_to_target(losses, settings.target)
        seconds = math.nan
        if reached is not None:
            seconds = float(record["history"][reached - 1].get("seconds", math.nan))
        config = {k: v for k, v in record["config"].items() if k not in ("epochs", "seed")}
        rows.append(
            {
                "task": plan.task,
                "arm": arm_name(run["schedule"], run["protocol"]),
                "schedule": run["schedule"],
                "protocol": run["protocol"],
                "study": run["study"],
                "seed": record["seed"],
                "status": record["status"],
                "tuning_trials": study["trials"],
                "tuning_epochs": study["epochs"],
                "val_loss": _last(record, "loss"),
                "test_loss": _last(record, "test_loss"),
                "metric": settings.metric,
                "test_metric": _last(record, settings.metric),
                "epochs_to_target": math.nan if reached is None else reached,
                "seconds_to_target": seconds,
                "seconds": record["seconds"],
                "config": json.dumps(config, sort_keys=True),
            }
        )
    return pd.DataFrame(rows, columns=_RUN_COLUMNS)


_RUN_COLUMNS = [
    "task", "arm", "schedule", "protocol", "study", "seed", "status", "tuning_trials",
    "tuning_epochs", "val_loss", "test_loss", "metric", "test_metric", "epochs_to_target",
    "seconds_to_target", "seconds", "config",
]  # fmt: skip


def arms_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per protocol and arm: the test metric's mean and 95 % bootstrap CI, the test loss, the
    tuning spent, and the time to the target (median over the runs that reached it)."""
    rows = []
    for (protocol, arm), group in runs.groupby(["protocol", "arm"], sort=False):
        low, high = _stats.bootstrap_ci(group["test_metric"])
        reached = group["epochs_to_target"].dropna()
        rows.append(
            {
                "protocol": protocol,
                "arm": arm,
                "runs": len(group),
                "diverged": int((group["status"] != "completed").sum()),
                "test_metric": group["test_metric"].mean(),
                "ci_low": low,
                "ci_high": high,
                "test_loss": group["test_loss"].mean(),
                "tuning_epochs": group.drop_duplicates("study")["tuning_epochs"].mean(),
                "tuning_trials": group.drop_duplicates("study")["tuning_trials"].mean(),
                "reached_target": len(reached) / len(group),
                "epochs_to_target": reached.median() if len(reached) else math.nan,
                "seconds_to_target": group["seconds_to_target"].dropna().median(),
            }
        )
    return pd.DataFrame(rows)


def versus_table(runs: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """GreedyLR against each baseline, per protocol: the strict rule on the test metric (CI of
    the difference of means, tolerance) and the paper's paired rule on the test loss (pairs
    of the same study index and retraining seed)."""
    rows = []
    for protocol, group in runs.groupby("protocol", sort=False):
        reference = group[group["schedule"] == REFERENCE]
        for schedule, baseline in group.groupby("schedule", sort=False):
            if schedule == REFERENCE:
                continue
            strict = _stats.strict_outcome(
                reference["test_metric"],
                baseline["test_metric"],
                mode=settings.mode,  # type: ignore[arg-type]
                tolerance=settings.tolerance,
            )
            pairs = reference.merge(baseline, on=["study", "seed"], suffixes=("_a", "_b"))
            lenient = _stats.lenient_outcomes(pairs["test_loss_a"], pairs["test_loss_b"])
            rows.append(
                {
                    "protocol": protocol,
                    "baseline": arm_name(str(schedule), str(protocol)),
                    "difference": strict.difference,
                    "ci_low": strict.low,
                    "ci_high": strict.high,
                    "strict": strict.outcome,
                    "pairs": len(lenient),
                    "wins": lenient.count("win"),
                    "ties": lenient.count("tie"),
                    "losses": lenient.count("loss"),
                    "as_good_or_better": _stats.as_good_or_better(lenient),
                }
            )
    return pd.DataFrame(rows)


def overall_rate(versus: pd.DataFrame) -> float:
    """The paper's "as good or better" over every pair of the tuned protocols."""
    tuned = versus[versus["protocol"] != DEFAULTS_PROTOCOL] if len(versus) else versus
    pairs = int(tuned["pairs"].sum()) if len(tuned) else 0
    if not pairs:
        return math.nan
    return float((tuned["wins"].sum() + tuned["ties"].sum()) / pairs)


def kendall_table(plan: Plan, out: Path) -> pd.DataFrame:
    """Per arm and early rung, Kendall's tau between the validation loss there and the final
    one, over the full-fidelity studies' completed trials (every trial ran every epoch)."""
    from greedylr.backends._results import read_result

    if "full" not in plan.protocols:
        return pd.DataFrame(columns=["arm", "rung", "trials", "kendall_tau"])
    rows = []
    for schedule in plan.schedules:
        pooled: dict[int, tuple[list[float], list[float]]] = {}
        for study in range(plan.studies):
            folder = study_folder(out, "full", schedule, study) / "run"
            if not (folder / "experiment.json").is_file():
                continue
            result = read_result(folder)
            kept = within_budget(result.trials, plan.budget_epochs)
            kept = kept[kept["status"] == "completed"]
            history = result.history[result.history["trial"].isin(kept["trial"])]
            by_trial = {trial: rows for trial, rows in history.groupby("trial")}
            for rung in _stats.rungs(plan.min_epochs, plan.reduction_factor, plan.max_epochs):
                early, final = pooled.setdefault(rung, ([], []))
                for trial, final_loss in zip(kept["trial"], kept["final_loss"]):
                    at = by_trial[trial][by_trial[trial]["epoch"] == rung]["loss"]
                    early.append(float(at.iloc[0]) if len(at) else math.nan)
                    final.append(float(final_loss))
        for rung, (early, final) in sorted(pooled.items()):
            rows.append(
                {
                    "arm": schedule,
                    "rung": rung,
                    "trials": len(final),
                    "kendall_tau": _stats.rung_kendall_tau(early, final),
                }
            )
    return pd.DataFrame(rows, columns=["arm", "rung", "trials", "kendall_tau"])


def anytime_table(plan: Plan, out: Path) -> pd.DataFrame:
    """Each study's best-so-far validation loss against the epochs it had spent."""
    from greedylr.backends._results import read_result

    rows = []
    for protocol in plan.protocols:
        for schedule in plan.schedules:
            for study in range(plan.studies):
                folder = study_folder(out, protocol, schedule, study) / "run"
                if not (folder / "experiment.json").is_file():
                    continue
                kept = within_budget(read_result(folder).trials, plan.budget_epochs)
                if not len(kept):
                    continue
                spent, best = _stats.best_so_far(
                    kept["epochs"].tolist(),
                    kept["final_loss"].tolist(),
                    (kept["status"] == "completed").tolist(),
                )
                rows += [
                    {"protocol": protocol, "arm": schedule, "study": study, "epochs": e, "best": b}
                    for e, b in zip(spent, best)
                ]
    return pd.DataFrame(rows, columns=["protocol", "arm", "study", "epochs", "best"])
