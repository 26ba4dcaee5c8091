from __future__ import annotations

import dataclasses
import inspect
import io
import math
import re
from collections import Counter
from typing import Any

import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.lr_scheduler import OneCycleLR

from greedylr.schedulers import GreedyLR
from greedylr.schedulers import ScheduleInfo
from greedylr.schedulers import create_schedule
from greedylr.schedulers import get_schedule_info
from greedylr.schedulers import list_schedules
from greedylr.schedulers import step_scheduler


NAMES = [
    "constant",
    "constant_with_warmup",
    "cosine",
    "cosine_warm_restarts",
    "exponential",
    "greedylr",
    "linear",
    "multistep",
    "onecycle",
    "plateau",
    "polynomial",
    "step",
    "wsd",
]
LRS = (0.1, 0.01)

# Parameters that differ from each schedule's defaults, so that the schedule does something
# within a short horizon and a state round trip into a default-built scheduler is a real test.
CUSTOM: dict[str, dict[str, Any]] = {
    "constant": {},
    "constant_with_warmup": {"warmup_fraction": 0.3},
    "cosine": {"warmup_fraction": 0.2, "min_lr_ratio": 0.1},
    "cosine_warm_restarts": {"T_0": 3, "T_mult": 2, "min_lr_ratio": 0.05},
    "exponential": {"gamma": 0.8},
    "greedylr": {"patience": 1, "factor": 0.5, "min_lr_ratio": 0.01, "max_lr_ratio": 4.0},
    "linear": {"warmup_fraction": 0.2, "end_factor": 0.1},
    "multistep": {"milestones": [3, 5, 5]},
    "onecycle": {"pct_start": 0.4, "div_factor": 10.0, "anneal_strategy": "linear"},
    "plateau": {"patience": 1, "factor": 0.5, "min_lr_ratio": 0.01, "threshold_mode": "abs"},
    "polynomial": {"warmup_fraction": 0.1, "power": 2.0, "end_factor": 0.05},
    "step": {"step_size": 2, "gamma": 0.5},
    "wsd": {"warmup_fraction": 0.1, "decay_fraction": 0.4, "decay_shape": "1-sqrt"},
}


def make_optimizer(lrs: tuple[float, ...] = LRS) -> torch.optim.SGD:
    groups = [{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0])


def metric_at(step: int) -> float:
    """Improves for 4 steps, then stalls, then improves again: moves every metric-driven LR."""
    return [1.0, 0.8, 0.6, 0.4, 0.4, 0.4, 0.4, 0.4, 0.3, 0.2, 0.1, 0.1][step % 12]


def lrs_of(scheduler: Any) -> list[float]:
    return [float(group["lr"]) for group in scheduler.optimizer.param_groups]


def run(scheduler: Any, steps: int, *, start: int = 0) -> list[list[float]]:
    """The LRs before each of ``steps`` steps and after the last."""
    trajectory = [lrs_of(scheduler)]
    for step in range(start, start + steps):
        scheduler.optimizer.step()
        step_scheduler(scheduler, metric_at(step))
        trajectory.append(lrs_of(scheduler))
    return trajectory


def first_group(name: str, horizon: int, steps: int | None = None, **params: Any) -> list[float]:
    scheduler = create_schedule(name, make_optimizer(), horizon=horizon, **params)
    return [lrs[0] for lrs in run(scheduler, horizon if steps is None else steps)]


def test_list_schedules_is_sorted_and_complete() -> None:
    from greedylr._schedule_names import SCHEDULE_NAMES

    assert list_schedules() == NAMES
    assert list(SCHEDULE_NAMES) == NAMES  # what the command line knows without torch


@pytest.mark.parametrize("name", NAMES)
def test_every_schedule_builds_and_steps_through_its_horizon(name: str) -> None:
    horizon = 12
    scheduler = create_schedule(name, make_optimizer(), horizon=horizon, **CUSTOM[name])
    for lrs in run(scheduler, horizon):
        assert len(lrs) == 2
        assert all(math.isfinite(lr) and lr >= 0 for lr in lrs)


@pytest.mark.parametrize("name", NAMES)
def test_needs_metric_agrees_with_step_scheduler(name: str) -> None:
    info = get_schedule_info(name)
    scheduler = create_schedule(name, make_optimizer(), horizon=10)
    scheduler.optimizer.step()
    if info.needs_metric:
        with pytest.raises(ValueError, match=r"`metric` is required to step \w+, but got metric"):
            step_scheduler(scheduler)
        return
    step_scheduler(scheduler)  # no metric needed; a given metric is ignored
    twin = create_schedule(name, make_optimizer(), horizon=10)
    twin.optimizer.step()
    step_scheduler(twin, 123.0)
    assert lrs_of(twin) == lrs_of(scheduler)


