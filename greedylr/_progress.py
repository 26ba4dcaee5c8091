"""A progress bar for a tuning run: trials done / pruned / failed, best loss, elapsed, ETA."""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from typing import TextIO

from greedylr.backends._experiment import Experiment


class Progress:
    """Polls the study from a thread and redraws one line on stderr.

    On a terminal the line is redrawn in place; otherwise a line is printed when the count of
    done trials changes, at most every 5 seconds.
    """

    def __init__(
        self,
        experiment: Experiment,
        trials: Callable[[], list[Any]],
        enabled: bool = True,
        *,
        stream: TextIO | None = None,
        interval: float = 0.5,
    ) -> None:
        self._experiment = experiment
        self._trials = trials
        self._enabled = enabled
        self._stream = stream or sys.stderr
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = time.monotonic()
        self._done_at_start: int | None = None
        self._last_printed = (-1, 0.0)

    def __enter__(self) -> Progress:
        if self._enabled:
            self._start = time.monotonic()
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._draw(final=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._draw(final=False)
            except Exception:  # a storage hiccup must not kill the run
                continue

    def line(self) -> str:
        """The current progress line."""
        from greedylr.backends._optuna import census

        now = census(self._trials())
        total = self._experiment.n_trials
        if self._done_at_start is None:
            self._done_at_start = now.done
        elapsed = time.monotonic() - self._start
        finished_here = now.done - self._done_at_start
        remaining = max(0, total - now.done)
        eta = elapsed / finished_here * remaining if finished_here else math.nan
        width = 20
        filled = min(width, width * now.done // max(total, 1))
        best = f"{now.best_loss:.4g}" if math.isfinite(now.best_loss) else "-"
        return (
            f"[{'#' * filled}{'.' * (width - filled)}] {now.done}/{total} trials "
            f"(pruned {now.pruned}, failed {now.failed}, running {now.running}) "
            f"best {best} | {_clock(elapsed)} elapsed, ETA {_clock(eta)}"
        )

    def _draw(self, *, final: bool) -> None:
        text = self.line()
        if self._stream.isatty():
            self._stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            done = int(text.split("] ", 1)[1].split("/", 1)[0])
            last_done, last_time = self._last_printed
            now = time.monotonic()
            if done == last_done or (not final and now - last_time < 5.0):
                return
            self._last_printed = (done, now)
            self._stream.write(text + "\n")
        self._stream.flush()


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
