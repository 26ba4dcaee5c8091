"""Time per ``step()`` of greedylr's GreedyLR against transformers' GreedyLR and torch's
ReduceLROnPlateau, in the same process, smoothing windows 1, 50 and 1000.

Run: ``python benchmarks/scheduler_step.py [--steps N] [--repeats R]``. Prints microseconds per
step (the best of R runs) and the ratios. Targets: greedylr <= 1.0x transformers at window 50
and flat in the window; <= 1.5x ReduceLROnPlateau.
"""

from __future__ import annotations

import argparse
import random
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from transformers.optimization import GreedyLR as TransformersGreedyLR

from greedylr.schedulers import GreedyLR


def _seconds_per_step(
    build: Callable[[torch.optim.Optimizer], Any], metrics: list[float], repeats: int
) -> float:
    best = float("inf")
    for _ in range(repeats):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scheduler = build(optimizer)
        step = scheduler.step
        start = time.perf_counter()
        for metric in metrics:
            step(metric)
        best = min(best, time.perf_counter() - start)
    return best / len(metrics)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rng = random.Random(0)
    metrics = [1.0 / (1 + 0.01 * i) + rng.gauss(0, 0.01) for i in range(args.steps)]
    common = {"patience": 10, "factor": 0.95, "min_lr": 1e-4, "max_lr": 1.0}

    plateau = _seconds_per_step(
        lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=10, min_lr=1e-4),
        metrics,
        args.repeats,
    )
    print(f"torch ReduceLROnPlateau: {plateau * 1e6:6.2f} us/step (reference)")
    print(
        f"{'window':>7} {'greedylr':>10} {'transformers':>13} {'vs transformers':>16} "
        f"{'vs plateau':>11}"
    )
    ours_by_window = {}
    for window in (1, 50, 1000):
        smooth = {"smooth": True, "window_size": window}
        ours = _seconds_per_step(
            lambda opt, smooth=smooth: GreedyLR(opt, **common, **smooth), metrics, args.repeats
        )
        theirs = _seconds_per_step(
            lambda opt, smooth=smooth: TransformersGreedyLR(opt, **common, **smooth),
            metrics,
            args.repeats,
        )
        ours_by_window[window] = ours
        print(
            f"{window:>7} {ours * 1e6:>8.2f}us {theirs * 1e6:>11.2f}us {ours / theirs:>15.2f}x "
            f"{ours / plateau:>10.2f}x"
        )
    unsmoothed = _seconds_per_step(lambda opt: GreedyLR(opt, **common), metrics, args.repeats)
    print(
        f"greedylr without smoothing: {unsmoothed * 1e6:.2f} us/step, "
        f"{unsmoothed / plateau:.2f}x ReduceLROnPlateau"
    )
    print(
        f"greedylr window 1000 / window 1: {ours_by_window[1000] / ours_by_window[1]:.2f}x "
        "(flat in the window = about 1.0x)"
    )


if __name__ == "__main__":
    main()