def test_step_on_is_batch_only_for_onecycle() -> None:
    batch = [name for name in NAMES if get_schedule_info(name).step_on == "batch"]
    assert batch == ["onecycle"]
    assert [name for name in NAMES if get_schedule_info(name).needs_metric] == [
        "greedylr",
        "plateau",
    ]


def test_schedule_info_is_frozen_and_read_only() -> None:
    info = get_schedule_info("step")
    assert isinstance(info, ScheduleInfo)
    assert dict(info.defaults) == {"step_size": None, "gamma": 0.1}
    assert info.description == next(iter((info.factory.__doc__ or "").splitlines()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        info.defaults["gamma"] = 0.5  # type: ignore[index]


def test_constant_keeps_each_group_lr() -> None:
    scheduler = create_schedule("constant", make_optimizer(), horizon=3)
    assert run(scheduler, 3) == [list(LRS)] * 4


def test_constant_with_warmup_ramps_linearly() -> None:
    # w = round(0.4 * 10) = 4: multipliers (t + 1) / 5 for t < 4, then 1.
    scheduler = create_schedule(
        "constant_with_warmup", make_optimizer(), horizon=10, warmup_fraction=0.4
    )
    trajectory = run(scheduler, 6)
    assert [lrs[0] for lrs in trajectory] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1, 0.1, 0.1])
    assert [lrs[1] for lrs in trajectory] == pytest.approx(
        [0.002, 0.004, 0.006, 0.008, 0.01] + [0.01] * 2
    )


def test_cosine_midpoint_and_end() -> None:
    # No warmup: 0.1 + 0.9 * (1 + cos(pi * t / 10)) / 2; t = 5 -> 0.55, t = 10 -> 0.1.
    scheduler = create_schedule("cosine", make_optimizer(), horizon=10, min_lr_ratio=0.1)
    trajectory = run(scheduler, 13)
    assert trajectory[0] == pytest.approx([0.1, 0.01])
    assert trajectory[5] == pytest.approx([0.055, 0.0055])
    assert trajectory[10] == pytest.approx([0.01, 0.001])  # min_lr_ratio * each group's LR
    assert trajectory[13] == pytest.approx([0.01, 0.001])  # stepped past the horizon: holds


def test_cosine_warmup_ramp_then_decay() -> None:
    # horizon 13, w = round(0.25 * 13) = 3: 1/4, 2/4, 3/4, then 1 at t = 3; the decay spans
    # t = 3..13, so t = 8 is its midpoint (0.5) and t = 13 its end (0).
    lrs = first_group("cosine", 13, warmup_fraction=0.25)
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lrs[8] == pytest.approx(0.05)
    assert lrs[13] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in zip(lrs[3:], lrs[4:]))


def test_linear_warmup_then_decay_to_end_factor() -> None:
    # w = 2: 1/3, 2/3, then 1 at t = 2; decay over t = 2..10 to 0.2: t = 6 -> 0.2 + 0.8 * 0.5.
    lrs = first_group("linear", 10, warmup_fraction=0.2, end_factor=0.2)
    assert lrs[:3] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1])
    assert lrs[6] == pytest.approx(0.06)
    assert lrs[10] == pytest.approx(0.02)


def test_polynomial_decay() -> None:
    # No warmup, power 2: (1 - t / 10) ** 2, then with end_factor 0.1: 0.1 + 0.9 * that.
    lrs = first_group("polynomial", 10, power=2.0)
    assert [lrs[5], lrs[8], lrs[10]] == pytest.approx([0.025, 0.004, 0.0])
    lrs = first_group("polynomial", 10, power=2.0, end_factor=0.1)
    assert [lrs[5], lrs[10]] == pytest.approx([0.0325, 0.01])


