"""Tuning a method end to end: ``greedylr.tune(schedule="sgd-hd")`` and ``greedylr tune
--schedule adamw-schedulefree`` run the method's optimizer, with its space, under the constant
schedule; an unknown name is one line and exit code 2."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import greedylr
from greedylr._report import counts_line
from greedylr.cli import main


pytest.importorskip("optuna")


def test_tune_runs_sgd_hd_with_its_space_and_adapts_the_lr(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = greedylr.tune(
        "digits-mlp",
        schedule="sgd-hd",
        backend="optuna",
        n_trials=3,
        max_epochs=2,
        workers=1,
        early_stopping="none",  # every trial runs both epochs: its LR moves between them
        out=out,
        progress=False,
    )
    assert len(result.trials) == 3
    assert (result.trials["status"] == "completed").all()
    assert set(result.trials["config.optimizer"]) == {"sgd-hd"}
    assert set(result.trials["config.schedule"]) == {"constant"}
    assert result.trials["config.hypergrad_lr"].between(1e-5, 1e-2).all()
    for _, history in result.history.groupby("trial"):  # the LR moved: SGD-HD adapted it
        assert history["lr"].iloc[1] != history["lr"].iloc[0]
    space = json.loads(result.experiment.space)
    assert space["constants"]["optimizer"] == "sgd-hd"
    # The untuned defaults run first, the method's own knobs at their defaults too.
    defaults = result.trials.iloc[0]
    assert defaults["defaults"]
    assert defaults["config.hypergrad_lr"] == pytest.approx(1e-3)
    assert defaults["config.lr"] == pytest.approx(0.05)  # the task's
    assert result.experiment.schedule_label == "sgd-hd"
    assert counts_line(result).startswith("digits-mlp / sgd-hd: 3 trials")


def test_the_default_run_folder_is_named_after_the_method(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    greedylr.tune(
        "quadratic",
        schedule="adam-hd",
        n_trials=2,
        max_epochs=1,
        workers=1,
        progress=False,
    )
    assert (tmp_path / "runs" / "quadratic-adam-hd-seed0" / "trials.csv").is_file()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit:  # argparse refused a flag
        code = int(exit.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.skipif(
    importlib.util.find_spec("schedulefree") is None, reason="the schedulefree extra is missing"
)
def test_the_command_tunes_a_schedule_free_method(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code, err = _run(
        capsys,
        "tune",
        "--task",
        "quadratic",
        "--schedule",
        "adamw-schedulefree",
        "--trials",
        "2",
        "--max-epochs",
        "1",
        "--workers",
        "1",
        "--no-progress",
        "--out",
        str(out),
    )
    assert code == 0, err
    experiment = json.loads((out / "experiment.json").read_text())["experiment"]
    assert experiment["schedule"] == "constant"
    assert '"optimizer": "adamw-schedulefree"' in experiment["space"]


def test_an_unknown_schedule_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code, err = _run(
        capsys, "tune", "--task", "quadratic", "--schedule", "sgd_hd", "--out", str(out)
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "argument --schedule: must be one of [" in lines[0]
    assert "'adamw-schedulefree'" in lines[0]
    assert "but got 'sgd_hd'" in lines[0]
    assert not out.exists()


def test_tune_refuses_an_unknown_name_in_one_line() -> None:
    with pytest.raises(
        ValueError, match=r"Unknown schedule 'sgd_hd'; valid names are \[.*'sgd-hd'"
    ):
        greedylr.tune("quadratic", schedule="sgd_hd", n_trials=1, progress=False)
