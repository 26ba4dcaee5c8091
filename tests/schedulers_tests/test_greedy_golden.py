"""Golden GreedyLR trajectories, derived by hand step by step (factor 0.5 keeps numbers exact)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
import torch

from greedylr.schedulers import GreedyLR


def _trajectory(
    losses: Sequence[float], *, lr: float = 1.0, groups: int = 1, **kwargs: Any
) -> list[list[float]]:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(groups)]
    optimizer = torch.optim.SGD([{"params": [p], "lr": lr} for p in params])
    scheduler = GreedyLR(optimizer, **{"max_lr": 8.0, **kwargs})
    lrs = []
    for loss in losses:
        scheduler.step(loss)
        assert scheduler.get_last_lr() == [g["lr"] for g in optimizer.param_groups]
        lrs.append(scheduler.get_last_lr())
    return lrs


def _check(actual: list[list[float]], expected: Sequence[float]) -> None:
    assert len(actual) == len(expected)
    for step, (got, want) in enumerate(zip(actual, expected), start=1):
        assert got[0] == pytest.approx(want, abs=1e-12), f"LR is wrong at step {step}: {actual}"


@pytest.mark.parametrize("variant", ["hf", "paper"])
def test_first_increase_after_patience_plus_one_good_steps_and_max_lr(variant: str) -> None:
    # patience=2: steps 1, 2, 3 are good (1, 2, 3 > 2): up at step 3 (1 -> 2); steps 4, 5, 6:
    # up at step 6 (2 -> 4 = max_lr); step 9 would go to 8 but max_lr clamps it: no change.
    lrs = _trajectory(
        range(10, 0, -1), patience=2, factor=0.5, min_lr=0.1, max_lr=4.0, variant=variant
    )
    _check(lrs, [1, 1, 2, 2, 2, 4, 4, 4, 4, 4])


@pytest.mark.parametrize("variant", ["hf", "paper"])
def test_cooldown_and_min_lr(variant: str) -> None:
    # patience=1, cooldown=1, a flat loss: step 1 is good (beats +inf); steps 2, 3 bad -> down
    # at step 3; step 4 cooldown; steps 5, 6 bad -> down at 6; step 7 cooldown; steps 8, 9
    # bad -> 0.125 is clamped to min_lr 0.2.
    lrs = _trajectory([5.0] * 9, patience=1, cooldown=1, factor=0.5, min_lr=0.2, variant=variant)
    _check(lrs, [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2])


@pytest.mark.parametrize("variant", ["hf", "paper"])
def test_warmup_ignores_good_steps_after_an_increase(variant: str) -> None:
    # patience=0, warmup=2, improving: up at step 1; steps 2, 3 are warmup; up at step 4.
    lrs = _trajectory(
        [10, 9, 8, 7], patience=0, warmup=2, factor=0.5, min_lr=0.1, max_lr=8.0, variant=variant
    )
    _check(lrs, [2, 2, 2, 4])


def test_hf_warmup_freezes_best_but_paper_keeps_comparing() -> None:
    # Losses 10, 5, 8, 7 with patience=0, warmup=1.
    # hf: step 1 up (2); step 2 warmup, best stays 10; step 3: 8 < 10 good -> up (4); step 4
    # warmup.
    # paper: step 1 up (2); step 2: 5 becomes best, good zeroed by warmup; step 3: 8 > 5 bad
    # -> down (1); step 4: 7 > 5 bad -> down (0.5).
    common: dict[str, Any] = {"patience": 0, "warmup": 1, "factor": 0.5, "min_lr": 0.1}
    _check(_trajectory([10, 5, 8, 7], variant="hf", max_lr=8.0, **common), [2, 2, 4, 4])
    _check(_trajectory([10, 5, 8, 7], variant="paper", **common), [2, 2, 1, 0.5])


def test_hf_cooldown_freezes_best_but_paper_keeps_comparing() -> None:
    # Losses 1, 2, 0.5, 0.9 with patience=0, cooldown=1.
    # hf: step 1 up (2); step 2 bad -> down (1), cooldown; step 3 ignored (best stays 1);
    # step 4: 0.9 < 1 good -> up (2).
    # paper: step 1 up (2); step 2 down (1); step 3: 0.5 is the new best (good -> up, 2);
    # step 4: 0.9 > 0.5 bad -> down (1).
    common: dict[str, Any] = {"patience": 0, "cooldown": 1, "factor": 0.5, "min_lr": 0.1}
    _check(_trajectory([1, 2, 0.5, 0.9], variant="hf", **common), [2, 1, 1, 2])
    _check(_trajectory([1, 2, 0.5, 0.9], variant="paper", **common), [2, 1, 2, 1])


def test_hf_reset_restores_initial_lr_after_reset_start_decreases_at_min() -> None:
    # patience=0, reset_start=2, flat loss: step 1 up (2, reset counter back to 2); steps 2-4
    # down to 1, 0.5, 0.25 = min_lr (counter 1); step 5 stays at min (counter 0): reset to
    # the initial LR 1 and best = +inf; step 6: 5 < inf is good -> up (2).
    lrs = _trajectory([5.0] * 6, patience=0, factor=0.5, min_lr=0.25, max_lr=4.0, reset_start=2)
    _check(lrs, [2, 1, 0.5, 0.25, 1, 2])


def test_paper_reset_wipes_best_every_reset_start_steps_and_keeps_the_lr() -> None:
    # patience=0, reset_start=2, flat loss: the wipe happens at the end of steps 3, 5, ...
    # step 1 up (2); step 2 down (1); step 3 down (0.5), then best is wiped (LR kept);
    # step 4: 5 < inf is good -> up (1); step 5 down (0.5), wiped; step 6 up (1).
    lrs = _trajectory(
        [5.0] * 6, patience=0, factor=0.5, min_lr=0.01, reset_start=2, variant="paper"
    )
    _check(lrs, [2, 1, 0.5, 1, 0.5, 1])


@pytest.mark.parametrize("variant", ["hf", "paper"])
@pytest.mark.parametrize("bad_value", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_are_bad_steps_and_never_become_best(variant: str, bad_value: float) -> None:
    # patience=0: step 1 up (2); step 2 non-finite -> bad -> down (1); step 3 non-finite ->
    # down (0.5); step 4: 0.5 < best 1 -> good -> up (1).
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = GreedyLR(
        optimizer, patience=0, factor=0.5, min_lr=0.1, max_lr=8.0, variant=variant
    )
    lrs = []
    for loss in [1.0, bad_value, bad_value, 0.5]:
        scheduler.step(loss)
        lrs.append(scheduler.get_last_lr()[0])
        assert math.isfinite(scheduler.best)
    assert lrs == [2, 1, 0.5, 1]


def test_nan_never_enters_the_smoothing_window() -> None:
    # window 3: step 1 mean 3 (good, up); step 2 NaN (bad, down; window stays [3]); step 3:
    # mean of [3, 1] = 2 < 3 (good, up).
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = GreedyLR(
        optimizer, patience=0, factor=0.5, min_lr=0.1, max_lr=8.0, smooth=True, window_size=3
    )
    lrs = []
    for loss in [3.0, math.nan, 1.0]:
        scheduler.step(loss)
        lrs.append(scheduler.get_last_lr()[0])
    assert lrs == [2, 1, 2]
    assert scheduler.best == 2.0
    assert scheduler.state_dict()["window_values"] == [3.0, 1.0]


def test_max_mode_and_relative_threshold() -> None:
    # mode="max", rel threshold 0.1, patience=0: step 1: 1 > -inf up (2); step 2: 1.05 is not
    # > 1 * 1.1 -> down (1); step 3: 1.2 > 1.1 -> up (2).
    lrs = _trajectory(
        [1.0, 1.05, 1.2],
        mode="max",
        threshold=0.1,
        threshold_mode="rel",
        patience=0,
        factor=0.5,
        min_lr=0.1,
    )
    _check(lrs, [2, 1, 2])


def test_per_group_bounds() -> None:
    # Two groups at LR 1; patience=0, improving: up each step until each group's own max_lr.
    lrs = _trajectory(
        [4, 3, 2, 1], groups=2, patience=0, factor=0.5, min_lr=[0.1, 0.5], max_lr=[2.0, 8.0]
    )
    assert lrs == [[2, 2], [2, 4], [2, 8], [2, 8]]


def test_eps_skips_tiny_changes() -> None:
    # factor 0.99 on LR 1e-6: a change of ~1e-8 is below eps=1e-7 and is not applied.
    lrs = _trajectory([3, 2, 1], lr=1e-6, patience=0, factor=0.99, min_lr=0.0, eps=1e-7)
    assert lrs == [[1e-6]] * 3


# Exact threshold boundaries. best = 1.0 after step 1; threshold 0.5 (abs) and 0.25 (rel) make
# every bound exact in binary: min/abs 1 - 0.5 = 0.5, min/rel 1 * 0.75 = 0.75, max/abs
# 1 + 0.5 = 1.5, max/rel 1 * 1.25 = 1.25, and with threshold 0 the bound is best itself.
_BOUNDARIES = [
    ("min", "abs", 0.5, 0.5),
    ("min", "rel", 0.25, 0.75),
    ("max", "abs", 0.5, 1.5),
    ("max", "rel", 0.25, 1.25),
    ("min", "abs", 0.0, 1.0),
    ("min", "rel", 0.0, 1.0),
    ("max", "abs", 0.0, 1.0),
    ("max", "rel", 0.0, 1.0),
]


@pytest.mark.parametrize("variant", ["hf", "paper"])
@pytest.mark.parametrize(("mode", "threshold_mode", "threshold", "bound"), _BOUNDARIES)
def test_a_metric_exactly_at_the_threshold_bound_is_bad_one_ulp_beyond_is_good(
    variant: str, mode: str, threshold_mode: str, threshold: float, bound: float
) -> None:
    # patience=0, factor 0.5, LR 1: step 1: 1.0 beats the infinite start: up (2), best 1.
    # step 2: exactly the bound: "better" is strict, so bad: down (1), best stays 1.
    # step 3: one ulp short of the bound (the bad side): bad: down (0.5).
    # step 4: one ulp beyond the bound: good: up (1), best becomes that value.
    # step 5: the old bound again, now on the bad side of the new best: bad: down (0.5).
    better = -math.inf if mode == "min" else math.inf
    beyond, short = math.nextafter(bound, better), math.nextafter(bound, -better)
    lrs = _trajectory(
        [1.0, bound, short, beyond, bound],
        mode=mode,
        threshold_mode=threshold_mode,
        threshold=threshold,
        patience=0,
        factor=0.5,
        min_lr=0.1,
        variant=variant,
    )
    assert lrs == [[2.0], [1.0], [0.5], [1.0], [0.5]]


@pytest.mark.parametrize("variant", ["hf", "paper"])
@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("infinity", [math.inf, -math.inf])
def test_inf_never_enters_the_smoothing_window(variant: str, mode: str, infinity: float) -> None:
    # The losses 3, inf, 1, 3, 0 (negated for mode="max"); window 3, patience=0, factor 0.5.
    # step 1: window [3], mean 3 beats the start: up (2), best 3.
    # step 2: +-inf is a bad step (even when it would beat best) and is not pushed: down (1).
    # step 3: window [3, 1], mean 2 < 3: up (2), best 2.
    # step 4: window [3, 1, 3], mean 7/3 > 2: down (1).
    # step 5: window [1, 3, 0], sum 7 + 0 - 3 = 4, mean 4/3 < 2: up (2), best 4/3.
    # Had the inf entered, the sum would be inf at steps 3 and 4 and inf - inf = NaN at 5.
    sign = 1.0 if mode == "min" else -1.0
    losses = [sign * loss for loss in (3.0, infinity, 1.0, 3.0, 0.0)]
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    kwargs: dict[str, Any] = {"mode": mode, "variant": variant, "smooth": True, "window_size": 3}
    scheduler = GreedyLR(optimizer, patience=0, factor=0.5, min_lr=0.1, max_lr=8.0, **kwargs)
    lrs, bests, windows = [], [], []
    for loss in losses:
        scheduler.step(loss)
        lrs.append(scheduler.get_last_lr()[0])
        bests.append(scheduler.best)
        windows.append(scheduler.state_dict()["window_values"])
    assert lrs == [2, 1, 2, 1, 2]
    assert bests == [sign * best for best in (3.0, 3.0, 2.0, 2.0, 4.0 / 3.0)]
    assert windows[1] == [sign * 3.0]
    assert windows[4] == [sign * value for value in (1.0, 3.0, 0.0)]
    assert scheduler.state_dict()["window_sum"] == sign * 4.0
