"""A comparison's plan: what it runs, checked once, kept in ``compare.json`` to resume it."""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from greedylr._checks import check_int


PROTOCOLS = {
    "asha": "the backend's searcher with ASHA early stopping (multi-fidelity)",
    "full": "random search, every trial to the last epoch (full fidelity): no horizon bias",
}
"""The tuning protocols; ``both`` runs each. Every arm gets the same epoch budget in each."""

PROTOCOL_CHOICES = ("asha", "full", "both")
DEFAULTS_PROTOCOL = "defaults"
"""The protocol name of the untuned-defaults arms (no tuning: the schedule's defaults)."""
REFERENCE = "greedylr"
"""The schedule every other arm is compared with."""
RETRAIN_SEED_OFFSET = 1000
"""Retraining seeds are ``seed + 1000 + k``: never a tuning study's seed (``seed + study``)."""
MAX_STUDIES = 100


@dataclass(frozen=True)
class Plan:
    """Everything that decides what a comparison runs (not how fast, nor how it is analysed).

    Args:
        task: A built-in task name or ``package.module:function``.
        function: The trial function's import path.
        schedules: The arms, in order.
        backend: The engine every study runs on.
        max_epochs: The epochs of a full trial, and of every retraining run.
        budget_epochs: The epochs each study may spend tuning.
        studies: Tuning studies per arm and protocol (seeds ``seed``, ``seed + 1``, ...).
        seeds: Fresh training seeds each study's best config is retrained with.
        protocols: ``asha`` and/or ``full`` (see :data:`PROTOCOLS`).
        searcher: The searcher of the ``asha`` protocol (``full`` samples at random).
        min_epochs: ASHA's first rung.
        reduction_factor: ASHA keeps 1 in this many trials at each rung.
        seed: The base seed.
    """

    task: str
    function: str
    schedules: tuple[str, ...]
    backend: str
    max_epochs: int
    budget_epochs: int
    studies: int
    seeds: int
    protocols: tuple[str, ...]
    searcher: str
    min_epochs: int
    reduction_factor: int
    seed: int

    def __post_init__(self) -> None:
        for name in ("max_epochs", "budget_epochs", "studies", "seeds", "min_epochs"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("reduction_factor", self.reduction_factor, minimum=2)
        check_int("seed", self.seed, minimum=0)
        if self.studies > MAX_STUDIES:
            raise ValueError(f"`studies` must be <= {MAX_STUDIES}, but got {self.studies}.")
        if self.budget_epochs < self.max_epochs:
            raise ValueError(
                "`budget_epochs` must be >= `max_epochs` (one full trial: the untuned defaults), "
                f"but got budget_epochs={self.budget_epochs} with max_epochs={self.max_epochs}."
            )
        if self.min_epochs > self.max_epochs:
            raise ValueError(
                "`min_epochs <= max_epochs` must hold, but got "
                f"(min_epochs={self.min_epochs}, max_epochs={self.max_epochs})."
            )

    @property
    def study_seeds(self) -> list[int]:
        """The seed of each tuning study."""
        return [self.seed + study for study in range(self.studies)]

    @property
    def retrain_seeds(self) -> list[int]:
        """The fresh training seeds of the retraining runs."""
        return [self.seed + RETRAIN_SEED_OFFSET + k for k in range(self.seeds)]

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready values."""
        data = asdict(self)
        data["schedules"], data["protocols"] = list(self.schedules), list(self.protocols)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        values["schedules"] = tuple(values["schedules"])
        values["protocols"] = tuple(values["protocols"])
        return cls(**values)


def parse_schedules(schedules: str | Sequence[str]) -> tuple[str, ...]:
    """``"greedylr,cosine,sgd-hd"`` or a sequence -> checked, unique names, GreedyLR included.

    A name is a registered schedule or a method that adapts or replaces the schedule
    (:func:`greedylr.searchers.tunable_schedules`).

    Raises:
        ValueError: An unknown schedule, a repeated one, or no GreedyLR among them.
    """
    from greedylr.searchers import tunable_schedules

    names = schedules.split(",") if isinstance(schedules, str) else list(schedules)
    names = [str(name).strip() for name in names if str(name).strip()]
    known = tunable_schedules()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"`schedules` must be among {known}, but got {', '.join(map(repr, unknown))}."
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"`schedules` names each schedule once, but got {repeated} twice.")
    if REFERENCE not in names:
        raise ValueError(
            f"`schedules` must include {REFERENCE!r} (the arm compared), got {names}."
        )
    if len(names) < 2:
        raise ValueError(f"`schedules` needs a baseline besides {REFERENCE!r}, but got {names}.")
    return tuple(names)


def parse_protocol(protocol: str) -> tuple[str, ...]:
    """``asha``, ``full`` or ``both`` -> the protocols run."""
    if protocol not in PROTOCOL_CHOICES:
        raise ValueError(
            f"`protocol` must be one of {list(PROTOCOL_CHOICES)}, but got {protocol=}."
        )
    return tuple(PROTOCOLS) if protocol == "both" else (protocol,)


def read_plan(out: Path) -> dict[str, Any] | None:
    """``compare.json`` of ``out`` (``None``: none yet).

    Raises:
        ValueError: The file is not one greedylr wrote.
    """
    path = out / "compare.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        Plan.from_dict(data["plan"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"Cannot read {str(path)!r}: {error}") from None
    return dict(data)


def check_same_plan(out: Path, plan: Plan) -> None:
    """Refuse a folder that holds another comparison; the same plan continues it.

    Raises:
        ValueError: ``compare.json`` holds another plan.
    """
    stored = read_plan(out)
    if stored is None:
        return
    old = stored["plan"]
    new = plan.to_dict()
    if old != new:
        changed = sorted(key for key in new if old.get(key) != new[key])
        raise ValueError(
            f"The folder {str(out)!r} (--out) holds another comparison (it differs in "
            f"{', '.join(changed)}); give another --out, or the same settings to continue it."
        )


def atomic_write(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON (NaN and infinities as ``null``), atomically."""
    atomic_write(path, json.dumps(_plain(data), indent=2, sort_keys=True) + "\n")


def read_retrain_record(path: Path) -> dict[str, Any]:
    """A retraining record as :func:`write_json` wrote it, the ``null``s of its history (a
    diverged run's NaN or infinite losses) read back as NaN."""
    record = dict(json.loads(path.read_text()))
    record["history"] = [
        {key: math.nan if value is None else value for key, value in row.items()}
        for row in record.get("history", [])
    ]
    return record


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, "item"):  # NumPy scalars
        return _plain(value.item())
    return value
