"""The trial contract, the engine-neutral results model, and the engines that run trials.

Importing this package imports no engine; ``greedylr.tune`` picks the backend at run time.
:func:`backend_spec` tells what an engine offers and :func:`available_backends` which are
installed, without importing any; :class:`Backend` is the interface an engine implements.
"""

from greedylr.backends._backend import Backend
from greedylr.backends._backend import BackendSpec
from greedylr.backends._backend import Census
from greedylr.backends._backend import Option
from greedylr.backends._backend import Resources
from greedylr.backends._contract import Checkpoint
from greedylr.backends._contract import Reporter
from greedylr.backends._contract import TaskFailedError
from greedylr.backends._contract import TrialContractError
from greedylr.backends._contract import TrialDiverged
from greedylr.backends._contract import TrialFunction
from greedylr.backends._contract import TrialStopped
from greedylr.backends._contract import ValidatingReporter
from greedylr.backends._contract import function_path
from greedylr.backends._contract import load_checkpoint
from greedylr.backends._contract import load_trial_function
from greedylr.backends._contract import save_checkpoint
from greedylr.backends._experiment import Experiment
from greedylr.backends._registry import available_backends
from greedylr.backends._registry import backend_names
from greedylr.backends._registry import backend_spec
from greedylr.backends._results import TrialResult
from greedylr.backends._results import TuneResult
from greedylr.backends._results import read_result


__all__ = [
    "Backend",
    "BackendSpec",
    "Census",
    "Checkpoint",
    "Experiment",
    "Option",
    "Reporter",
    "Resources",
    "TaskFailedError",
    "TrialContractError",
    "TrialDiverged",
    "TrialFunction",
    "TrialResult",
    "TrialStopped",
    "TuneResult",
    "ValidatingReporter",
    "available_backends",
    "backend_names",
    "backend_spec",
    "function_path",
    "load_checkpoint",
    "load_trial_function",
    "read_result",
    "save_checkpoint",
]
