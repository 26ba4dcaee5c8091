"""``greedylr compare``: GreedyLR, tuned, against tuned baselines, with a protocol that holds up.

Every arm (schedule) is tuned with the same searcher, the same epoch budget per study and the
same early-stopping settings, in its own search space; ``protocol="both"`` also runs
full-fidelity random search (no horizon bias). Each study's best config is retrained on fresh
seeds and scored on the test split. See :func:`compare`, and :func:`compare_suite` for a fixed
suite of tasks (``greedylr compare --suite small|full``).
"""

from greedylr.comparison._compare import DEFAULT_SCHEDULES
from greedylr.comparison._compare import CompareResult
from greedylr.comparison._compare import compare
from greedylr.comparison._suite import SUITES
from greedylr.comparison._suite import Suite
from greedylr.comparison._suite import SuiteResult
from greedylr.comparison._suite import SuiteTask
from greedylr.comparison._suite import compare_suite


__all__ = [
    "CompareResult",
    "DEFAULT_SCHEDULES",
    "SUITES",
    "Suite",
    "SuiteResult",
    "SuiteTask",
    "compare",
    "compare_suite",
]
