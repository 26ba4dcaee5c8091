from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from greedylr.searchers import CategoricalParam
from greedylr.searchers import IntParam
from greedylr.searchers import to_syne_tune
from tests.searchers_tests import sampling
from tests.searchers_tests.sampling import CONSTANTS
from tests.searchers_tests.sampling import SAMPLES


config_space = pytest.importorskip("syne_tune.config_space")
DISCRETE: dict[str, tuple[Any, list[Any]]] = {
    **sampling.DISCRETE,
    "fixed_step_int": (IntParam(5, 5, step=2), [5]),
    "flag": (CategoricalParam((True, False)), [True, False]),
}
SPACE = sampling.space_of(DISCRETE)


def _hand_written_space() -> dict[str, Any]:
    return {
        "float": config_space.uniform(-1.0, 1.0),
        "max_epochs": 20,
        "log_float": config_space.loguniform(1e-4, 1e-1),
        "int": config_space.randint(0, 3),
        "log_int": config_space.lograndint(1, 4),
        "step_int": config_space.finrange(0, 6, 3, cast_int=True),
        "offset_step_int": config_space.finrange(1, 7, 3, cast_int=True),
        "step_float": config_space.finrange(0.0, 1.0, 5),
        "tenth_float": config_space.finrange(0.0, 0.3, 4),
        "offset_step_float": config_space.finrange(0.05, 0.25, 3),
        "fixed_log_float": config_space.uniform(0.1, 0.1),
        "categorical": config_space.choice(["a", "b", "c"]),
        "fixed_step_int": config_space.finrange(5, 5, 1, cast_int=True),
        "flag": config_space.choice([True, False]),
        "mode": "min",
        "seed": None,
    }


def _sample(space: dict[str, Any], rng: np.random.RandomState) -> dict[str, Any]:
    return {
        name: value.sample(random_state=rng) if isinstance(value, config_space.Domain) else value
        for name, value in space.items()
    }


def test_to_syne_tune_matches_hand_written_domains_and_keeps_constants() -> None:
    converted, hand_written = to_syne_tune(SPACE), _hand_written_space()
    assert list(converted) == list(hand_written)
    assert converted == hand_written
    for name, domain in hand_written.items():
        if isinstance(domain, config_space.FiniteRange):  # its __eq__ ignores the size
            assert converted[name].values == domain.values, name
            assert type(converted[name].values[0]) is type(domain.values[0]), name
    assert {name: converted[name] for name in CONSTANTS} == CONSTANTS


def test_samples_stay_inside_and_reach_every_value() -> None:
    converted = to_syne_tune(SPACE)
    rng = np.random.RandomState(0)
    configs = [_sample(converted, rng) for _ in range(SAMPLES)]
    sampling.check_samples(SPACE, DISCRETE, configs)


def test_converted_equals_hand_written_under_equal_seeds() -> None:
    converted, hand_written = to_syne_tune(SPACE), _hand_written_space()
    converted_rng, hand_written_rng = np.random.RandomState(3), np.random.RandomState(3)
    for _ in range(200):
        assert _sample(converted, converted_rng) == _sample(hand_written, hand_written_rng)


@pytest.mark.parametrize("choices", [(True, 1), (1, 1.5), ("a", None), (None,)])
def test_categoricals_syne_tune_cannot_hold_are_rejected(choices: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError, match="`x` must have choices of one type and without None"):
        to_syne_tune({"x": CategoricalParam(choices)})


def test_syne_tune_quirks_the_converter_works_around() -> None:
    """Pins syne-tune's native behaviour behind the converter's choices (checked on 0.16.0)."""
    rng = np.random.RandomState(0)
    assert {config_space.randint(0, 3).sample(random_state=rng) for _ in range(500)} == {
        0,
        1,
        2,
        3,
    }  # inclusive, unlike Ray
    assert config_space.finrange(0.0, 1.0, 5) == config_space.finrange(0.0, 1.0, 3)
    with pytest.raises(AssertionError, match="must have the same type"):
        config_space.choice([True, 1])
    with pytest.raises(TypeError, match="NoneType takes no arguments"):
        config_space.choice([None]).sample(random_state=rng)
    assert config_space.loguniform(0.1, 0.1).sample(random_state=rng) != 0.1  # exp(log(0.1))
