"""The framework-neutral search space and its converters to Optuna, Ray Tune and Syne Tune."""

from greedylr.searchers._baseline_spaces import baseline_space
from greedylr.searchers._baseline_spaces import list_baseline_spaces
from greedylr.searchers._greedylr_space import greedylr_space
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
    "Param",
    "SearchSpace",
    "baseline_space",
    "greedylr_space",
    "is_param",
    "list_baseline_spaces",
    "space_from_json",
    "space_to_json",
    "split_space",
    "suggest",
    "to_optuna",
    "to_ray",
    "to_syne_tune",
    "update_space",
    "validate_space",
]
