"""An experiment: everything needed to run (or rerun) one tuning job, as plain JSON."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import replace
from typing import Any

from greedylr._checks import check_int
from greedylr.backends._registry import backend_spec
from greedylr.backends._registry import check_choice
from greedylr.searchers import CategoricalParam
from greedylr.searchers import FloatParam
from greedylr.searchers import IntParam
from greedylr.searchers import Param
from greedylr.searchers import SearchSpace
from greedylr.searchers import baseline_space
from greedylr.searchers import greedylr_space
from greedylr.searchers import space_from_json
from greedylr.searchers import space_to_json
from greedylr.searchers import split_space
from greedylr.tasks import TaskInfo
from greedylr.tasks import resolve_task


@dataclass(frozen=True)
class Experiment:
    """One tuning job. Two runs of the same experiment (seed included) sample the same configs.

    Args:
        task: A built-in task name or ``package.module:function``.
        function: The trial function's import path.
        schedule: The LR schedule being tuned (a registry name).
        space: The search space, as JSON (:func:`greedylr.searchers.space_to_json`).
        n_trials: How many trials to run (retries of trials whose worker died not counted).
        max_epochs: The epochs of a trial that is never stopped early.
        min_epochs: The first epoch at which early stopping may stop a trial.
        reduction_factor: The multi-fidelity reduction factor (Hyperband, successive halving).
        searcher: How configs are sampled (the names of
            :data:`greedylr.backends._backend.SEARCHER_NAMES` the backend offers).
        early_stopping: How bad trials are stopped (the names of
            :data:`greedylr.backends._backend.EARLY_STOPPING_RULES` the backend offers).
        seed: The run seed: samplers derive theirs from it, and trials train with it.
        backend: The engine (a name of :data:`greedylr.backends._registry.BACKENDS`).
        default_lr: The LR of the untuned defaults trial (``None``: the middle of the space's
            ``lr`` range, see :meth:`default_config`).
    """

    task: str
    function: str
    schedule: str
    space: str
    n_trials: int
    max_epochs: int
    min_epochs: int = 1
    reduction_factor: int = 3
    searcher: str = "tpe"
    early_stopping: str = "hyperband"
    seed: int = 0
    backend: str = "optuna"
    default_lr: float | None = None

    def __post_init__(self) -> None:
        spec = backend_spec(self.backend)
        check_choice(spec, "searcher", self.searcher)
        # An alias (``sha``) is stored by its name (``asha``): one job, one spelling.
        object.__setattr__(
            self, "early_stopping", check_choice(spec, "early_stopping", self.early_stopping)
        )
        _schedule_info(self.schedule)
        for name in ("n_trials", "max_epochs", "min_epochs"):
            check_int(name, getattr(self, name), minimum=1)
        if self.min_epochs > self.max_epochs:
            raise ValueError(
                "`min_epochs <= max_epochs` must hold, but got "
                f"(min_epochs={self.min_epochs}, max_epochs={self.max_epochs})."
            )
        check_int("reduction_factor", self.reduction_factor, minimum=2)
        check_int("seed", self.seed, minimum=0)
        params, constants = split_space(self.search_space)
        if not params:
            raise ValueError("The search space has no parameter to tune; it is all constants.")
        if constants.get("schedule", self.schedule) != self.schedule:
            raise ValueError(
                f"The space's `schedule` is {constants['schedule']!r} but the experiment tunes "
                f"{self.schedule!r}."
            )

    @classmethod
    def create(
        cls,
        task: str,
        *,
        schedule: str = "greedylr",
        space: SearchSpace | None = None,
        n_trials: int,
        max_epochs: int | None = None,
        **options: Any,
    ) -> Experiment:
        """Resolve the task and the default space of ``schedule``; every value is checked.

        ``early_stopping=None`` and ``searcher=None`` (or left out) take the backend's default
        rule and searcher.

        Raises:
            ValueError: Bad input, among them a space key that neither the schedule, the
                optimizer, nor the task takes (for a task that declares its keys).
        """
        info = resolve_task(task)
        if max_epochs is None:
            if info.default_epochs is None:
                raise ValueError(f"The task {task!r} has no default epochs; give `max_epochs`.")
            max_epochs = info.default_epochs
        if space is None:
            _schedule_info(schedule)
            if schedule == "greedylr":
                space = greedylr_space()
            else:
                space = baseline_space(schedule, horizon=max_epochs)
        space = {**space, "schedule": schedule, "epochs": max_epochs}
        space.setdefault("seed", options.get("seed", 0))
        _check_keys(space, info, schedule)
        if info.default_lr is not None:
            options.setdefault("default_lr", info.default_lr)
        spec = backend_spec(options.get("backend", "optuna"))
        if options.get("early_stopping") is None:
            options["early_stopping"] = spec.default_early_stopping
        if options.get("searcher") is None:
            options["searcher"] = spec.default_searcher
        return cls(
            task=task,
            function=info.function,
            schedule=schedule,
            space=space_to_json(space),
            n_trials=n_trials,
            max_epochs=max_epochs,
            **options,
        )

    @property
    def search_space(self) -> dict[str, Param | Any]:
        """The search space as parameter objects."""
        return space_from_json(self.space)

    def to_json(self) -> str:
        """The experiment as a JSON object."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Experiment:
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(text))

    def same_job(self, other: Experiment) -> bool:
        """Whether ``other`` continues this job (only the trial count may differ)."""
        return replace(other, n_trials=self.n_trials) == self

    @property
    def method(self) -> str | None:
        """The method the job runs (``sgd-hd``: its schedule with its optimizer), if any."""
        from greedylr.searchers import method_running

        _, constants = split_space(self.search_space)
        return method_running(self.schedule, constants.get("optimizer"))

    @property
    def schedule_label(self) -> str:
        """What the job tunes, as the user named it: the method, else the schedule."""
        return self.method or self.schedule

    def default_config(self) -> dict[str, Any]:
        """The schedule's untuned defaults (with the task's LR), clipped into the space.

        Evaluated as the first trial, so tuning never ends worse than not tuning. Dimensions
        whose default falls outside a categorical's choices are left to the sampler. The LR is
        :attr:`default_lr`; a task without one (a user task that declares none) gets the
        middle of the space's ``lr`` range: ``sqrt(low * high)`` (or ``(low + high) / 2`` when
        ``low`` is 0), or the middle of its choices sorted by value. The config is the same
        for every seed.
        """
        params, constants = split_space(self.search_space)
        defaults = dict(_schedule_info(self.schedule).defaults)
        if self.method is not None:  # its optimizer's knobs (hypergrad_lr, ...) too
            from greedylr.schedulers import optimizer_defaults

            defaults = {**optimizer_defaults(str(constants["optimizer"])), **defaults}
        lr = self.default_lr
        if lr is None and "lr" in params:
            lr = _middle(params["lr"])
        if self.schedule == "greedylr":
            defaults["window_size"] = 1  # the class default: no smoothing
            if lr is not None:  # transformers' absolute defaults min_lr=1e-3, max_lr=1.0
                defaults["min_lr_ratio"] = 1e-3 / lr
                defaults["max_lr_ratio"] = 1.0 / lr
        defaults["lr"] = lr
        config: dict[str, Any] = {}
        for name, param in params.items():
            value = _clip(param, defaults.get(name))
            if value is not None:
                config[name] = value
        return config


