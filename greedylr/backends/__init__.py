"""The trial contract, the engine-neutral results model, and the engines that run trials.

Importing this package imports no engine; ``greedylr.tune`` picks the backend at run time.
"""

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
from greedylr.backends._results import TrialResult
from greedylr.backends._results import TuneResult
from greedylr.backends._results import read_result


__all__ = [
    "Checkpoint",
    "Experiment",
    "Reporter",
    "TaskFailedError",
    "TrialContractError",
    "TrialDiverged",
    "TrialFunction",
    "TrialResult",
    "TrialStopped",
    "TuneResult",
    "ValidatingReporter",
    "function_path",
    "load_checkpoint",
    "load_trial_function",
    "read_result",
    "save_checkpoint",
]
