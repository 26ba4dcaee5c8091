"""The ``greedylr`` command."""

from __future__ import annotations

import argparse
import sys

from greedylr._version import __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``greedylr`` command."""
    parser = argparse.ArgumentParser(
        prog="greedylr",
        description="Tune the GreedyLR learning-rate scheduler with Optuna, Ray Tune, Syne Tune.",
    )
    parser.add_argument("--version", action="version", version=f"greedylr {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its exit code."""
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
