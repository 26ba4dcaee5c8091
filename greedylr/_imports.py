"""Lazy imports of the optional engines, with errors that name the pip command."""

from __future__ import annotations

import importlib
from types import ModuleType


_HINT = "{feature} requires `{module}`. Install it with `pip install greedylr[{extra}]`."


class MissingDependencyError(ImportError):
    """An optional dependency of greedylr is not installed."""


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install.

    Args:
        module: The module to import, e.g. ``"optuna"`` or ``"ray.tune"``.
        extra: The greedylr extra that installs it, e.g. ``"optuna"``.
        feature: What needs it, for the message, e.g. ``"to_optuna"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            _HINT.format(feature=feature, module=module, extra=extra)
        ) from error
