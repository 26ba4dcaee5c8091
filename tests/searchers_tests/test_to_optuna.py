from __future__ import annotations

from typing import Any

import pytest

from greedylr.searchers import suggest
from greedylr.searchers import to_optuna
from tests.searchers_tests import sampling
from tests.searchers_tests.sampling import CONSTANTS
from tests.searchers_tests.sampling import SAMPLES


optuna = pytest.importorskip("optuna")
DISCRETE = {**sampling.DISCRETE, **sampling.MIXED}
SPACE = sampling.space_of(DISCRETE)


def _hand_written_distributions() -> dict[str, Any]:
    native = optuna.distributions
    return {
        "float": native.FloatDistribution(-1.0, 1.0),
        "log_float": native.FloatDistribution(1e-4, 1e-1, log=True),
        "int": native.IntDistribution(0, 3),
        "log_int": native.IntDistribution(1, 4, log=True),
        "step_int": native.IntDistribution(0, 6, step=3),
        "offset_step_int": native.IntDistribution(1, 7, step=3),
        "step_float": native.FloatDistribution(0.0, 1.0, step=0.25),
        "tenth_float": native.FloatDistribution(0.0, 0.3, step=0.1),
        "offset_step_float": native.FloatDistribution(0.05, 0.25, step=0.1),
        "fixed_log_float": native.FloatDistribution(0.1, 0.1, log=True),
        "categorical": native.CategoricalDistribution(("a", "b", "c")),
        "mixed": native.CategoricalDistribution((None, True, 1, 1.5, "x")),
    }


def _hand_written_suggest(trial: Any) -> dict[str, Any]:
    return {
        "float": trial.suggest_float("float", -1.0, 1.0),
        "max_epochs": 20,
        "log_float": trial.suggest_float("log_float", 1e-4, 1e-1, log=True),
        "int": trial.suggest_int("int", 0, 3),
        "log_int": trial.suggest_int("log_int", 1, 4, log=True),
        "step_int": trial.suggest_int("step_int", 0, 6, step=3),
        "offset_step_int": trial.suggest_int("offset_step_int", 1, 7, step=3),
        "step_float": trial.suggest_float("step_float", 0.0, 1.0, step=0.25),
        "tenth_float": trial.suggest_float("tenth_float", 0.0, 0.3, step=0.1),
        "offset_step_float": trial.suggest_float("offset_step_float", 0.05, 0.25, step=0.1),
        "fixed_log_float": trial.suggest_float("fixed_log_float", 0.1, 0.1, log=True),
        "categorical": trial.suggest_categorical("categorical", ("a", "b", "c")),
        "mixed": trial.suggest_categorical("mixed", (None, True, 1, 1.5, "x")),
        "mode": "min",
        "seed": None,
    }


def _study(seed: int) -> Any:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))


def test_to_optuna_matches_hand_written_distributions_and_leaves_out_constants() -> None:
    converted = to_optuna(SPACE)
    assert converted == _hand_written_distributions()
    assert list(converted) == [name for name in SPACE if name not in CONSTANTS]


def test_samples_of_the_converted_distributions_stay_inside_and_reach_every_value() -> None:
    study = _study(seed=0)
    distributions = to_optuna(SPACE)
    configs = [study.ask(fixed_distributions=distributions).params for _ in range(SAMPLES)]
    sampling.check_samples(SPACE, DISCRETE, configs)


def test_suggest_stays_inside_reaches_every_value_and_carries_the_constants() -> None:
    study = _study(seed=1)
    configs = [suggest(study.ask(), SPACE) for _ in range(SAMPLES)]
    sampling.check_samples(SPACE, DISCRETE, configs)
    for config in configs:
        assert list(config) == list(SPACE)
        assert {name: config[name] for name in CONSTANTS} == CONSTANTS


def test_suggest_records_the_distributions_of_to_optuna() -> None:
    trial = _study(seed=2).ask()
    suggest(trial, SPACE)
    assert trial.distributions == to_optuna(SPACE)


def test_suggest_equals_hand_written_suggestions_under_equal_seeds() -> None:
    converted_study, hand_written_study = _study(seed=3), _study(seed=3)
    for _ in range(50):
        converted = suggest(converted_study.ask(), SPACE)
        hand_written = _hand_written_suggest(hand_written_study.ask())
        assert converted == hand_written
        assert [type(value) for value in converted.values()] == [
            type(value) for value in hand_written.values()
        ]


def test_suggest_works_with_a_fixed_trial() -> None:
    params = {
        "float": 0.5,
        "log_float": 0.01,
        "int": 3,
        "log_int": 4,
        "step_int": 6,
        "offset_step_int": 1,
        "step_float": 0.75,
        "tenth_float": 0.3,
        "offset_step_float": 0.15,
        "fixed_log_float": 0.1,
        "categorical": "c",
        "mixed": None,
    }
    config = suggest(optuna.trial.FixedTrial(params), SPACE)
    assert config == {**params, **CONSTANTS}
