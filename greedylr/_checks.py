"""Checks of user input shared by the Python calls: one wording for every parameter."""

from __future__ import annotations


def check_int(name: str, value: object, *, minimum: int) -> None:
    """Refuse ``value`` unless it is an int (not a bool) >= ``minimum``.

    Raises:
        ValueError: ``"`name` must be an int >= minimum, but got name=value."``
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, but got {name}={value!r}.")
