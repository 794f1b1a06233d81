"""Helpers for the Invoke front door (``tasks.py``): settings from options, exits, CI detection."""

from __future__ import annotations

import os
from typing import Mapping

from invoke import Exit
from invoke.exceptions import ParseError
from invoke.program import Program

from .config import ConfigError, Settings, load_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def settings_from_options(options: Mapping[str, str | None], **kwargs) -> Settings:
    """Load settings with task options on top; a configuration problem exits with code 2."""
    try:
        return load_settings(overrides=options, **kwargs)
    except ConfigError as exc:
        raise Exit(exc.render(), code=EXIT_USAGE) from None


def in_ci(environ: Mapping[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return any(environ.get(k, "").lower() in ("true", "1") for k in ("CI", "GITHUB_ACTIONS", "TF_BUILD"))


def usage_errors_exit_2() -> None:
    """Make Invoke's own argument errors (unknown option, missing value) exit 2, like our usage errors.

    Invoke exits 1 for them, which a pipeline cannot tell from "an image failed". This wraps one
    method of Invoke's Program; it is idempotent and only affects this process.
    """
    if getattr(Program.parse_tasks, "_arcmirror", False):
        return
    original = Program.parse_tasks

    def parse_tasks(self: Program) -> None:
        try:
            original(self)
        except ParseError as exc:
            raise Exit(f"{exc}\nRun 'invoke --help TASK' for the task's options.", code=EXIT_USAGE) from None

    parse_tasks._arcmirror = True  # type: ignore[attr-defined]
    Program.parse_tasks = parse_tasks  # type: ignore[method-assign]
