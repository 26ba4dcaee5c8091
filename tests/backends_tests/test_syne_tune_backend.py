"""What only the Syne Tune backend does: its searchers, each early-stopping rule (promotion ASHA
resuming paused trials from their checkpoint), GPU slots under a fake ``nvidia-smi``, a rerun
after the tuner was killed, and nothing written outside the run folder. Real Syne Tune, real
trial processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import greedylr
from greedylr.backends import TuneResult
from greedylr.searchers import FloatParam
from tests.backends_tests.waiting import WAIT_SECONDS
from tests.backends_tests.waiting import alive
from tests.backends_tests.waiting import wait_until


pytest.importorskip("syne_tune")

HERE = Path(__file__).resolve()
TASKS = HERE.with_name("syne_tune_tasks.py")
TOY = HERE.with_name("toy_tasks.py")
GREEDYLR = str(Path(sys.executable).with_name("greedylr"))


def run(function: str, tmp_path: Path, **options: Any) -> TuneResult:
    settings: dict[str, Any] = {
        "space": {"x": FloatParam(0.0, 1.0), "log": str(tmp_path / "log.jsonl")},
        "n_trials": 6,
        "max_epochs": 4,
        "workers": 2,
        "seed": 1,
        "searcher": "random",
        "progress": False,
        "out": tmp_path / "run",
    }
    settings.update(options)
    return greedylr.tune(f"{TASKS}:{function}", backend="syne-tune", **settings)


def log_of(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def assert_epochs_one_by_one(result: TuneResult) -> None:
    for trial, rows in result.history.groupby("trial"):
        epochs = list(rows["epoch"])
        assert epochs == list(range(1, len(epochs) + 1)), f"trial {trial}: {epochs}"


# Searchers and rules ------------------------------------------------------------------------


def sample_configs(searcher: str, seed: int, *, disturb: bool = False) -> list[dict[str, Any]]:
    """The 8 configs ``searcher`` suggests with ``seed``, the rule told each trial's epochs
    (``disturb``: with draws from NumPy's global generator in between, as other code makes)."""
    from syne_tune.backend.trial_status import Trial

    from greedylr.backends._experiment import Experiment
    from greedylr.backends._syne_tune_search import GreedyLRScheduler
    from greedylr.backends._syne_tune_search import make_rule

    experiment = Experiment.create(
        f"{TOY}:smooth", space={"x": FloatParam(0.0, 1.0)}, n_trials=8, max_epochs=3,
        searcher=searcher, backend="syne-tune", seed=seed,
    )  # fmt: skip
    scheduler = GreedyLRScheduler(
        make_rule(experiment, asha_kind="stopping", defaults=None),
        n_trials=8,
        max_epochs=3,
        defaults=None,
    )
    configs = []
    for trial_id in range(8):  # past the searchers' random start: their models are fit
        if disturb:
            np.random.random(trial_id + 1)
        suggestion = scheduler.suggest()
        assert suggestion is not None
        trial = Trial(trial_id, suggestion.config, pd.Timestamp.now())
        scheduler.on_trial_add(trial)
        for epoch in (1, 2, 3):
            x = suggestion.config["x"]
            decision = scheduler.on_trial_result(trial, {"epoch": epoch, "loss": (x - 0.3) ** 2})
            if decision != "CONTINUE":
                break
        configs.append(suggestion.config)
    assert scheduler.suggest() is None  # n_trials sampled
    return configs


@pytest.mark.parametrize("searcher", ["random", "bo", "bohb", "asha-bore", "asha-cqr"])
def test_each_searcher_samples_configs_in_the_space(searcher: str) -> None:
    configs = sample_configs(searcher, seed=4)
    assert all(0.0 <= c["x"] <= 1.0 and type(c["x"]) is float for c in configs)
    assert all(c["epochs"] == 3 and c["schedule"] == "greedylr" for c in configs)
    assert len({c["x"] for c in configs}) == 8
    # The same seed samples the same configs, whatever else draws from NumPy's global
    # generator meanwhile (Syne Tune's searchers draw from it); another seed, others.
    assert sample_configs(searcher, seed=4, disturb=True) == configs
    assert [c["x"] for c in sample_configs(searcher, seed=5)] != [c["x"] for c in configs]


def test_bo_runs_and_without_botorch_says_what_to_install(tmp_path: Path) -> None:
    assert len(run("checkpointed", tmp_path / "bo", searcher="bo").trials) == 6
    # botorch is installed (the syne-tune extra brings it): `sys.modules["botorch"] = None`
    # makes this process see it missing, as on a machine without it.
    out = tmp_path / "without"
    refused = subprocess.run(
        [sys.executable, "-c",
         "import sys; sys.modules['botorch'] = None; from greedylr.cli import main; "
         "sys.exit(main(sys.argv[1:]))",
         "tune", "--backend", "syne-tune", "--searcher", "bo", "--task", f"{TOY}:smooth",
         "--max-epochs", "2", "--trials", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2, refused.stderr
    assert len(lines) == 1, refused.stderr
    assert 'pip install "greedylr[syne-tune]"' in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("rule", ["hyperband", "median", "pbt", "none"])
def test_each_early_stopping_rule_runs_its_trials(tmp_path: Path, rule: str) -> None:
    result = run("checkpointed", tmp_path, early_stopping=rule, reduction_factor=2)
    trials = result.trials
    assert len(trials[trials["status"].isin(["completed", "pruned"])]) == len(trials) >= 6
    assert (trials[trials["status"] == "completed"]["epochs"] == 4).all()
    assert (trials[trials["status"] == "pruned"]["epochs"] < 4).all()
    if rule == "none":
        assert (trials["status"] == "completed").all()
    if rule != "pbt":
        assert_epochs_one_by_one(result)
        assert len(trials) == 6


def test_promotion_asha_resumes_paused_trials_from_their_checkpoint(tmp_path: Path) -> None:
    # Rungs at epochs 1 and 3 of 9: a trial pauses there, and the best continue.
    result = run(
        "checkpointed", tmp_path, n_trials=9, max_epochs=9, workers=2,
        reduction_factor=3, asha_kind="promotion",
    )  # fmt: skip
    trials = result.trials
    assert len(trials) == 9
    assert_epochs_one_by_one(result)  # a promoted trial never starts again at epoch 1
    starts = log_of(tmp_path)
    resumed = [start for start in starts if start["first"] > 1]
    assert resumed, starts
    assert {start["first"] for start in resumed} <= {2, 4}  # right after rung 1 or rung 3
    completed = trials[trials["status"] == "completed"]
    assert len(completed) >= 1
    assert (completed["epochs"] == 9).all()
    for _, trial in completed.iterrows():  # each start continued where the last run ended
        firsts = [s["first"] for s in starts if s["x"] == trial["config.x"]]
        assert firsts == [1, 2, 4], firsts
    not_promoted = trials[trials["status"] == "pruned"]
    assert len(not_promoted) >= 1
    assert (not_promoted["reason"] == "paused at a rung and not promoted").all()
    assert set(not_promoted["epochs"]) <= {1, 3}


def test_promotion_needs_a_rule_with_rungs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="`asha_kind` promotion needs early_stopping asha"):
        run("checkpointed", tmp_path, early_stopping="median", asha_kind="promotion")
    with pytest.raises(ValueError, match=r"`asha_kind` must be one of \['stopping'"):
        run("checkpointed", tmp_path, asha_kind="pausing")


# GPUs, files ----------------------------------------------------------------------------------


@pytest.fixture
def four_fake_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``nvidia-smi --list-gpus`` lists 4 GPUs; HOME and the working directory are empty."""
    bin_folder, home, work = tmp_path / "bin", tmp_path / "home", tmp_path / "work"
    for folder in (bin_folder, home, work):
        folder.mkdir()
    smi = bin_folder / "nvidia-smi"
    smi.write_text(
        '#!/bin/sh\nfor i in 0 1 2 3; do echo "GPU $i: Fake GPU (UUID: GPU-$i)"; done\n'
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_folder}:{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.chdir(work)


@pytest.mark.usefixtures("four_fake_gpus")
@pytest.mark.parametrize(("gpus", "workers", "slots"), [(1, 4, 4), (2, 3, 2)])
def test_running_trials_never_share_a_gpu(
    tmp_path: Path, gpus: int, workers: int, slots: int
) -> None:
    result = run(
        "placed", tmp_path, n_trials=8, max_epochs=3, workers=workers, gpus_per_trial=gpus,
        early_stopping="none",
    )  # fmt: skip
    runs = log_of(tmp_path)
    assert len(runs) == 8
    every = {run["devices"] for run in runs}
    assert len(every) == slots, every  # fewer workers start when the GPUs run out
    assert all(len(devices.split(",")) == gpus for devices in every)
    assert {gpu for devices in every for gpu in devices.split(",")} <= {"0", "1", "2", "3"}
    for first in runs:
        for second in runs:
            overlap = first["start"] < second["end"] and second["start"] < first["end"]
            if first is not second and overlap:
                shared = set(first["devices"].split(",")) & set(second["devices"].split(","))
                assert not shared, f"two running trials on GPUs {shared}: {first}, {second}"
    assert set(result.history["devices"].astype(str)) == every
    assert not list((tmp_path / "home").iterdir()), "Syne Tune wrote to the home folder"
    assert not list((tmp_path / "work").iterdir()), "Syne Tune wrote to the working directory"
    assert (tmp_path / "run" / "syne-tune" / "tuner.dill").is_file()


# A killed tuner -------------------------------------------------------------------------------


def test_after_ctrl_c_or_a_killed_tuner_a_rerun_runs_the_running_trials_again(
    tmp_path: Path,
) -> None:
    space = tmp_path / "space.json"
    gate, waiting = tmp_path / "gate", tmp_path / "waiting"
    constants = {"gate": str(gate), "waiting": str(waiting)}
    params = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
    space.write_text(json.dumps({"params": params, "constants": constants}))
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(HERE.parents[2])}
    command = [
        GREEDYLR, "tune", "--backend", "syne-tune", "--task", f"{TOY}:gated", "--trials", "4",
        "--max-epochs", "4", "--workers", "2", "--searcher", "random", "--early-stopping",
        "none", "--seed", "2", "--space", str(space), "--out", str(tmp_path / "run"),
        "--no-progress",
    ]  # fmt: skip
    dill = tmp_path / "run" / "syne-tune" / "tuner.dill"

    def two_held_and_saved() -> bool:
        held = list(waiting.iterdir()) if waiting.exists() else []
        newest = max((path.stat().st_mtime for path in held), default=0.0)
        return len(held) == 2 and dill.exists() and dill.stat().st_mtime > newest

    # 1. Ctrl-C: the tuner stops its two running trials, writes the files and exits 130.
    driver = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    wait_until(two_held_and_saved, "two trials held at epoch 3, and the tuner saved", driver)
    held = [int(path.name) for path in waiting.iterdir()]
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=WAIT_SECONDS)
    assert driver.returncode == 130, output
    assert "interrupted; run the same command again to continue" in output
    wait_until(lambda: not any(alive(pid) for pid in held), "the stopped trials to end")
    trials = pd.read_csv(tmp_path / "run" / "trials.csv", keep_default_na=False)
    assert list(trials["status"]) == ["interrupted", "interrupted"], trials
    assert trials["reason"].str.contains("Ctrl-C").all(), trials
    # 2. The rerun runs them again; its tuner is killed (SIGKILL) with two trials held: the
    # trial processes end with it.
    shutil.rmtree(waiting)
    driver = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    wait_until(two_held_and_saved, "two trials held again, and the tuner saved", driver)
    orphans = [int(path.name) for path in waiting.iterdir()]
    driver.kill()
    output, _ = driver.communicate(timeout=WAIT_SECONDS)
    assert "continuing the Syne Tune experiment" in output
    wait_until(lambda: not any(alive(pid) for pid in orphans), "the killed tuner's trials to end")
    gate.touch()
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "continuing the Syne Tune experiment" in rerun.stderr
    trials = pd.read_csv(tmp_path / "run" / "trials.csv", keep_default_na=False)
    interrupted = trials[trials["status"] == "interrupted"]
    assert len(interrupted) == 4, trials  # twice the same two configs
    for _, trial in interrupted.iterrows():
        retry = int(trial["reason"].rsplit("retried as trial ", 1)[1])
        again = trials[trials["trial"] == retry].iloc[0]
        assert again["status"] in ("completed", "interrupted")
        assert again["config.x"] == trial["config.x"]
    assert (trials["status"].isin(["completed", "interrupted"])).all()
    assert len(trials[trials["status"] == "completed"]) == 4
    assert not list(home.iterdir())


def test_a_diverged_trial_fails_with_its_nan_epoch_and_the_study_goes_on(tmp_path: Path) -> None:
    # With seed 3 the contract suite's random configs below 0.1 are both stopped at the
    # epoch-2 rung before they diverge: here every config diverges at epoch 3.
    result = greedylr.tune(
        f"{TOY}:troubled", backend="syne-tune", space={"x": FloatParam(0.0, 0.09)},
        n_trials=2, max_epochs=4, workers=2, searcher="random", early_stopping="none",
        progress=False, out=tmp_path / "run",
    )  # fmt: skip
    trials = result.trials
    assert list(trials["status"]) == ["failed", "failed"]
    assert (trials["reason"] == "diverged at epoch 3 (loss=nan)").all()
    assert (trials["epochs"] == 3).all()
    assert result.history.groupby("trial")["loss"].apply(lambda x: x.isna().iloc[-1]).all()
