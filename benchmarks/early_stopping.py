"""Hyperband early stopping against no early stopping, on the built-in tasks.

For each task and seed, the same searcher runs ``--trials`` trials without early stopping, then
with Hyperband twice: with the same number of trials, and with as many trials as fit in a third
of the epochs the unpruned run used (the study is continued, as ``greedylr tune`` does on a
rerun, until one more trial could overrun the third). Prints the epochs each used and the best
loss each reached, as ratios to the unpruned run (target: within 1 % with <= 1/3 of the epochs).

Run: ``python benchmarks/early_stopping.py [--trials 60] [--seeds 0 1 2] [--tasks ...]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import greedylr
from greedylr.backends import TuneResult
from greedylr.tasks import list_tasks


def _third_of_the_budget(run: Any, full: TuneResult, trials: int) -> TuneResult:
    """Continue the Hyperband study while another full-length trial still fits."""
    budget = full.epochs_run / 3
    pruned = run(trials)
    while pruned.epochs_run + full.experiment.max_epochs <= budget:
        per_trial = pruned.epochs_run / len(pruned.trials)
        more = max(1, int(0.8 * (budget - pruned.epochs_run) / per_trial))
        pruned = run(len(pruned.trials) + more)
    return pruned


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tasks", nargs="+", default=[info.name for info in list_tasks()])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--min-epochs", type=int, default=1, help="Hyperband's first rung")
    args = parser.parse_args(argv)
    print(
        f"{'task':<11} {'seed':>4} {'best none':>10} | same trials: {'epochs':>6} {'loss':>6} "
        f"| a third of the epochs: {'trials':>6} {'epochs':>6} {'loss':>6}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        for task in args.tasks:
            ratios: dict[str, list[float]] = {"same": [], "third": [], "epochs": []}
            for seed in args.seeds:

                def run(
                    stopping: str, trials: int, name: str, task: str = task, seed: int = seed
                ) -> TuneResult:
                    return greedylr.tune(
                        task,
                        n_trials=trials,
                        early_stopping=stopping,
                        min_epochs=args.min_epochs,
                        seed=seed,
                        workers=args.workers,
                        out=Path(scratch) / f"{task}-{seed}-{name}",
                        progress=False,
                    )

                full = run("none", args.trials, "none")
                same = run("hyperband", args.trials, "same")
                third = _third_of_the_budget(
                    lambda trials: run("hyperband", trials, "third"), full, args.trials
                )
                ratios["same"].append(same.best_loss / full.best_loss)
                ratios["third"].append(third.best_loss / full.best_loss)
                ratios["epochs"].append(third.epochs_run / full.epochs_run)
                print(
                    f"{task:<11} {seed:>4} {full.best_loss:>10.5g} | {'':>13}"
                    f"{same.epochs_run / full.epochs_run:>6.2f} {ratios['same'][-1]:>6.3f} "
                    f"| {'':>22}{len(third.trials):>6} {ratios['epochs'][-1]:>6.2f} "
                    f"{ratios['third'][-1]:>6.3f}"
                )
            same_mean, third_mean = (statistics.mean(ratios[k]) for k in ("same", "third"))
            print(
                f"{task:<11} mean best-loss ratio: same trials {same_mean:.3f}, a third of the "
                f"epochs ({statistics.mean(ratios['epochs']):.2f}) {third_mean:.3f} "
                "(target <= 1.01 with <= 0.33)"
            )


if __name__ == "__main__":
    main()
