"""The ``greedylr`` command: listing, bad input (one line, exit 2, nothing lost), report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import greedylr
from greedylr.cli import main


pytest.importorskip("optuna")

TINY = ["--task", "quadratic", "--trials", "3", "--max-epochs", "2", "--workers", "1"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit:  # argparse refused a flag
        code = int(exit.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_tasks_lists_the_built_in_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "tasks")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert names == [
        "char-lm", "digits-mlp", "fashion-mnist-cnn", "fashion-mnist-mlp", "mnist1d-cnn", "nmf",
        "quadratic",
    ]  # fmt: skip
    assert "50 epochs" in out


def _space(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.json"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tune", "--task", "nope"], "Unknown task 'nope'; built-in tasks are"),
        (["tune", "--task", "nomodule:train"], "No module named 'nomodule'"),
        (
            ["tune", "--task", "nomodule:train", "--max-epochs", "3"],
            "Cannot import the trial function 'nomodule:train'",
        ),
        (["tune", "--task", "quadratic", "--storage", "nonsense"], "Cannot open storage"),
        (["report", "/nonexistent/run"], "'/nonexistent/run' is not a"),
        (["worker", "--study", "x"], "Give --storage URL"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if argv[0] == "tune" and "--out" not in argv:
        argv = [*argv, "--out", str(tmp_path / "run")]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "trials.csv").exists()


def test_argparse_errors_are_one_line_too() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "greedylr", "tune", "--task", "quadratic", "--trials", "x"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "greedylr tune: error: argument --trials: must be an int >= 1, but got 'x'."
    ]


def test_a_space_with_low_above_high_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _space(tmp_path, '{"params": {"lr": {"type": "float", "low": 1, "high": 0.1}}}')
    code, _, err = _run(capsys, "tune", *TINY, "--space", bad, "--out", str(tmp_path / "r"))
    assert code == 2
    assert "`low <= high` must hold, but got (low=1, high=0.1)" in err
    missing = str(tmp_path / "missing.json")
    code, _, err = _run(capsys, "tune", *TINY, "--space", missing, "--out", str(tmp_path / "r"))
    assert code == 2
    assert "Cannot read --space" in err


def test_a_storage_password_is_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://postgres:s3cret-word@127.0.0.1:1/test"
    code, out, err = _run(capsys, "tune", *TINY, "--storage", url, "--out", str(tmp_path / "r"))
    assert code == 2
    assert "Cannot open storage 'postgresql://postgres:***@127.0.0.1:1/test'" in err
    assert "s3cret" not in out + err
    assert len(err.strip().splitlines()) == 1


def test_bad_input_loses_nothing_already_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "run")
    code, stdout, _ = _run(capsys, "tune", *TINY, "--out", out, "--no-progress")
    assert code == 0
    assert "Best loss" in stdout
    files = {p.name: p.read_bytes() for p in Path(out).iterdir() if p.is_file()}
    assert {"trials.csv", "history.csv", "best.json", "experiment.json", "study.log"} <= set(files)
    code, _, err = _run(capsys, "tune", *TINY, "--schedule", "cosine", "--out", out)
    assert code == 2
    assert "holds another experiment" in err
    code, _, err = _run(capsys, "tune", *TINY[:2], "--trials", "-1", "--out", out)
    assert code == 2
    after = {p.name: p.read_bytes() for p in Path(out).iterdir() if p.is_file()}
    assert after == files


def test_the_same_command_continues_to_more_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "run")
    assert _run(capsys, "tune", *TINY, "--out", out, "--no-progress")[0] == 0
    more = [*TINY[:2], "--trials", "5", *TINY[4:]]
    assert _run(capsys, "tune", *more, "--out", out, "--no-progress")[0] == 0
    trials = (Path(out) / "trials.csv").read_text().splitlines()
    assert len(trials) == 1 + 5
    experiment = json.loads((Path(out) / "experiment.json").read_text())
    assert experiment["experiment"]["n_trials"] == 5


def test_report_prints_the_summary_and_writes_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _run(capsys, "tune", *TINY, "--out", str(out), "--no-progress")[0] == 0
    code, stdout, _ = _run(capsys, "report", str(out), "--top", "2")
    assert code == 0
    assert "quadratic / greedylr: 3 trials" in stdout
    assert "Early stopping ran" in stdout
    for name in ("lr_schedules.png", "loss_histories.png"):
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG")
        assert len(data) > 10_000
    shown = greedylr.report(out, top=1)  # the same as a Python call
    assert shown.text.splitlines()[0] == stdout.splitlines()[0]
    assert [path.name for path in shown.figures] == ["lr_schedules.png", "loss_histories.png"]


def test_dir_lists_the_commands_as_calls() -> None:
    names = dir(greedylr)
    for name in ("tune", "report", "join_study", *greedylr.__all__):
        assert name in names
    assert names == sorted(names)


def test_report_on_an_unwritable_folder_prints_the_summary_then_one_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _run(capsys, "tune", *TINY, "--out", str(out), "--no-progress")[0] == 0
    (out / "loss_histories.png").mkdir()  # root writes anywhere: block the file another way
    code, stdout, stderr = _run(capsys, "report", str(out))
    assert code == 2
    assert "quadratic / greedylr: 3 trials" in stdout
    assert stderr.count("\n") == 1
    assert stderr.startswith("greedylr report: error: cannot write figures to ")
    assert "Is a directory" in stderr
