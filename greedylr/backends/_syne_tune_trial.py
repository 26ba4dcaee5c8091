"""The process Syne Tune's ``LocalBackend`` starts for each trial (``python -m`` this module).

Its command line is ``SPEC --st_config_json_filename CONFIG --st_checkpoint_dir FOLDER``:
``SPEC`` is the JSON the tuner wrote for every trial of the run (the trial function as
``module:function``, the epochs, the torch threads, the tuner's pid), ``CONFIG`` the config
Syne Tune sampled, as JSON (its types and categorical values exactly as sampled: Syne Tune's
``--name value`` arguments would lose them, and break on values with spaces), and ``FOLDER``
the trial's checkpoint folder.

The trial reports each epoch through ``syne_tune.Reporter`` (a line on its stdout that the
tuner reads), after writing the epoch's checkpoint, if the task handed one, to ``FOLDER``. It
starts from the checkpoint it finds there: its own (a paused trial that continues), or one the
tuner copied there (a trial run again, or PBT handing it a better trial's state). A trial that
raises or diverges writes ``outcome.json`` beside ``FOLDER`` (why, and the traceback) and exits
with status 1; the tuner records it as failed. It dies with the tuner (``PR_SET_PDEATHSIG``),
and ignores Ctrl-C: the tuner stops it.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from greedylr.backends._contract import CHECKPOINT_FILE
from greedylr.backends._contract import Checkpoint
from greedylr.backends._contract import TrialContractError
from greedylr.backends._contract import TrialDiverged
from greedylr.backends._contract import ValidatingReporter
from greedylr.backends._contract import load_checkpoint
from greedylr.backends._contract import load_trial_function
from greedylr.backends._contract import save_checkpoint


OUTCOME_FILE = "outcome.json"
"""Why a trial failed, written beside its checkpoint folder: ``reason``, ``traceback``, ``row``
(the diverged epoch's history row, which Syne Tune never saw)."""
STOP_AFTER = "greedylr_stop_after"
"""A config key of promotion-type ASHA: the trial ends after this epoch (its rung); the
trial function never sees it."""


class _RungReached(Exception):  # noqa: N818 - a signal, not an error
    """The trial reported the epoch of its rung; it ends there, to continue when promoted."""


def _die_with_tuner(tuner_pid: int) -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != tuner_pid:  # the tuner died before the line above
        os._exit(1)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(data))
    partial.replace(path)


def run_trial(spec: dict[str, Any], config: dict[str, Any], checkpoints: Path) -> int:
    """Run one trial to its end; return the process's exit status (0: it ended well).

    Args:
        spec: ``function``, ``max_epochs``, ``threads`` and ``needs_checkpoints``.
        config: The config Syne Tune sampled (with :data:`STOP_AFTER` for promotion ASHA).
        checkpoints: The trial's checkpoint folder.
    """
    from syne_tune import Reporter

    # torch takes its threads from OMP_NUM_THREADS when the task imports it (a task without
    # torch never pays for the import).
    os.environ["OMP_NUM_THREADS"] = str(int(spec["threads"]))
    stop_after = config.pop(STOP_AFTER, None)
    outcome = checkpoints.parent / OUTCOME_FILE
    outcome.unlink(missing_ok=True)
    restored: Checkpoint | None = None
    history: list[dict[str, Any]] = []
    if (checkpoints / CHECKPOINT_FILE).is_file():
        saved = load_checkpoint(checkpoints)
        restored = Checkpoint(int(saved["epoch"]), saved["state"])
        history = list(saved["history"])
    report = Reporter()

    def forward(epoch: int, loss: float, metrics: dict[str, float], state: Any) -> None:
        if state is not None:  # before the report: the tuner may pause the trial on it
            rows = [_plain_row(row) for row in reporter.history]
            save_checkpoint({"epoch": epoch, "state": state, "history": rows}, checkpoints)
        elif spec["needs_checkpoints"]:
            raise TrialContractError(
                f"{spec['needs_checkpoints']} needs a task that checkpoints: "
                "report(..., checkpoint=state) at every epoch."
            )
        report(epoch=epoch, loss=loss, seconds=reporter.history[-1]["seconds"], **metrics)
        if stop_after is not None and epoch >= stop_after:
            raise _RungReached

    reporter = ValidatingReporter(
        forward, max_epochs=int(spec["max_epochs"]), restored=restored, history=history
    )
    train = load_trial_function(spec["function"])
    try:
        train(config, reporter)
    except _RungReached:
        return 0
    except TrialDiverged as error:
        _write_json(outcome, {"reason": str(error), "row": _plain_row(reporter.history[-1])})
        return 1
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        _write_json(outcome, {"reason": reason, "traceback": traceback.format_exc()})
        return 1
    return 0


def _plain_row(row: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in row.items() if isinstance(value, (int, float))}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line Syne Tune built and run the trial."""
    parser = argparse.ArgumentParser(prog="greedylr-syne-tune-trial")
    parser.add_argument("spec", type=Path)
    parser.add_argument("--st_config_json_filename", type=Path, required=True)
    parser.add_argument("--st_checkpoint_dir", type=Path, required=True)
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text())
    _die_with_tuner(int(spec["tuner_pid"]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the tuner, which stops us
    config = json.loads(args.st_config_json_filename.read_text())
    return run_trial(spec, config, args.st_checkpoint_dir)


if __name__ == "__main__":
    sys.exit(main())
