"""Ray Tune's searchers and schedulers for an :class:`~greedylr.backends.Experiment`.

The fidelity is the reported ``epoch`` (never Tune's ``training_iteration``). Every scheduler
here skips the failure result a trial sends just before it raises (see
:mod:`greedylr.backends._ray_trainable`), and ASHA and the median rule never stop the untuned
defaults trial.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune.schedulers import ASHAScheduler
from ray.tune.schedulers import FIFOScheduler
from ray.tune.schedulers import HyperBandScheduler
from ray.tune.schedulers import MedianStoppingRule
from ray.tune.schedulers import PopulationBasedTraining
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search import SearchGenerator
from ray.tune.search.basic_variant import BasicVariantGenerator

from greedylr.backends._experiment import Experiment
from greedylr.backends._ray_trainable import ROW_KEY
from greedylr.searchers import CategoricalParam
from greedylr.searchers import FloatParam
from greedylr.searchers import IntParam
from greedylr.searchers import Param
from greedylr.searchers import split_space
from greedylr.searchers import to_optuna
from greedylr.searchers import to_ray


METRIC = "loss"
MODE = "min"
TIME_ATTR = "epoch"


def is_notice(result: dict[str, Any] | None) -> bool:
    """A result that only tells the driver something (a failure, the function returned)."""
    payload = (result or {}).get(ROW_KEY)
    return isinstance(payload, dict) and "row" not in payload


class _GreedyLRRules:
    """Mixed into Tune's schedulers: skip notices; never stop the defaults trial."""

    exempt: dict[str, Any] | None = None

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if is_notice(result):
            return TrialScheduler.CONTINUE
        decision: str = super().on_trial_result(tune_controller, trial, result)  # type: ignore[misc]
        if decision == TrialScheduler.STOP and self._is_exempt(trial):
            return TrialScheduler.CONTINUE
        return decision

    def on_trial_complete(
        self, tune_controller: Any, trial: Any, result: dict[str, Any] | None
    ) -> None:
        if is_notice(result):  # the trial failed or returned: forget it, record nothing
            self.on_trial_remove(tune_controller, trial)  # type: ignore[attr-defined]
            return
        super().on_trial_complete(tune_controller, trial, result)  # type: ignore[misc]

    def _is_exempt(self, trial: Any) -> bool:
        if not self.exempt:
            return False
        return all(trial.config.get(name) == value for name, value in self.exempt.items())


class GreedyLRASHA(_GreedyLRRules, ASHAScheduler):
    """ASHA on the reported epoch."""


class GreedyLRMedian(_GreedyLRRules, MedianStoppingRule):
    """Stop a trial whose best loss so far is worse than the median of the other trials'
    losses at the same epoch (those that reached it, running or ended).

    Ray's own rule compares with the others' running averages (the mean of every loss they
    reported from ``grace_period`` up to the epoch): a trial that started badly weighs on it
    long after it improved; ``_running_mean(trial, time)`` is the hook its rule reads them
    through, and here it returns the loss reported at the epoch itself. And where Ray's rule
    pauses a trial it cannot judge yet (too few others reached its epoch) to run waiting
    ones, this one lets it run on.
    """

    def _on_insufficient_samples(self, tune_controller: Any, trial: Any, time: float) -> str:
        # Ray's rule pauses a trial it cannot judge yet (fewer than `min_samples_required`
        # others) to let waiting trials catch up; greedylr's median rule lets it run on.
        return TrialScheduler.CONTINUE

    def _running_mean(self, trial: Any, time: float) -> Any:
        at_or_before = [r for r in self._results[trial] if r[TIME_ATTR] <= time]
        return float(at_or_before[-1][METRIC]) if at_or_before else math.nan


