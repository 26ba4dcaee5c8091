"""GreedyLR, its pure functional core, and the baseline schedules it is compared with."""

from greedylr.schedulers._greedy import GreedyLR
from greedylr.schedulers._greedy_functional import GreedyConfig
from greedylr.schedulers._greedy_functional import GreedyState
from greedylr.schedulers._greedy_functional import greedy_update
from greedylr.schedulers._greedy_functional import initial_state


__all__ = [
    "GreedyConfig",
    "GreedyLR",
    "GreedyState",
    "greedy_update",
    "initial_state",
]
