"""greedylr's Syne Tune backend against a hand-written Syne Tune script running the same trials.

(``python benchmarks/engine_overhead.py --engine syne-tune`` runs this script.)

Both sides run the same task, searcher (random, the same seed, the untuned defaults first), every
trial to its last epoch (``--early-stopping none``, the default: the same epochs on both sides;
``asha`` stops trials on the reported epoch, max_t the task's epochs, grace period 1, reduction
factor 3, but the two sides' samplers differ, so they stop different trials), one trial at a time
through Syne Tune's ``LocalBackend`` (one process per trial), the tuner polling every 0.1 s (Syne
Tune's default, 5 s, would dominate both), and a checkpoint written every epoch (the built-in
tasks hand one with each report; the script saves it with ``torch.save`` into the trial's
``st_checkpoint_dir``, as a Syne Tune user who wants to resume would). The runs alternate (ABBA);
each side keeps its best of ``--repeats``. The script says when the sides ran different epochs
(the ratio then compares different work).

What each clock covers, the same on both sides: building the job, every trial process (Python,
the imports, the task's data, training), reading the epochs run back. greedylr's side also
validates the job and writes its run folder.

Then the fixed cost of one trial, for both sides: a task that reports one epoch at once, run for
``--short`` and for ``3 * --short`` trials; the difference of the two wall times over the
difference of the trial counts is the cost of one more trial, start-up and wind-down of the job
excluded. It is printed next to a bare ``python -c "import torch"`` (best of 5), the floor of any
trial process that trains with torch.

Run: ``python benchmarks/syne_tune_overhead.py [--task digits-mlp] [--trials 8] [--max-epochs 20]
[--repeats 3] [--early-stopping none|asha]``.
Prints the wall times and the ratio greedylr / hand-written (target <= 1.05).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import greedylr  # noqa: E402
from greedylr.backends import Experiment  # noqa: E402
from greedylr.searchers import split_space  # noqa: E402
from greedylr.searchers import to_syne_tune  # noqa: E402


SLEEP_SECONDS = 0.1
ENTRY_POINT = '''
"""A Syne Tune user's training script: the config as JSON, a report per epoch."""
import argparse, json, os, sys
from pathlib import Path

import torch
from syne_tune import Reporter

from greedylr.backends import load_trial_function

parser = argparse.ArgumentParser()
parser.add_argument("--st_config_json_filename")
parser.add_argument("--st_checkpoint_dir")
args, _ = parser.parse_known_args()
config = json.loads(Path(args.st_config_json_filename).read_text())
function = config.pop("__function__")
torch.manual_seed(int(config.get("seed", 0)))
torch.set_num_threads(1)
report = Reporter()
folder = Path(args.st_checkpoint_dir)


class Adapter:
    def report(self, *, epoch, loss, checkpoint=None, **metrics):
        if checkpoint is not None:
            folder.mkdir(parents=True, exist_ok=True)
            torch.save({"epoch": epoch, "state": checkpoint}, folder / "state.pt")
        report(epoch=epoch, loss=float(loss))

    def checkpoint(self):
        return None  # ASHA (stopping) never pauses a trial: nothing to continue from


