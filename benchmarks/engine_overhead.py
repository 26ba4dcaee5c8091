"""greedylr's overhead over a hand-written Optuna script running the same trials.

Both run the same task, sampler (TPE, same seed), pruner (Hyperband), journal storage and
trial count in this process, one worker, and stop trials by greedylr's rules (the untuned
defaults run to the end; a last epoch is never stopped), so they sample the same configs and run
the same epochs (the script says so when they do not); the runs alternate (ABBA) and each side
keeps its best of ``--repeats``.

What each clock covers, the same work on both sides: building the job (the search space and
the task's train function), creating the study on a journal file in a fresh folder, enqueuing
the untuned defaults, running every trial, and reading the epochs run back. greedylr's side
also validates the job and writes its run folder (``experiment.json``, ``trials.csv``,
``history.csv``, ``best.json``): that is part of its overhead. Neither clock covers imports,
the task's data or torch's first-optimizer set-up: one untimed run of each side pays them.

Run: ``python benchmarks/engine_overhead.py [--task digits-mlp] [--trials 60] [--repeats 3]``.
Prints the wall times and the ratio greedylr / hand-written (target <= 1.05).

``--engine ray`` compares the Ray Tune backend with a hand-written Ray Tune script instead, and
measures the time to the first trial on a local instance and on an attached cluster: see
``benchmarks/ray_overhead.py``, which it runs with the other arguments. ``--engine syne-tune``
compares the Syne Tune backend with a hand-written Syne Tune script, and measures the fixed cost
of one trial next to ``python -c "import torch"``: see ``benchmarks/syne_tune_overhead.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal import JournalStorage

import greedylr
from greedylr.backends import Experiment
from greedylr.backends import load_trial_function
from greedylr.backends._optuna import worker_seed
from greedylr.searchers import suggest


def hand_written(task: str, trials: int, seed: int, folder: Path) -> tuple[float, int]:
    """What a user would write with Optuna alone (same sampler, pruner and storage)."""
    start = time.perf_counter()
    experiment = Experiment.create(task, n_trials=trials, seed=seed)
    train = load_trial_function(experiment.function)
    space = experiment.search_space
    study = optuna.create_study(
        study_name="run",  # Hyperband assigns brackets by study name: the same as greedylr's
        storage=JournalStorage(JournalFileBackend(str(folder / "hand.log"))),
        sampler=optuna.samplers.TPESampler(seed=worker_seed(seed, 0, 1), constant_liar=True),
        pruner=optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=experiment.max_epochs, reduction_factor=3
        ),
    )
    study.enqueue_trial(experiment.default_config(), user_attrs={"defaults": True})

    class Reporter:
        def __init__(self, trial: Any) -> None:
            self.trial, self.loss = trial, float("nan")
            self.exempt = bool(trial.user_attrs.get("defaults"))

        def report(self, *, epoch: int, loss: float, **metrics: float) -> None:
            self.loss = loss
            self.trial.report(loss, step=epoch)
            # greedylr's rules: the defaults run to the end; stopping at the last epoch saves
            # nothing. Without them the two sides would run different epochs.
            if self.exempt or epoch >= experiment.max_epochs:
                return
            if self.trial.should_prune():
                raise optuna.TrialPruned()

    def objective(trial: Any) -> float:
        reporter = Reporter(trial)
        train(suggest(trial, space), reporter)
        return reporter.loss

    study.optimize(objective, n_trials=trials)
    epochs = sum(len(t.intermediate_values) for t in study.trials)
    return time.perf_counter() - start, epochs


def through_greedylr(task: str, trials: int, seed: int, folder: Path) -> tuple[float, int]:
    start = time.perf_counter()
    result = greedylr.tune(
        task, n_trials=trials, seed=seed, workers=1, out=folder / "run", progress=False
    )
    return time.perf_counter() - start, result.epochs_run


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--engine" in argv:
        at = argv.index("--engine")
        engine, argv = argv[at + 1], argv[:at] + argv[at + 2 :]
        scripts = {"ray": "ray_overhead.py", "syne-tune": "syne_tune_overhead.py"}
        if engine in scripts:
            script = Path(__file__).with_name(scripts[engine])
            os.execv(sys.executable, [sys.executable, str(script), *argv])
        if engine != "optuna":
            raise SystemExit(f"--engine must be optuna, ray or syne-tune, but got {engine!r}")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits-mlp")
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # greedylr's single in-process worker trains with every core; so does the script.
    torch.set_num_threads(os.cpu_count() or 1)
    best = {"hand-written Optuna": float("inf"), "greedylr tune": float("inf")}
    epochs = {}
    with tempfile.TemporaryDirectory() as scratch:
        sides = [("hand-written Optuna", hand_written), ("greedylr tune", through_greedylr)]
        for name, run in sides:  # imports, data caches and torch's first optimizer, untimed
            warm_up = Path(scratch) / f"warm-up-{name.split()[0]}"
            warm_up.mkdir()
            run(args.task, 2, args.seed, warm_up)
        for repeat in range(args.repeats):
            for name, run in sides if repeat % 2 == 0 else sides[::-1]:  # ABBA: no order bias
                folder = Path(scratch) / f"{name.split()[0]}-{repeat}"
                folder.mkdir()
                seconds, epochs[name] = run(args.task, args.trials, args.seed, folder)
                best[name] = min(best[name], seconds)
    for name, seconds in best.items():
        print(f"{name:>20}: {seconds:7.2f} s  ({epochs[name]} epochs)")
    if len(set(epochs.values())) > 1:
        print("The sides ran different epochs: the ratio compares different work.")
    ratio = best["greedylr tune"] / best["hand-written Optuna"]
    print(f"greedylr overhead: {ratio:.3f}x the hand-written script (target <= 1.05)")


if __name__ == "__main__":
    main()
