"""A study shared through PostgreSQL: one tuner and extra workers that join it.

The same works across machines: run ``greedylr worker --storage URL --study NAME`` anywhere that
reaches the database. Needs the ``optuna`` and ``postgres`` extras and a PostgreSQL server.
Run: ``python examples/shared_postgres_study.py [--smoke] [--storage URL]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import optuna

import greedylr


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few trials, then drop the study")
    parser.add_argument("--storage", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--extra-workers", type=int, default=2)
    args = parser.parse_args(argv)
    name = f"greedylr-example-{uuid.uuid4().hex[:8]}"

    # Extra workers (here local processes; on a cluster, other machines) join once it exists.
    command = [sys.executable, "-m", "greedylr", "worker", "--storage", args.storage]
    joiners: list[subprocess.Popen[bytes]] = []

    def join_when_created() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not joiners:
            if name in optuna.get_all_study_names(storage=args.storage):
                joiners.extend(
                    subprocess.Popen([*command, "--study", name, "--threads", "1"])
                    for _ in range(args.extra_workers)
                )
            time.sleep(0.2)

    launcher = threading.Thread(target=join_when_created, daemon=True)
    launcher.start()
    try:
        result = greedylr.tune(
            "quadratic",
            n_trials=12 if args.smoke else 200,
            workers=1,
            storage=args.storage,
            study=name,
            out=tempfile.mkdtemp(prefix="greedylr-"),
        )
        launcher.join()
        for process in joiners:
            process.wait()
        study = optuna.load_study(study_name=name, storage=args.storage)
        pids = {t.user_attrs["worker"]["pid"] for t in study.trials if "worker" in t.user_attrs}
        print(f"{len(result.trials)} trials run by {len(pids)} worker processes")
        print(f"best loss {result.best_loss:.5f} (trial {result.best_trial})")
    finally:
        if args.smoke:
            optuna.delete_study(study_name=name, storage=args.storage)


if __name__ == "__main__":
    main()
