"""Importing greedylr stays light, and every public name resolves."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest


PUBLIC_MODULES = [
    "greedylr",
    "greedylr.schedulers",
    "greedylr.searchers",
    "greedylr.backends",
    "greedylr.integrations",
]


def test_import_does_not_load_any_engine() -> None:
    code = (
        "import sys\n"
        f"for name in {PUBLIC_MODULES!r}: __import__(name)\n"
        "engines = {'optuna', 'ray', 'syne_tune', 'pytorch_lightning', 'lightning', "
        "'transformers', 'accelerate'}\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & engines)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "", f"engines imported by `import greedylr`: {result.stdout}"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_name_in_all_resolves(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None, name


def test_console_script_version_and_help() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "greedylr.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert version.stdout.startswith("greedylr ")
    import greedylr

    assert version.stdout.split()[1] == greedylr.__version__
    helped = subprocess.run(
        [sys.executable, "-m", "greedylr.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "usage: greedylr" in helped.stdout


def test_the_command_line_parses_without_torch() -> None:
    """``greedylr --help`` and the check of every flag do not pay for importing torch."""
    probe = (
        "import sys\n"
        "from greedylr.cli import build_parser\n"
        "build_parser().parse_args(['tune', '--task', 'digits-mlp', '--schedule', 'sgd-hd'])\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "False"


NEUTRAL_MODULES = [
    "greedylr._tune",
    "greedylr._progress",
    "greedylr._report",
    "greedylr.cli",
    "greedylr._cli_parser",
    "greedylr.backends._results",
    "greedylr.backends._experiment",
    "greedylr.backends._registry",
]


def test_tune_the_cli_the_bar_and_the_results_hold_no_engine_code() -> None:
    """Only the engines' own modules (named in the registry) import an engine's modules."""
    probe = (
        "import sys\n"
        f"for name in {NEUTRAL_MODULES!r}: __import__(name)\n"
        "from greedylr.cli import build_parser; build_parser()\n"
        "engines = {'optuna', 'ray', 'syne_tune', 'pytorch_lightning', 'lightning', "
        "'transformers', 'accelerate'}\n"
        "loaded = {m for m in sys.modules if m.split('.')[0] in engines}\n"
        "loaded |= {m for m in sys.modules if m.startswith(('greedylr.backends._optuna', "
        "'greedylr.backends._ray', 'greedylr.backends._syne'))}\n"
        "print(','.join(sorted(loaded)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "", f"engine modules imported: {result.stdout}"
    for name in NEUTRAL_MODULES:
        if name.endswith("_registry"):
            continue  # it names each engine's module, as a string, to import it on use
        source = importlib.util.find_spec(name).origin  # type: ignore[union-attr]
        text = open(source).read()  # noqa: PTH123, SIM115
        for engine in ("_optuna", "_ray", "_syne", "import optuna", "import ray"):
            assert engine not in text, f"{name} names {engine}"
