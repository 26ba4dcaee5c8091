"""Local workers: how 2 workers scale against 1, and how fast a tiny run starts (issue 6).

Two ratios, each against a reference measured in this same run:

(a) Scaling. ``greedylr tune --task digits-mlp --trials 120 --early-stopping none --searcher
    random --no-progress`` with ``--workers 2`` against ``--workers 1``: one subprocess per run
    (``python -m greedylr``, which is what the ``greedylr`` script runs), a fresh ``--out`` in a
    temporary folder, the two alternating ABBA, each keeping its best wall time of
    ``--repeats``. Target: 2 workers >= 1.8x one worker. The references that say how fast the
    trials alone can go ("one trial is CPU-bound"): a bare loop calling the task's ``train`` on
    the same configs (read from the 1-worker run's journal) with a reporter that does nothing,
    at 1 torch thread (what each of 2 workers gets), in one process, and in two processes at
    once forked from this one, each with half the configs (the most 2 workers can get on this
    machine; ABBA, best of ``--repeats``). A probe of ``--probe`` configs at 1 thread and at
    one thread per core (what ``--workers 1`` trains with) shows what the thread count alone
    costs a trial.
(b) Start-up. ``greedylr tune --task quadratic --trials 2 --max-epochs 1 --no-progress`` at the
    default 2 workers against ``python -c "import torch, optuna"`` (ABBA, best of
    ``--repeats``). Target: within 2x of that import. The timeline of the fastest run says
    where its time went: when each worker process started and when each trial started and
    ended, from the run's journal (a trial's ``worker`` attribute holds its process start).
    (a) prints the same phases, in short, for each side's fastest run.

Each run also reports its CPU seconds: all of them (the tuner and every worker it waited for,
from ``wait4``) and the tuner's own (all of them less its reaped children's, sampled from
``/proc/PID/stat`` until it exits). The machine may be shared: compare ratios, not seconds,
and repeat.

Run: ``python benchmarks/parallel_scaling.py [--trials 120] [--repeats 3] [--parts both]``.
A quick run (< 2 minutes on 2 idle cores): ``--trials 24 --repeats 1``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    """One timed subprocess: wall seconds, CPU seconds in all and in the top process alone."""

    wall: float
    cpu: float
    own_cpu: float
    started: float  # time.time() at the start

    def line(self, name: str) -> str:
        return (
            f"{name:<34} {self.wall:7.2f} s wall, CPU {self.cpu:6.2f} s "
            f"(tuner process {self.own_cpu:5.2f} s, workers {self.cpu - self.own_cpu:6.2f} s)"
        )


def _children_cpu(pid: int) -> float | None:
    """CPU seconds of the reaped children of ``pid`` (cutime + cstime), or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[13]) + int(fields[14])) / _CLOCK_TICKS


def timed(command: list[str], *, cwd: Path | None = None) -> Run:
    """Run ``command`` (its output discarded unless it fails); time it."""
    started = time.time()
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    children = [0.0]
    done = threading.Event()

    def sample() -> None:  # the last value before exit: every worker is reaped by then
        while not done.wait(0.05):
            value = _children_cpu(process.pid)
            if value is not None:
                children[0] = max(children[0], value)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert process.stderr is not None
    errors = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited with {process.returncode}:\n{errors.decode()}"
        )
    cpu = usage.ru_utime + usage.ru_stime
    return Run(wall=wall, cpu=cpu, own_cpu=max(0.0, cpu - children[0]), started=started)


def tune_command(out: Path, *arguments: str) -> list[str]:
    command = [sys.executable, "-m", "greedylr", "tune", "--no-progress", "--out", str(out)]
    return [*command, *arguments]


def best_of_abba(runs: dict[str, Any], repeats: int) -> tuple[dict[str, Run], dict[str, Any]]:
    """Call each of ``runs`` ``repeats`` times, alternating ABBA; keep each one's fastest run.

    Returns:
        The fastest :class:`Run` of each, and what its call returned beside it.
    """
    best: dict[str, Run] = {}
    extra: dict[str, Any] = {}
    names = list(runs)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            run, value = runs[name](repeat)
            if name not in best or run.wall < best[name].wall:
                best[name], extra[name] = run, value
    return best, extra


