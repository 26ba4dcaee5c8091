"""Syne Tune's searchers and schedulers for an experiment, and greedylr's own around them.

Every rule judges a trial on the reported ``epoch`` (``time_attr="epoch"``, ``max_t`` the
max epochs, ``grace_period`` the min epochs). Syne Tune 0.16's ASHA only stops trials; the
promotion kind (``asha_kind="promotion"``: a trial pauses at each rung and the best continue
from their checkpoint) is :class:`PromotionASHA`, on Syne Tune's own pause and resume.
:class:`GreedyLRScheduler` wraps the rule: it runs the untuned defaults first and never stops
them early, runs again the trials that were interrupted or whose process died (from their last
checkpoint), and ends the study after ``n_trials`` sampled configs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
from syne_tune.backend.trial_status import Trial
from syne_tune.config_space import cast_config_values
from syne_tune.config_space import postprocess_config
from syne_tune.optimizer.scheduler import SchedulerDecision
from syne_tune.optimizer.scheduler import TrialScheduler
from syne_tune.optimizer.scheduler import TrialSuggestion
from syne_tune.optimizer.schedulers import MedianStoppingRule
from syne_tune.optimizer.schedulers import PopulationBasedTraining
from syne_tune.optimizer.schedulers.asha import AsynchronousSuccessiveHalving

from greedylr._imports import MissingDependencyError
from greedylr.backends._experiment import Experiment
from greedylr.backends._syne_tune_trial import STOP_AFTER
from greedylr.searchers import to_syne_tune


METRIC = "loss"
TIME_ATTR = "epoch"
SEARCHERS = {
    "random": "random_search",
    "bo": "botorch",
    "bohb": "kde",
    "asha-bore": "bore",
    "asha-cqr": "cqr",
}
"""greedylr's searcher names -> Syne Tune's (its ``searcher_factory``)."""


def _seeded_kde() -> type:
    """Syne Tune's kernel-density searcher drawing its random configs from its own seeded
    generator (0.16 draws them from NumPy's global one, so two runs of a seed differ)."""
    from syne_tune.optimizer.schedulers.searchers.kde import KernelDensityEstimator

    class SeededKDE(KernelDensityEstimator):
        def _get_random_config(self) -> dict[str, Any]:
            return {
                name: domain.sample(random_state=self.random_state)
                if hasattr(domain, "sample")
                else domain
                for name, domain in self.config_space.items()
            }

    return SeededKDE


def _multi_fidelity_searcher(
    experiment: Experiment, config_space: dict[str, Any], points: Any
) -> Any:
    """The searcher of ASHA: Syne Tune's name for it, or (bohb) its seeded kernel density."""
    name = SEARCHERS[experiment.searcher]
    if name != "kde":
        return name
    from syne_tune.optimizer.schedulers.searchers.last_value_multi_fidelity_searcher import (
        LastValueMultiFidelitySearcher,
    )

    return LastValueMultiFidelitySearcher(
        config_space=config_space,
        random_seed=experiment.seed,
        points_to_evaluate=points,
        searcher=_seeded_kde(),
    )


def hyperband_brackets(max_epochs: int, min_epochs: int, reduction_factor: int) -> int:
    """The brackets of asynchronous Hyperband: one per rung a bracket can start at."""
    return max(1, int(math.log(max_epochs / min_epochs) / math.log(reduction_factor)) + 1)


def pbt_interval(experiment: Experiment) -> int:
    """Epochs between two exploit/explore steps of PBT: a few steps per trial (as on Ray)."""
    return max(experiment.min_epochs, experiment.max_epochs // experiment.reduction_factor, 1)


class SeededASHA(AsynchronousSuccessiveHalving):
    """Syne Tune's ASHA with the bracket of each trial drawn from its own seeded generator
    (0.16 draws it from NumPy's global one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bracket_random = np.random.default_rng(self.random_seed)

    def on_trial_add(self, trial: Trial) -> None:
        sizes = np.array([len(bracket.rungs) for bracket in self.brackets])
        weights = np.e ** (sizes - sizes.max())
        index = self._bracket_random.choice(len(self.brackets), p=weights / weights.sum())
        self.trial_info[trial.trial_id] = self.brackets[int(index)]


class PromotionASHA(SeededASHA):
    """Promotion-type ASHA: a trial pauses at each rung; the best 1 in ``reduction_factor`` of
    a rung continue to the next one, from their checkpoint.

    A free worker first promotes the best paused trial of the highest rung that has one to
    promote (it is in its rung's top ``len(rung) // reduction_factor``), else starts a new
    config. The config of a trial carries :data:`STOP_AFTER`, the epoch of its next rung:
    the trial process ends itself there, so it is never cut mid-epoch.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._paused: dict[int, tuple[Any, int]] = {}  # trial -> (bracket, rung epoch)
        self._configs: dict[int, dict[str, Any]] = {}
        self._bracket = 0  # of the config suggested last

    def suggest(self) -> TrialSuggestion | None:
        return self.promotion() or self.new_trial()

    def promotion(self) -> TrialSuggestion | None:
        """The best paused trial that may continue to its next rung (``None``: none may)."""
        promoted = self._promotable()
        if promoted is None:
            return None
        bracket, rung = self._paused.pop(promoted)
        config = {**self._configs[promoted], STOP_AFTER: self._next_rung(bracket, rung)}
        return TrialSuggestion.resume_suggestion(promoted, config)

    def new_trial(self, *, to_the_end: bool = False) -> TrialSuggestion | None:
        """A new config, to run up to its bracket's first rung (or ``to_the_end``)."""
        config = self.searcher.suggest()
        if config is None:
            return None
        config = postprocess_config(
            cast_config_values(config, self.config_space), self.config_space
        )
        sizes = np.array([len(bracket.rungs) for bracket in self.brackets])
        weights = np.e ** (sizes - sizes.max())
        self._bracket = int(self._bracket_random.choice(len(sizes), p=weights / weights.sum()))
        stop = self.max_t if to_the_end else self._next_rung(self.brackets[self._bracket], 0)
        return TrialSuggestion.start_suggestion({**config, STOP_AFTER: int(stop)})

    def on_trial_add(self, trial: Trial) -> None:
        self.trial_info[trial.trial_id] = self.brackets[self._bracket]
        self._configs[trial.trial_id] = {
            key: value for key, value in trial.config.items() if key != STOP_AFTER
        }

    def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> str:
        epoch = int(result[TIME_ATTR])
        if epoch >= self.max_t:
            return SchedulerDecision.STOP
        bracket = self.trial_info[trial.trial_id]
        metric = result[self.metric] * self.metric_multiplier
        for milestone, recorded in bracket.rungs:
            if epoch == milestone:
                recorded[trial.trial_id] = {self.metric: metric}
                self._paused[trial.trial_id] = (bracket, milestone)
                return SchedulerDecision.PAUSE
        return SchedulerDecision.CONTINUE

    def on_trial_remove(self, trial: Trial) -> None:
        """A paused trial stays known (it may continue); a stopped one is forgotten."""
        if trial.trial_id not in self._paused:
            self.trial_info.pop(trial.trial_id, None)

    def on_trial_error(self, trial: Trial) -> None:
        self._paused.pop(trial.trial_id, None)
        super().on_trial_error(trial)

    def _next_rung(self, bracket: Any, epoch: int) -> int:
        above = [milestone for milestone, _ in bracket.rungs if milestone > epoch]
        return int(min(above)) if above and min(above) < self.max_t else int(self.max_t)

    def _promotable(self) -> int | None:
        for bracket in self.brackets:
            for milestone, recorded in bracket.rungs:  # the highest rung first
                keep = len(recorded) // int(self.reduction_factor)
                best = sorted(recorded, key=lambda trial: (recorded[trial][self.metric], trial))
                for trial in best[:keep]:
                    if self._paused.get(trial, (None, None))[1] == milestone:
                        return trial
        return None

    def forget_pause(self, trial: int) -> None:
        """``trial`` runs on past its rung (the defaults, which are never stopped early)."""
        self._paused.pop(trial, None)

    def paused(self) -> list[int]:
        """The trials paused now (they end as stopped early if never promoted)."""
        return list(self._paused)


class ForwardingMedian(MedianStoppingRule):
    """Syne Tune's median rule, telling its inner scheduler of every trial's start and end
    (0.16 forwards only ``suggest`` and ``on_trial_result``)."""

    def on_trial_add(self, trial: Trial) -> None:
        self.scheduler.on_trial_add(trial)

    def on_trial_complete(self, trial: Trial, result: dict[str, Any]) -> None:
        self.scheduler.on_trial_complete(trial, result)

    def on_trial_remove(self, trial: Trial) -> None:
        self.scheduler.on_trial_remove(trial)

    def on_trial_error(self, trial: Trial) -> None:
        self.scheduler.on_trial_error(trial)


def make_rule(experiment: Experiment, *, asha_kind: str, defaults: dict[str, Any] | None) -> Any:
    """Syne Tune's scheduler for ``experiment``'s searcher and early-stopping rule.

    Raises:
        MissingDependencyError: ``bo`` without botorch.
        ValueError: ``asha_kind="promotion"`` with a rule other than asha or hyperband, or PBT
            with a searcher other than random (Syne Tune's PBT samples at random).
    """
    config_space = to_syne_tune(experiment.search_space)
    rule = experiment.early_stopping
    if experiment.searcher == "bo" and importlib.util.find_spec("botorch") is None:
        raise MissingDependencyError(
            "searcher='bo' (Syne Tune's BoTorch searcher) requires `botorch`; install it with "
            '`pip install "greedylr[syne-tune]"` (or `pip install botorch`).'
        )
    points = [defaults] if defaults else None
    searcher = _multi_fidelity_searcher(experiment, config_space, points)
    if asha_kind == "promotion" and rule not in ("asha", "hyperband"):
        raise ValueError(
            f"`asha_kind` promotion needs early_stopping asha or hyperband, but got "
            f"early_stopping={rule!r}."
        )
    if rule == "pbt":
        if experiment.searcher != "random":
            raise ValueError(
                f"Syne Tune's PBT samples at random: `searcher` must be random with "
                f"early_stopping='pbt', but got searcher={experiment.searcher!r}."
            )
        return PopulationBasedTraining(
            config_space,
            metric=METRIC,
            time_attr=TIME_ATTR,
            max_t=experiment.max_epochs,
            random_seed=experiment.seed,
            perturbation_interval=pbt_interval(experiment),
            searcher_kwargs={"points_to_evaluate": points},
        )
    brackets = 1
    if rule == "hyperband":
        brackets = hyperband_brackets(
            experiment.max_epochs, experiment.min_epochs, experiment.reduction_factor
        )
    first_rung = experiment.max_epochs if rule in ("none", "median") else experiment.min_epochs
    kind = PromotionASHA if asha_kind == "promotion" else SeededASHA
    asha = kind(
        config_space,
        metric=METRIC,
        searcher=searcher,
        time_attr=TIME_ATTR,
        max_t=experiment.max_epochs,
        grace_period=first_rung,
        reduction_factor=experiment.reduction_factor,
        brackets=brackets,
        random_seed=experiment.seed,
        searcher_kwargs={"points_to_evaluate": points},
    )
    if rule == "median":
        return ForwardingMedian(
            asha,
            time_attr=TIME_ATTR,
            metric=METRIC,
            grace_time=experiment.min_epochs,
            grace_population=3,
            random_seed=experiment.seed,
        )
    return asha


class GreedyLRScheduler(TrialScheduler):
    """The rule, plus greedylr's trial bookkeeping (see the module's docstring).

    Args:
        rule: Syne Tune's scheduler (:func:`make_rule`).
        n_trials: Configs to sample; ``suggest`` returns ``None`` after them, once no trial
            waits to run again.
        max_epochs: The epochs of a trial never stopped early.
        defaults: The untuned defaults (the rule's first suggestion), never stopped early.
    """

    def __init__(
        self, rule: Any, *, n_trials: int, max_epochs: int, defaults: dict[str, Any] | None
    ) -> None:
        super().__init__(random_seed=getattr(rule, "random_seed", 0))
        self.rule = rule
        # Syne Tune 0.16's searchers draw their random configs from NumPy's global generator,
        # which other code draws from too, at moments that vary from run to run: every call
        # into the rule swaps in this generator's state, so the same seed samples the same
        # configs (and a restored tuner, pickled with it, goes on where it stopped). Its seed
        # is derived: the searchers' own generators, seeded with the seed itself, would draw
        # again the very configs they drew.
        derived = np.random.SeedSequence(self.random_seed).generate_state(4)
        self._numpy_state = np.random.RandomState(derived).get_state()
        self.max_epochs = max_epochs
        self.n_trials = n_trials
        self.defaults = defaults or None
        self.sampled = 0
        self.retries: deque[tuple[int, dict[str, Any], int | None]] = deque()
        self.origin: dict[int, tuple[int | None, int | None]] = {}  # trial -> (retry_of, from)
        self._next_origin: tuple[int | None, int | None] = (None, None)

    def retry(self, trial: int, config: dict[str, Any], checkpoint_of: int | None) -> None:
        """Run ``trial``'s config again, from ``checkpoint_of``'s checkpoint (or epoch 1)."""
        self.retries.append((trial, config, checkpoint_of))

    @contextlib.contextmanager
    def _own_numpy_random(self) -> Iterator[None]:
        """NumPy's global generator in this scheduler's state for the block (see __init__)."""
        outside = np.random.get_state()
        np.random.set_state(self._numpy_state)
        try:
            yield
        finally:
            self._numpy_state = np.random.get_state()
            np.random.set_state(outside)

    def suggest(self) -> TrialSuggestion | None:
        if self.retries:
            trial, config, checkpoint_of = self.retries.popleft()
            self._next_origin = (trial, checkpoint_of)
            return TrialSuggestion.start_suggestion(dict(config), checkpoint_of)
        with self._own_numpy_random():
            suggestion = self._suggest()
        if suggestion is None:
            return None
        if suggestion.spawn_new_trial_id:
            self.sampled += 1
        self._next_origin = (None, suggestion.checkpoint_trial_id)
        return suggestion

    def _suggest(self) -> TrialSuggestion | None:
        """The rule's suggestion: a promotion, else a new config while ``n_trials`` last."""
        suggestion: TrialSuggestion | None = None
        if isinstance(self.rule, PromotionASHA):
            suggestion = self.rule.promotion()
            if suggestion is None and self.sampled < self.n_trials:
                # The defaults run to the end: they are never stopped early.
                suggestion = self.rule.new_trial(
                    to_the_end=self.sampled == 0 and bool(self.defaults)
                )
        elif self.sampled < self.n_trials:
            suggestion = self.rule.suggest()
        return suggestion

    def has_work(self) -> bool:
        """Whether a trial is left to start: a sampled config, a retry, or a promotion."""
        promotable = isinstance(self.rule, PromotionASHA) and self.rule._promotable() is not None
        return bool(self.retries) or self.sampled < self.n_trials or promotable

    def on_trial_add(self, trial: Trial) -> None:
        self.origin[trial.trial_id] = self._next_origin
        self._next_origin = (None, None)
        with self._own_numpy_random():
            self.rule.on_trial_add(trial)

    def on_trial_error(self, trial: Trial) -> None:
        with self._own_numpy_random():
            self.rule.on_trial_error(trial)

    def on_trial_result(self, trial: Trial, result: dict[str, Any]) -> str:
        with self._own_numpy_random():
            decision: str = self.rule.on_trial_result(trial, result)
        if (
            decision != SchedulerDecision.CONTINUE
            and result[TIME_ATTR] < self.max_epochs
            and self.is_defaults(trial)
        ):
            if isinstance(self.rule, PromotionASHA):  # it runs on from its rung
                self.rule.forget_pause(trial.trial_id)
            return SchedulerDecision.CONTINUE
        return decision

    def on_trial_complete(self, trial: Trial, result: dict[str, Any]) -> None:
        with self._own_numpy_random():
            self.rule.on_trial_complete(trial, result)

    def on_trial_remove(self, trial: Trial) -> None:
        with self._own_numpy_random():
            self.rule.on_trial_remove(trial)

    def metric_names(self) -> list[str]:
        return [METRIC]

    def metric_mode(self) -> str:
        return "min"

    def metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = self.rule.metadata()
        return metadata

    def is_defaults(self, trial: Trial) -> bool:
        """Whether ``trial`` runs the untuned defaults (or a retry of them)."""
        if not self.defaults:
            return False
        return all(trial.config.get(name) == value for name, value in self.defaults.items())

    def can_promote(self) -> bool:
        """Whether paused trials may still continue (promotion ASHA)."""
        return isinstance(self.rule, PromotionASHA) and bool(self.rule.paused())
