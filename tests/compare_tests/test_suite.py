"""``greedylr compare --suite``: the named suites, a real (tiny) suite end to end, and its
command line refusing what the suite sets itself."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from greedylr.cli import main
from greedylr.comparison import SUITES
from greedylr.comparison import Suite
from greedylr.comparison import SuiteTask
from greedylr.comparison import compare_suite
from greedylr.comparison._compare import DEFAULT_SCHEDULES
from greedylr.searchers import list_methods
from greedylr.tasks import list_tasks


def test_the_small_and_full_suites_are_those_the_issue_names() -> None:
    builtin = {info.name for info in list_tasks()}
    small, full = SUITES["small"], SUITES["full"]
    assert [t.task for t in small.tasks] == [
        "digits-mlp", "nmf", "quadratic", "mnist1d-cnn", "fashion-mnist-mlp",
    ]  # fmt: skip
    assert {t.task for t in full.tasks} == {t.task for t in small.tasks} | {
        "fashion-mnist-cnn",
        "char-lm",
    }
    for suite in (small, full):
        assert {t.task for t in suite.tasks} <= builtin
        assert suite.schedules[0] == "greedylr"
        assert set(suite.schedules) == {*DEFAULT_SCHEDULES, *list_methods()}
        assert all(t.budget_epochs >= t.max_epochs >= 1 for t in suite.tasks)
    assert (small.seeds, small.studies) == (3, 1)
    assert (full.seeds, full.studies, full.protocol) == (5, 3, "both")


@pytest.mark.slow
def test_a_suite_compares_each_task_then_pools_the_verdict(tmp_path: Path) -> None:
    tiny = Suite(
        name="tiny",
        tasks=(
            SuiteTask("quadratic", max_epochs=2, budget_trials=2),
            SuiteTask("nmf", max_epochs=2, budget_trials=2),
        ),
        schedules=("greedylr", "constant", "sgd-hd"),
        seeds=2,
        studies=1,
        protocol="asha",
        description="two tasks, three arms",
    )
    out = tmp_path / "suite"
    result = compare_suite(tiny, out=out, progress=False)
    assert set(result.results) == {"quadratic", "nmf"}
    for task in ("quadratic", "nmf"):
        runs = pd.read_csv(out / task / "compare.csv")
        # 3 arms x (defaults + asha) x 2 seeds, each task with the suite's epochs.
        assert len(runs) == 3 * 2 * 2
        assert (runs["status"] == "completed").all()
        tuned = runs[runs["protocol"] == "asha"]
        assert (tuned["tuning_epochs"] <= 4).all()
        assert (out / task / "report.md").is_file()
    pooled = pd.read_csv(out / "suite.csv")
    # GreedyLR against 2 baselines, per task, for the defaults and the tuned protocol.
    assert len(pooled) == 2 * 2 * 2
    assert set(pooled["task"]) == {"quadratic", "nmf"}
    baselines = {"constant", "sgd-hd", "constant-defaults", "sgd-hd-defaults"}
    assert set(pooled["baseline"]) == baselines
    totals = result.totals.set_index(["protocol", "baseline"])
    assert totals.loc[("asha", "constant"), "pairs"] == 2 * 2  # 2 tasks x 2 seeds
    strict = totals.loc[("asha", "constant"), ["strict_wins", "strict_ties", "strict_losses"]]
    assert strict.sum() == 2  # one strict outcome per task
    tuned = pooled[pooled["protocol"] == "asha"]
    expected = (tuned["wins"].sum() + tuned["ties"].sum()) / tuned["pairs"].sum()
    assert result.as_good_or_better == pytest.approx(expected)
    assert f"{expected:.1%}" in result.text
    report = (out / "report.md").read_text()
    for text in ("## The verdict", "[quadratic](quadratic/report.md)", "compare_suite("):
        assert text in report

    # Rerunning it runs nothing again: every task's comparison is kept.
    stamps = {path: path.stat().st_mtime_ns for path in out.rglob("study.json")}
    again = compare_suite(tiny, out=out, progress=False)
    assert {path: path.stat().st_mtime_ns for path in out.rglob("study.json")} == stamps
    pd.testing.assert_frame_equal(again.versus, result.versus)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--suite", "small", "--max-epochs", "3"], "`--max-epochs` is set per task by --suite"),
        (["--suite", "small", "--metric", "test_loss"], "`--metric` is set per task by --suite"),
        (["--suite", "huge"], "argument --suite: must be one of"),
        (["--suite", "small", "--task", "digits-mlp"], "not allowed with argument"),
        ([], "one of the arguments --task --suite is required"),
    ],
)
def test_the_command_refuses_what_the_suite_sets_in_one_line(
    argv: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(["compare", *argv, "--out", str(tmp_path / "out")])
    except SystemExit as exit:  # argparse refused the flags
        code = int(exit.code or 0)
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert expected in error
    assert not (tmp_path / "out").exists()


def test_the_committed_small_suite_report_is_of_the_suite_as_defined() -> None:
    """benchmarks/results/suite-small/ must be rerun when the small suite changes."""
    import re

    report = Path(__file__).resolve().parents[2] / "benchmarks/results/suite-small/report.md"
    text = report.read_text()
    assert "greedylr compare --suite small" in text
    rows = re.findall(r"^\| ([a-z0-9-]+) \| (\d+) \| (\d+) \|$", text, re.M)
    small = SUITES["small"]
    assert [(t, int(e), int(b)) for t, e, b in rows] == [
        (t.task, t.max_epochs, t.budget_epochs) for t in small.tasks
    ]
    assert f"Arms: {', '.join(small.schedules)}." in text
    assert f"Studies {small.studies}, seeds {small.seeds}, protocol {small.protocol}." in text
    assert small.description in text
