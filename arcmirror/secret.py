"""A string that never shows itself by accident."""

from __future__ import annotations


class Secret:
    """Wraps a password or token.

    ``str()``, ``repr()`` and f-strings give ``'****'``; only :meth:`reveal` gives the value,
    so a secret cannot reach a log line, an exception message or a report by accident.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('****')"

    def __str__(self) -> str:
        return "****"

    __format__ = lambda self, spec: "****"  # noqa: E731 - f"{secret}" must mask too

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self):  # pickling would write the value somewhere: refuse
        raise TypeError("a Secret cannot be pickled")
