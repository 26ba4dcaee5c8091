"""``greedylr compare``: GreedyLR, tuned, against tuned baselines, with a protocol that holds up.

Every arm (schedule) is tuned with the same searcher, the same epoch budget per study and the
same early-stopping settings, in its own search space; ``protocol="both"`` also runs
full-fidelity random search (no horizon bias). Each study's best config is retrained on fresh
seeds and scored on the test split. See :func:`compare`.
"""

from greedylr.comparison._compare import DEFAULT_SCHEDULES
from greedylr.comparison._compare import CompareResult
from greedylr.comparison._compare import compare


__all__ = [
    "DEFAULT_SCHEDULES",
    "CompareResult",
    "compare",
]