def load_study(out: Path) -> Any:
    """The Optuna study of a finished run folder (its journal, its study name)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend
    from optuna.storages.journal import JournalStorage

    launched = json.loads((out / "experiment.json").read_text())
    storage = JournalStorage(JournalFileBackend(launched["storage"]))
    return optuna.load_study(study_name=launched["study"], storage=storage)


class _Silent:
    def report(self, *, epoch: int, loss: float, **metrics: float) -> None:
        pass


def bare_loop(configs: list[dict[str, Any]], *, threads: int) -> float:
    """Seconds to train ``configs`` one after another in this process with ``threads``."""
    import torch

    from greedylr.tasks._digits import train

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        for config in configs:
            train(config, _Silent())
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(before)


def bare_loops_at_once(configs: list[dict[str, Any]], *, processes: int) -> float:
    """Seconds for ``processes`` forked processes to train a share of ``configs`` each."""
    context = multiprocessing.get_context("fork")  # torch, the task and its data are loaded
    share = [configs[index::processes] for index in range(processes)]
    start = time.perf_counter()
    children = [
        context.Process(target=bare_loop, args=(part,), kwargs={"threads": 1}) for part in share
    ]
    for child in children:
        child.start()
    for child in children:
        child.join()
    if any(child.exitcode != 0 for child in children):
        raise RuntimeError("A bare loop failed; see its traceback above.")
    return time.perf_counter() - start


def scaling(args: argparse.Namespace, scratch: Path) -> None:
    print(
        f"(a) digits-mlp, {args.trials} trials, random searcher, no early stopping "
        f"(best of {args.repeats}, ABBA)"
    )
    common = ["--task", "digits-mlp", "--trials", str(args.trials)]
    common += ["--early-stopping", "none", "--searcher", "random", "--seed", str(args.seed)]

    def tune(workers: int) -> Any:
        def run(repeat: int) -> tuple[Run, Path]:
            out = scratch / f"scaling-w{workers}-{repeat}"
            return timed(tune_command(out, *common, "--workers", str(workers))), out

        return run

    best, outs = best_of_abba({"2 workers": tune(2), "1 worker": tune(1)}, args.repeats)
    study = load_study(outs["1 worker"])
    configs = [t.user_attrs["config"] for t in study.get_trials() if "config" in t.user_attrs]
    bare_loop(configs[:2], threads=1)  # loads torch, the task, its data and torch._dynamo
    loops = {
        "one process": lambda: bare_loop(configs, threads=1),
        "two processes at once": lambda: bare_loops_at_once(configs, processes=2),
    }
    bare = {name: float("inf") for name in loops}
    for repeat in range(args.repeats):
        for name in list(loops) if repeat % 2 == 0 else list(loops)[::-1]:
            bare[name] = min(bare[name], loops[name]())
    cores = os.cpu_count() or 1
    probe = configs[: args.probe]
    at_one, at_all = (min(bare_loop(probe, threads=t) for _ in range(2)) for t in (1, cores))
    for name, run in best.items():
        print(run.line(f"greedylr tune, {name}"))
        print(f"  {phases(outs[name], run)}")
    for name, seconds in bare.items():
        print(f"{f'bare loop, {name}':<34} {seconds:7.2f} s wall ({len(configs)} configs)")
    one, two = bare["one process"], bare["two processes at once"]
    speedup = best["1 worker"].wall / best["2 workers"].wall
    print(f"2 workers: {speedup:.2f}x one worker (target >= 1.80)")
    print(f"bare loops: two processes {one / two:.2f}x one (the most 2 workers can get here)")
    print(
        f"2 workers: {best['2 workers'].wall / two:.2f}x the two bare loops' time "
        f"(+{best['2 workers'].wall - two:.2f} s)"
    )
    print(
        f"1 worker:  {best['1 worker'].wall / one:.2f}x the bare loop's time "
        f"(+{best['1 worker'].wall - one:.2f} s)"
    )
    print(
        f"a trial at {cores} torch threads (what --workers 1 uses): {at_all / at_one:.2f}x "
        f"its time at 1 thread ({len(probe)} configs, best of 2)"
    )


def startup(args: argparse.Namespace, scratch: Path) -> None:
    print(f"(b) quadratic, 2 trials of 1 epoch, 2 workers (best of {args.repeats}, ABBA)")
    arguments = ["--task", "quadratic", "--trials", "2", "--max-epochs", "1"]

    def tune(repeat: int) -> tuple[Run, Path]:
        out = scratch / f"startup-{repeat}"
        return timed(tune_command(out, *arguments)), out

    def imports(repeat: int) -> tuple[Run, None]:
        return timed([sys.executable, "-c", "import torch, optuna"]), None

    sides = {"greedylr tune": tune, "import torch, optuna": imports}
    best, outs = best_of_abba(sides, args.repeats)
    for name, run in best.items():
        print(run.line(name))
    ratio = best["greedylr tune"].wall / best["import torch, optuna"].wall
    print(f"the 2-trial run: {ratio:.2f}x `import torch, optuna` (target <= 2.00)")
    print_timeline(outs["greedylr tune"], best["greedylr tune"])


def _process_start(trial: Any) -> float | None:
    """When the process that ran ``trial`` started (its ``worker`` attribute), as time.time()."""
    ticks = (trial.user_attrs.get("worker") or {}).get("started")
    if ticks is None:
        return None
    boot = time.time() - float(Path("/proc/uptime").read_text().split()[0])
    return boot + ticks / _CLOCK_TICKS


def phases(out: Path, run: Run) -> str:
    """When the worker processes started, their first trials began and the last trial ended."""
    trials = [t for t in load_study(out).get_trials() if t.datetime_start is not None]
    by_process: dict[tuple[Any, Any], list[Any]] = {}
    for trial in trials:
        worker = trial.user_attrs.get("worker") or {}
        by_process.setdefault((worker.get("pid"), worker.get("started")), []).append(trial)
    starts = [_process_start(group[0]) for group in by_process.values()]
    started = sorted(start - run.started for start in starts if start is not None)
    firsts = sorted(
        min(t.datetime_start.timestamp() for t in group) - run.started
        for group in by_process.values()
    )
    ends = [t.datetime_complete.timestamp() for t in trials if t.datetime_complete]
    last = max(ends) - run.started if ends else float("nan")
    return (
        f"worker processes started at {', '.join(f'{s:.2f}' for s in started)} s; their first "
        f"trials at {', '.join(f'{s:.2f}' for s in firsts)} s; the last trial ended at "
        f"{last:.2f} s, the command at {run.wall:.2f} s"
    )


def print_timeline(out: Path, run: Run) -> None:
    """When each worker started and each trial ran, in seconds after the command started."""

    def at(moment: datetime.datetime | None) -> str:
        return f"{moment.timestamp() - run.started:5.2f}" if moment else "  -  "

    print(f"  timeline of the fastest run (s after start; it ended at {run.wall:.2f}):")
    for trial in load_study(out).get_trials():
        start = _process_start(trial)
        process = f"{start - run.started:5.2f}" if start is not None else "  -  "
        print(
            f"    trial {trial.number} ({trial.state.name.lower()}): its worker process "
            f"started at {process}, the trial ran {at(trial.datetime_start)} - "
            f"{at(trial.datetime_complete)}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=120, help="trials of (a)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side (best kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe", type=int, default=10, help="configs timed per thread count")
    parser.add_argument("--parts", choices=("scaling", "startup", "both"), default="both")
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f} at the start")
    with tempfile.TemporaryDirectory() as folder:
        if args.parts in ("scaling", "both"):
            scaling(args, Path(folder))
        if args.parts in ("startup", "both"):
            startup(args, Path(folder))
    print(f"load average {os.getloadavg()[0]:.2f} at the end (other work skews the seconds)")


if __name__ == "__main__":
    main()
