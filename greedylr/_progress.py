"""A progress bar for a tuning run: trials done / pruned / failed, best loss, elapsed, ETA.

tqdm draws it; it is fed by :class:`~greedylr.backends._backend.Census` snapshots, which every
engine gives, so every engine shows the same bar.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm

from greedylr.backends._backend import Census
from greedylr.backends._experiment import Experiment


_FORMAT = "{n_fmt}/{total_fmt} trials |{bar:20}| {postfix} | {elapsed} elapsed, ETA {remaining}"
"""tqdm's ``bar_format``; ``{postfix}`` is replaced by the counts (see :func:`_bar_format`)."""


class Progress:
    """Polls the job from a thread, redraws one line on stderr, and saves results.

    On a terminal tqdm redraws the line in place; otherwise a line is printed when the count of
    done trials changes, at most every 5 seconds. ``on_change`` (the run folder's results
    writer) runs when the counts changed (done, running, ...), at most every ``save_every`` s,
    so ``greedylr report`` works on a study that is still running. ``lock`` is held while the
    thread reads the study or writes: a worker forked meanwhile copies no half-taken lock.

    Args:
        experiment: The job (its ``n_trials``).
        snapshot: Where the study stands now.
        enabled: Draw the bar (the results are saved either way).
        on_change: Called from the thread when the counts changed (at most every
            ``save_every`` seconds).
        stream: Where the bar goes (default: stderr).
        interval: Seconds between two looks at the study (default: 0.5 s on a terminal, where
            the bar moves; 2 s otherwise, sparing the CPU the trials run on).
        save_every: The least seconds between two calls of ``on_change``.
    """

    def __init__(
        self,
        experiment: Experiment,
        snapshot: Callable[[], Census],
        enabled: bool = True,
        *,
        on_change: Callable[[], None] | None = None,
        stream: TextIO | None = None,
        interval: float | None = None,
        save_every: float = 5.0,
    ) -> None:
        self._experiment = experiment
        self._snapshot = snapshot
        self._enabled = enabled
        self._on_change = on_change
        self._stream = stream or sys.stderr
        live = self._enabled and self._stream.isatty()
        self._interval = interval if interval is not None else 0.5 if live else 2.0
        self._save_every = save_every
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = time.monotonic()
        self._done_at_start: int | None = None
        self._printed = (-1, 0.0)  # done count and time of the last line in a log
        self._saved: tuple[Census | None, float] = (None, 0.0)  # counts and time of the last save
        self._bar: tqdm | None = None  # on a terminal

    def __enter__(self) -> Progress:
        self._start = time.monotonic()
        if self._enabled or self._on_change is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the thread (waiting for a save under way) and draw the last line; once."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join()
        if self._enabled:
            self._draw(self._snapshot(), final=True)
        if self._bar is not None:
            self._bar.close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                with self.lock:
                    now = self._snapshot()
                    if self._enabled:
                        self._draw(now, final=False)
                    self._maybe_save(now)
            except Exception:  # a storage hiccup must not kill the run
                continue

    def _maybe_save(self, now: Census) -> None:
        last, last_time = self._saved
        moment = time.monotonic()
        if self._on_change is None or now == last or moment - last_time < self._save_every:
            return
        self._saved = (now, moment)
        self._on_change()

    def line(self, now: Census | None = None) -> str:
        """The progress line for ``now`` (default: a fresh snapshot)."""
        now = now or self._snapshot()
        if self._done_at_start is None:
            self._done_at_start = now.done
        return tqdm.format_meter(
            min(now.done, self._experiment.n_trials),
            self._experiment.n_trials,
            time.monotonic() - self._start,
            bar_format=_bar_format(now),
            initial=self._done_at_start,  # the rate, hence the ETA, counts this run's trials
            ascii=not _unicode(self._stream),
        )

    def _draw(self, now: Census, *, final: bool) -> None:
        if self._stream.isatty():
            self._draw_bar(now)
            return
        last_done, last_time = self._printed
        moment = time.monotonic()
        if now.done == last_done or (not final and moment - last_time < 5.0):
            return
        self._printed = (now.done, moment)
        self._stream.write(self.line(now) + "\n")
        self._stream.flush()

    def _draw_bar(self, now: Census) -> None:
        if self._bar is None:
            self._done_at_start = now.done
            self._bar = tqdm(
                total=self._experiment.n_trials,
                initial=now.done,
                file=self._stream,
                bar_format=_bar_format(now),
                mininterval=0,
                dynamic_ncols=True,
                leave=True,
            )
            self._bar.start_t = time.time() - (time.monotonic() - self._start)
        self._bar.n = min(now.done, self._experiment.n_trials)
        self._bar.bar_format = _bar_format(now)
        self._bar.refresh()


def _bar_format(now: Census) -> str:
    """tqdm's line with the counts tqdm does not know: pruned, failed, running, best."""
    best = f"{now.best_loss:.4g}" if math.isfinite(now.best_loss) else "-"
    counts = f"pruned {now.pruned}, failed {now.failed}, running {now.running}, best {best}"
    return _FORMAT.replace("{postfix}", counts)


def _unicode(stream: TextIO) -> bool:
    encoding = getattr(stream, "encoding", None) or ""
    return encoding.lower().replace("-", "") == "utf8"
