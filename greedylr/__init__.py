"""greedylr: tune the GreedyLR learning-rate scheduler with Optuna, Ray Tune and Syne Tune.

Importing ``greedylr`` loads none of the engines (optuna, ray, syne_tune): those are extras,
imported only when a converter or a backend needs them. ``greedylr.GreedyLR`` (and torch with
it), ``greedylr.tune``, ``greedylr.join_study``, ``greedylr.report`` and ``greedylr.compare``
(the CLI's commands as calls) load on first use: a trial process that imports
``greedylr.backends`` pays for torch only if its task uses it.
"""

from typing import Any

from greedylr._version import __version__
from greedylr.searchers import CategoricalParam
from greedylr.searchers import FloatParam
from greedylr.searchers import IntParam


__all__ = [
    "CategoricalParam",
    "FloatParam",
    "GreedyLR",
    "IntParam",
    "__version__",
    "compare",
    "join_study",
    "report",
    "tune",
]


def __getattr__(name: str) -> Any:
    if name == "GreedyLR":
        from greedylr.schedulers import GreedyLR

        return GreedyLR
    if name in ("tune", "join_study"):  # `greedylr tune` / `greedylr worker` as calls
        from greedylr import _tune

        return getattr(_tune, name)
    if name == "report":  # `greedylr report` as a call
        from greedylr._report import report

        return report
    if name == "compare":  # `greedylr compare` as a call
        from greedylr.comparison import compare

        return compare
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})  # the lazy names too, for completion and help()
