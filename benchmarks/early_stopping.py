"""Hyperband early stopping against no early stopping, on the built-in tasks.

For each task and seed, the same searcher runs ``--trials`` trials without early stopping, then
with Hyperband twice: with the same number of trials, and with as many trials as fit in a third
of the epochs the unpruned run used (the study is continued, as ``greedylr tune`` does on a
rerun, until one more trial could overrun the third). Prints the epochs each used and the best
loss each reached, as ratios to the unpruned run (target: within 1 % with <= 1/3 of the epochs).

Every run has one worker (``--workers 1``, the default), so that the arms sample the same
configs: a worker's searcher is seeded from the run seed, and with one worker each trial is
asked after the one before it ended. With several workers, which worker asks which trial, and
what the others have reported by then, depend on timing, so the arms would compare different
configs. The searcher (TPE) samples its first ``_SEEDED_CONFIGS`` configs (the untuned defaults,
then random ones) whatever the losses are; the script checks that both arms start with those
same configs and stops if not. After them TPE follows the losses, which early stopping changes,
so the arms part by design.

Run: ``python benchmarks/early_stopping.py [--trials 60] [--seeds 0 1 2] [--tasks ...]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from pathlib import Path
from typing import Any

import greedylr
from greedylr.backends import TuneResult
from greedylr.tasks import list_tasks


# TPESampler's default n_startup_trials: trials 0 (the defaults) to 9 do not depend on losses.
_SEEDED_CONFIGS = 10


def _configs(result: TuneResult, count: int) -> list[dict[str, Any]]:
    """The configs of the first ``count`` trials (a key a trial lacks is left out)."""
    columns = [name for name in result.trials.columns if name.startswith("config.")]
    rows = result.trials.sort_values("trial")[columns].head(count).to_dict("records")
    return [
        {
            key: value
            for key, value in row.items()
            if not (isinstance(value, float) and math.isnan(value))
        }
        for row in rows
    ]


def _check_same_configs(full: TuneResult, other: TuneResult, name: str) -> None:
    """Stop unless both runs start with the same configs (see the module docstring)."""
    count = min(_SEEDED_CONFIGS, len(full.trials), len(other.trials))
    if _configs(full, count) != _configs(other, count):
        raise RuntimeError(
            f"The {name!r} arm did not sample the first {count} configs of the unpruned run: "
            "the arms would compare different configs."
        )


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
    parser.add_argument(
        "--workers", type=int, default=1, help="per run; more than 1 samples other configs"
    )
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
                if args.workers == 1:
                    _check_same_configs(full, same, "same trials")
                    _check_same_configs(full, third, "a third of the epochs")
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
    if args.workers == 1:
        shared = min(_SEEDED_CONFIGS, args.trials)
        print(f"Checked: every arm started with the unpruned run's first {shared} configs.")
    else:
        print(f"Not checked: with {args.workers} workers the arms may run different configs.")


if __name__ == "__main__":
    main()
