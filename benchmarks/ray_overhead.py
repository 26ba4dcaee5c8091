"""greedylr's Ray Tune backend against a hand-written Ray Tune script running the same trials.

(``python benchmarks/engine_overhead.py --engine ray`` runs this script.)

Both sides run the same task, searcher (TPE through ``OptunaSearch``, the same seed, the untuned
defaults first), ASHA on the reported epoch (the defaults trial exempt, as greedylr does), one
trial at a time, reused actors, a checkpoint every epoch (the built-in tasks hand one with each
report; the script saves it as a Ray user would, ``torch.save`` into a folder), on a private
local Ray instance that each side starts and shuts down: so they run the same configs and
epochs (the script says when they do not). The runs alternate (ABBA); each side keeps its best
of ``--repeats``.

What each clock covers, the same on both sides: starting Ray, building the job, every trial,
reading the epochs run back, shutting Ray down. greedylr's side also validates the job and
writes its run folder. Imports and the task's data are paid by one untimed run of each side.

Then the time to the first trial: from the call to the first epoch the task reports (a file
the task writes), on a private local instance, and attached to a running cluster (a head node
this script starts with ``ray start``), for greedylr and for the script.

Ray rewrites 127.0.0.1 to the machine's outward address, so the script runs itself in a
private network namespace that has only loopback (``unshare -n``; it needs root): nothing it
starts talks beyond this machine.

Run: ``python benchmarks/ray_overhead.py [--task digits-mlp] [--trials 24] [--repeats 3]``.
Prints the wall times and the ratio greedylr / hand-written (target <= 1.05).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.backends_tests: the private network, the test cluster

import greedylr  # noqa: E402
from greedylr.backends import Experiment  # noqa: E402
from greedylr.backends import load_trial_function  # noqa: E402
from greedylr.searchers import split_space  # noqa: E402
from greedylr.searchers import to_optuna  # noqa: E402
from greedylr.tasks import resolve_task  # noqa: E402


STAMP_TASK = f"{Path(__file__).resolve()}:stamped"


def stamped(config: dict[str, Any], reporter: Any) -> None:
    """The task named by ``config["task"]``; its first report writes the time to a file."""
    config = dict(config)
    stamp, task = Path(config.pop("stamp")), config.pop("task")
    train = load_trial_function(resolve_task(task).function)

    class First:
        def report(self, **report: Any) -> None:
            if not stamp.exists():
                stamp.write_text(repr(time.time()))
            reporter.report(**report)

        def checkpoint(self) -> Any:
            return reporter.checkpoint()

    train(config, First())


def hand_written(
    experiment: Experiment, folder: Path, *, address: str | None = None
) -> tuple[float, int]:
    """What a user would write with Ray Tune alone (same searcher, scheduler and storage)."""
    import optuna
    import ray
    import torch
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    start = time.perf_counter()
    function = experiment.function
    params, constants = split_space(experiment.search_space)
    defaults = experiment.default_config()

    class Reporter:
        def report(
            self, *, epoch: int, loss: float, checkpoint: Any = None, **metrics: Any
        ) -> None:
            result = {"epoch": epoch, "loss": float(loss)}
            if checkpoint is None:
                tune.report(result)
                return
            with tempfile.TemporaryDirectory() as saved:
                torch.save({"epoch": epoch, "state": checkpoint}, Path(saved) / "state.pt")
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(saved))

        def checkpoint(self) -> Any:
            return None  # ASHA never pauses a trial: nothing to continue from

    def trainable(config: dict[str, Any]) -> None:
        torch.manual_seed(int(config.get("seed", 0)))
        torch.set_num_threads(1)
        load_trial_function(function)(config, Reporter())

    class Exempt(ASHAScheduler):  # greedylr's rule: the untuned defaults run to the end
        def on_trial_result(self, controller: Any, trial: Any, result: dict[str, Any]) -> str:
            decision: str = super().on_trial_result(controller, trial, result)
            if decision == self.STOP and all(
                trial.config.get(k) == v for k, v in defaults.items()
            ):
                return self.CONTINUE
            return decision

    ray.init(address=address or "local", include_dashboard=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space=dict(constants),
            tune_config=tune.TuneConfig(
                metric="loss",
                mode="min",
                num_samples=experiment.n_trials,
                max_concurrent_trials=1,
                search_alg=OptunaSearch(
                    space=to_optuna(params),
                    metric="loss",
                    mode="min",
                    points_to_evaluate=[defaults],
                    sampler=optuna.samplers.TPESampler(seed=experiment.seed, constant_liar=True),
                ),
                scheduler=Exempt(
                    time_attr="epoch",
                    max_t=experiment.max_epochs,
                    grace_period=experiment.min_epochs,
                    reduction_factor=experiment.reduction_factor,
                ),
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name="hand",
                storage_path=str(folder.resolve()),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                verbose=0,
            ),
        )
        results = tuner.fit()
        epochs = sum(int(result.metrics.get("epoch", 0)) for result in results)
    finally:
        ray.shutdown()
    return time.perf_counter() - start, epochs


def through_greedylr(
    experiment: Experiment, folder: Path, *, address: str | None = None
) -> tuple[float, int]:
    start = time.perf_counter()
    options = {"address": address} if address else {}
    result = greedylr.tune(
        experiment.task,
        space=experiment.search_space,
        backend="ray",
        n_trials=experiment.n_trials,
        max_epochs=experiment.max_epochs,
        seed=experiment.seed,
        workers=1,
        cpus_per_trial=1,
        out=folder / "run",
        progress=False,
        **options,
    )
    return time.perf_counter() - start, result.epochs_run


def first_trial_seconds(side: Any, task: str, folder: Path, address: str | None) -> float:
    """Seconds from the call to the first epoch a trial reports (one trial, one epoch)."""
    stamp = folder / "stamp"
    space = {**Experiment.create(task, n_trials=1).search_space, "stamp": str(stamp), "task": task}
    experiment = Experiment.create(
        STAMP_TASK, space=space, n_trials=1, max_epochs=1, backend="ray"
    )
    start = time.time()
    side(experiment, folder, address=address)
    return float(stamp.read_text()) - start


def _in_private_network(argv: list[str]) -> None:
    """Run this script again in a network namespace with only loopback, unless it is in one."""
    if [name for _, name in socket.if_nameindex()] == ["lo"]:  # this namespace's interfaces
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)  # noqa: S607
        return
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SystemExit("unshare (util-linux) is needed: Ray must stay on loopback")
    os.execv(unshare, [unshare, "-n", "--", sys.executable, __file__, *argv])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    _in_private_network(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits-mlp")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.pop("RAY_ADDRESS", None)
    # One token for every driver and node: Ray reads the auth mode when it is first imported.
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    warnings.simplefilter("ignore")
    logging.getLogger("ray").setLevel(logging.ERROR)
    experiment = Experiment.create(args.task, n_trials=args.trials, seed=args.seed, backend="ray")
    sides = [("hand-written Ray Tune", hand_written), ("greedylr tune", through_greedylr)]
    best = {name: float("inf") for name, _ in sides}
    epochs: dict[str, int] = {}
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="rb-", dir="/tmp") as scratch:
        for name, run in sides:  # imports, data caches, torch's first optimizer: untimed
            warm_up = Path(scratch) / f"warm-up-{name.split()[0]}"
            warm_up.mkdir()
            small = Experiment(**{**experiment.__dict__, "n_trials": 2})
            run(small, warm_up)
        for repeat in range(args.repeats):
            for name, run in sides if repeat % 2 == 0 else sides[::-1]:  # ABBA
                folder = Path(scratch) / f"{name.split()[0]}-{repeat}"
                folder.mkdir()
                seconds, epochs[name] = run(experiment, folder)
                best[name] = min(best[name], seconds)
        for name, seconds in best.items():
            print(f"{name:>22}: {seconds:7.2f} s  ({epochs[name]} epochs, {args.trials} trials)")
        if len(set(epochs.values())) > 1:
            print("The sides ran different epochs: the ratio compares different work.")
        ratio = best["greedylr tune"] / best["hand-written Ray Tune"]
        print(f"greedylr overhead: {ratio:.3f}x the hand-written script (target <= 1.05)")
        _first_trial(args.task, Path(scratch), sides)


def _first_trial(task: str, scratch: Path, sides: list[tuple[str, Any]]) -> None:
    from tests.backends_tests.ray_cluster import RayCluster

    print("time to the first trial's first epoch (best of 2):")
    for where in ("a private local instance", "an attached cluster"):
        if where == "an attached cluster":
            cluster = RayCluster(head_cpus=2, worker_cpus=None)
            cluster.start()
            address = cluster.address
        else:
            cluster, address = None, None
        try:
            for name, run in sides:
                seconds = min(
                    first_trial_seconds(run, task, _fresh(scratch), address) for _ in range(2)
                )
                print(f"  {name:>22} on {where}: {seconds:5.2f} s")
        finally:
            if cluster is not None:
                cluster.stop()


def _fresh(scratch: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=scratch))


if __name__ == "__main__":
    main()
