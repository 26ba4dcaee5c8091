"""Built-in training tasks, each a plain ``train(config, reporter)``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskInfo:
    """A task the ``greedylr`` command can tune.

    Args:
        name: The name ``--task`` takes.
        function: The trial function, as ``package.module:function``.
        description: One line for ``greedylr tasks``.
        default_epochs: The epochs a trial runs by default (``None`` for user tasks: then
            ``--max-epochs`` is required).
        default_lr: The LR a trial uses when its config has none (and the untuned defaults
            trial uses).
    """

    name: str
    function: str
    description: str
    default_epochs: int | None
    default_lr: float | None = None


_TASKS = {
    info.name: info
    for info in (
        TaskInfo(
            "digits-mlp",
            "greedylr.tasks._digits:train",
            "MLP 64-128-10 on scikit-learn's digits, SGD+momentum, validation cross-entropy",
            50,
            0.05,
        ),
        TaskInfo(
            "nmf",
            "greedylr.tasks._nmf:train",
            "stochastic NMF (100x80, rank 5) with projected SGD and noisy gradients",
            40,
            0.01,
        ),
        TaskInfo(
            "quadratic",
            "greedylr.tasks._quadratic:train",
            "noisy quadratic model (h_i = 1/i, d = 100): greedy LR adaptation decays too early",
            20,
            0.5,
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

    Raises:
        ValueError: ``task`` is neither a built-in name nor of the form ``module:function``.
    """
    if task in _TASKS:
        return _TASKS[task]
    if ":" in task:
        return TaskInfo(task, task, "user task", None)
    raise ValueError(
        f"Unknown task {task!r}; built-in tasks are {sorted(_TASKS)}, or name your own as "
        "`package.module:function`."
    )


__all__ = ["TaskInfo", "builtin_task", "list_tasks", "resolve_task"]
