"""``greedylr compare`` end to end on real engines and tasks (small budgets)."""

from __future__ import annotations

import contextlib
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import greedylr
from greedylr.cli import main
from tests.backends_tests.netns import ONE_RAY_AT_A_TIME


HERE = Path(__file__).parent
SMOKE = [
    "compare", "--task", "quadratic", "--schedules", "greedylr,cosine", "--max-epochs", "4",
    "--budget-epochs", "8", "--studies", "2", "--seeds", "2", "--protocol", "both",
    "--workers", "1", "--no-progress",
]  # fmt: skip


def _study_markers(out: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in (out / "studies").rglob("study.json")}


@pytest.mark.slow
def test_smoke_compare_interrupted_then_continued(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    command = [sys.executable, "-m", "greedylr", *SMOKE, "--out", str(out)]
    process = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _study_markers(out) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "run the same command again to continue" in stderr
    finished = _study_markers(out)
    assert finished  # at least the first study finished before Ctrl-C

    assert main([*SMOKE, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for path, stamp in finished.items():  # finished studies are not run again
        assert path.stat().st_mtime_ns == stamp
    assert len(_study_markers(out)) == 2 * 2 * 2  # protocols x arms x studies

    runs = pd.read_csv(out / "compare.csv")
    # The untuned defaults (2 arms, 1 "study") and 2 protocols x 2 arms x 2 studies, 2 seeds each.
    assert len(runs) == (2 + 2 * 2 * 2) * 2
    assert set(runs["protocol"]) == {"defaults", "asha", "full"}
    assert set(runs["arm"]) == {"greedylr", "cosine", "greedylr-defaults", "cosine-defaults"}
    assert runs["seed"].isin([1000, 1001]).all()  # fresh seeds, never a tuning seed (0, 1)
    assert (runs["status"] == "completed").all()
    assert runs["test_loss"].notna().all()
    assert (runs["metric"] == "test_loss").all()
    tuned = runs[runs["protocol"] != "defaults"]
    assert (tuned["tuning_epochs"] <= 8).all()
    assert (tuned["tuning_epochs"] >= 4).all()
    assert (runs.loc[runs["protocol"] == "full", "tuning_epochs"] == 8).all()
    assert "As good or better" in printed
    assert "greedylr" in printed

    report = (out / "report.md").read_text()
    for heading in ("## The answer", "## GreedyLR against each baseline", "Kendall", "rerun"):
        assert heading in report
    assert "greedylr compare --task quadratic --schedules greedylr,cosine" in report
    assert '"torch"' in report
    assert '"optuna"' in report
    for name in ("test_metric", "best_so_far", "winners_lr", "winners_loss"):
        assert (out / f"{name}.png").stat().st_size > 1000
        assert f"({name}.png)" in report

    # A rerun of a finished comparison runs nothing and finds the same numbers.
    assert main([*SMOKE, "--out", str(out)]) == 0
    again = pd.read_csv(out / "compare.csv")
    columns = ["arm", "protocol", "study", "seed", "test_loss", "config"]
    pd.testing.assert_frame_equal(runs[columns], again[columns])


def test_other_settings_in_the_same_folder_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    args = [*SMOKE, "--out", str(out), "--protocol", "full", "--studies", "1", "--seeds", "1"]
    args += ["--schedules", "greedylr,constant", "--budget-epochs", "4"]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--seed", "3"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("greedylr compare: error: The folder")
    assert "differs in seed" in error
    assert "\n" not in error


def test_a_user_task_compares_like_a_builtin_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(HERE / "user_tasks.py", tmp_path / "mytask.py")
    monkeypatch.chdir(tmp_path)
    result = greedylr.compare(
        "mytask.py:train",
        schedules="greedylr,cosine",
        max_epochs=3,
        budget_epochs=6,
        studies=1,
        seeds=2,
        protocol="asha",
        out=tmp_path / "cmp",
        progress=False,
    )
    assert len(result.runs) == (2 + 2) * 2
    assert result.metric == "test_loss"
    assert result.mode == "min"
    assert set(result.versus["baseline"]) == {"cosine", "cosine-defaults"}
    assert 0 <= result.as_good_or_better <= 1


def test_a_task_without_a_test_metric_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(HERE / "user_tasks.py", tmp_path / "mytask.py")
    monkeypatch.chdir(tmp_path)
    args = ["compare", "--task", "mytask.py:train_without_test", "--max-epochs", "2"]
    assert main([*args, "--schedules", "greedylr,cosine", "--no-progress"]) == 2
    error = capsys.readouterr().err.strip()
    assert "must report a `test_` metric" in error
    assert "\n" not in error


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--schedules", "cosine,step"], "`--schedules` must include 'greedylr'"),
        (["--max-epochs", "5", "--budget-epochs", "4"], "`--budget-epochs` must be >="),
        (["--protocol", "most"], "argument --protocol: must be one of"),
        (["--backend", "syne-tune", "--searcher", "tpe"], "does not offer --searcher='tpe'"),
        (["--metric", "test_nothing", "--max-epochs", "1", "--studies", "1", "--seeds", "1",
          "--budget-epochs", "1", "--protocol", "full", "--schedules", "greedylr,constant"],
         "`--metric` must be one the task reports"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    try:
        code = main(
            [
                "compare",
                "--task",
                "quadratic",
                "--no-progress",
                "--out",
                str(tmp_path / "c"),
                *args,
            ]
        )
    except SystemExit as exit:  # argparse's own checks
        code = exit.code  # type: ignore[assignment]
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert expected in error
    assert "\n" not in error


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param("ray", marks=ONE_RAY_AT_A_TIME), "syne-tune"])
def test_compare_runs_on_the_other_engines(tmp_path: Path, backend: str) -> None:
    pytest.importorskip("ray.tune" if backend == "ray" else "syne_tune")
    with _engine_network(backend):
        result = greedylr.compare(
            "quadratic",
            schedules="greedylr,cosine",
            backend=backend,
            max_epochs=3,
            budget_epochs=6,
            studies=1,
            seeds=1,
            protocol="asha",
            workers=1,
            out=tmp_path / "cmp",
            progress=False,
        )
    assert len(result.runs) == 4
    assert (result.runs["status"] == "completed").all()
    tuned = result.runs[result.runs["protocol"] == "asha"]
    assert (tuned["tuning_epochs"] >= 3).all()
    assert (tuned["tuning_epochs"] <= 6).all()
    assert (tmp_path / "cmp" / "studies" / "asha" / "cosine" / "study-0" / "run").is_dir()


def _engine_network(backend: str) -> contextlib.AbstractContextManager[object]:
    """Ray runs in a loopback-only network namespace, as in the Ray backend's tests."""
    if backend != "ray":
        return contextlib.nullcontext()
    from tests.backends_tests.netns import private_network

    return private_network()


def test_help_explains_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from greedylr.backends._registry import BACKENDS
    from greedylr.cli import build_parser
    from greedylr.comparison import DEFAULT_SCHEDULES

    with pytest.raises(SystemExit) as exit:
        main(["compare", "--help"])
    assert exit.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    parser = build_parser()
    commands = next(action for action in parser._actions if action.dest == "command")
    compare = commands.choices["compare"]  # type: ignore[index]
    for action in compare._actions:
        if action.dest != "help":
            assert action.help is not None
            assert len(action.help) > 10, action.dest
    for name in (*DEFAULT_SCHEDULES, *BACKENDS, "compare.csv", "report.md", "Exit codes"):
        assert name in text


def quadratic_plan(schedules: tuple[str, ...], *, max_epochs: int) -> Any:
    """A one-study, one-seed plan on the quadratic task (its retraining runs take a second)."""
    from greedylr.comparison._plan import Plan

    return Plan(
        task="quadratic",
        function="greedylr.tasks._quadratic:train",
        schedules=schedules,
        backend="optuna",
        max_epochs=max_epochs,
        budget_epochs=max_epochs,
        studies=1,
        seeds=1,
        protocols=("full",),
        searcher="tpe",
        min_epochs=1,
        reduction_factor=3,
        seed=0,
    )


def test_a_method_is_an_arm_like_a_schedule(tmp_path: Path) -> None:
    from greedylr.comparison._plan import parse_schedules
    from greedylr.comparison._protocol import defaults_config
    from greedylr.comparison._protocol import retrain

    arms = parse_schedules("greedylr, cosine,sgd-hd,adamw-schedulefree")
    assert arms == ("greedylr", "cosine", "sgd-hd", "adamw-schedulefree")
    with pytest.raises(ValueError, match=r"`schedules` must be among \[.*'sgd-hd'.*'sgd_hd'"):
        parse_schedules("greedylr,sgd_hd")
    plan = quadratic_plan(("greedylr", "sgd-hd"), max_epochs=3)
    config, space = defaults_config(plan, "sgd-hd")  # the untuned-defaults arm
    assert (config["schedule"], config["optimizer"]) == ("constant", "sgd-hd")
    assert space["constants"]["optimizer"] == "sgd-hd"
    record = retrain(plan, config, seed=1000, path=tmp_path / "seed-1000.json")
    assert record["status"] == "completed"
    assert len({row["lr"] for row in record["history"]}) == 3  # SGD-HD adapted its LR


def test_a_diverged_retraining_run_is_read_back_and_analysed(tmp_path: Path) -> None:
    from greedylr.comparison import _stats
    from greedylr.comparison._protocol import retrain

    plan = quadratic_plan(("greedylr", "constant"), max_epochs=4)
    path = tmp_path / "seed-1000.json"
    config = {"schedule": "constant", "lr": 10.0}  # the loss overflows at epoch 2
    first = retrain(plan, config, seed=1000, path=path)
    assert first["status"] == "diverged"
    again = retrain(plan, config, seed=1000, path=path)  # read back: JSON holds a null
    losses = [row["loss"] for row in again["history"]]
    assert len(losses) == 2
    assert math.isfinite(losses[0])
    assert math.isnan(losses[1])
    assert _stats.epochs_to_target(losses, target=math.inf) == 1
    assert _stats.epochs_to_target(losses, target=1.0) is None
