"""The engines greedylr can run, by name: what each offers, and its class, imported on use.

Listing the engines, checking an experiment against one, and the ``--help`` of ``greedylr tune``
import no engine. A new engine is one :class:`BackendSpec` here and one module implementing
:class:`~greedylr.backends._backend.Backend`.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from greedylr._checks import int_parser
from greedylr._imports import MissingDependencyError
from greedylr.backends._backend import EARLY_STOPPING_ALIASES
from greedylr.backends._backend import EARLY_STOPPING_RULES
from greedylr.backends._backend import SEARCHER_NAMES
from greedylr.backends._backend import Backend
from greedylr.backends._backend import BackendSpec
from greedylr.backends._backend import Option


_positive_int = int_parser(1)
ASHA_KINDS = ("stopping", "promotion")
_non_negative_int = int_parser(0)


def _address(text: str) -> str:
    if not text or text != text.strip() or text == "ray://":
        raise ValueError(f"must be auto, HOST:PORT or ray://HOST:PORT, but got {text!r}")
    return text


def _asha_kind(text: str) -> str:
    if text not in ASHA_KINDS:
        raise ValueError(f"must be one of {list(ASHA_KINDS)}, but got {text!r}")
    return text


BACKENDS: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec(
            name="optuna",
            title="Optuna",
            extra="optuna",
            module="optuna",
            entry="greedylr.backends._optuna_backend:OptunaBackend",
            searchers=("tpe", "random", "gp", "cmaes", "qmc"),
            early_stopping=("hyperband", "asha", "median", "none"),
            default_early_stopping="hyperband",
            options=(
                Option(
                    "storage",
                    "an Optuna storage: a journal file (PATH.log or journal:PATH) or an RDB URL "
                    "such as postgresql://user@host/db (default: OUT/study.log)",
                    metavar="URL",
                    worker=True,
                ),
                Option(
                    "study",
                    "the study name (default: the run folder's name)",
                    metavar="NAME",
                    worker=True,
                ),
                Option(
                    "heartbeat",
                    "seconds between the heartbeats of trials on an RDB storage (default: 10)",
                    parse=_positive_int,
                    metavar="SECONDS",
                    worker=True,
                ),
            ),
            gpus=True,
            gpu_fractions=False,
            shared_storage=True,
        ),
        BackendSpec(
            name="ray",
            title="Ray Tune",
            extra="ray",
            module="ray.tune",
            entry="greedylr.backends._ray:RayBackend",
            searchers=("random", "tpe"),
            early_stopping=("asha", "hyperband", "median", "pbt", "none"),
            default_early_stopping="asha",
            options=(
                Option(
                    "address",
                    "attach to a running Ray cluster: auto (the one this machine belongs to), "
                    "HOST:PORT of its head, or ray://HOST:PORT (Ray Client, from outside the "
                    "cluster: the job runs there, the run folder stays here; default: start a "
                    "private Ray instance here)",
                    parse=_address,
                    metavar="ADDRESS",
                ),
                Option(
                    "max_failures",
                    "retry a crashed trial this many times, from its last checkpoint (default: 2)",
                    parse=_non_negative_int,
                    metavar="N",
                ),
            ),
            gpus=True,
            gpu_fractions=True,
            cpu_fractions=True,
            clusters=True,
        ),
        BackendSpec(
            name="syne-tune",
            title="Syne Tune",
            extra="syne-tune",
            module="syne_tune",
            entry="greedylr.backends._syne_tune:SyneTuneBackend",
            searchers=("random", "bo", "bohb", "asha-bore", "asha-cqr"),
            early_stopping=("asha", "hyperband", "median", "pbt", "none"),
            default_early_stopping="asha",
            options=(
                Option(
                    "asha_kind",
                    "how asha and hyperband stop a trial: stopping (it ends at a rung) or "
                    "promotion (it pauses at each rung and the best continue from their "
                    "checkpoint; default: stopping)",
                    parse=_asha_kind,
                    metavar="KIND",
                ),
            ),
            default_searcher="bohb",
            gpus=True,
            gpu_fractions=False,
        ),
    )
}
"""Every engine greedylr knows, installed or not."""


def backend_names() -> list[str]:
    """The names ``--backend`` takes."""
    return list(BACKENDS)


def backend_spec(name: str) -> BackendSpec:
    """The spec of the engine ``name``.

    Raises:
        ValueError: No such engine (the message lists them).
    """
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"`backend` must be one of {backend_names()}, but got backend={name!r}."
        ) from None


def is_installed(name: str) -> bool:
    """Whether the engine ``name`` can be imported (nothing is imported to tell)."""
    module = backend_spec(name).module
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def available_backends() -> list[str]:
    """The engines installed here; imports none of them."""
    return [name for name in BACKENDS if is_installed(name)]


def install_hint(name: str) -> str:
    """``pip install "greedylr[ray]"`` for the engine ``name``."""
    return f'pip install "greedylr[{backend_spec(name).extra}]"'


def load_backend(name: str) -> type[Backend]:
    """The :class:`Backend` class of the engine ``name``, importing its module.

    Raises:
        ValueError: No such engine.
        MissingDependencyError: The engine is not installed (the message names the pip command).
    """
    spec = backend_spec(name)
    if not is_installed(name):
        raise MissingDependencyError(
            f"The {spec.title} backend needs {spec.module.split('.')[0]!r}, which is not "
            f"installed; {install_hint(name)}."
        )
    module_name, _, class_name = spec.entry.partition(":")
    cls: type[Backend] = getattr(importlib.import_module(module_name), class_name)
    return cls


def offering(what: str, value: str) -> list[str]:
    """The engines that offer the searcher or early-stopping rule ``value``.

    Args:
        what: ``"searcher"`` or ``"early_stopping"``.
        value: Its name.
    """
    attribute = "searchers" if what == "searcher" else "early_stopping"
    return [spec.name for spec in BACKENDS.values() if value in getattr(spec, attribute)]


def with_option(option: str) -> list[str]:
    """The engines that offer the option ``option``."""
    return [spec.name for spec in BACKENDS.values() if spec.option(option) is not None]


def check_choice(spec: BackendSpec, what: str, value: str) -> str:
    """``value`` (an alias resolved) if ``spec``'s engine offers it.

    Args:
        spec: The engine.
        what: ``"searcher"`` or ``"early_stopping"``.
        value: The name asked for.

    Raises:
        ValueError: The engine does not offer it; the message names the engines that do.
    """
    if what == "searcher":
        offered, known = spec.searchers, SEARCHER_NAMES
    else:
        offered, known = spec.early_stopping, EARLY_STOPPING_RULES
        value = EARLY_STOPPING_ALIASES.get(value, value)
    if value in offered:
        return value
    if value not in known and value not in offering(what, value):
        raise ValueError(f"`{what}` must be one of {sorted(known)}, but got {what}={value!r}.")
    others = [name for name in offering(what, value) if name != spec.name]
    elsewhere = f"; {_engines(others)} {_offer(others)} it" if others else ""
    raise ValueError(
        f"The {spec.title} backend does not offer {what}={value!r}; it offers "
        f"{list(offered)}{elsewhere}."
    )


def check_options(spec: BackendSpec, options: dict[str, Any]) -> dict[str, Any]:
    """Parse ``spec``'s engine options; refuse options it does not offer.

    ``None`` values are dropped (the option was not given). A ``str`` value is parsed as the
    command line parses it; other values are parsed from their ``str``.

    Raises:
        ValueError: An option the engine does not offer (naming the engines that do), or a bad
            value (naming the option).
    """
    parsed: dict[str, Any] = {}
    for name, value in options.items():
        if value is None:
            continue
        option = spec.option(name)
        if option is None:
            others = with_option(name)
            where = (
                f"; {_engines(others)} {_offer(others)} it"
                if others
                else f"; its options are {[o.name for o in spec.options]}"
            )
            raise ValueError(f"The {spec.title} backend has no option `{name}`{where}.")
        try:
            parsed[name] = option.parse(value if isinstance(value, str) else str(value))
        except ValueError as error:
            raise ValueError(f"`{name}` {error}".rstrip(".") + ".") from None
    return parsed


def _offer(names: list[str]) -> str:
    return "offers" if len(names) == 1 else "offer"


def _engines(names: list[str]) -> str:
    titles = [f"{BACKENDS[name].title} (--backend {name})" for name in names]
    return " and ".join(titles)


def capability_table() -> str:
    """A Markdown table of what each engine offers (the README shows it)."""
    names = list(BACKENDS)
    header = "| | " + " | ".join(BACKENDS[name].title for name in names) + " |"
    rows = [header, "|---|" + "---|" * len(names)]

    def row(label: str, cell: Any) -> None:
        rows.append(f"| {label} | " + " | ".join(cell(BACKENDS[n]) for n in names) + " |")

    for searcher in SEARCHER_NAMES:
        row(f"`--searcher {searcher}`", lambda s, v=searcher: "yes" if v in s.searchers else "")
    for rule in EARLY_STOPPING_RULES:

        def offers(spec: BackendSpec, rule: str = rule) -> str:
            if rule not in spec.early_stopping:
                return ""
            return "default" if rule == spec.default_early_stopping else "yes"

        row(f"`--early-stopping {rule}`", offers)
    every_option = sorted({option.name for spec in BACKENDS.values() for option in spec.options})
    for name in every_option:
        flag = "--" + name.replace("_", "-")
        row(f"`{flag}`", lambda s, n=name: "yes" if s.option(n) else "")
    row("`--gpus-per-trial`", lambda s: "fractions" if s.gpu_fractions else "whole GPUs")
    row("`greedylr worker` (other machines)", lambda s: "yes" if s.shared_storage else "")
    row("attach to a cluster", lambda s: "yes" if s.clusters else "")
    return "\n".join(rows)
