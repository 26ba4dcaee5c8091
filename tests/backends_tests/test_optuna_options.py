"""Every searcher and early-stopping rule of the Optuna backend, the defaults trial, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import greedylr
from greedylr.backends import read_result
from tests.backends_tests.contract_suite import SPACE
from tests.backends_tests.contract_suite import TOY


optuna = pytest.importorskip("optuna")


@pytest.mark.parametrize("searcher", ["tpe", "random", "gp", "cmaes", "qmc"])
def test_every_searcher_tunes_the_greedylr_space(searcher: str, tmp_path: Path) -> None:
    result = greedylr.tune(
        "quadratic", n_trials=4, max_epochs=2, searcher=searcher, out=tmp_path, progress=False
    )
    assert list(result.trials["trial"]) == [0, 1, 2, 3]
    assert set(result.trials["status"]) <= {"completed", "pruned"}
    configs = result.trials.filter(like="config.").drop_duplicates()
    assert len(configs) == 4, "the searcher proposed the same config twice"
    assert result.best_config is not None


@pytest.mark.parametrize(
    ("rule", "stops"), [("hyperband", True), ("asha", True), ("median", True), ("none", False)]
)
def test_every_early_stopping_rule(rule: str, stops: bool, tmp_path: Path) -> None:
    result = greedylr.tune(
        f"{TOY}:smooth", space=SPACE, n_trials=16, max_epochs=9, early_stopping=rule,
        searcher="random", out=tmp_path, progress=False,
    )  # fmt: skip
    pruned = result.trials[result.trials["status"] == "pruned"]
    assert (len(pruned) > 0) == stops
    assert (pruned["epochs"] < 9).all()
    assert pruned["reason"].str.startswith("stopped early at epoch ").all()


def test_the_untuned_defaults_run_first(tmp_path: Path) -> None:
    result = greedylr.tune("digits-mlp", n_trials=2, max_epochs=2, out=tmp_path, progress=False)
    first = result.trials.iloc[0]
    assert first["trial"] == 0
    expected = {
        "lr": 0.05, "factor": 0.95, "patience": 10, "threshold": 1e-6, "threshold_mode": "abs",
        "window_size": 1, "cooldown": 0, "warmup": 0, "variant": "hf",
        "min_lr_ratio": 1e-3 / 0.05, "max_lr_ratio": 1.0 / 0.05,
    }  # fmt: skip
    for key, value in expected.items():
        assert first[f"config.{key}"] == pytest.approx(value), key


def test_ctrl_c_stops_cleanly_and_the_same_command_continues(tmp_path: Path) -> None:
    gate, waiting = tmp_path / "gate", tmp_path / "waiting"
    space = tmp_path / "space.json"  # every trial waits after epoch 2 until the gate opens
    space.write_text(json.dumps({
        "params": {"x": {"type": "float", "low": 0, "high": 1}},
        "constants": {"gate": str(gate), "waiting": str(waiting)},
    }))  # fmt: skip
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "greedylr", "tune", "--task", f"{TOY}:gated", "--space",
        str(space), "--max-epochs", "6", "--trials", "16", "--workers", "2", "--out", str(out),
        "--no-progress", "--early-stopping", "none",
    ]  # fmt: skip
    tuner = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 120  # until both workers are held inside a trial
    while len(_held(waiting)) < 2 and tuner.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(_held(waiting)) == 2, "the workers did not reach the gate"
    os.killpg(tuner.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground group
    _, stderr = tuner.communicate(timeout=60)
    assert tuner.returncode == 130, stderr.decode()
    assert stderr.decode().strip().splitlines()[-1] == (
        "greedylr: interrupted; run the same command again to continue."
    )
    trials = read_result(out).trials
    # The two held trials, no other; each is already queued to run again (waiting).
    assert sorted(trials["status"]) == ["interrupted"] * 2 + ["waiting"] * 2
    partial = trials[trials["status"] == "interrupted"]
    assert (partial["epochs"] == 2).all(), "the epochs run before Ctrl-C were lost"
    gate.touch()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    final = read_result(out).trials
    interrupted = final[final["status"] == "interrupted"]
    assert sorted(interrupted["trial"]) == sorted(partial["trial"])
    assert interrupted["reason"].str.contains("retried as trial").all()
    done = final[final["status"].isin(["completed", "pruned"])]
    assert len(done) == 16
    assert (final["status"] != "running").all()


def _held(waiting: Path) -> list[Path]:
    """The workers held at the gate (a file named by each one's pid)."""
    return list(waiting.iterdir()) if waiting.exists() else []
