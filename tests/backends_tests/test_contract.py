"""The validating reporter and the naming of trial functions."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from greedylr.backends import TrialContractError
from greedylr.backends import TrialDiverged
from greedylr.backends import ValidatingReporter
from greedylr.backends import function_path
from greedylr.backends import load_trial_function
from tests.backends_tests import toy_tasks


def test_reports_are_checked_converted_and_forwarded() -> None:
    seen = []
    reporter = ValidatingReporter(lambda e, loss, m, c: seen.append((e, loss, m)), max_epochs=3)
    reporter.report(epoch=1, loss=torch.tensor(0.5), accuracy=np.float32(0.25))
    reporter.report(epoch=3, loss=0.25)
    assert seen == [(1, 0.5, {"accuracy": 0.25}), (3, 0.25, {})]
    assert type(seen[0][1]) is float
    assert type(seen[0][2]["accuracy"]) is float
    assert [row["epoch"] for row in reporter.history] == [1, 3]
    assert reporter.last_epoch == 3


@pytest.mark.parametrize(
    ("reports", "match"),
    [
        ([{"epoch": 1.0, "loss": 1}], r"`epoch` must be an int, but got epoch=1.0."),
        ([{"epoch": True, "loss": 1}], r"`epoch` must be an int"),
        ([{"epoch": 2, "loss": 1}, {"epoch": 2, "loss": 1}], "strictly increase, but got epoch=2"),
        ([{"epoch": 0, "loss": 1}], "strictly increase, but got epoch=0 after 0"),
        ([{"epoch": 4, "loss": 1}], r"`epoch` must be <= max_epochs=3, but got epoch=4."),
        ([{"epoch": 1, "accuracy": 1}], r"needs the metric `loss`, but epoch 1 reported only"),
        ([{"epoch": 1, "loss": "low"}], r"Metric `loss` must be a number, but got loss='low'."),
        ([{"epoch": 1, "loss": 1, "st_x": 2}], "The metric name `st_x` is reserved"),
        ([{"epoch": 1, "loss": 1, "trial": 2}], "The metric name `trial` is reserved"),
    ],
)
def test_contract_violations(reports: list[dict], match: str) -> None:
    reporter = ValidatingReporter(max_epochs=3)
    *accepted, refused = reports
    for report in accepted:
        reporter.report(**report)
    with pytest.raises(TrialContractError, match=match):
        reporter.report(**refused)


@pytest.mark.parametrize("loss", [math.nan, math.inf, -math.inf])
def test_a_non_finite_loss_ends_the_trial_as_diverged(loss: float) -> None:
    forwarded = []
    reporter = ValidatingReporter(lambda *args: forwarded.append(args))
    reporter.report(epoch=1, loss=1.0)
    with pytest.raises(TrialDiverged, match=r"diverged at epoch 2 \(loss="):
        reporter.report(epoch=2, loss=loss)
    assert len(forwarded) == 1
    assert len(reporter.history) == 2  # the diverged epoch is kept in the history


def test_load_trial_function_by_module_and_by_file() -> None:
    assert load_trial_function("tests.backends_tests.toy_tasks:smooth") is toy_tasks.smooth
    by_file = load_trial_function(f"{Path(toy_tasks.__file__)}:troubled")
    assert by_file.__name__ == "troubled"
    assert function_path(by_file) == f"{Path(toy_tasks.__file__).resolve()}:troubled"
    assert function_path(toy_tasks.smooth) == "tests.backends_tests.toy_tasks:smooth"


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("toy_tasks", "is named `package.module:function`"),
        ("no.such.module:f", "Cannot import the trial function 'no.such.module:f'"),
        ("/no/such/file.py:f", "no such file"),
        ("tests.backends_tests.toy_tasks:absent", "has no callable 'absent'"),
    ],
)
def test_load_trial_function_errors(path: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_trial_function(path)


def test_function_path_refuses_what_workers_cannot_import() -> None:
    def local(config: dict, reporter: object) -> None:
        return None

    with pytest.raises(ValueError, match="defined at the top level"):
        function_path(local)
    with pytest.raises(ValueError, match="defined at the top level"):
        function_path(lambda config, reporter: None)
    assert sys.modules["__main__"] is not None
