"""GreedyLR(variant="hf") continues from a state saved by transformers' GreedyLR."""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from greedylr.schedulers import GreedyLR


transformers_optimization = pytest.importorskip("transformers.optimization")

_LRS = (0.1, 0.05)
# Improving (increases, then warmup), flat (decreases, then cooldown, down to min_lr where
# the reset counter counts down to a reset), improving again, flat again.
_LOSSES = [10.0, 9, 8, 7, 6, 5, 4, 3, 2] + [5.0] * 24 + [1, 0.5, 0.25, 0.1] + [2.0] * 6
_COMMON: dict[str, Any] = {
    "patience": 1,
    "factor": 0.5,
    "cooldown": 2,
    "warmup": 2,
    "min_lr": 0.025,
    "max_lr": 0.4,
    "reset_start": 2,
}
_CASES: dict[str, tuple[dict[str, Any], list[float]]] = {
    "smoothed": ({**_COMMON, "smooth": True, "window_size": 4}, _LOSSES),
    # Without smoothing NaN and a bad-direction inf are bad steps in both implementations.
    "raw-with-nan": (
        {**_COMMON, "threshold": 0.25, "threshold_mode": "rel"},
        [*_LOSSES[:10], math.nan, *_LOSSES[10:20], math.inf, *_LOSSES[20:]],
    ),
    "max-mode": (
        {**_COMMON, "mode": "max", "per_group": True, "smooth": True, "window_size": 3},
        [-loss for loss in _LOSSES],
    ),
}


def _optimizer(lrs: tuple[float, ...] = _LRS) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    return torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)])


def _transformers(config: dict[str, Any]) -> tuple[Any, torch.optim.Optimizer]:
    kwargs = {key: value for key, value in config.items() if key != "per_group"}
    if config.get("per_group"):
        kwargs.update(min_lr=[0.025, 0.0125], max_lr=[0.4, 0.8])
    optimizer = _optimizer()
    return transformers_optimization.GreedyLR(optimizer, **kwargs), optimizer


def _counters(scheduler: Any) -> tuple[Any, ...]:
    """What both schedulers remember, in transformers' names."""
    if isinstance(scheduler, GreedyLR):
        state = scheduler.greedy_state
        return (
            state.best,
            state.num_good_steps,
            state.num_bad_steps,
            state.cooldown_counter,
            state.warmup_counter,
            state.reset_counter,
            state.window_values(scheduler.config.window_size),
        )
    window = list(scheduler._streaming_avg.values) if scheduler.smooth else []
    return (
        scheduler.best,
        scheduler.num_good_epochs,
        scheduler.num_bad_epochs,
        scheduler.cooldown_counter,
        scheduler.warmup_counter,
        scheduler.reset_start,
        window,
    )


def _save_and_load(state: dict[str, Any], path: Path) -> dict[str, Any]:
    torch.save(state, path)  # as a Hugging Face Trainer writes scheduler.pt
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("case", list(_CASES))
def test_a_transformers_state_continues_exactly_as_transformers(case: str, tmp_path: Path) -> None:
    config, losses = _CASES[case]
    reference, reference_optimizer = _transformers(config)
    expected = []
    for loss in losses:
        reference.step(loss)
        expected.append(
            ([g["lr"] for g in reference_optimizer.param_groups], _counters(reference))
        )

    saved_states = []
    for stop_at in range(len(losses) + 1):
        theirs, their_optimizer = _transformers(config)
        for loss in losses[:stop_at]:
            theirs.step(loss)
        state = _save_and_load(theirs.state_dict(), tmp_path / "scheduler.pt")
        saved_states.append(state)
        snapshot = copy.deepcopy(state)

        # Built with other arguments and LRs: everything comes from the transformers state.
        optimizer = _optimizer((0.3, 0.3))
        ours = GreedyLR(optimizer, patience=7, factor=0.9, min_lr=1e-4, smooth=False)
        ours.load_state_dict(state)
        assert state == snapshot  # not mutated
        assert [g["lr"] for g in optimizer.param_groups] == theirs.get_last_lr()
        assert _counters(ours) == _counters(theirs)
        assert ours.last_epoch == theirs.last_epoch == stop_at
        for step, loss in enumerate(losses[stop_at:], start=stop_at):
            ours.step(loss)
            got = ([g["lr"] for g in optimizer.param_groups], _counters(ours))
            assert got == expected[step], f"stopped at {stop_at}, step {step + 1}"
            assert ours.get_last_lr() == expected[step][0]
        assert ours.state_dict()["variant"] == "hf"

    # The stop points include every phase: each counter is non-zero at some of them.
    def somewhere(predicate: Any) -> bool:
        return any(predicate(state) for state in saved_states)

    assert somewhere(lambda state: state["cooldown_counter"] > 0)
    assert somewhere(lambda state: state["warmup_counter"] > 0)
    assert somewhere(lambda state: state["num_bad_epochs"] > 0)
    assert somewhere(lambda state: state["num_good_epochs"] > 0)
    assert somewhere(lambda state: 0 < state["reset_start"] < state["reset_start_original"])
    assert somewhere(lambda state: math.isfinite(state["best"]))
    assert somewhere(lambda state: state["_last_lr"] != list(_LRS))
    if config.get("smooth"):
        size = config["window_size"]
        assert somewhere(lambda state: 0 < len(state["_streaming_avg"]["values"]) < size)
        assert somewhere(lambda state: len(state["_streaming_avg"]["values"]) == size)


