"""What the ``greedylr`` command says about its input, run as a real process.

Bad input is one line on stderr that names the flag the user typed (``--max-epochs``, never
``max_epochs``), exit code 2, no traceback, and nothing stored. ``--help`` lists every choice.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from greedylr.backends import Experiment
from greedylr.backends._backend import EARLY_STOPPING_RULES
from greedylr.backends._backend import SEARCHER_NAMES
from greedylr.backends._registry import BACKENDS
from greedylr.schedulers import list_schedules
from greedylr.tasks import list_tasks


pytest.importorskip("optuna")

PYTHON_NAMES = ("n_trials", "max_epochs", "min_epochs", "reduction_factor", "early_stopping")


def greedylr(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m greedylr ARGV`` (60 s at most: bad input must fail fast)."""
    return subprocess.run(
        [sys.executable, "-m", "greedylr", *argv],
        capture_output=True, text=True, timeout=60, cwd=cwd,
    )  # fmt: skip


def assert_refused(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 2 with one line on stderr holding every fragment; returns that line."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == 2, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--trials", "0"], ["argument --trials:", "must be an int >= 1, but got '0'"]),
        (["--max-epochs", "0"], ["argument --max-epochs:", ">= 1"]),
        (["--min-epochs", "0"], ["argument --min-epochs:", ">= 1"]),
        (["--min-epochs", "5", "--max-epochs", "3"], ["`--min-epochs <= --max-epochs`"]),
        (["--min-epochs", "21"], ["`--min-epochs <= --max-epochs`", "--max-epochs=20"]),
        (["--reduction-factor", "1"], ["argument --reduction-factor:", ">= 2"]),
        (["--workers", "0"], ["argument --workers:", ">= 1"]),
        (["--seed", "-1"], ["argument --seed:", "must be an int >= 0, but got '-1'"]),
        (["--heartbeat", "0"], ["argument --heartbeat:", ">= 1"]),
        (["--trials", "x"], ["argument --trials:", "must be an int >= 1, but got 'x'"]),
        (["--searcher", "bayes"], ["argument --searcher:", "'tpe'", "but got 'bayes'"]),
        (["--early-stopping", "x"], ["argument --early-stopping:", "'hyperband'"]),
        (["--schedule", "cosinus"], ["argument --schedule:", "'greedylr'", "but got 'cosinus'"]),
    ],
)
def test_tune_names_the_flag_and_stores_nothing(
    flags: list[str], fragments: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = greedylr("tune", "--task", "quadratic", *flags, "--out", str(out))
    line = assert_refused(result, *fragments)
    for name in PYTHON_NAMES:
        assert name not in line
    assert not out.exists()


def test_experiment_refuses_a_negative_seed() -> None:
    # Before: every worker died with numpy's "expected non-negative integer", exit 1 after 14 s.
    with pytest.raises(ValueError, match=r"`seed` must be an int >= 0, but got seed=-1\."):
        Experiment.create("quadratic", n_trials=3, seed=-1)


@pytest.mark.parametrize("top", ["0", "-1"])
def test_report_top_must_be_at_least_1(top: str, tmp_path: Path) -> None:
    result = greedylr("report", str(tmp_path), "--top", top)
    assert_refused(result, "argument --top:", f"must be an int >= 1, but got '{top}'")


@pytest.mark.parametrize("flag", ["--threads", "--heartbeat"])
def test_worker_counts_must_be_at_least_1(flag: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = greedylr("worker", "--study", "x", "--storage", url, flag, "0")
    assert_refused(result, f"argument {flag}:", "must be an int >= 1")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("storage", ["{}/X.log", "{}/X.journal", "journal:{}/X.log"])
def test_worker_refuses_a_journal_that_does_not_exist(storage: str, tmp_path: Path) -> None:
    url = storage.format(tmp_path / "sub")
    result = greedylr("worker", "--storage", url, "--study", "nosuch")
    assert_refused(result, "No journal file at", "/sub/X.", "(--storage)")
    assert list(tmp_path.iterdir()) == []  # neither the journal nor its folder


def test_an_unknown_backend_lists_the_backends(tmp_path: Path) -> None:
    result = greedylr("tune", "--task", "quadratic", "--backend", "keras")
    assert_refused(
        result,
        "argument --backend:",
        "must be one of ['optuna', 'ray', 'syne-tune'], but got 'keras'",
    )
    with pytest.raises(ValueError, match=r"must be one of \['optuna', 'ray', 'syne-tune'\]"):
        Experiment.create("quadratic", n_trials=3, backend="keras")


def test_a_backend_whose_engine_is_missing_names_its_pip_extra(tmp_path: Path) -> None:
    # Ray is installed here: `sys.modules["ray"] = None` makes this process see it missing,
    # as `import ray` does on a machine without it (ModuleNotFoundError).
    out = tmp_path / "run"
    argv = ["tune", "--task", "quadratic", "--backend", "ray", "--out", str(out)]
    code = (
        "import sys; sys.modules['ray'] = None; from greedylr.cli import main; "
        f"sys.exit(main({argv!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert_refused(result, "The Ray Tune backend needs 'ray'", 'pip install "greedylr[ray]"')
    assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (
            ["--backend", "ray", "--searcher", "gp"],
            ["Ray Tune backend does not offer --searcher='gp'", "['random', 'tpe']",
             "Optuna (--backend optuna) offers it"],
        ),
        (
            ["--early-stopping", "pbt"],
            ["Optuna backend does not offer --early-stopping='pbt'",
             "Ray Tune (--backend ray) and Syne Tune (--backend syne-tune) offer it"],
        ),
        (
            ["--backend", "ray", "--storage", "x.log"],
            ["The Ray Tune backend has no option `--storage`",
             "Optuna (--backend optuna) offers it"],
        ),
        (
            ["--address", "auto"],
            ["The Optuna backend has no option `--address`", "Ray Tune (--backend ray) offers it"],
        ),
        (
            ["--gpus-per-trial", "0.5"],
            ["Optuna backend gives each trial whole GPUs", "Ray Tune can share a GPU"],
        ),
        (
            ["--backend", "syne-tune", "--gpus-per-trial", "0.5"],
            ["Syne Tune backend gives each trial whole GPUs", "Ray Tune can share a GPU"],
        ),
        (
            ["--backend", "syne-tune", "--asha-kind", "pausing"],
            ["argument --asha-kind:", "must be one of ['stopping', 'promotion']"],
        ),
        (
            ["--cpus-per-trial", "0.5"],
            ["Optuna backend gives each trial whole cores", "Ray Tune can share a core"],
        ),
        (["--gpus-per-trial", "-1"], ["argument --gpus-per-trial:", "must be a number >= 0"]),
        (
            ["--backend", "ray", "--max-failures", "abc"],
            ["argument --max-failures:", "must be an int >= 0, but got 'abc'"],
        ),
        (["--cpus-per-trial", "0"], ["argument --cpus-per-trial:", "must be a number > 0"]),
        (["--backend", "ray", "--max-failures", "-1"], ["argument --max-failures:", ">= 0"]),
    ],
)  # fmt: skip
def test_what_an_engine_does_not_offer_is_refused_naming_the_engines_that_do(
    flags: list[str], fragments: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = greedylr("tune", "--task", "quadratic", "--out", str(out), *flags)
    assert_refused(result, *fragments)
    assert not out.exists()


def _help_entries(text: str) -> dict[str, str]:
    """``{flag or positional: its help text}`` from argparse's help output."""
    entries: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        option = re.match(r"^  (-{0,2}[a-z][\w-]*)(?:, --[\w-]+)?(?: [A-Z_]+)?(?:  +(.*))?$", line)
        if option and not line.startswith("   "):
            name = option.group(1)
            entries[name] = option.group(2) or ""
        elif name is not None and line.startswith(" " * 4) and line.strip():
            joiner = "" if entries[name].endswith("-") else " "
            entries[name] = (entries[name] + joiner + line.strip()).strip()
        elif not line.strip() or not line.startswith(" "):
            name = None
    return entries


def test_tune_help_lists_every_choice_and_explains_every_flag() -> None:
    result = greedylr("tune", "--help")
    assert result.returncode == 0, result.stderr
    entries = _help_entries(result.stdout)
    assert "--worker-index" not in entries
    expected = {action for action in _flags("tune")} | {"-h"}
    assert set(entries) == expected
    for flag, text in entries.items():
        assert len(text) > 10, f"{flag} has no help: {text!r}"
    for schedule in list_schedules():
        assert re.search(rf"\b{schedule}\b", entries["--schedule"]), schedule
    for task in list_tasks():
        assert task.name in entries["--task"]
    assert "module:function" in entries["--task"]
    for searcher in SEARCHER_NAMES:
        assert searcher in entries["--searcher"]
    for rule in EARLY_STOPPING_RULES:
        assert rule in entries["--early-stopping"]
    for backend in BACKENDS:
        assert backend in entries["--backend"]
    for spec in BACKENDS.values():  # each engine's options say whose they are
        for option in spec.options:
            assert entries[option.flag].startswith(f"({spec.title})")


@pytest.mark.parametrize("command", ["worker", "report", "tasks"])
def test_every_other_flag_has_help(command: str) -> None:
    result = greedylr(command, "--help")
    assert result.returncode == 0, result.stderr
    entries = _help_entries(result.stdout)
    assert "--worker-index" not in entries
    assert set(entries) == set(_flags(command)) | {"-h"}
    for flag, text in entries.items():
        assert len(text) > 10, f"{command} {flag} has no help: {text!r}"


def _flags(command: str) -> list[str]:
    from greedylr.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    sub = subparsers.choices[command]  # type: ignore[index]
    names = []
    for action in sub._actions:
        if action.help == "==SUPPRESS==" or action.dest == "help":
            continue
        names.append(max(action.option_strings, key=len) if action.option_strings else action.dest)
    return names


_NAN_TASK = """
def train(config, reporter):
    for epoch in range(1, config["epochs"] + 1):
        reporter.report(epoch=epoch, loss=float("nan"))
"""


def test_no_completed_trial_exits_1(tmp_path: Path) -> None:
    (tmp_path / "nan_task.py").write_text(_NAN_TASK)
    result = greedylr(
        "tune", "--task", "nan_task.py:train", "--max-epochs", "2", "--trials", "2",
        "--workers", "1", "--no-progress", "--out", "run", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "No trial completed; see trials.csv for why." in result.stderr
    assert (tmp_path / "run" / "trials.csv").is_file()


_BROKEN_TASK = """
def train(config, reporter):
    helper(config)

def helper(config):
    raise KeyError("hidden")
"""


def test_a_task_that_always_fails_prints_its_traceback_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "broken_task.py").write_text(_BROKEN_TASK)
    result = greedylr(
        "tune", "--task", "broken_task.py:train", "--max-epochs", "2", "--trials", "6",
        "--workers", "1", "--no-progress", "--out", "run", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback (most recent call last):" in result.stderr
    assert any('raise KeyError("hidden")' in line for line in lines)
    assert lines[-1].startswith("greedylr tune: failed: ")


def test_a_run_folder_of_another_job_is_refused_and_kept(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = greedylr(
        "tune", "--task", "quadratic", "--trials", "2", "--max-epochs", "2", "--workers", "1",
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    for other in (["--backend", "ray"], ["--seed", "1"], ["--early-stopping", "median"]):
        result = greedylr(
            "tune", "--task", "quadratic", "--trials", "2", "--max-epochs", "2", "--out",
            str(out), *other,
        )  # fmt: skip
        assert_refused(result, "holds another experiment", "give another --out")
        after = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
        assert after == before
    assert not (out / "ray").exists()


def test_an_alias_is_stored_by_its_name() -> None:
    experiment = Experiment.create("quadratic", n_trials=3, backend="ray", early_stopping="sha")
    assert experiment.early_stopping == "asha"
    same = Experiment.create("quadratic", n_trials=5, backend="ray", early_stopping="asha")
    assert experiment.same_job(same)
