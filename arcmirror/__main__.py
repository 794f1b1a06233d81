"""The ``arcmirror`` command, ``python -m arcmirror`` and ``arcmirror.pyz``: the tasks of tasks.py
(:mod:`arcmirror.tasks`), with the same options, exit codes and ``.env`` lookup (the current folder)."""

from __future__ import annotations

from typing import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """Run one task as ``arcmirror ARGS`` would (``argv`` without the program's name; default: the command line)."""
    from invoke import Program

    from . import __version__
    from .tasks import ns

    Program(namespace=ns, version=__version__, name="arcmirror", binary="arcmirror",
            binary_names=["arcmirror"]).run(["arcmirror", *argv] if argv is not None else None)


if __name__ == "__main__":
    main()
