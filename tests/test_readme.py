"""The README's two commands for a fresh machine are exactly what CI runs."""

from __future__ import annotations

import re
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent


def _fresh_machine_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## On a fresh machine", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_ci_runs_the_readme_install_and_test_commands() -> None:
    commands = _fresh_machine_commands()
    assert len(commands) == 2, commands
    install_and_run, test = commands
    assert install_and_run.endswith(" && greedylr tune --task digits-mlp")
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install_and_run in ci_lines, "CI does not run the README's first command verbatim"
    assert ci_lines.index(install_and_run) < len(ci_lines) - 1
    assert ci_lines[-1] == test


def test_the_engines_table_is_what_the_backends_declare() -> None:
    from greedylr.backends._registry import capability_table

    readme = (ROOT / "README.md").read_text()
    assert capability_table() in readme, "regenerate the README's engines table"
