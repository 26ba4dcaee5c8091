"""GPUs for trials on this machine: each running trial gets its own, never shared.

Engines that place trials themselves (Optuna's forked workers, Syne Tune's trial processes) hand
each running trial one slot of :func:`gpu_slots` through ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def listed_gpus() -> tuple[list[str], str] | None:
    """The GPUs ``CUDA_VISIBLE_DEVICES`` lists (in order) and how it reads; None when unset."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return None
    return [entry.strip() for entry in listed.split(",") if entry.strip()], (
        f"CUDA_VISIBLE_DEVICES={listed!r}"
    )


def gpu_slots(
    visible: Sequence[str],
    workers: int,
    gpus_per_trial: float,
    *,
    source: str | None = None,
    backend: str = "optuna",
) -> list[str]:
    """The ``CUDA_VISIBLE_DEVICES`` of each worker that may start.

    Worker i gets ``visible[i*g : (i+1)*g]`` (``g = gpus_per_trial``): every GPU goes to one
    worker at most, so ``len(visible) // g`` workers start at most (fewer than ``workers``
    when the GPUs run out). ``g = 0``: every worker gets ``""`` (no GPU: the CPU).

    Args:
        visible: The GPUs to hand out (ids or UUIDs, as ``CUDA_VISIBLE_DEVICES`` lists them).
        workers: The workers asked for, >= 1.
        gpus_per_trial: GPUs per worker (a worker runs one trial at a time), a whole
            number >= 0.
        source: Where ``visible`` came from, for the error (default: the list itself).
        backend: The engine's name, for the error.

    Raises:
        ValueError: ``gpus_per_trial`` is not a whole number >= 0, or more than are visible.
    """
    whole = isinstance(gpus_per_trial, (int, float)) and not isinstance(gpus_per_trial, bool)
    if not (whole and float(gpus_per_trial).is_integer() and gpus_per_trial >= 0):
        raise ValueError(
            f"`gpus_per_trial` must be a whole number >= 0 with the {backend} backend, "
            f"but got {gpus_per_trial=}."
        )
    gpus_per_trial = int(gpus_per_trial)
    if gpus_per_trial == 0:
        return [""] * workers
    if gpus_per_trial > len(visible):
        seen = source or ",".join(visible) or "none"
        raise ValueError(
            f"`gpus_per_trial` must be at most the {len(visible)} GPUs visible ({seen}), "
            f"but got {gpus_per_trial=}."
        )
    count = min(workers, len(visible) // gpus_per_trial)
    return [
        ",".join(visible[index * gpus_per_trial : (index + 1) * gpus_per_trial])
        for index in range(count)
    ]
