"""The front door's shared parts (``tasks.py`` holds the tasks): settings from options, one route,
the summary and the exit code, cancellation, and usage errors that exit 2.

Exit codes: 0 every image done; 1 an image failed (or a failure outside any image); 2 a configuration
or usage error; 130 / 143 cancelled by SIGINT / SIGTERM.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

from invoke import Exit
from invoke import task as invoke_task
from invoke.tasks import Task as InvokeTask
from invoke.exceptions import ParseError
from invoke.program import Program

from . import cancel
from .oci.errors import HintedError
from .settings.load import ConfigError, Settings, load_settings
from .settings.variables import BY_OPTION, option_help

EXIT_FAILED, EXIT_USAGE = 1, 2


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def checkout() -> Path | None:
    """The clone of arcmirror this code runs from (with tests/, benchmarks/, pyproject.toml), if it does."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "tests").is_dir() else None


def helps(*options: str, **extra: str) -> dict[str, str]:
    """``--help`` texts: the options that set a variable take theirs from the variable table."""
    return {**{name: option_help(name) for name in options}, **extra}


def settings_from_options(*, require_target: bool = True, check_credentials: bool = True,
                          **options: Any) -> Settings:
    """Settings with task options on top (keyword: the option's name, ``report_dir``...); exit 2 on a problem.

    Warnings (a ``.env`` value that lost an unset ``$VAR``) are said; the CI is told what to mask.
    """
    from .runs import ci

    overrides = {}
    for name, value in options.items():
        variable = BY_OPTION[name.replace("_", "-")]
        overrides[variable.name] = None if value is None or value is False else \
            "true" if value is True else str(value)
    try:
        settings = load_settings(overrides=overrides, require_target=require_target,
                                 check_credentials=check_credentials)
    except ConfigError as exc:
        raise Exit(exc.render(), code=EXIT_USAGE) from None
    if settings.trust_dir is not None or settings.cosign_keys:
        from .runs.wiring import TrustError, trust_verifier

        try:
            trust_verifier(settings, settings.source.registry)  # the trust folder and keys read once, here
        except TrustError as exc:
            raise Exit(f"{exc.message}\n({exc.hint})", code=EXIT_USAGE) from None
    ci.announce_secrets(settings)
    for warning in settings.warnings:
        say(f"warning: {warning}")
    return settings


def route(settings: Settings, *, cleanup: bool = False, dry_run: bool = False, deep: bool = False):
    """The route MIRROR_ENGINE names (registry or docker); options it cannot honour exit 2."""
    from .runs.routes import UsageError, route_for

    try:
        return route_for(settings, say, progress, cleanup=cleanup, dry_run=dry_run, deep=deep)
    except UsageError as exc:
        raise Exit(str(exc), code=EXIT_USAGE) from None


def progress(total: int, total_bytes: int | None = None, quiet: bool = False):
    """Bars on a terminal, plain lines in a pipe or CI, nothing when ``quiet`` (a dry run)."""
    from .copy.copier import Progress
    from .runs.ci import in_ci
    from .runs.progress import make_progress

    if quiet:
        return nullcontext(Progress())
    return make_progress(total, total_bytes=total_bytes, ci=in_ci())


def plan(settings: Settings, path: str | None):
    """The plan a step works from: ``--plan``, else REPORT_DIR/plan.json, else a fresh discovery."""
    from .runs.discover import load_plan

    return load_plan(settings, Path(path) if path else None, say)


@contextmanager
def failures_exit_1() -> Iterator[None]:
    """A failure outside any one image (the tag list cannot be read): say it, exit 1; a setting found
    wrong only once the images were known (catalog names too long): exit 2."""
    try:
        yield
    except ConfigError as exc:
        raise Exit(exc.render(), code=EXIT_USAGE) from None
    except HintedError as exc:
        raise Exit(f"arcmirror: {exc.message}" + (f"\nwhat to do: {exc.hint}" if exc.hint else ""),
                   code=EXIT_FAILED) from None


def finish(*runs, as_json: bool = False) -> None:
    """Print each run's summary (or JSON), annotate the pipeline log, and exit 1 if anything failed."""
    from .runs import ci

    for run in runs:
        if as_json:
            print(json.dumps({"step": run.step, "ok": run.ok, "dry_run": run.dry_run,
                              "report": str(run.junit) if run.junit else None, **run.extra}, indent=2))
        else:
            print(run.summary())
        ci.annotate(run.step, run.cases)
        if run.junit is not None:
            failed = sum(not c.ok and not c.skipped for c in run.cases)
            ci.publish_summary(run.step, run.cases, f"{len(run.cases)} images, {failed} failed", run.junit.parent)
    code = max((run.exit_code for run in runs), default=0)
    if code:
        raise Exit(code=code)


def task(*args, **kwargs):
    """Invoke's ``@task``, for a task that a pipeline may cancel (SIGINT, then SIGTERM).

    On a signal the run stops starting images, abandons what is in flight without committing it,
    writes its reports (unfinished images are failed cases saying so), says it was cancelled, and
    the process exits with 130 (SIGINT) or 143 (SIGTERM); see arcmirror/cancel.py.
    """
    def decorate(body):
        @functools.wraps(body)
        def run(c, *a, **kw):
            cancel.install()
            try:
                body(c, *a, **kw)
            except Exit as exc:
                if not cancel.requested():
                    raise
                if exc.message:
                    say(exc.message)
            except Exception:
                if not cancel.requested():
                    raise
            if cancel.requested():
                say(f"arcmirror: cancelled by {cancel.signal_name()}, stopped {cancel.elapsed():.1f}s after it; "
                    "what was not done is a failed test case marked cancelled in the reports; run again to finish "
                    "(what was copied is not sent again)")
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(cancel.exit_code())  # threads still waiting on the network are not waited for

        return invoke_task(*args, klass=_Task, **kwargs)(run)

    return decorate


class _Task(InvokeTask):
    """Invoke's task, whose automatic short flag is a letter only: Invoke takes the first character of the
    option's name not yet taken, and once every letter of ``--trust-dir`` is, that is the ``-`` (a ``--`` flag)."""

    def arg_opts(self, name, default, taken_names):
        taken = set(taken_names) | {"-", "_"}
        return super().arg_opts(name, default, taken)


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
