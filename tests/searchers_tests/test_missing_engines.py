from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from greedylr._imports import MissingDependencyError
from greedylr.searchers import FloatParam
from greedylr.searchers import suggest
from greedylr.searchers import to_optuna
from greedylr.searchers import to_ray
from greedylr.searchers import to_syne_tune


SPACE = {"lr": FloatParam(1e-4, 1e-1, log=True), "max_epochs": 20}


@pytest.mark.parametrize(
    ("module", "convert", "extra"),
    [
        ("optuna", to_optuna, "optuna"),
        ("optuna", lambda space: suggest(None, space), "optuna"),  # type: ignore[arg-type]
        ("ray.tune", to_ray, "ray"),
        ("syne_tune.config_space", to_syne_tune, "syne-tune"),
    ],
)
def test_converters_name_the_extra_to_install_when_the_engine_is_missing(
    monkeypatch: pytest.MonkeyPatch, module: str, convert: Callable[[Any], Any], extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError, match=re.escape(f"requires `{module}`.")) as caught:
        convert(SPACE)
    assert f"Install it with `pip install greedylr[{extra}]`." in str(caught.value)
    assert isinstance(caught.value, ImportError)


def test_importing_the_searchers_loads_no_engine() -> None:
    code = (
        "import sys, greedylr.searchers\n"
        "print(sorted(m for m in ('optuna', 'ray', 'syne_tune') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
