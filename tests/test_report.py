"""``greedylr report``: the summary's lines and table, the figures' contents, failures to write."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from greedylr._report import early_stopping_line
from greedylr._report import loss_figure
from greedylr._report import lr_figure
from greedylr._report import report
from greedylr._report import summary
from greedylr._report import tuning_gain_line
from greedylr.backends import Experiment
from greedylr.backends import TrialResult
from greedylr.backends import TuneResult
from greedylr.backends._results import build_result
from greedylr.backends._results import write_experiment
from greedylr.backends._results import write_result


EPOCHS = 10


def _history(final: float, *, lr: float, spike_at: int | None = None) -> list[dict[str, float]]:
    """A loss falling from 2.3 to ``final``; ``spike_at`` diverges one epoch to 1e5."""
    rows = []
    for epoch in range(1, EPOCHS + 1):
        decay = math.exp(-0.8 * (epoch - 1)) - math.exp(-0.8 * (EPOCHS - 1))
        loss = final + (2.3 - final) * decay / (1 - math.exp(-0.8 * (EPOCHS - 1)))
        loss = 1e5 if epoch == spike_at else loss
        rows.append({"epoch": float(epoch), "loss": loss, "lr": lr / epoch, "seconds": 0.1})
    return rows


def _experiment(early_stopping: str = "hyperband") -> Experiment:
    return Experiment.create(
        "quadratic", n_trials=8, max_epochs=EPOCHS, early_stopping=early_stopping
    )


def _records(*, default_status: str = "completed") -> list[TrialResult]:
    """Defaults (trial 0, final 0.0792), the best (trial 3, 0.0712), a diverged failure."""
    finals = {1: 0.0751, 2: 0.0733, 3: 0.0712, 4: 0.0745}
    records = [
        TrialResult(
            0,
            default_status,  # type: ignore[arg-type]
            "",
            {"lr": 0.01, "schedule": "greedylr"},
            _history(0.0792, lr=0.01),
            1.0,
            is_default=True,
        )
    ]
    for trial, final in finals.items():
        history = _history(final, lr=0.01 * (trial + 1), spike_at=2 if trial == 2 else None)
        config = {"lr": 0.01 * (trial + 1), "schedule": "greedylr"}
        records.append(TrialResult(trial, "completed", "", config, history, 1.0))
    diverged = [{"epoch": 1.0, "loss": 40.0, "lr": 3.0}, {"epoch": 2.0, "loss": 1e6, "lr": 3.0}]
    records.append(TrialResult(5, "failed", "diverged", {"lr": 3.0}, diverged, error="Trace"))
    records.append(
        TrialResult(6, "pruned", "stopped early", {"lr": 0.9}, _history(0.5, lr=0.9)[:3])
    )
    return records


def _result(tmp_path: Path, records: list[TrialResult], early_stopping: str = "hyperband") -> Path:
    out = tmp_path / "run"
    write_experiment(out, _experiment(early_stopping), {})
    write_result(build_result(_experiment(early_stopping), records, out))
    return out


def _built(records: list[TrialResult], early_stopping: str = "hyperband") -> TuneResult:
    return build_result(_experiment(early_stopping), records, Path("unused"))


def test_the_summary_compares_the_best_with_the_untuned_defaults() -> None:
    result = _built(_records())
    line = "Best 0.0712 vs untuned defaults 0.0792: -10 %"
    assert tuning_gain_line(result) == line
    assert line in summary(result).splitlines()


def test_a_worse_best_shows_its_sign_and_the_defaults_best_says_so() -> None:
    records = [r for r in _records() if r.trial in (0, 5)]
    result = _built(records)
    assert tuning_gain_line(result) == (
        "Best 0.0792 vs untuned defaults 0.0792: +0.0 % (the defaults are the best config found)"
    )


@pytest.mark.parametrize(
    ("status", "words"),
    [("failed", "failed"), ("pruned", "was stopped early"), ("running", "is still running")],
)
def test_a_defaults_trial_that_did_not_complete_is_named(status: str, words: str) -> None:
    result = _built(_records(default_status=status))
    assert tuning_gain_line(result) == (
        f"The untuned-defaults trial (trial 0) {words}: no tuning gain to show."
    )


def test_a_run_without_a_defaults_trial_says_so() -> None:
    result = _built([r for r in _records() if r.trial != 0])
    assert tuning_gain_line(result) == (
        "No untuned-defaults trial in this run: no tuning gain to show."
    )


def _table(text: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Top "))
    return [line.split() for line in lines[start + 1 :]]


def test_the_top_table_marks_the_defaults_trial_and_adds_it_when_out_of_the_top() -> None:
    result = _built(_records())
    header, *rows = _table(summary(result))
    assert header[:3] == ["trial", "defaults", "final_loss"]
    assert [row[0] for row in rows] == ["3", "2", "4", "1", "0"]
    assert [row[1] for row in rows if row[0] == "0"] == ["yes"]
    assert all(row[1] != "yes" for row in rows if row[0] != "0")
    text = summary(result, top=2)
    assert "Top 2 completed trials and the defaults trial:" in text
    assert [row[0] for row in _table(text)[1:]] == ["3", "2", "0"]


def test_the_epoch_line_without_early_stopping_claims_no_savings() -> None:
    result = _built(_records(), early_stopping="none")
    line = early_stopping_line(result)
    assert line == f"Ran {5 * EPOCHS + 2 + 3} epochs in 7 finished trials; no early stopping."
    assert "saved" not in summary(result)


def test_the_epoch_line_counts_finished_trials_on_both_sides() -> None:
    records = [*_records(), TrialResult(7, "running", "", {"lr": 0.5}, _history(0.5, lr=0.5)[:4])]
    line = early_stopping_line(_built(records))
    run = 5 * EPOCHS + 2 + 3  # the running trial's 4 epochs count on neither side
    assert line == (
        f"Early stopping ran {run} of {run + EPOCHS - 3} epochs: it saved {EPOCHS - 3} epochs "
        f"({100 * (EPOCHS - 3) / (run + EPOCHS - 3):.0f} %) (1 unfinished trial not counted)."
    )


def test_running_and_waiting_trials_are_counted() -> None:
    records = [
        *_records(),
        TrialResult(7, "running", "", {"lr": 0.5}, _history(0.5, lr=0.5)[:4]),
        TrialResult(8, "waiting", "not started", {"lr": 0.6}),
    ]
    first = summary(_built(records)).splitlines()[0]
    assert first.startswith(
        "quadratic / greedylr: 9 trials (5 completed, 1 stopped early, 1 failed, 1 running, "
        "1 waiting), "
    )


def test_a_run_with_no_trial_finished_yet_is_reported(tmp_path: Path) -> None:
    out = _result(tmp_path, [TrialResult(0, "running", "", {"lr": 0.1}, _history(0.1, lr=0.1))])
    shown = report(out)
    text, figures, error = shown.text, shown.figures, shown.figures_error
    assert text.splitlines()[1:] == ["No trial finished yet."]
    assert "1 running" in text.splitlines()[0]
    assert (len(figures), error) == (2, "")
    (out / "trials.csv").unlink()
    (out / "history.csv").unlink()
    (out / "best.json").unlink()  # only experiment.json: the run has just started
    assert report(out).text.splitlines()[1:] == ["No trial finished yet."]


def test_the_loss_figure_zooms_on_the_best_trials_and_draws_the_defaults() -> None:
    result = _built(_records())
    figure = loss_figure(result, top=3)
    axes = figure.axes[0]
    low, high = axes.get_ylim()
    assert low < 0.0712 < high
    assert high < 1.0  # the first epochs, the spike to 1e5 and the diverged trial fall outside
    assert axes.get_yscale() == "log"
    figure.draw_without_rendering()
    labels = {tick.get_text(): tick.get_position()[1] for tick in axes.get_yticklabels()}
    assert labels.get("0.0712") == pytest.approx(0.0712)  # a labelled tick at the best loss
    assert sum(low <= value <= high for value in labels.values()) >= 3
    lines = {line.get_label(): line for line in axes.get_lines()}
    defaults = [line for label, line in lines.items() if label.startswith("defaults")]
    assert len(defaults) == 1
    assert (defaults[0].get_color(), defaults[0].get_linestyle()) == ("k", "--")
    assert list(defaults[0].get_ydata())[-1] == pytest.approx(0.0792)
    ranked = [label for label in lines if label.startswith("#")]
    assert ranked == [
        "#1: trial 3 (loss 0.0712)",
        "#2: trial 2 (loss 0.0733)",
        "#3: trial 4 (loss 0.0745)",
    ]
    assert list(lines["best final loss 0.0712"].get_ydata()) == [0.0712, 0.0712]
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert any(text.startswith("defaults: trial 0 (loss 0.0792)") for text in legend)


def test_the_lr_figure_draws_the_defaults_dashed_black() -> None:
    axes = lr_figure(_built(_records()), top=2).axes[0]
    defaults = [line for line in axes.get_lines() if line.get_label().startswith("defaults")]
    assert [(line.get_color(), line.get_linestyle()) for line in defaults] == [("k", "--")]
    assert list(defaults[0].get_ydata()) == pytest.approx([0.01 / e for e in range(1, 11)])


@pytest.mark.parametrize("draw", [loss_figure, lr_figure])
@pytest.mark.parametrize("statuses", [[], ["failed"], ["running", "pruned"]])
def test_a_run_without_a_completed_trial_draws_a_message(draw: object, statuses: list) -> None:
    records = [
        TrialResult(i, status, "", {"lr": 0.1}, _history(0.5, lr=0.1)[:2])
        for i, status in enumerate(statuses)
    ]
    axes = draw(_built(records)).axes[0]  # type: ignore[operator]
    assert [text.get_text() for text in axes.texts] == ["no completed trial yet"]
    assert axes.texts[0].get_position() == (0.5, 0.5)
    assert axes.get_lines() == []


def test_the_figures_are_written_where_asked(tmp_path: Path) -> None:
    out = _result(tmp_path, _records())
    shown = report(out, top=2, figures_folder=tmp_path / "figures")
    text, figures, error = shown.text, shown.figures, shown.figures_error
    assert error == ""
    folder = tmp_path / "figures"
    assert figures == [folder / "lr_schedules.png", folder / "loss_histories.png"]
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in figures)
    assert "Best 0.0712 vs untuned defaults 0.0792: -10 %" in text


def test_figures_that_cannot_be_written_keep_the_summary(tmp_path: Path) -> None:
    out = _result(tmp_path, _records())
    expected = report(out).text
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    folder = blocker / "figures"  # under a regular file: mkdir fails, as root too
    shown = report(out, figures_folder=folder)
    text, figures, error = shown.text, shown.figures, shown.figures_error
    assert (text, figures) == (expected, [])
    assert error == f"cannot write figures to {folder}: Not a directory"
    (out / "loss_histories.png").unlink()
    (out / "loss_histories.png").mkdir()  # the figure's own path is taken by a folder
    shown = report(out)
    text, figures, error = shown.text, shown.figures, shown.figures_error
    assert (text, figures) == (expected, [])
    assert error == f"cannot write figures to {out}: Is a directory"


@pytest.mark.parametrize("top", [0, -1])
def test_top_must_be_at_least_one(tmp_path: Path, top: int) -> None:
    out = _result(tmp_path, _records())
    with pytest.raises(ValueError, match=rf"^`top` must be >= 1, but got top={top}\.$"):
        report(out, top=top)


def test_a_folder_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a run folder: it has no experiment.json"):
        report(tmp_path)


def test_report_still_unpacks_as_text_and_figures(tmp_path: Path) -> None:
    shown = report(_result(tmp_path, _records()))
    text, figures = shown
    assert (text, figures) == (shown.text, shown.figures)
    assert [path.name for path in figures] == ["lr_schedules.png", "loss_histories.png"]