class GreedyLRHyperBand(_GreedyLRRules, HyperBandScheduler):
    """HyperBand (it pauses trials: they continue from their last checkpoint).

    Pausing is how HyperBand works, so the defaults trial is not exempt from it. Ray's
    HyperBand has no grace period: its brackets' first rungs are ``max_t / eta**s`` for
    ``s = 0 .. round(log(max_t) / log(eta))``, rounded down, so some judge a trial before
    ``min_epochs`` (or at epoch 0: Ray then skips that bracket). Here ``s`` stops at the
    largest value whose first rung is at least ``min_epochs``. The survivors of a bracket's
    last rung run on to ``max_t`` (``stop_last_trials=False``; with Ray's default they stop
    at the last rung, ``max_t`` rounded down to a multiple of it, as if pruned).

    Args:
        min_epochs: The first rung of every bracket is at least this epoch.
        **kwargs: ``HyperBandScheduler``'s arguments.
    """

    def __init__(self, *, min_epochs: int, **kwargs: Any) -> None:
        super().__init__(stop_last_trials=False, **kwargs)
        max_t, eta = int(kwargs["max_t"]), int(kwargs["reduction_factor"])
        # Private attributes of HyperBandScheduler (Ray 2.60): `_s_max_1`, the number of
        # brackets (read by its bracket size formula and to tell a full band), and `_get_r0`,
        # a bracket's first rung (computed in floats: 27 * 3**-3 rounds down to 0). Check
        # they are still there before replacing them.
        if not isinstance(getattr(self, "_s_max_1", None), int) or not callable(
            getattr(self, "_get_r0", None)
        ):
            raise RuntimeError(
                f"Ray {_ray_version()}'s HyperBandScheduler has no `_s_max_1` or `_get_r0`; "
                "greedylr cannot set its brackets (it was written for Ray 2.60)."
            )
        self._s_max_1 = hyperband_brackets(max_t, min_epochs, eta)
        self._get_r0 = lambda s: max_t // eta**s

    def _create_bracket(self, s: int) -> Any:
        # Ray's bracket is full while it holds `n0` live trials, so a trial that ended frees
        # its place; Tune creates trials only as workers free up (max_concurrent_trials,
        # TUNE_MAX_PENDING_TRIALS_PG), so every trial would join the first bracket. Here a
        # bracket is full once `n0` trials joined it. `_all_trials` and `_n0` are private
        # attributes of Ray 2.60's _Bracket: checked first.
        bracket = super()._create_bracket(s)
        if not isinstance(getattr(bracket, "_all_trials", None), list) or not isinstance(
            getattr(bracket, "_n0", None), int
        ):
            raise RuntimeError(
                f"Ray {_ray_version()}'s HyperBand brackets have no `_all_trials` or `_n0`; "
                "greedylr cannot fill them (it was written for Ray 2.60)."
            )
        bracket.filled = lambda: len(bracket._all_trials) >= bracket._n0
        return bracket


class GreedyLRPBT(_GreedyLRRules, PopulationBasedTraining):
    """Population-based training on the reported epoch (it stops no trial)."""


class GreedyLRFIFO(_GreedyLRRules, FIFOScheduler):
    """Every trial runs all its epochs."""


def hyperband_brackets(max_epochs: int, min_epochs: int, reduction_factor: int) -> int:
    """The HyperBand brackets whose first rung, ``max_epochs // reduction_factor**s``, is at
    least ``min_epochs`` (``s = 0`` runs every trial of its bracket to ``max_epochs``)."""
    brackets = 1
    while max_epochs // reduction_factor**brackets >= min_epochs:
        brackets += 1
    return brackets


def _ray_version() -> str:
    import ray

    return str(ray.__version__)


def make_scheduler(experiment: Experiment) -> TrialScheduler:
    """The scheduler named by ``experiment.early_stopping``."""
    kind = experiment.early_stopping
    scheduler: TrialScheduler
    if kind == "asha":
        scheduler = GreedyLRASHA(
            time_attr=TIME_ATTR,
            max_t=experiment.max_epochs,
            grace_period=experiment.min_epochs,
            reduction_factor=experiment.reduction_factor,
        )
    elif kind == "hyperband":
        scheduler = GreedyLRHyperBand(
            min_epochs=experiment.min_epochs,
            time_attr=TIME_ATTR,
            max_t=experiment.max_epochs,
            reduction_factor=experiment.reduction_factor,
        )
    elif kind == "median":
        scheduler = GreedyLRMedian(
            time_attr=TIME_ATTR, grace_period=experiment.min_epochs, min_samples_required=3
        )
    elif kind == "pbt":
        params, _ = split_space(experiment.search_space)
        scheduler = GreedyLRPBT(
            time_attr=TIME_ATTR,
            perturbation_interval=pbt_interval(experiment),
            burn_in_period=experiment.min_epochs,
            hyperparam_mutations=_mutations(params),
            custom_explore_fn=ClipIntoSpace(params),
        )
    elif kind == "none":
        scheduler = GreedyLRFIFO()
    else:
        raise ValueError(
            f"`early_stopping` must be one of ['asha', 'hyperband', 'median', 'pbt', 'none'] "
            f"on Ray Tune, but got early_stopping={kind!r}."
        )
    if isinstance(scheduler, (GreedyLRASHA, GreedyLRMedian)):  # HyperBand pauses, PBT stops none
        scheduler.exempt = experiment.default_config() or None
    return scheduler


