"""The framework-neutral search space, each arm's space (GreedyLR, the baseline schedules, the
methods that adapt or replace the schedule) and the converters to Optuna, Ray Tune and Syne
Tune."""

from greedylr.searchers._baseline_spaces import baseline_space
from greedylr.searchers._baseline_spaces import list_baseline_spaces
from greedylr.searchers._greedylr_space import greedylr_space
from greedylr.searchers._method_spaces import MethodInfo
from greedylr.searchers._method_spaces import get_method
from greedylr.searchers._method_spaces import list_methods
from greedylr.searchers._method_spaces import method_running
from greedylr.searchers._method_spaces import method_space
from greedylr.searchers._method_spaces import resolve_schedule
from greedylr.searchers._method_spaces import tunable_schedules
from greedylr.searchers._space import CategoricalParam
from greedylr.searchers._space import Constant
from greedylr.searchers._space import FloatParam
from greedylr.searchers._space import IntParam
from greedylr.searchers._space import Param
from greedylr.searchers._space import SearchSpace
from greedylr.searchers._space import is_param
from greedylr.searchers._space import space_from_json
from greedylr.searchers._space import space_to_json
from greedylr.searchers._space import split_space
from greedylr.searchers._space import update_space
from greedylr.searchers._space import validate_space
from greedylr.searchers._to_optuna import suggest
from greedylr.searchers._to_optuna import to_optuna
from greedylr.searchers._to_ray import to_ray
from greedylr.searchers._to_syne_tune import to_syne_tune


__all__ = [
    "CategoricalParam",
    "Constant",
    "FloatParam",
    "IntParam",
    "MethodInfo",
    "Param",
    "SearchSpace",
    "baseline_space",
    "get_method",
    "greedylr_space",
    "is_param",
    "list_baseline_spaces",
    "list_methods",
    "method_running",
    "method_space",
    "resolve_schedule",
    "space_from_json",
    "space_to_json",
    "split_space",
    "suggest",
    "to_optuna",
    "to_ray",
    "to_syne_tune",
    "tunable_schedules",
    "update_space",
    "validate_space",
]