@pytest.mark.parametrize(
    ("window_size", "losses_before", "next_loss", "window_after", "ours_lr", "their_lr"),
    [
        # Window 3, patience 0, factor 0.5, LR 1: 3.0 (mean 3, up: 2); NaN (their window
        # [3, NaN] has mean NaN: bad, down: 1). Saved. Next 1.0: ours drops the NaN, the mean
        # of [3, 1] is 2 < best 3: good, up (2); theirs: the mean is NaN again: down (0.5).
        (3, [3.0, math.nan], 1.0, [3.0, 1.0], 2.0, 0.5),
        # Window 1: 3.0 (up: 2); inf (their sum inf, mean inf: bad, down: 1); 1.0 (their sum
        # inf - inf = NaN: bad, down: 0.5). Saved: values [1.0] but sum NaN. Next 0.5: ours,
        # sum 1 + 0.5 - 1 = 0.5 < best 3: good, up (1); theirs: NaN again, down (0.25).
        (1, [3.0, math.inf, 1.0], 0.5, [0.5], 1.0, 0.25),
    ],
)
def test_a_transformers_window_with_nan_or_inf_warns_and_is_dropped(
    window_size: int,
    losses_before: list[float],
    next_loss: float,
    window_after: list[float],
    ours_lr: float,
    their_lr: float,
) -> None:
    kwargs: dict[str, Any] = {
        "patience": 0,
        "factor": 0.5,
        "min_lr": 0.1,
        "max_lr": 8.0,
        "smooth": True,
        "window_size": window_size,
    }
    their_optimizer = _optimizer((1.0,))
    theirs = transformers_optimization.GreedyLR(their_optimizer, **kwargs)
    for loss in losses_before:
        theirs.step(loss)
    optimizer = _optimizer((1.0,))
    ours = GreedyLR(optimizer, **kwargs)
    with pytest.warns(UserWarning, match="smoothing window holds NaN or inf"):
        ours.load_state_dict(theirs.state_dict())
    ours.step(next_loss)
    theirs.step(next_loss)
    assert ours.get_last_lr() == [ours_lr]
    assert theirs.get_last_lr() == [their_lr]  # the deliberate difference
    assert ours.state_dict()["window_values"] == window_after
    assert ours.best == sum(window_after) / len(window_after)  # a good step: the new best


def test_a_finite_transformers_state_loads_without_a_warning() -> None:
    theirs = transformers_optimization.GreedyLR(_optimizer(), smooth=True, min_lr=1e-3)
    for loss in [3.0, 2.0, 2.5]:
        theirs.step(loss)
    ours = GreedyLR(_optimizer(), min_lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours.load_state_dict(theirs.state_dict())


def _their_state(**kwargs: Any) -> dict[str, Any]:
    theirs = transformers_optimization.GreedyLR(_optimizer(), min_lr=1e-3, **kwargs)
    theirs.step(1.0)
    return theirs.state_dict()


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"lr": 0.1}, r"lacks the keys \['mode', .*'initial_lrs'.*'cooldown_counter'"),
        (
            {key: value for key, value in _their_state().items() if key != "num_bad_epochs"},
            r"looks like a transformers GreedyLR state .* lacks the keys \['num_bad_epochs'\]",
        ),
        (
            {key: value for key, value in _their_state(smooth=True).items() if key[0] != "_"}
            | {"_init_lrs": list(_LRS)},
            r"lacks the keys \['_last_lr', \"_streaming_avg\['values'\]\", ",
        ),
    ],
)
def test_a_state_of_neither_kind_raises_a_value_error_naming_the_missing_keys(
    state: dict[str, Any], message: str
) -> None:
    scheduler = GreedyLR(_optimizer(), min_lr=1e-3)
    with pytest.raises(ValueError, match=message):
        scheduler.load_state_dict(state)


def test_a_greedylr_state_without_a_counter_raises_a_value_error_naming_it() -> None:
    scheduler = GreedyLR(_optimizer(), min_lr=1e-3, cooldown=2)
    state = scheduler.state_dict()
    del state["cooldown_counter"]
    with pytest.raises(ValueError, match=r"lacks the keys \['cooldown_counter'\]"):
        GreedyLR(_optimizer(), min_lr=1e-3).load_state_dict(state)


def test_a_transformers_state_needs_variant_hf() -> None:
    scheduler = GreedyLR(_optimizer(), min_lr=1e-3, variant="paper")
    with pytest.raises(ValueError, match="continues only with `variant='hf'`"):
        scheduler.load_state_dict(_their_state())


def test_a_transformers_state_for_another_number_of_groups_raises() -> None:
    scheduler = GreedyLR(_optimizer((0.1,)), min_lr=1e-3)
    with pytest.raises(ValueError, match="2 param groups but the optimizer has 1"):
        scheduler.load_state_dict(_their_state())