def pbt_interval(experiment: Experiment) -> int:
    """Epochs between two exploit/explore steps of PBT: a few steps per trial."""
    return max(experiment.min_epochs, experiment.max_epochs // experiment.reduction_factor, 1)


def _mutations(params: dict[str, Param]) -> dict[str, Any]:
    domains = to_ray(dict(params))
    return {
        name: list(param.choices) if isinstance(param, CategoricalParam) else domains[name]
        for name, param in params.items()
    }


class ClipIntoSpace:
    """PBT's explore step multiplies values by 0.8 or 1.2: bring them back into the space."""

    def __init__(self, params: dict[str, Param]) -> None:
        self.params = params

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        for name, param in self.params.items():
            if name in config and not isinstance(param, CategoricalParam):
                config[name] = _clip(param, config[name])
        return config


def _clip(param: Param, value: Any) -> Any:
    assert isinstance(param, (FloatParam, IntParam))
    clipped = min(max(value, param.low), param.high)
    if isinstance(param, IntParam):
        return int(param.low + round((clipped - param.low) / param.step) * param.step)
    if param.step is not None:
        return float(param.low + round((clipped - param.low) / param.step) * param.step)
    return float(clipped)


def make_searcher(experiment: Experiment, *, workers: int) -> tuple[Any, dict[str, Any]]:
    """The searcher named by ``experiment.searcher``, seeded, and the Tuner's param space.

    The untuned defaults are the searcher's first point, so trial 0 runs them. The searcher
    is a Tune search algorithm that a restored experiment can grow (:func:`continue_search`);
    the model-based one suggests for at most ``workers`` trials at once.
    """
    space = experiment.search_space
    params, constants = split_space(space)
    defaults = experiment.default_config()
    points = [defaults] if defaults else None
    if experiment.searcher == "random":
        generator = GrowingVariantGenerator(
            points_to_evaluate=points, random_state=experiment.seed
        )
        return generator, to_ray(space)
    if experiment.searcher == "tpe":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        sampler = optuna.samplers.TPESampler(seed=experiment.seed, constant_liar=True)
        searcher = OptunaSearch(
            space=to_optuna(params),  # the same distributions as the Optuna backend's
            metric=METRIC,
            mode=MODE,
            points_to_evaluate=points,
            sampler=sampler,
        )
        # Wrapped here rather than by Tune (max_concurrent_trials), so that a rerun can grow it.
        limited = ConcurrencyLimiter(searcher, max_concurrent=workers)
        return GrowingSearchGenerator(limited), dict(constants)
    raise ValueError(
        f"`searcher` must be one of ['random', 'tpe'] on Ray Tune, but got "
        f"searcher={experiment.searcher!r}."
    )


def trial_dirname(trial: Any) -> str:
    """A short folder name per trial (Tune's default holds the whole config)."""
    return trial_folder(trial.trial_id)


def trial_folder(trial_id: str) -> str:
    """The folder of Tune's trial ``trial_id`` in the experiment folder."""
    return f"trial_{trial_id}"



class _Growing:
    """A Tune search algorithm that a restored experiment can grow (mixed into Tune's own).

    Tune restores a search algorithm from the experiment's last snapshot, its sample count
    and whether it finished included, so a rerun asking for more trials would get none.
    :func:`continue_search` leaves the rerun's count on the algorithm restored from
    ``tuner.pkl``; once Tune restored the snapshot, the count is raised to it. The random
    searcher draws the added configs from where its seeded stream stopped (a run grown from
    n to m trials samples what a run of m trials samples).
    """

    _total_samples: int
    _finished: bool

    def restore_from_dir(self, dirpath: str) -> None:
        rerun = self.__dict__.get(_RERUN_ATTR)  # the snapshot's state replaces __dict__
        super().restore_from_dir(dirpath)  # type: ignore[misc]
        if rerun is None:
            return
        setattr(self, _RERUN_ATTR, rerun)
        n_trials, workers = rerun
        if n_trials > self._total_samples:
            self._add_samples(n_trials - self._total_samples)
            self._total_samples = n_trials
            self._finished = False
        self._limit_concurrency(workers)

    def _add_samples(self, extra: int) -> None:
        raise NotImplementedError

    def _limit_concurrency(self, workers: int) -> None:
        """Suggest for at most ``workers`` trials at once (the rerun's, not the snapshot's)."""


class GrowingVariantGenerator(_Growing, BasicVariantGenerator):
    """Tune's random search, growable."""

    def _add_samples(self, extra: int) -> None:
        self._iterators[-1].num_samples_left += extra  # its seeded stream samples on


class GrowingSearchGenerator(_Growing, SearchGenerator):
    """Tune's wrapper of a model-based searcher (in a ConcurrencyLimiter), growable."""

    def _add_samples(self, extra: int) -> None:
        experiment: Any = self._experiment  # Tune's Experiment, set when it was restored
        experiment.spec["num_samples"] = self._total_samples + extra

    def _limit_concurrency(self, workers: int) -> None:
        if isinstance(self.searcher, ConcurrencyLimiter):
            self.searcher.max_concurrent = workers


_RERUN_ATTR = "_greedylr_rerun"


def continue_search(search_algorithm: Any, *, n_trials: int, workers: int) -> None:
    """Have a search algorithm restored from ``tuner.pkl`` (:func:`make_searcher`'s) sample
    ``n_trials`` configs in all, and at most ``workers`` at once, once Tune restored it.

    Raises:
        RuntimeError: The experiment's search algorithm is not greedylr's growable one.
    """
    if not isinstance(search_algorithm, _Growing):
        raise RuntimeError(
            f"Cannot continue this Ray Tune experiment's search: its search algorithm is a "
            f"{type(search_algorithm).__name__}, not greedylr's (a run folder of an older "
            "greedylr?); use another --out."
        )
    setattr(search_algorithm, _RERUN_ATTR, (n_trials, workers))
