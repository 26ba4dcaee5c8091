"""A restored Ray Tune search grows to a larger ``n_trials`` (greedylr's search algorithms,
driven here as Tune drives them, without a Ray instance)."""

from __future__ import annotations

import tempfile
from typing import Any

import pytest

from greedylr.backends._experiment import Experiment
from greedylr.searchers import FloatParam
from tests.backends_tests.contract_suite import TOY


pytest.importorskip("ray.tune")


def _trainable(config: dict[str, Any]) -> None:
    """Never run: Tune's experiment spec needs a trainable."""


def searcher_of(searcher: str, n_trials: int) -> tuple[Any, dict[str, Any]]:
    """The Ray backend's search algorithm and Tune's param space, the algorithm set up as
    ``tune.run`` sets it up (not yet given the experiment: a restored Tuner holds it so, from
    ``tuner.pkl``)."""
    from greedylr.backends._ray_search import make_searcher

    experiment = Experiment.create(
        f"{TOY}:smooth", space={"x": FloatParam(0.0, 1.0)}, n_trials=n_trials, max_epochs=3,
        searcher=searcher, backend="ray", seed=4,
    )  # fmt: skip
    algorithm, space = make_searcher(experiment, workers=1)
    algorithm.set_search_properties("loss", "min", space)
    return algorithm, space


def start(searcher: str, n_trials: int) -> Any:
    """The search algorithm given an experiment of ``n_trials`` samples (a fresh run)."""
    from ray.tune.experiment import Experiment as TuneExperiment

    algorithm, space = searcher_of(searcher, n_trials)
    with tempfile.TemporaryDirectory() as storage:
        spec = TuneExperiment(
            "grow", run=_trainable, config=space, num_samples=n_trials, storage_path=storage
        )
        algorithm.add_configurations([spec])
    return algorithm


def sample(algorithm: Any, count: int) -> list[float | None]:
    """``count`` suggestions (``None`` once the search finished), each trial then ended."""
    xs: list[float | None] = []
    for _ in range(count):
        trial = algorithm.next_trial()
        if trial is not None:
            algorithm.on_trial_complete(trial.trial_id, {"loss": trial.config["x"], "epoch": 1})
        xs.append(None if trial is None else trial.config["x"])
    return xs


@pytest.mark.parametrize("searcher", ["random", "tpe"])
def test_a_restored_search_grows_to_the_rerun_s_n_trials(searcher: str) -> None:
    import ray.cloudpickle

    from greedylr.backends._ray_search import continue_search

    fresh = ray.cloudpickle.dumps(searcher_of(searcher, 3)[0])  # what tuner.pkl holds
    first = start(searcher, 3)
    drawn = sample(first, 4)
    assert drawn[3] is None
    assert first.is_finished()
    with tempfile.TemporaryDirectory() as snapshot:
        first.save_to_dir(snapshot, "first")
        restored = ray.cloudpickle.loads(fresh)
        continue_search(restored, n_trials=5, workers=1)
        restored.restore_from_dir(snapshot)
    more = sample(restored, 3)
    assert more[2] is None
    assert restored.is_finished()
    assert None not in more[:2]
    assert not set(more[:2]) & set(drawn[:3])
    if searcher == "random":  # the seeded stream goes on: a run of 5 from the start
        straight = sample(start(searcher, 5), 5)
        assert straight == drawn[:3] + more[:2]
    # Restored without being asked to grow, it stays finished.
    with tempfile.TemporaryDirectory() as snapshot:
        restored.save_to_dir(snapshot, "second")
        again = ray.cloudpickle.loads(fresh)
        again.restore_from_dir(snapshot)
    assert sample(again, 1) == [None]


def test_a_search_algorithm_not_greedylr_s_is_refused() -> None:
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from greedylr.backends._ray_search import continue_search

    with pytest.raises(RuntimeError, match="its search algorithm is a BasicVariantGenerator"):
        continue_search(BasicVariantGenerator(), n_trials=5, workers=1)