def test_wsd_phase_boundaries_linear() -> None:
    # horizon 20: w = 2, decay 5 steps from t = 15; min_lr_ratio 0.5.
    lrs = first_group("wsd", 20, warmup_fraction=0.1, decay_fraction=0.25, min_lr_ratio=0.5)
    assert lrs[:3] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1])  # warmup ends at t = 2
    assert lrs[2:16] == pytest.approx([0.1] * 14)  # stable up to and including t = 15
    assert lrs[17] == pytest.approx(0.1 * (0.5 + 0.5 * (1 - 2 / 5)))
    assert lrs[20] == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("linear", [1.0, 0.75, 0.5, 0.25, 0.0]),
        (
            "cosine",
            [1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2, 0.0],
        ),
        ("1-sqrt", [1.0, 0.5, 1 - math.sqrt(0.5), 1 - math.sqrt(0.75), 0.0]),
    ],
)
def test_wsd_decay_shapes(shape: str, expected: list[float]) -> None:
    # horizon 16, no warmup, 4 decay steps from t = 12.
    lrs = first_group("wsd", 16, warmup_fraction=0.0, decay_fraction=0.25, decay_shape=shape)
    assert lrs[:12] == pytest.approx([0.1] * 12)
    assert lrs[12:] == pytest.approx([0.1 * value for value in expected], abs=1e-12)


def test_wsd_rounding_never_overlaps_warmup_and_decay() -> None:
    # horizon 3: round(1.5) = 2 warmup steps and 2 decay steps; the decay starts after warmup.
    lrs = first_group("wsd", 3, warmup_fraction=0.5, decay_fraction=0.5)
    assert lrs == pytest.approx([0.1 / 3, 0.2 / 3, 0.1, 0.0])


def test_step_defaults_to_a_third_of_the_horizon() -> None:
    lrs = first_group("step", 9)
    assert lrs[:7] == pytest.approx([0.1] * 3 + [0.01] * 3 + [0.001])


def test_multistep_default_milestones_are_evenly_spaced() -> None:
    scheduler = create_schedule("multistep", make_optimizer(), horizon=90)
    assert isinstance(scheduler, torch.optim.lr_scheduler.MultiStepLR)
    assert scheduler.milestones == Counter({30: 1, 60: 1})
    # round(2.5) = 2 and round(7.5) = 8: Python rounds half to even.
    scheduler = create_schedule("multistep", make_optimizer(), horizon=10, num_milestones=3)
    assert sorted(scheduler.milestones) == [2, 5, 8]
    lrs = first_group("multistep", 10, num_milestones=3, gamma=0.5)
    assert lrs == pytest.approx([0.1] * 2 + [0.05] * 3 + [0.025] * 3 + [0.0125] * 3)


def test_exponential() -> None:
    assert first_group("exponential", 3) == pytest.approx([0.1, 0.095, 0.09025, 0.0857375])


def test_cosine_warm_restarts_defaults_and_eta_min() -> None:
    # T_0 = 8 // 4 = 2; eta_min = 0.1 * first group's LR = 0.01, for both groups.
    scheduler = create_schedule(
        "cosine_warm_restarts", make_optimizer(), horizon=8, min_lr_ratio=0.1
    )
    trajectory = run(scheduler, 4)
    assert trajectory[1] == pytest.approx([0.055, 0.01 + (0.01 - 0.01) / 2])
    assert trajectory[2] == pytest.approx(list(LRS))  # restart
    assert trajectory[3] == pytest.approx([0.055, 0.01])


def test_onecycle_peaks_at_pct_start() -> None:
    # total_steps = 100: peak at t = 0.25 * 100 - 1 = 24, from lr / 25 at t = 0 down to
    # lr / 25 / 1e4 at t = 99 (the horizon).
    scheduler = create_schedule("onecycle", make_optimizer(), horizon=99, pct_start=0.25)
    trajectory = run(scheduler, 99)
    assert trajectory[0] == pytest.approx([0.1 / 25, 0.01 / 25])
    assert trajectory[24] == pytest.approx(list(LRS))
    peaks = [max(range(100), key=lambda t, g=group: trajectory[t][g]) for group in (0, 1)]
    assert peaks == [24, 24]
    assert trajectory[99] == pytest.approx([0.1 / 25 / 1e4, 0.01 / 25 / 1e4])
    # Linear: halfway down at t = 24 + 75 / 2.
    lrs = first_group("onecycle", 99, pct_start=0.25, anneal_strategy="linear", div_factor=10.0)
    assert [lrs[0], lrs[12], lrs[24], lrs[99]] == pytest.approx([0.01, 0.055, 0.1, 1e-6])
    assert scheduler.optimizer.param_groups[0]["momentum"] == 0.0  # cycle_momentum=False


def test_onecycle_with_peak_at_step_zero_does_not_divide_by_zero() -> None:
    # pct_start * (horizon + 1) == 1: torch's OneCycleLR alone raises ZeroDivisionError here.
    with pytest.raises(ZeroDivisionError):
        OneCycleLR(make_optimizer(), max_lr=0.1, total_steps=10, pct_start=0.1)
    lrs = first_group("onecycle", 9, pct_start=0.1)
    assert lrs[0] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[9] == pytest.approx(0.1 / 25 / 1e4)


