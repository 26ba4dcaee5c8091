"""Checks of user input shared by the Python calls: one wording for every parameter."""

from __future__ import annotations

from collections.abc import Callable


def check_int(name: str, value: object, *, minimum: int) -> None:
    """Refuse ``value`` unless it is an int (not a bool) >= ``minimum``.

    Raises:
        ValueError: ``"`name` must be an int >= minimum, but got name=value."``
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, but got {name}={value!r}.")


def int_parser(minimum: int) -> Callable[[str], int]:
    """A parser of the text of an int >= ``minimum`` (a command-line value).

    The parser raises ``ValueError("must be an int >= minimum, but got 'text'")``.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise ValueError(f"must be an int >= {minimum}, but got {text!r}")
        return value

    return parse
