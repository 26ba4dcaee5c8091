"""The statistics of a comparison: pure functions of arrays, tested against hand-computed values.

- :func:`bootstrap_ci`, :func:`difference_ci`: percentile bootstrap CIs (95 % by default) of a
  mean and of a difference of two means, with a seeded generator (the same data, the same CI).
- :func:`strict_outcome`: win, tie or loss of A against B: the CI of the difference excludes 0
  and the difference of the means exceeds a tolerance; otherwise a tie.
- :func:`lenient_outcomes`, :func:`as_good_or_better`: the paper's paired rule (a tie is
  ``|delta| < 0.1`` or within 1 % of B), and the share of pairs where A is as good or better.
- :func:`rung_kendall_tau`: how well the loss at an early epoch ranks trials as their final
  loss does (Kendall's tau-b, :func:`scipy.stats.kendalltau`).
- :func:`epochs_to_target`, :func:`best_so_far`: time-to-result and anytime curves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np


Outcome = Literal["win", "tie", "loss"]
Mode = Literal["min", "max"]
PAPER_ABSOLUTE_TIE = 0.1
"""The paper's tie on small models: ``|delta loss| < 0.1``."""
PAPER_RELATIVE_TIE = 0.01
"""The paper's tie on LLM fine-tuning: within 1 % of the baseline's loss."""


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """The percentile bootstrap CI of the mean of the finite ``values``.

    One value gives ``(value, value)``; none gives ``(nan, nan)``.
    """
    data = _finite(values)
    if not len(data):
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    return _percentiles(means, confidence)


def difference_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """The percentile bootstrap CI of ``mean(a) - mean(b)``, each sample resampled on its own
    (the samples are independent: different tuning studies)."""
    first, second = _finite(a), _finite(b)
    if not len(first) or not len(second):
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    draws_a = first[rng.integers(0, len(first), size=(resamples, len(first)))].mean(axis=1)
    draws_b = second[rng.integers(0, len(second), size=(resamples, len(second)))].mean(axis=1)
    return _percentiles(draws_a - draws_b, confidence)


def _percentiles(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1), but got {confidence=}.")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class StrictComparison:
    """A against B over independent runs (seeds of several studies each).

    Attributes:
        difference: ``mean(a) - mean(b)``.
        low: The CI's lower end.
        high: The CI's upper end.
        outcome: ``win`` (A better: the CI excludes 0 and ``|difference| > tolerance``),
            ``loss`` (B better, the same way) or ``tie``.
    """

    difference: float
    low: float
    high: float
    outcome: Outcome


def strict_outcome(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    mode: Mode,
    tolerance: float,
    confidence: float = 0.95,
    seed: int = 0,
) -> StrictComparison:
    """Win, tie or loss of A against B on a metric to ``mode`` (``min``: lower is better).

    Raises:
        ValueError: ``mode`` is not ``min`` or ``max``, or ``tolerance`` is negative.
    """
    _check_mode(mode)
    if not tolerance >= 0:
        raise ValueError(f"`tolerance` must be >= 0, but got {tolerance=}.")
    first, second = _finite(a), _finite(b)
    if not len(first) or not len(second):
        return StrictComparison(math.nan, math.nan, math.nan, "tie")
    difference = float(first.mean() - second.mean())
    low, high = difference_ci(first, second, confidence=confidence, seed=seed)
    excludes_zero = low > 0 or high < 0
    outcome: Outcome = "tie"
    if excludes_zero and abs(difference) > tolerance:
        a_better = difference < 0 if mode == "min" else difference > 0
        outcome = "win" if a_better else "loss"
    return StrictComparison(difference, low, high, outcome)


def _check_mode(mode: str) -> None:
    if mode not in ("min", "max"):
        raise ValueError(f"`mode` must be 'min' or 'max', but got {mode=}.")


def lenient_outcomes(
    a_losses: Sequence[float] | np.ndarray,
    b_losses: Sequence[float] | np.ndarray,
    *,
    absolute: float = PAPER_ABSOLUTE_TIE,
    relative: float = PAPER_RELATIVE_TIE,
) -> list[Outcome]:
    """The paper's rule, pair by pair (lower loss is better): a tie when
    ``|a - b| < absolute`` or ``|a - b| < relative * |b|``; else a win when ``a < b``.

    A pair with a non-finite loss: a diverged A loses, a diverged B is a win; both: a tie.

    Raises:
        ValueError: The two sequences differ in length.
    """
    first, second = np.asarray(a_losses, float), np.asarray(b_losses, float)
    if first.shape != second.shape:
        raise ValueError(
            f"Paired losses must have the same length, but got {len(first)} and {len(second)}."
        )
    outcomes: list[Outcome] = []
    for x, y in zip(first.tolist(), second.tolist()):
        if not (math.isfinite(x) and math.isfinite(y)):
            if math.isfinite(x) == math.isfinite(y):
                outcomes.append("tie")
            else:
                outcomes.append("win" if math.isfinite(x) else "loss")
            continue
        delta = x - y
        if abs(delta) < absolute or abs(delta) < relative * abs(y):
            outcomes.append("tie")
        else:
            outcomes.append("win" if delta < 0 else "loss")
    return outcomes


def as_good_or_better(outcomes: Sequence[Outcome]) -> float:
    """The share of wins and ties (the paper's "as good or better": 86.7 % of 196 pairs)."""
    if not outcomes:
        return math.nan
    return sum(outcome != "loss" for outcome in outcomes) / len(outcomes)


def rung_kendall_tau(rung_losses: Sequence[float], final_losses: Sequence[float]) -> float:
    """Kendall's tau-b between the trials' losses at a rung and their final losses.

    1: the rung ranks the trials exactly as the end does; 0: no better than chance. Pairs with
    a non-finite loss are left out; fewer than 3 trials (or a constant side) give NaN.
    """
    from scipy.stats import kendalltau

    rung, final = np.asarray(rung_losses, float), np.asarray(final_losses, float)
    keep = np.isfinite(rung) & np.isfinite(final)
    if keep.sum() < 3:
        return math.nan
    tau = kendalltau(rung[keep], final[keep]).statistic
    return float(tau) if tau is not None else math.nan


def epochs_to_target(losses: Sequence[float], target: float) -> int | None:
    """The first epoch (1-based) whose loss is at or below ``target``; ``None``: never."""
    for epoch, loss in enumerate(losses, start=1):
        if math.isfinite(loss) and loss <= target:
            return epoch
    return None


def best_so_far(
    epochs: Sequence[int], losses: Sequence[float], completed: Sequence[bool]
) -> tuple[list[int], list[float]]:
    """The anytime curve of a study: the epochs spent after each trial (in trial order) and the
    best final loss of a completed trial so far (NaN before the first)."""
    spent, best, cumulative, current = [], [], 0, math.inf
    for trial_epochs, loss, done in zip(epochs, losses, completed):
        cumulative += int(trial_epochs)
        if done and math.isfinite(loss):
            current = min(current, float(loss))
        spent.append(cumulative)
        best.append(current if math.isfinite(current) else math.nan)
    return spent, best


def rungs(min_epochs: int, reduction_factor: int, max_epochs: int) -> list[int]:
    """The rung epochs of successive halving below ``max_epochs``: ``min_epochs * factor**k``."""
    found, rung = [], min_epochs
    while rung < max_epochs:
        found.append(rung)
        rung *= reduction_factor
    return found