def _check_keys(space: SearchSpace, info: TaskInfo, schedule: str) -> None:
    """Refuse space keys that neither the schedule, the optimizer nor a declared task takes."""
    if info.config_keys is None:
        return  # an undeclared user task: its keys are unknown
    chosen = space.get("optimizer")
    optimizers: list[Any] | None = None  # None: the task's own optimizer
    if isinstance(chosen, CategoricalParam):
        optimizers = list(chosen.choices)
    elif chosen is not None:
        optimizers = [chosen]
    valid = info.valid_keys(schedule, optimizers=optimizers)  # an unknown optimizer raises
    unknown = sorted(set(space) - valid)
    if len(unknown) == 1:
        which = f"key `{unknown[0]}` is not a config key"
    elif unknown:
        which = f"keys {', '.join(f'`{key}`' for key in unknown)} are not config keys"
    else:
        return
    raise ValueError(
        f"The space's {which} of task {info.name!r} with schedule {schedule!r}; valid keys are "
        f"{sorted(valid)}."
    )


def _middle(param: Param) -> Any:
    """The middle of a parameter's range: geometric for positive bounds, else arithmetic."""
    if isinstance(param, CategoricalParam):
        numbers = sorted(
            c for c in param.choices if isinstance(c, (int, float)) and not isinstance(c, bool)
        )
        return numbers[(len(numbers) - 1) // 2] if numbers else None
    if param.low > 0:
        return math.sqrt(param.low * param.high)
    return (param.low + param.high) / 2


def _clip(param: Param, value: Any) -> Any:
    if value is None or isinstance(value, bool) and not isinstance(param, CategoricalParam):
        return None
    if isinstance(param, CategoricalParam):
        return value if param.contains(value) else None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    clipped = min(max(value, param.low), param.high)
    if isinstance(param, IntParam):
        steps = round((clipped - param.low) / param.step)
        return param.low + steps * param.step
    assert isinstance(param, FloatParam)
    if param.step is not None:
        return param.low + round((clipped - param.low) / param.step) * param.step
    return float(clipped)


def _schedule_info(schedule: str) -> Any:
    """The schedule's registry entry (imported here: the schedules bring torch, which a trial
    process of a task without torch need not pay for)."""
    from greedylr.schedulers import get_schedule_info

    return get_schedule_info(schedule)
