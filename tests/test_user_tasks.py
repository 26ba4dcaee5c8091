"""A user's own task: found in the current folder, declared, key-checked, named, fixed default LR.

Command-line behaviour runs as a real process.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import greedylr
from greedylr.backends import Experiment
from greedylr.backends import load_trial_function
from greedylr.schedulers import list_schedules
from greedylr.searchers import CategoricalParam
from greedylr.searchers import FloatParam
from greedylr.searchers import IntParam
from greedylr.searchers import greedylr_space
from greedylr.tasks import declare_task
from greedylr.tasks import list_tasks
from greedylr.tasks import resolve_task
from greedylr.tasks import task_slug
from tests.test_cli_input import assert_refused


pytest.importorskip("optuna")

# What the `greedylr` console script does: its sys.path holds the script's folder, not the
# current one (`python -m greedylr` would add the current folder and hide the bug).
_CONSOLE_SCRIPT = (
    "import os, sys; sys.path[:] = [p for p in sys.path if p not in ('', os.getcwd())]; "
    "from greedylr.cli import run; run()"
)

_PLAIN_TASK = """
def train(config, reporter):
    for epoch in range(1, config["epochs"] + 1):
        reporter.report(epoch=epoch, loss=(config["lr"] - 0.01) ** 2 + 1.0 / epoch)
"""

_DECLARED_TASK = """
from greedylr.tasks import declare_task


@declare_task(default_epochs=7, default_lr=0.05, config_keys=("width",), optimizer="sgd")
def train(config, reporter):
    for epoch in range(1, config["epochs"] + 1):
        reporter.report(epoch=epoch, loss=1.0 / epoch)
"""


def console_script(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``greedylr ARGV`` as the installed console script runs it, from ``cwd``."""
    return subprocess.run(
        [sys.executable, "-c", _CONSOLE_SCRIPT, *argv],
        capture_output=True, text=True, timeout=300, cwd=cwd,
    )  # fmt: skip


def _write(folder: Path, name: str, text: str) -> str:
    (folder / name).write_text(text)
    return str(folder / name)


# --- found in the current folder ---------------------------------------------------------


