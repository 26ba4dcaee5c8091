from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from greedylr.searchers import FloatParam
from greedylr.searchers import to_ray
from tests.searchers_tests import sampling
from tests.searchers_tests.sampling import CONSTANTS
from tests.searchers_tests.sampling import SAMPLES


tune = pytest.importorskip("ray.tune")
sample = pytest.importorskip("ray.tune.search.sample")
DISCRETE = {**sampling.DISCRETE, **sampling.MIXED}
SPACE = sampling.space_of(DISCRETE)


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
    sampling.check_samples(SPACE, DISCRETE, configs)


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
