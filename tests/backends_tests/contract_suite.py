"""The contract every backend must keep, as a class each backend's tests subclass.

A subclass sets ``backend`` and gets every test below run against the real engine.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import greedylr
from greedylr.backends import TuneResult
from greedylr.searchers import FloatParam


TOY = Path(__file__).with_name("toy_tasks.py")
SPACE = {"x": FloatParam(0.0, 1.0)}


class BackendContractSuite:
    backend: str = ""

    def run(self, function: str, tmp_path: Path, **options: Any) -> TuneResult:
        settings: dict[str, Any] = {
            "space": SPACE,
            "n_trials": 12,
            "max_epochs": 9,
            "workers": 1,
            "seed": 3,
            "progress": False,
            "out": tmp_path / "run",
        }
        settings.update(options)
        return greedylr.tune(f"{TOY}:{function}", backend=self.backend, **settings)

    def test_every_trial_reports_epochs_one_by_one(self, tmp_path: Path) -> None:
        result = self.run("smooth", tmp_path)
        assert len(result.trials) == 12
        for trial, rows in result.history.groupby("trial"):
            epochs = list(rows["epoch"])
            assert epochs == list(range(1, len(epochs) + 1)), f"trial {trial}: {epochs}"
            assert all(rows["lr"] == rows["lr"].iloc[0])

    def test_pruned_trials_ran_fewer_epochs_than_the_maximum(self, tmp_path: Path) -> None:
        result = self.run("smooth", tmp_path)
        trials = result.trials
        pruned = trials[trials["status"] == "pruned"]
        completed = trials[trials["status"] == "completed"]
        assert len(pruned) > 0, "the default early stopping stopped no trial in 12"
        assert (pruned["epochs"] < 9).all()
        assert (completed["epochs"] == 9).all()
        assert result.epochs_run == trials["epochs"].sum() < result.epochs_without_early_stopping

    def test_best_is_the_minimum_over_completed_trials(self, tmp_path: Path) -> None:
        result = self.run("smooth", tmp_path)
        completed = result.trials[result.trials["status"] == "completed"]
        assert result.best_loss == completed["final_loss"].min()
        best_row = completed.loc[completed["final_loss"].idxmin()]
        assert result.best_trial == best_row["trial"]
        assert result.best_config is not None
        assert result.best_config["x"] == best_row["config.x"]
        history = result.history[result.history["trial"] == result.best_trial]
        assert history["loss"].iloc[-1] == result.best_loss

    def test_raising_and_nan_trials_fail_and_the_study_goes_on(self, tmp_path: Path) -> None:
        # Without early stopping every trial gets to where it raises (epoch 2) or diverges
        # (epoch 3): which trials a rule would stop first depends on the engine's samples.
        result = self.run(
            "troubled", tmp_path, n_trials=16, searcher="random", early_stopping="none"
        )
        trials = result.trials
        assert len(trials) == 16
        failed = trials[trials["status"] == "failed"]
        raised = failed[failed["config.x"] > 0.8]
        diverged = failed[failed["config.x"] < 0.1]
        assert len(raised) > 0
        assert len(diverged) > 0
        assert raised["reason"].str.contains("RuntimeError: boom").all()
        assert (diverged["reason"] == "diverged at epoch 3 (loss=nan)").all()
        assert (raised["epochs"] == 1).all()
        assert (diverged["epochs"] == 3).all()
        assert math.isfinite(result.best_loss)
        # Every other trial ran all its epochs: the study went on.
        survivors = trials[trials["status"] != "failed"]
        assert len(failed) == len(raised) + len(diverged)
        assert len(survivors) == 16 - len(failed) > 0
        assert (survivors["status"] == "completed").all()
        assert (survivors["epochs"] == 9).all()
        assert ((survivors["config.x"] >= 0.1) & (survivors["config.x"] <= 0.8)).all()

    def test_a_killed_worker_does_not_stop_the_study(self, tmp_path: Path) -> None:
        marker = tmp_path / "killed"
        space = {**SPACE, "marker": str(marker), "sleep": 0.02}
        result = self.run(
            "killer", tmp_path, space=space, workers=2, searcher="random", early_stopping="none"
        )
        assert marker.exists(), "no trial killed its worker"
        trials = result.trials
        killed = trials[trials["reason"].str.contains("died", na=False)]
        assert len(killed) == 1
        assert killed["status"].iloc[0] == "failed"
        retry = int(killed["reason"].iloc[0].rsplit("retried as trial ", 1)[1])
        retried = trials[trials["trial"] == retry].iloc[0]
        assert retried["status"] == "completed"
        assert retried["config.x"] == killed["config.x"].iloc[0]
        originals = trials[~trials["trial"].isin([retry])]
        assert len(originals) == 12
        assert (trials["status"] != "running").all()

    def test_the_same_seed_gives_the_same_configs(self, tmp_path: Path) -> None:
        first = self.run("smooth", tmp_path / "a", seed=7)
        second = self.run("smooth", tmp_path / "b", seed=7)
        other = self.run("smooth", tmp_path / "c", seed=8)
        assert list(first.trials["config.x"]) == list(second.trials["config.x"])
        assert list(first.trials["status"]) == list(second.trials["status"])
        assert list(first.trials["config.x"]) != list(other.trials["config.x"])

    def test_parallel_trials_do_not_oversubscribe_the_cores(self, tmp_path: Path) -> None:
        result = self.run(
            "threads", tmp_path, workers=2, n_trials=4, max_epochs=2, early_stopping="none"
        )
        assert set(result.history["threads"]) == {max(1, len(os.sched_getaffinity(0)) // 2)}
