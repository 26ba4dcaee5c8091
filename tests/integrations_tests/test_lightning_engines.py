"""The Lightning adapter end to end under Ray Tune and Syne Tune (Optuna: test_lightning.py).

Each run costs 10+ seconds (the engine starts): one small tune per engine.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest


pytest.importorskip("pytorch_lightning")

import greedylr  # noqa: E402
from greedylr.searchers import FloatParam  # noqa: E402
from tests.backends_tests.netns import ONE_RAY_AT_A_TIME  # noqa: E402
from tests.backends_tests.netns import private_network  # noqa: E402


TASK = f"{Path(__file__).with_name('lightning_tasks.py')}:train"


def _tune(backend: str, tmp_path: Path) -> pd.DataFrame:
    greedylr.tune(
        TASK,
        backend=backend,
        space={"x": FloatParam(0.0, 1.0)},
        n_trials=3,
        max_epochs=3,
        workers=1,
        seed=3,
        progress=False,
        out=tmp_path / "run",
    )
    return pd.read_csv(tmp_path / "run" / "trials.csv")


def _check(trials: pd.DataFrame) -> None:
    assert len(trials) == 3
    assert set(trials["status"]) <= {"completed", "pruned"}, trials  # none failed
    assert (trials.loc[trials["status"] == "completed", "epochs"] == 3).all()
    assert (trials["final_loss"] > 0).all()


@pytest.mark.slow
@ONE_RAY_AT_A_TIME
def test_ray_tune_runs_the_lightning_task(tmp_path: Path) -> None:
    pytest.importorskip("ray.tune")
    with private_network():
        trials = _tune("ray", tmp_path)
    _check(trials)


@pytest.mark.slow
def test_syne_tune_runs_the_lightning_task(tmp_path: Path) -> None:
    pytest.importorskip("syne_tune")
    _check(_tune("syne-tune", tmp_path))
