"""The Ray Tune side of a trial: the function trainable that runs ``train(config, reporter)``.

It runs in a Ray worker process (an actor that Tune reuses for trial after trial), so it resets
what one trial leaves behind for the next (seeds, torch threads), continues from Tune's
checkpoint when there is one, and reports each epoch to Tune as
``{"epoch": e, "loss": v, "greedylr": row}``: the scheduler reads ``epoch`` and ``loss``, the
driver reads the whole history row (metrics, seconds, the node and devices) from ``greedylr``.

The last result of a trial that ends by itself is a notice for the driver, which the schedulers
never see (it carries no ``row``): a trial whose task raised, or whose loss became NaN, sends
its failure (:data:`FAILURE_KEY`, with a NaN loss: OptunaSearch then tells Optuna the trial
failed) and returns, so that its worker goes on to the next trial (a trial that raises would
cost a fresh worker process) and Ray does not retry it (Ray retries the trials whose worker
died); a trial function that returns says so (:data:`RETURNED_KEY`): it completed, even if it
ran fewer than ``max_epochs`` epochs, while a trial without it was stopped early.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
import traceback
from typing import Any

from greedylr.backends._contract import Checkpoint
from greedylr.backends._contract import TrialContractError
from greedylr.backends._contract import TrialDiverged
from greedylr.backends._contract import ValidatingReporter
from greedylr.backends._contract import load_checkpoint
from greedylr.backends._contract import load_trial_function
from greedylr.backends._contract import save_checkpoint


ROW_KEY = "greedylr"
"""The result key holding the history row (or the failure) of a report."""
FAILURE_KEY = "failure"
"""Inside ``result[ROW_KEY]``: the failure (reason, traceback, the unreported rows)."""
RETURNED_KEY = "returned"
"""Inside ``result[ROW_KEY]``: the trial function returned (it was not stopped early)."""
ENDS_RUN_KEY = "ends_run"
"""Inside a failure: no trial of this task can run (PBT and a task that does not checkpoint)."""
NEEDS_CHECKPOINTS = (
    "early_stopping='pbt' needs a task that checkpoints: report(..., checkpoint=state) every "
    "epoch and continue from reporter.checkpoint() (see greedylr.backends.Reporter)"
)


class CheckpointsNeededError(TrialContractError):
    """Population-based training runs a task that reports without a checkpoint.

    The driver raises it too (:meth:`greedylr.backends._ray.RayBackend.run`) when a trial
    reported so: a ``ValueError``, since the job cannot run with this task at all.
    """


def run_trial(
    config: dict[str, Any],
    *,
    function: str,
    max_epochs: int,
    threads: int,
    needs_checkpoints: bool = False,
) -> None:
    """Run one trial of ``function`` under Ray Tune (the function trainable).

    Args:
        config: The trial's config (Tune's).
        function: The trial function's import path.
        max_epochs: Reports past this epoch are refused.
        threads: Torch threads for this trial.
        needs_checkpoints: Refuse a report without a checkpoint (population-based training).
    """
    from ray import tune

    reset_trial_state(config, threads)
    train = load_trial_function(function)
    restored, earlier = _restored(tune.get_checkpoint())
    forwarded: dict[str, float] = {}

    def forward(epoch: int, loss: float, metrics: dict[str, float], state: Any) -> None:
        if state is None and needs_checkpoints:
            raise CheckpointsNeededError(NEEDS_CHECKPOINTS)
        row = reporter.history[-1]
        payload: dict[str, Any] = {"row": row}
        if restored is not None and not forwarded:  # the rows before the checkpoint: the
            payload["earlier"] = reporter.history[:-1]  # driver may have missed some
        forwarded.update(epoch=float(epoch), loss=loss)
        result = {"epoch": epoch, "loss": loss, ROW_KEY: payload}
        if state is None:
            tune.report(result)
            return
        with tempfile.TemporaryDirectory(prefix="greedylr-") as folder:
            save_checkpoint({"epoch": epoch, "state": state, "history": reporter.history}, folder)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))

    reporter = ValidatingReporter(
        forward, max_epochs=max_epochs, restored=restored, history=earlier, tags=trial_tags()
    )
    try:
        train(config, reporter)
    except TrialDiverged as diverged:
        _report_failure(reporter, forwarded, str(diverged), "")
        return
    except CheckpointsNeededError as error:  # no trial of this task can run: the run ends
        _report_failure(reporter, forwarded, str(error), "", ends_run=True)
        return
    except Exception as error:  # the task failed: the study goes on
        reason = f"{type(error).__name__}: {error}"
        _report_failure(reporter, forwarded, reason, traceback.format_exc())
        return
    if not reporter.history:
        _report_failure(reporter, forwarded, "the trial reported no epoch", "")
        return
    tune.report({**_last(forwarded), ROW_KEY: {RETURNED_KEY: True}})


def _report_failure(
    reporter: ValidatingReporter,
    forwarded: dict[str, float],
    reason: str,
    error: str,
    *,
    ends_run: bool = False,
) -> None:
    """Send the failure to the driver before the trial returns (see the module);
    ``ends_run``: the driver ends the whole run at once (:data:`ENDS_RUN_KEY`)."""
    from ray import tune

    sent = forwarded.get("epoch", 0.0)
    unsent = [row for row in reporter.history if row["epoch"] > sent]  # the NaN row, say
    failure = {"reason": reason, "traceback": error, "rows": unsent, ENDS_RUN_KEY: ends_run}
    # A NaN loss: OptunaSearch tells Optuna the trial failed (as the Optuna backend does).
    tune.report({**_last(forwarded), "loss": math.nan, ROW_KEY: {FAILURE_KEY: failure}})


def _last(forwarded: dict[str, float]) -> dict[str, Any]:
    """The epoch and loss of the last forwarded report (a notice repeats them: Tune checks
    that every result has the metric)."""
    return {"epoch": int(forwarded.get("epoch", 0.0)), "loss": forwarded.get("loss", math.inf)}


def _restored(checkpoint: Any) -> tuple[Checkpoint | None, list[dict[str, Any]] | None]:
    """The trial's state and history from Tune's checkpoint (``None, None`` without one)."""
    if checkpoint is None:
        return None, None
    with checkpoint.as_directory() as folder:
        saved = load_checkpoint(folder)
    return Checkpoint(int(saved["epoch"]), saved["state"]), list(saved["history"])


def trial_tags() -> dict[str, str]:
    """The string columns of every history row: the Ray node and the devices the trial sees."""
    import ray

    address = ray.util.get_node_ip_address()
    return {
        "node": node_label(address, ray.get_runtime_context().get_node_id()),
        "devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
    }


NODE_ID_CHARACTERS = 8


def node_label(address: str, node_id: str) -> str:
    """``ADDRESS:ID``: the node's IP address and the start of Ray's 56-digit node id (two
    nodes on one machine share the address; 8 hex digits still tell them apart)."""
    return f"{address}:{node_id[:NODE_ID_CHARACTERS]}"


def reset_trial_state(config: dict[str, Any], threads: int) -> None:
    """Undo what the previous trial of a reused worker left: seeds and torch threads.

    Every RNG a task may draw from without seeding it (Python's, NumPy's global one, torch's)
    starts from the trial's ``seed``, as in a fresh process seeded the same way.
    """
    import numpy as np
    import torch

    seed = int(config.get("seed", 0))
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, threads))