def test_plateau_min_lr_ratio_is_per_group() -> None:
    scheduler = create_schedule(
        "plateau", make_optimizer(), horizon=50, patience=0, factor=0.5, min_lr_ratio=0.25
    )
    assert scheduler.min_lrs == pytest.approx([0.025, 0.0025])
    for _ in range(10):
        step_scheduler(scheduler, 1.0)
    assert lrs_of(scheduler) == pytest.approx([0.025, 0.0025])


def test_greedylr_ratios_are_per_group() -> None:
    scheduler = create_schedule(
        "greedylr",
        make_optimizer(),
        horizon=50,
        patience=0,
        factor=0.5,
        min_lr_ratio=0.25,
        max_lr_ratio=2.0,
    )
    assert isinstance(scheduler, GreedyLR)
    assert scheduler.config.min_lrs == pytest.approx((0.025, 0.0025))
    assert scheduler.config.max_lrs == pytest.approx((0.2, 0.02))
    for loss in (1.0, 0.5, 0.25, 0.125):  # improving: the LRs rise to max_lr
        step_scheduler(scheduler, loss)
    assert lrs_of(scheduler) == pytest.approx([0.2, 0.02])
    for _ in range(10):  # flat: they fall to min_lr
        step_scheduler(scheduler, 1.0)
    assert lrs_of(scheduler) == pytest.approx([0.025, 0.0025])


def test_greedylr_smooth_follows_window_size() -> None:
    def smooth(**params: Any) -> bool:
        scheduler = create_schedule("greedylr", make_optimizer(), horizon=5, min_lr=1e-4, **params)
        return bool(scheduler.config.smooth)

    assert smooth() is False  # neither given: the class defaults (no smoothing, window 50)
    assert smooth(window_size=50) is True
    assert smooth(smooth=True) is True
    assert smooth(window_size=1) is False
    assert smooth(window_size=5, smooth=False) is False


def test_greedylr_defaults_match_the_class() -> None:
    class_defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(GreedyLR).parameters.items()
        if parameter.kind is parameter.KEYWORD_ONLY
    }
    registry = dict(get_schedule_info("greedylr").defaults)
    assert registry.pop("min_lr_ratio") is None
    assert registry.pop("max_lr_ratio") is None
    for name in ("min_lr", "max_lr", "smooth", "window_size"):  # None: the class default
        assert registry.pop(name) is None
        class_defaults.pop(name)
    assert registry == class_defaults


def test_numpy_scalars_become_python_numbers() -> None:
    np = pytest.importorskip("numpy")
    scheduler = create_schedule(
        "step", make_optimizer(), horizon=9, step_size=np.int64(2), gamma=np.float64(0.5)
    )
    assert type(scheduler.step_size) is int
    assert type(scheduler.gamma) is float


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=re.escape(f"valid names are {NAMES}")):
        create_schedule("cosine_annealing", make_optimizer(), horizon=10)
    with pytest.raises(ValueError, match="Unknown schedule 'nope'"):
        get_schedule_info("nope")


