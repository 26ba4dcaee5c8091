"""Hyperband early stopping against no early stopping, on the built-in tasks.

For each task, the same searcher, seed and trial count run twice through ``greedylr.tune``:
with Hyperband pruning and with none. Prints the epochs each used and the best loss each
reached, and their ratios (target: the same best loss within 1 % with <= 1/3 of the epochs).

Run: ``python benchmarks/early_stopping.py [--trials 60] [--seeds 0 1 2] [--tasks ...]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import greedylr
from greedylr.tasks import list_tasks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tasks", nargs="+", default=[info.name for info in list_tasks()])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--min-epochs", type=int, default=1, help="Hyperband's first rung")
    args = parser.parse_args(argv)
    print(
        f"{'task':<11} {'seed':>4} {'epochs hb':>9} {'epochs none':>11} {'ratio':>6} "
        f"{'best hb':>10} {'best none':>10} {'loss ratio':>10}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        for task in args.tasks:
            epoch_ratios, loss_ratios = [], []
            for seed in args.seeds:
                runs = {}
                for stopping in ("hyperband", "none"):
                    runs[stopping] = greedylr.tune(
                        task,
                        n_trials=args.trials,
                        early_stopping=stopping,
                        min_epochs=args.min_epochs,
                        seed=seed,
                        workers=args.workers,
                        out=Path(scratch) / f"{task}-{seed}-{stopping}",
                        progress=False,
                    )
                pruned, full = runs["hyperband"], runs["none"]
                epoch_ratio = pruned.epochs_run / full.epochs_run
                loss_ratio = pruned.best_loss / full.best_loss
                epoch_ratios.append(epoch_ratio)
                loss_ratios.append(loss_ratio)
                print(
                    f"{task:<11} {seed:>4} {pruned.epochs_run:>9} {full.epochs_run:>11} "
                    f"{epoch_ratio:>6.2f} {pruned.best_loss:>10.5g} {full.best_loss:>10.5g} "
                    f"{loss_ratio:>10.4f}"
                )
            print(
                f"{task:<11} mean epochs ratio {statistics.mean(epoch_ratios):.2f} "
                f"(target <= 0.33), mean best-loss ratio {statistics.mean(loss_ratios):.4f} "
                "(target <= 1.01)"
            )


if __name__ == "__main__":
    main()