load_trial_function(function)(config, Adapter())
'''
NOOP_TASK = """
def train(config, reporter):
    reporter.report(epoch=1, loss=float(config["x"]))
"""


def hand_written(experiment: Experiment, folder: Path) -> tuple[float, int]:
    """What a user would write with Syne Tune alone (same searcher, scheduler and polling)."""
    from syne_tune import StoppingCriterion
    from syne_tune import Tuner
    from syne_tune.backend import LocalBackend
    from syne_tune.experiments import load_experiment
    from syne_tune.optimizer.baselines import ASHA
    from syne_tune.optimizer.baselines import RandomSearch

    start = time.perf_counter()
    os.environ["SYNETUNE_FOLDER"] = str(folder)
    os.chdir(folder)  # Syne Tune writes a std.out into the working directory
    entry_point = folder / "train_script.py"
    entry_point.write_text(ENTRY_POINT)
    params, constants = split_space(experiment.search_space)
    config_space = {**to_syne_tune(params), **constants, "__function__": experiment.function}
    defaults = experiment.default_config()
    points = [defaults] if defaults else None
    scheduler = (
        ASHA(
            config_space,
            metric="loss",
            do_minimize=True,
            time_attr="epoch",
            max_t=experiment.max_epochs,
            grace_period=experiment.min_epochs,
            reduction_factor=experiment.reduction_factor,
            random_seed=experiment.seed,
            points_to_evaluate=points,
        )
        if experiment.early_stopping == "asha"
        else RandomSearch(
            config_space,
            metrics=["loss"],
            do_minimize=True,
            random_seed=experiment.seed,
            points_to_evaluate=points,
        )
    )
    tuner = Tuner(
        trial_backend=LocalBackend(entry_point=str(entry_point), pass_args_as_json=True),
        scheduler=scheduler,
        # Syne Tune stops once *more* than this many trials started.
        stop_criterion=StoppingCriterion(max_num_trials_started=experiment.n_trials - 1),
        n_workers=1,
        sleep_time=SLEEP_SECONDS,
        wait_trial_completion_when_stopping=True,
        tuner_name="hand",
        suffix_tuner_name=False,
    )
    with contextlib.redirect_stdout(io.StringIO()):  # its banner and tables, as greedylr does
        tuner.run()
    results = load_experiment("hand", local_path=str(folder)).results
    epochs = int(results.groupby("trial_id")["epoch"].max().sum())
    return time.perf_counter() - start, epochs


def through_greedylr(experiment: Experiment, folder: Path) -> tuple[float, int]:
    start = time.perf_counter()
    result = greedylr.tune(
        experiment.task,
        space=experiment.search_space,
        backend="syne-tune",
        n_trials=experiment.n_trials,
        max_epochs=experiment.max_epochs,
        searcher="random",
        early_stopping=experiment.early_stopping,
        seed=experiment.seed,
        workers=1,
        cpus_per_trial=1,
        out=folder / "run",
        progress=False,
    )
    return time.perf_counter() - start, result.epochs_run


def import_torch_seconds() -> float:
    """Wall seconds of a bare ``python -c "import torch"`` (best of 5)."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        best = min(best, time.perf_counter() - start)
    return best


def per_trial_seconds(side: Any, short: int, scratch: Path) -> float:
    """The wall seconds one more trial of a task that reports at once costs ``side``."""
    task = scratch / "noop_task.py"
    task.write_text(NOOP_TASK)
    walls = []
    for trials in (short, 3 * short):
        experiment = Experiment.create(
            f"{task}:train", space={"x": greedylr.searchers.FloatParam(0.0, 1.0)},
            n_trials=trials, max_epochs=1, backend="syne-tune", searcher="random",
            early_stopping="none",
        )  # fmt: skip
        walls.append(side(experiment, Path(tempfile.mkdtemp(dir=scratch)))[0])
    return (walls[1] - walls[0]) / (2 * short)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits-mlp")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--early-stopping", choices=["none", "asha"], default="none")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--short", type=int, default=4, help="trials of the fixed-cost run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.getLogger("syne_tune").setLevel(logging.ERROR)
    experiment = Experiment.create(
        args.task, n_trials=args.trials, max_epochs=args.max_epochs, seed=args.seed,
        backend="syne-tune", searcher="random", early_stopping=args.early_stopping,
    )  # fmt: skip
    sides = [("hand-written Syne Tune", hand_written), ("greedylr tune", through_greedylr)]
    best = {name: float("inf") for name, _ in sides}
    epochs: dict[str, int] = {}
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="st-") as scratch, contextlib.chdir(scratch):
        for _, run in sides:  # the task's data caches, untimed
            warm_up = Path(tempfile.mkdtemp(dir=scratch))
            run(Experiment(**{**experiment.__dict__, "n_trials": 2}), warm_up)
        for repeat in range(args.repeats):
            for name, run in sides if repeat % 2 == 0 else sides[::-1]:  # ABBA
                seconds, epochs[name] = run(experiment, Path(tempfile.mkdtemp(dir=scratch)))
                best[name] = min(best[name], seconds)
        for name, seconds in best.items():
            print(f"{name:>24}: {seconds:7.2f} s  ({epochs[name]} epochs, {args.trials} trials)")
        if len(set(epochs.values())) > 1:
            print("The sides ran different epochs: the ratio compares different work.")
        ratio = best["greedylr tune"] / best["hand-written Syne Tune"]
        print(f"greedylr overhead: {ratio:.3f}x the hand-written script (target <= 1.05)")
        print("fixed cost of one trial (a task that reports one epoch at once):")
        for name, run in sides:
            seconds = per_trial_seconds(run, args.short, Path(scratch))
            print(f"  {name:>24}: {seconds:5.2f} s")
        print(f"  {'python -c import torch':>24}: {import_torch_seconds():5.2f} s")


if __name__ == "__main__":
    main()
