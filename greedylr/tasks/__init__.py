"""Built-in training tasks, each a plain ``train(config, reporter)``, and user tasks' declarations.

A user task is any module-level ``train(config, reporter)``; :func:`declare_task` tells greedylr
its default epochs and LR and the config keys it takes, as the built-in tasks do::

    from greedylr.tasks import declare_task

    @declare_task(default_epochs=20, default_lr=0.05, config_keys=("hidden",), optimizer="sgd")
    def train(config, reporter):
        ...
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import replace
from pathlib import PurePath
from typing import Any
from typing import TypeVar

from greedylr._checks import check_int


RUN_KEYS = ("schedule", "optimizer", "lr", "epochs", "seed")
"""The config keys of every task: which schedule and optimizer, the LR, the epochs, the seed."""

_DECLARATION_ATTR = "__greedylr_task__"  # set by `declare_task`: the function's TaskInfo


@dataclass(frozen=True)
class TaskInfo:
    """A task the ``greedylr`` command can tune.

    A config of the task may hold the :data:`RUN_KEYS`, the keys of its schedule
    (:attr:`greedylr.schedulers.ScheduleInfo.defaults`), the keys of its optimizer
    (:func:`greedylr.schedulers.optimizer_defaults`) and ``config_keys``.

    Args:
        name: The name ``--task`` takes.
        function: The trial function, as ``package.module:function``.
        description: One line for ``greedylr tasks``.
        default_epochs: The epochs a trial runs by default (``None``: ``--max-epochs`` is
            required).
        default_lr: The LR a trial uses when its config has none, and the untuned defaults trial
            uses (``None``: the middle of the space's ``lr`` range).
        config_keys: The task's own config keys, besides the schedule's and the optimizer's
            (``None``: undeclared; a search space is then not checked against the task's keys).
        optimizer: The optimizer the task builds when the config names none (``None``: none
            from the registry; optimizer keys are then valid only if the space sets
            ``optimizer``).
        threads: The torch threads a trial runs with (``None``: the cores, shared among the
            worker processes). The built-in tasks' models are too small to gain from more
            than one, and extra threads only slow them when the cores are busy.
    """

    name: str
    function: str
    description: str
    default_epochs: int | None
    default_lr: float | None = None
    config_keys: tuple[str, ...] | None = None
    optimizer: str | None = None
    threads: int | None = None

    def valid_keys(self, schedule: str, *, optimizers: Iterable[str] | None = None) -> set[str]:
        """Every key a config of this task may hold when it runs ``schedule``.

        Args:
            schedule: A registry name.
            optimizers: The optimizers the configs may name (default: the task's own).

        Raises:
            ValueError: An unknown schedule or optimizer.
        """
        from greedylr.schedulers import get_schedule_info
        from greedylr.schedulers import optimizer_defaults

        if optimizers is None:
            optimizers = [self.optimizer] if self.optimizer is not None else []
        keys = {*RUN_KEYS, *get_schedule_info(schedule).defaults, *(self.config_keys or ())}
        for optimizer in optimizers:
            keys.update(optimizer_defaults(optimizer))
        return keys


_TASKS = {
    info.name: info
    for info in (
        TaskInfo(
            name="digits-mlp",
            function="greedylr.tasks._digits:train",
            description=(
                "MLP 64-128-10 on scikit-learn's digits, SGD+momentum, validation cross-entropy"
            ),
            default_epochs=50,
            default_lr=0.05,
            config_keys=("hidden", "batch_size"),
            optimizer="sgd",
            threads=1,
        ),
        TaskInfo(
            name="nmf",
            function="greedylr.tasks._nmf:train",
            description="stochastic NMF (100x80, rank 5) with projected SGD and noisy gradients",
            default_epochs=40,
            default_lr=0.01,
            config_keys=("rows", "columns", "rank", "noise", "gradient_noise"),
            optimizer="sgd",
            threads=1,
        ),
        TaskInfo(
            name="quadratic",
            function="greedylr.tasks._quadratic:train",
            description=(
                "noisy quadratic model (h_i = 1/i, d = 100): greedy LR adaptation decays too early"
            ),
            default_epochs=20,
            default_lr=0.5,
            config_keys=("dimension", "batch_size", "evaluation_size"),
            optimizer="sgd",
            threads=1,
        ),
        TaskInfo(
            name="mnist1d-cnn",
            function="greedylr.tasks._mnist1d:train",
            description=(
                "1-D CNN on MNIST-1D (6k training signals), SGD+momentum, validation "
                "cross-entropy; 0.1 s/epoch on 1 CPU thread; needs greedylr[suite]"
            ),
            default_epochs=30,
            default_lr=0.05,
            config_keys=("channels", "batch_size", "train_size"),
            optimizer="sgd",
            threads=1,
        ),
        TaskInfo(
            name="fashion-mnist-mlp",
            function="greedylr.tasks._fashion_mnist:train_mlp",
            description=(
                "MLP 784-256-10 on Fashion-MNIST (20k training images), SGD+momentum, "
                "validation cross-entropy; 0.25 s/epoch on 1 CPU thread; needs apt-get install "
                "dataset-fashion-mnist"
            ),
            default_epochs=20,
            default_lr=0.02,
            config_keys=("hidden", "batch_size", "train_size"),
            optimizer="sgd",
            threads=1,
        ),
        TaskInfo(
            name="fashion-mnist-cnn",
            function="greedylr.tasks._fashion_mnist:train_cnn",
            description=(
                "CNN conv16-conv32 on Fashion-MNIST (10k training images), SGD+momentum, "
                "validation cross-entropy; 2 s/epoch on 1 CPU thread; needs apt-get install "
                "dataset-fashion-mnist"
            ),
            default_epochs=20,
            default_lr=0.02,
            config_keys=("channels", "batch_size", "train_size"),
            optimizer="sgd",
            threads=1,
        ),
        TaskInfo(
            name="char-lm",
            function="greedylr.tasks._char_lm:train",
            description=(
                "char-level causal transformer (2 layers, width 64) on pydoc_data/topics.py, "
                "SGD+momentum, validation nats per char (and bits_per_char); 2.4 s/epoch on 1 "
                "CPU thread"
            ),
            default_epochs=20,
            default_lr=0.3,
            config_keys=("batch_size", "context", "steps_per_epoch", "width", "layers"),
            optimizer="sgd",
            threads=1,
        ),
    )
}


def list_tasks() -> list[TaskInfo]:
    """The built-in tasks, sorted by name."""
    return [_TASKS[name] for name in sorted(_TASKS)]


def builtin_task(name: str) -> TaskInfo:
    """The built-in task ``name``."""
    return _TASKS[name]


def resolve_task(task: str) -> TaskInfo:
    """The built-in task ``task``, or a user task ``package.module:function`` / ``file.py:fn``.

    A user task is imported; what :func:`declare_task` declared on it is returned, named
    ``task``. An undeclared one declares nothing.

    Raises:
        ValueError: ``task`` is neither a built-in name nor of the form ``module:function``, or
            it cannot be imported (the message is one line).
    """
    if task in _TASKS:
        return _TASKS[task]
    if ":" not in task:
        raise ValueError(
            f"Unknown task {task!r}; built-in tasks are {sorted(_TASKS)}, or name your own as "
            "`package.module:function` or `file.py:function`."
        )
    from greedylr.backends._contract import load_trial_function

    declared = getattr(load_trial_function(task), _DECLARATION_ATTR, None)
    if not isinstance(declared, TaskInfo):
        return TaskInfo(task, task, "user task", None)
    return replace(declared, name=task, function=task)


Function = TypeVar("Function", bound=Callable[..., Any])


def declare_task(
    *,
    default_epochs: int | None = None,
    default_lr: float | None = None,
    config_keys: Sequence[str] | None = None,
    optimizer: str | None = None,
    threads: int | None = None,
    description: str = "user task",
) -> Callable[[Function], Function]:
    """Declare what a user's trial function takes, as the built-in tasks do (a decorator).

    With a declaration, ``--max-epochs`` may be left out, the untuned defaults trial uses
    ``default_lr``, and a search space whose keys the task does not take is refused before the
    first trial. Without one, ``--max-epochs`` is required, the defaults trial uses the middle
    of the space's ``lr`` range, and the space is not checked.

    Args:
        default_epochs: The epochs of a trial when ``--max-epochs`` is not given.
        default_lr: The LR of the untuned defaults trial (clipped into the space).
        config_keys: The task's own config keys. A config may also hold ``schedule``,
            ``optimizer``, ``lr``, ``epochs``, ``seed``, the schedule's keys, and the keys of
            ``optimizer`` (or of the optimizers the space names).
        optimizer: The registry optimizer the task builds when the config names none.
        threads: The torch threads a trial runs with (default: the cores, shared among the
            worker processes); 1 suits a small model.
        description: One line about the task.

    Raises:
        TypeError: ``config_keys`` is not a sequence of str.
        ValueError: ``default_epochs`` or ``threads`` < 1, ``default_lr`` not > 0, or an
            unknown optimizer.
    """
    for name, value in (("threads", threads), ("default_epochs", default_epochs)):
        if value is not None:
            check_int(name, value, minimum=1)
    if default_lr is not None and (
        isinstance(default_lr, bool)
        or not isinstance(default_lr, (int, float))
        or not (math.isfinite(default_lr) and default_lr > 0)
    ):
        raise ValueError(f"`default_lr` must be a finite number > 0, but got {default_lr=}.")
    keys = None
    if config_keys is not None:
        if isinstance(config_keys, str) or not all(isinstance(k, str) for k in config_keys):
            raise TypeError(f"`config_keys` must be a sequence of str, but got {config_keys=}.")
        keys = tuple(config_keys)
    if optimizer is not None:
        from greedylr.schedulers import optimizer_defaults

        optimizer_defaults(optimizer)  # raises on an unknown name

    def declare(function: Function) -> Function:
        if not callable(function):
            raise TypeError(f"`declare_task` decorates a function, but got {function!r}.")
        name = f"{function.__module__}:{function.__qualname__}"
        info = TaskInfo(
            name=name,
            function=name,
            description=description,
            default_epochs=default_epochs,
            default_lr=None if default_lr is None else float(default_lr),
            config_keys=keys,
            optimizer=optimizer,
            threads=threads,
        )
        setattr(function, _DECLARATION_ATTR, info)
        return function

    return declare


def task_slug(task: str) -> str:
    """A short name for ``task`` in file and folder names.

    A built-in task keeps its name; a user task is its module's last component (a file's stem)
    and its function: ``/tmp/x/myscript.py:train`` -> ``myscript-train``, ``mytask:train`` ->
    ``mytask-train``, ``pkg.mod:Trainer.fit`` -> ``mod-Trainer-fit``. Characters other than
    letters, digits, ``_`` and ``-`` become ``-``.
    """
    if task in _TASKS or ":" not in task:
        module, function = task, ""
    else:
        module, _, function = task.rpartition(":")  # a Windows drive keeps its colon
        module = PurePath(module).stem if module.endswith(".py") else module.rpartition(".")[2]
    slug = "-".join(part for part in (module, function.replace(".", "-")) if part)
    return re.sub(r"[^A-Za-z0-9_-]+", "-", slug).strip("-") or "task"


__all__ = [
    "RUN_KEYS",
    "TaskInfo",
    "builtin_task",
    "declare_task",
    "list_tasks",
    "resolve_task",
    "task_slug",
]
