"""``python -m greedylr``: the ``greedylr`` command."""

from greedylr.cli import run


run()
