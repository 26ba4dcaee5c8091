"""Every example runs in seconds with --smoke, as a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(name: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--smoke"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_example_is_tested() -> None:
    tested = {
        "plain_pytorch.py",
        "tune_your_function.py",
        "shared_postgres_study.py",
        "lightning_module.py",
        "hf_trainer.py",
    }
    assert {path.name for path in EXAMPLES.glob("*.py")} == tested


def test_plain_pytorch() -> None:
    lines = _run("plain_pytorch.py").splitlines()
    assert len(lines) == 8
    first, last = (float(line.split("val loss")[1].split()[0]) for line in (lines[0], lines[-1]))
    assert last < first
    assert len({line.split("lr")[-1] for line in lines}) > 1  # GreedyLR moved the LR


def test_tune_your_function() -> None:
    pytest.importorskip("optuna")
    out = _run("tune_your_function.py")
    assert "best loss" in out
    assert out.count("completed") + out.count("pruned") == 6


def test_shared_postgres_study() -> None:
    pytest.importorskip("optuna")
    out = _run("shared_postgres_study.py")
    assert "12 trials run by" in out
    workers = int(out.split("run by ")[1].split()[0])
    assert workers >= 2


@pytest.mark.parametrize(
    ("name", "framework"),
    [("lightning_module.py", "pytorch_lightning"), ("hf_trainer.py", "accelerate")],
)
def test_trainer_integrations(name: str, framework: str) -> None:
    pytest.importorskip("optuna")
    pytest.importorskip(framework)
    out = _run(name)
    assert "best loss" in out
    assert out.count("completed") + out.count("pruned") == 3