def test_unknown_parameter_lists_valid_parameters() -> None:
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Unknown parameter(s) ['gama'] for schedule "
            "'step'; valid parameters are ['gamma', "
            "'step_size']."
        ),
    ):
        create_schedule("step", make_optimizer(), horizon=10, gama=0.5)
    with pytest.raises(ValueError, match=re.escape("valid parameters are []")):
        create_schedule("constant", make_optimizer(), horizon=10, warmup_fraction=0.1)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("step", {"gamma": 0}, "`gamma` must be in (0, 1], but got gamma=0."),
        ("step", {"gamma": 1.5}, "`gamma` must be in (0, 1], but got gamma=1.5."),
        ("step", {"step_size": -1}, "`step_size` must be >= 1, but got step_size=-1."),
        ("exponential", {"gamma": -0.5}, "`gamma` must be in (0, 1]"),
        ("multistep", {"milestones": [3, 0]}, "`milestones[1]` must be >= 1"),
        ("multistep", {"num_milestones": 0}, "`num_milestones` must be >= 1"),
        ("constant_with_warmup", {"warmup_fraction": 1.0}, "`warmup_fraction` must be in [0, 1)"),
        ("cosine", {"warmup_fraction": -0.1}, "`warmup_fraction` must be in [0, 1)"),
        ("cosine", {"min_lr_ratio": 2.0}, "`min_lr_ratio` must be in [0, 1], but got"),
        ("cosine", {"min_lr_ratio": math.nan}, "`min_lr_ratio` must be in [0, 1], but got"),
        ("linear", {"end_factor": 1.5}, "`end_factor` must be in [0, 1]"),
        ("polynomial", {"power": 0.0}, "`power` must be > 0, but got power=0.0."),
        ("cosine_warm_restarts", {"T_0": 0}, "`T_0` must be >= 1"),
        ("cosine_warm_restarts", {"T_mult": 0}, "`T_mult` must be >= 1"),
        ("onecycle", {"pct_start": 1.0}, "`pct_start` must be in [0, 1)"),
        ("onecycle", {"div_factor": 0.0}, "`div_factor` must be > 0"),
        ("onecycle", {"anneal_strategy": "exp"}, "`anneal_strategy` must be one of ['cos', "),
        ("plateau", {"factor": 1.0}, "`factor` must be in (0, 1), but got factor=1.0."),
        ("plateau", {"mode": "minimum"}, "`mode` must be one of ['min', 'max']"),
        ("plateau", {"patience": -1}, "`patience` must be >= 0"),
        ("wsd", {"decay_shape": "exp"}, "`decay_shape` must be one of ['linear', 'cosine', "),
        (
            "wsd",
            {"warmup_fraction": 0.6, "decay_fraction": 0.5},
            "`warmup_fraction + decay_fraction <= 1` must hold",
        ),
        (
            "greedylr",
            {"min_lr": 0.01, "min_lr_ratio": 0.1},
            "Give `min_lr` or `min_lr_ratio`, not both",
        ),
        (
            "greedylr",
            {"max_lr": 1.0, "max_lr_ratio": 2.0},
            "Give `max_lr` or `max_lr_ratio`, not both",
        ),
        ("greedylr", {"max_lr_ratio": 0.0}, "`max_lr_ratio` must be > 0"),
        ("greedylr", {"factor": 1.5}, "`factor` must be in (0, 1)"),
    ],
)
def test_invalid_values_raise(name: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        create_schedule(name, make_optimizer(), horizon=10, **params)


@pytest.mark.parametrize("horizon", [0, -3, 2.5, True, "10"])
def test_invalid_horizon_raises(horizon: Any) -> None:
    with pytest.raises(ValueError, match=r"`horizon` must be an int >= 1, but got horizon="):
        create_schedule("cosine", make_optimizer(), horizon=horizon)


def test_wrong_types_raise_type_error() -> None:
    with pytest.raises(TypeError, match="is not an Optimizer"):
        create_schedule("cosine", torch.nn.Linear(1, 1), horizon=10)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`step_size` must be an int, but got step_size=2.5."):
        create_schedule("step", make_optimizer(), horizon=10, step_size=2.5)
    with pytest.raises(TypeError, match="`gamma` must be a number, but got gamma='0.5'."):
        create_schedule("step", make_optimizer(), horizon=10, gamma="0.5")


def state_round_trip(scheduler: Any, optimizer: torch.optim.Optimizer) -> tuple[Any, Any]:
    buffer = io.BytesIO()
    torch.save({"scheduler": scheduler.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    return state["scheduler"], state["optimizer"]


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_continues_identically(name: str) -> None:
    horizon, saved_at = 12, 5
    optimizer = make_optimizer()
    scheduler = create_schedule(name, optimizer, horizon=horizon, **CUSTOM[name])
    uninterrupted = run(scheduler, horizon)

    optimizer = make_optimizer()
    scheduler = create_schedule(name, optimizer, horizon=horizon, **CUSTOM[name])
    before = run(scheduler, saved_at)
    scheduler_state, optimizer_state = state_round_trip(scheduler, optimizer)

    # Resume into a scheduler built with the defaults: the state alone must restore the schedule.
    resumed_optimizer = make_optimizer()
    resumed = create_schedule(name, resumed_optimizer, horizon=horizon)
    resumed_optimizer.load_state_dict(optimizer_state)
    resumed.load_state_dict(scheduler_state)
    after = run(resumed, horizon - saved_at, start=saved_at)
    assert before + after[1:] == uninterrupted
    assert uninterrupted[0] != uninterrupted[-1] or name == "constant"


def test_lambda_schedules_save_their_multiplier() -> None:
    scheduler = create_schedule("cosine", make_optimizer(), horizon=10, min_lr_ratio=0.1)
    assert isinstance(scheduler, LambdaLR)
    assert (
        scheduler.state_dict()["lr_lambdas"]
        == [{"warmup_steps": 0, "total_steps": 10, "min_lr_ratio": 0.1}] * 2
    )