def test_a_task_module_in_the_current_folder_is_found(tmp_path: Path) -> None:
    _write(tmp_path, "mytask.py", _PLAIN_TASK)  # the default 2 workers import it too
    result = console_script(
        "tune", "--task", "mytask:train", "--max-epochs", "2", "--trials", "3",
        "--no-progress", "--out", "run", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Best loss" in result.stdout
    assert len((tmp_path / "run" / "trials.csv").read_text().splitlines()) == 1 + 3


@pytest.mark.parametrize("task", ["bad_syntax.py:train", "bad_syntax:train"])
def test_a_task_with_a_syntax_error_is_one_line_naming_file_and_line(
    task: str, tmp_path: Path
) -> None:
    _write(tmp_path, "bad_syntax.py", "\ndef train(config, reporter)\n    pass\n")
    result = console_script("tune", "--task", task, "--max-epochs", "2", cwd=tmp_path)
    line = assert_refused(result, "bad_syntax.py:2: SyntaxError: ", f"{task!r}")
    assert str(tmp_path / "bad_syntax.py") in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("task", ["raises_at_import.py:train", "raises_at_import:train"])
def test_a_task_module_that_raises_on_import_is_one_line(task: str, tmp_path: Path) -> None:
    source = "import math\nscale = math.pi * undefined_name\n\n\ndef train(config, reporter): ..."
    _write(tmp_path, "raises_at_import.py", source)
    result = console_script("tune", "--task", task, "--max-epochs", "2", cwd=tmp_path)
    assert_refused(
        result,
        "raises_at_import",
        "NameError: name 'undefined_name' is not defined",
        "raises_at_import.py:2",
    )
    assert not (tmp_path / "runs").exists()


def test_a_task_file_fixed_after_an_error_imports(tmp_path: Path) -> None:
    task = _write(tmp_path, "fixed_later.py", "raise OSError('not yet')\n") + ":train"
    with pytest.raises(ValueError, match=r"fixed_later.py:train': not yet$"):
        load_trial_function(task)
    _write(tmp_path, "fixed_later.py", _PLAIN_TASK)  # a failed import leaves nothing behind
    assert load_trial_function(task).__name__ == "train"


def test_an_undeclared_task_without_max_epochs_names_the_flag(tmp_path: Path) -> None:
    _write(tmp_path, "mytask.py", _PLAIN_TASK)
    result = console_script("tune", "--task", "mytask:train", cwd=tmp_path)
    assert_refused(result, "'mytask:train' has no default epochs; give `--max-epochs`")
    assert not (tmp_path / "runs").exists()


# --- the space's keys --------------------------------------------------------------------


def test_a_space_key_no_one_takes_is_refused_before_the_first_trial(tmp_path: Path) -> None:
    space = _write(
        tmp_path,
        "space.json",
        '{"params": {"lr": {"type": "float", "low": 0.01, "high": 0.1, "log": true},'
        ' "colour": {"type": "categorical", "choices": ["red", "blue"]}}}',
    )
    result = console_script(
        "tune", "--task", "quadratic", "--space", space, "--max-epochs", "2", "--trials", "2",
        "--workers", "1", "--out", "run", cwd=tmp_path,
    )  # fmt: skip
    assert_refused(result, "`colour`", "'quadratic'", "'dimension'", "'momentum'", "'patience'")
    assert not (tmp_path / "run").exists()


def test_the_keys_of_schedule_optimizer_run_and_task_are_accepted() -> None:
    space = {
        "lr": FloatParam(0.01, 0.1, log=True),
        "dimension": IntParam(10, 100),  # the task's
        "momentum": FloatParam(0.0, 0.9),  # SGD's, the task's optimizer
        "factor": FloatParam(0.5, 0.9),  # GreedyLR's
        "seed": 3,
    }
    Experiment.create("quadratic", space=space, n_trials=2)


def test_the_space_s_optimizer_decides_which_optimizer_keys_are_valid() -> None:
    lr = FloatParam(0.01, 0.1, log=True)
    Experiment.create("nmf", space={"lr": lr, "optimizer": "adamw", "beta2": 0.98}, n_trials=2)
    with pytest.raises(ValueError, match=r"`momentum` is not a config key of task 'nmf'"):
        Experiment.create(
            "nmf", space={"lr": lr, "optimizer": "adamw", "momentum": 0.9}, n_trials=2
        )
    both = CategoricalParam(("sgd", "adamw"))
    Experiment.create(
        "nmf", space={"lr": lr, "optimizer": both, "momentum": 0.9, "beta2": 0.98}, n_trials=2
    )
    with pytest.raises(ValueError, match="Unknown optimizer 'lion'"):
        Experiment.create("nmf", space={"lr": lr, "optimizer": "lion"}, n_trials=2)


@pytest.mark.parametrize("task", [info.name for info in list_tasks()])
def test_every_default_space_passes_the_key_check(task: str) -> None:
    for schedule in list_schedules():
        experiment = Experiment.create(task, schedule=schedule, n_trials=2)
        assert experiment.schedule == schedule


def test_a_declared_user_task_is_key_checked_and_an_undeclared_one_is_not(
    tmp_path: Path,
) -> None:
    declared = _write(tmp_path, "declared.py", _DECLARED_TASK) + ":train"
    plain = _write(tmp_path, "plain.py", _PLAIN_TASK) + ":train"
    lr = FloatParam(0.01, 0.1, log=True)
    Experiment.create(declared, space={"lr": lr, "width": IntParam(1, 4)}, n_trials=2)
    with pytest.raises(ValueError, match=r"`height` is not a config key .* valid keys are \["):
        Experiment.create(declared, space={"lr": lr, "height": IntParam(1, 4)}, n_trials=2)
    Experiment.create(plain, space={"lr": lr, "height": IntParam(1, 4)}, n_trials=2, max_epochs=2)


# --- declaring a task --------------------------------------------------------------------


def test_a_declaration_gives_the_task_s_epochs_lr_keys_and_optimizer(tmp_path: Path) -> None:
    task = _write(tmp_path, "declared.py", _DECLARED_TASK) + ":train"
    info = resolve_task(task)
    assert (info.name, info.function) == (task, task)
    assert info.default_epochs == 7
    assert info.default_lr == 0.05
    assert info.config_keys == ("width",)
    assert info.optimizer == "sgd"
    experiment = Experiment.create(task, n_trials=2)
    assert experiment.max_epochs == 7
    assert experiment.default_config()["lr"] == 0.05


def test_an_undeclared_user_task_declares_nothing(tmp_path: Path) -> None:
    info = resolve_task(_write(tmp_path, "plain.py", _PLAIN_TASK) + ":train")
    assert (info.default_epochs, info.default_lr, info.config_keys, info.optimizer) == (
        None, None, None, None,
    )  # fmt: skip


def _function(config: dict[str, Any], reporter: Any) -> None:
    """A stand-in trial function."""


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"config_keys": "width"}, TypeError, r"`config_keys` must be a sequence of str"),
        ({"config_keys": ("width", 3)}, TypeError, r"`config_keys` must be a sequence of str"),
        ({"default_epochs": 0}, ValueError, r"`default_epochs` must be an int >= 1"),
        ({"default_epochs": 2.5}, ValueError, r"`default_epochs` must be an int >= 1"),
        ({"default_lr": -1.0}, ValueError, r"`default_lr` must be a finite number > 0"),
        ({"default_lr": math.nan}, ValueError, r"`default_lr` must be a finite number > 0"),
        ({"optimizer": "lion"}, ValueError, r"Unknown optimizer 'lion'"),
    ],
)
def test_a_bad_declaration_is_refused(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        declare_task(**arguments)(_function)


def test_declare_task_returns_the_function_itself() -> None:
    assert declare_task(default_epochs=3)(_function) is _function


# --- the untuned defaults trial ----------------------------------------------------------


def test_an_undeclared_task_s_default_lr_is_the_geometric_middle_of_the_space(
    tmp_path: Path,
) -> None:
    task = _write(tmp_path, "plain.py", _PLAIN_TASK) + ":train"
    configs = [
        Experiment.create(task, n_trials=2, max_epochs=2, seed=seed).default_config()
        for seed in (0, 1)
    ]
    assert configs[0] == configs[1]
    assert configs[0]["lr"] == pytest.approx(math.sqrt(1e-4 * 1.0))
    assert configs[0]["min_lr_ratio"] == pytest.approx(1e-3 / configs[0]["lr"])
    narrow = greedylr_space(lr=(1e-3, 0.3))
    config = Experiment.create(task, space=narrow, n_trials=2, max_epochs=2).default_config()
    assert config["lr"] == pytest.approx(math.sqrt(1e-3 * 0.3))
    linear = greedylr_space(lr=FloatParam(0.0, 0.2))  # low 0: the arithmetic middle
    config = Experiment.create(task, space=linear, n_trials=2, max_epochs=2).default_config()
    assert config["lr"] == pytest.approx(0.1)
    chosen = greedylr_space(lr=[0.3, 0.001, 0.01])  # choices: the middle one by value
    config = Experiment.create(task, space=chosen, n_trials=2, max_epochs=2).default_config()
    assert config["lr"] == 0.01


def test_a_declared_default_lr_is_clipped_into_the_space(tmp_path: Path) -> None:
    task = _write(tmp_path, "declared.py", _DECLARED_TASK) + ":train"
    narrow = greedylr_space(lr=(0.1, 0.5))
    assert Experiment.create(task, space=narrow, n_trials=2).default_config()["lr"] == 0.1


def test_two_runs_with_other_seeds_run_the_same_defaults_trial(tmp_path: Path) -> None:
    task = _write(tmp_path, "plain.py", _PLAIN_TASK) + ":train"
    first_configs = []
    for seed in (0, 1):
        result = greedylr.tune(
            task, n_trials=1, max_epochs=1, seed=seed, out=tmp_path / f"run{seed}", progress=False
        )
        first = result.trials.iloc[0]
        first_configs.append({k: v for k, v in first.items() if k.startswith("config.")})
    assert first_configs[0].pop("config.seed") == 0
    assert first_configs[1].pop("config.seed") == 1
    assert first_configs[0] == first_configs[1]
    assert first_configs[0]["config.lr"] == pytest.approx(0.01)


# --- the run folder's name ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "slug"),
    [
        ("quadratic", "quadratic"),
        ("digits-mlp", "digits-mlp"),
        ("/tmp/x/myscript.py:train", "myscript-train"),
        ("scripts/my script.py:train", "my-script-train"),
        ("mytask:train", "mytask-train"),
        ("pkg.mod:train", "mod-train"),
        ("pkg.mod:Trainer.fit", "mod-Trainer-fit"),
    ],
)
def test_task_slug(task: str, slug: str) -> None:
    assert task_slug(task) == slug


def test_a_script_function_names_its_run_folder_after_the_function(tmp_path: Path) -> None:
    script = tmp_path / "myscript.py"
    script.write_text(
        "import greedylr\n"
        "from greedylr.searchers import FloatParam\n\n"
        "def train(config, reporter):\n"
        "    for epoch in range(1, config['epochs'] + 1):\n"
        "        reporter.report(epoch=epoch, loss=(config['lr'] - 0.1) ** 2 + 1 / epoch)\n\n"
        "if __name__ == '__main__':\n"
        "    result = greedylr.tune(train, space={'lr': FloatParam(0.01, 1.0, log=True)},\n"
        "                           n_trials=2, max_epochs=2, progress=False)\n"
        "    print(result.out)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(Path("runs") / "myscript-train-greedylr-seed0")
    assert (tmp_path / "runs" / "myscript-train-greedylr-seed0" / "trials.csv").is_file()
