from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from greedylr.searchers import CategoricalParam
from greedylr.searchers import FloatParam
from greedylr.searchers import IntParam
from greedylr.searchers import to_ray


tune = pytest.importorskip("ray.tune")
sample = pytest.importorskip("ray.tune.search.sample")


SAMPLES = 2_000

# Discrete parameters and every value they can take, written out by hand.
DISCRETE: dict[str, tuple[Any, list[Any]]] = {
    "int": (IntParam(0, 3), [0, 1, 2, 3]),
    "log_int": (IntParam(1, 4, log=True), [1, 2, 3, 4]),
    "step_int": (IntParam(0, 6, step=3), [0, 3, 6]),
    "offset_step_int": (IntParam(1, 7, step=3), [1, 4, 7]),
    "step_float": (FloatParam(0.0, 1.0, step=0.25), [0.0, 0.25, 0.5, 0.75, 1.0]),
    "tenth_float": (FloatParam(0.0, 0.3, step=0.1), [0.0, 0.1, 0.2, 0.3]),
    "offset_step_float": (FloatParam(0.05, 0.25, step=0.1), [0.05, 0.15, 0.25]),
    "fixed_log_float": (FloatParam(0.1, 0.1, log=True), [0.1]),
    "categorical": (CategoricalParam(("a", "b", "c")), ["a", "b", "c"]),
    "mixed": (CategoricalParam((None, True, 1, 1.5, "x")), [None, True, 1, 1.5, "x"]),
}
SPACE: dict[str, Any] = {
    "float": FloatParam(-1.0, 1.0),
    "max_epochs": 20,
    "log_float": FloatParam(1e-4, 1e-1, log=True),
    **{name: param for name, (param, _) in DISCRETE.items()},
    "mode": "min",
    "seed": None,
}
CONSTANTS = {"max_epochs": 20, "mode": "min", "seed": None}


def _hand_written_space() -> dict[str, Any]:
    return {
        "float": tune.uniform(-1.0, 1.0),
        "max_epochs": 20,
        "log_float": tune.loguniform(1e-4, 1e-1),
        "int": tune.randint(0, 4),
        "log_int": tune.lograndint(1, 5),
        "step_int": tune.qrandint(0, 6, 3),
        "offset_step_int": tune.choice([1, 4, 7]),
        "step_float": tune.quniform(0.0, 1.0, 0.25),
        "tenth_float": tune.choice([0.0, 0.1, 0.2, 0.3]),
        "offset_step_float": tune.choice([0.05, 0.05 + 0.1, 0.25]),
        "fixed_log_float": tune.uniform(0.1, 0.1),
        "categorical": tune.choice(["a", "b", "c"]),
        "mixed": tune.choice([None, True, 1, 1.5, "x"]),
        "mode": "min",
        "seed": None,
    }


def _describe(domain: Any) -> Any:
    """Ray domains have no ``__eq__``; compare type, bounds, sampler and quantization."""
    if not isinstance(domain, sample.Domain):
        return ("constant", type(domain), domain)
    sampler = domain.get_sampler()
    quantum = getattr(sampler, "q", None)
    if quantum is not None:
        sampler = sampler.get_sampler()
    if isinstance(domain, sample.Categorical):
        return (type(domain), type(sampler), [(type(c), c) for c in domain.categories])
    return (type(domain), domain.lower, domain.upper, type(sampler), quantum)


def _sample(space: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    return {
        name: value.sample(random_state=rng) if isinstance(value, sample.Domain) else value
        for name, value in space.items()
    }


def _rounded(value: Any) -> Any:
    return round(value, 9) if type(value) is float else (type(value), value)


def test_to_ray_matches_hand_written_domains_and_keeps_constants() -> None:
    converted, hand_written = to_ray(SPACE), _hand_written_space()
    assert list(converted) == list(hand_written)
    for name in SPACE:
        assert _describe(converted[name]) == _describe(hand_written[name]), name
    assert {name: converted[name] for name in CONSTANTS} == CONSTANTS


def test_samples_stay_inside_and_reach_every_value() -> None:
    converted = to_ray(SPACE)
    rng = np.random.default_rng(0)
    configs = [_sample(converted, rng) for _ in range(SAMPLES)]
    for name, param in SPACE.items():
        values = [config[name] for config in configs]
        if not isinstance(param, (FloatParam, IntParam, CategoricalParam)):
            assert values == [param] * SAMPLES
            continue
        outside = [value for value in values if not param.contains(value)]
        assert not outside, f"{name}: {outside[:5]}"
        if isinstance(param, IntParam):
            assert {type(value) for value in values} == {int}, name
        if isinstance(param, FloatParam):
            assert {type(value) for value in values} == {float}, name
    for name, (_, expected) in DISCRETE.items():
        reached = {_rounded(config[name]) for config in configs}
        assert reached == {_rounded(value) for value in expected}, name


def test_converted_equals_hand_written_under_equal_seeds() -> None:
    converted, hand_written = to_ray(SPACE), _hand_written_space()
    converted_rng, hand_written_rng = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(200):
        assert _sample(converted, converted_rng) == _sample(hand_written, hand_written_rng)


def test_large_grid_anchored_off_zero_becomes_a_choice_of_the_exact_grid() -> None:
    domain = to_ray({"x": FloatParam(0.05, 0.95, step=0.1)})["x"]
    assert isinstance(domain, sample.Categorical)
    assert domain.categories == pytest.approx([0.05 + 0.1 * index for index in range(10)])
    assert (domain.categories[0], domain.categories[-1]) == (0.05, 0.95)


def test_ray_quirks_the_converter_works_around() -> None:
    """Pins ray's native behaviour behind the converter's choices (checked on ray 2.60.0).

    If this fails, Ray changed: ``to_ray`` stays correct but its workarounds may be unneeded.
    """
    rng = np.random.default_rng(0)

    def draw(domain: Any) -> set[Any]:
        return {domain.sample(random_state=rng) for _ in range(500)}

    assert draw(tune.qrandint(0, 3, 1)) == {0, 1, 2}  # q == 1 excludes the upper bound
    assert draw(tune.qrandint(0, 6, 3)) == {0, 3, 6}  # q > 1 includes it
    assert draw(tune.lograndint(1, 4)) == {1, 2, 3}  # upper bound excluded
    assert draw(tune.qrandint(1, 7, 3)) == {3, 6}  # grid of multiples of q, not from lower
    assert max(draw(tune.quniform(0.0, 0.3, 0.1))) == 3 * 0.1 > 0.3  # 0.30000000000000004
    with pytest.raises(ValueError, match="not divisible by quantization factor"):
        tune.quniform(0.05, 0.95, 0.1)
