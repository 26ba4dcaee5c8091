"""GreedyLR, its pure functional core, the baseline schedules it is compared with, and the
optimizers that adapt their own LR (hypergradient descent)."""

from greedylr.schedulers._greedy import GreedyLR
from greedylr.schedulers._greedy_functional import GreedyConfig
from greedylr.schedulers._greedy_functional import GreedyState
from greedylr.schedulers._greedy_functional import greedy_update
from greedylr.schedulers._greedy_functional import initial_state
from greedylr.schedulers._hypergradient import SGDHD
from greedylr.schedulers._hypergradient import AdamHD
from greedylr.schedulers._optimizers import create_optimizer
from greedylr.schedulers._optimizers import list_optimizers
from greedylr.schedulers._optimizers import optimizer_defaults
from greedylr.schedulers._registry import ScheduleInfo
from greedylr.schedulers._registry import create_schedule
from greedylr.schedulers._registry import get_schedule_info
from greedylr.schedulers._registry import list_schedules
from greedylr.schedulers._registry import step_scheduler


__all__ = [
    "AdamHD",
    "GreedyConfig",
    "GreedyLR",
    "GreedyState",
    "SGDHD",
    "ScheduleInfo",
    "create_optimizer",
    "create_schedule",
    "get_schedule_info",
    "greedy_update",
    "initial_state",
    "list_optimizers",
    "list_schedules",
    "optimizer_defaults",
    "step_scheduler",
]
