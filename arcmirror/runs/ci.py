"""Pipeline integration: GitHub Actions and Azure Pipelines logging commands and job summaries.

Under GitHub Actions (``GITHUB_ACTIONS=true``): ``::add-mask::`` for secret-derived values,
``::error::`` per failed image, a Markdown summary appended to ``$GITHUB_STEP_SUMMARY``.
Under Azure Pipelines (``TF_BUILD``): ``##vso[task.setvariable ...;issecret=true]`` to register
secrets, ``##vso[task.logissue type=error]`` per failed image, and the summary uploaded with
``##vso[task.uploadsummary]``.

Which secrets are announced: the pipeline's own secret variables are masked by the CI already, and
printing them again would put them in our output; so arcmirror announces only what it derives
(the base64 ``user:password`` of Basic auth) and passwords read from a ``.env`` file, which the CI
cannot know are secret.
"""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path
from typing import Mapping, Sequence, TextIO

from ..settings.load import Settings
from .report import Case


def in_ci(environ: Mapping[str, str] | None = None) -> bool:
    """Is this a pipeline job (any CI sets CI; GitHub Actions and Azure Pipelines set their own too)?"""
    environ = os.environ if environ is None else environ
    return any(environ.get(k, "").lower() in ("true", "1") for k in ("CI", "GITHUB_ACTIONS", "TF_BUILD"))


def platform(environ: Mapping[str, str] | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    if environ.get("GITHUB_ACTIONS", "").lower() == "true":
        return "github"
    if environ.get("TF_BUILD", "").lower() in ("true", "1"):
        return "azure"
    return None


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def _az(text: str) -> str:
    return text.replace("%", "%AZP25").replace("\r", "%0D").replace("\n", "%0A").replace("]", "%5D").replace(";", "%3B")


def announce_secrets(settings: Settings, environ: Mapping[str, str] | None = None, out: TextIO | None = None) -> None:
    """Tell the CI which values to mask (see the module docstring for which)."""
    environ = os.environ if environ is None else environ
    kind = platform(environ)
    if kind is None:
        return
    out = out or sys.stdout
    for endpoint in (settings.source, settings.target):
        if not (endpoint.username and endpoint.password):
            continue
        values = [base64.b64encode(f"{endpoint.username}:{endpoint.password.reveal()}".encode()).decode()]
        variable = f"{endpoint.prefix}_PASSWORD"
        from_env_file = variable not in environ
        if from_env_file:
            values.append(endpoint.password.reveal())
        for value in values:
            if kind == "github":
                print(f"::add-mask::{_gh_data(value)}", file=out)
            else:
                print(f"##vso[task.setvariable variable=ARCMIRROR_MASK_{variable};issecret=true]{_az(value)}", file=out)
    out.flush()


def annotate(step: str, cases: Sequence[Case], environ: Mapping[str, str] | None = None,
             out: TextIO | None = None) -> None:
    """One error annotation per failed image."""
    kind = platform(environ)
    if kind is None:
        return
    out = out or sys.stdout
    for case in cases:
        if case.ok or case.skipped:
            continue
        text = f"{case.name}: {case.message or 'failed'}" + (f" -- {case.hint}" if case.hint else "")
        if kind == "github":
            print(f"::error title={_gh_property(f'arcmirror {step}: {case.name}')}::{_gh_data(text)}", file=out)
        else:
            print(f"##vso[task.logissue type=error]{_az(f'arcmirror {step}: {text}')}", file=out)
    out.flush()


def markdown_summary(step: str, cases: Sequence[Case], headline: str) -> str:
    failed = [c for c in cases if not c.ok and not c.skipped]
    lines = [f"### arcmirror {step}: {'✅' if not failed else '❌'} {headline}", "",
             "| image | result | detail |", "|---|---|---|"]
    for case in cases:
        result = "skipped" if case.skipped else "passed" if case.ok else "**failed**"
        detail = (case.message or "") if not case.ok or case.skipped else next(
            (d for d in case.details if d.startswith(("target digest:", "digest:", "status:"))), "")
        lines.append(f"| {case.name} | {result} | {detail.replace('|', '/')[:200]} |")
    return "\n".join(lines) + "\n"


def publish_summary(step: str, cases: Sequence[Case], headline: str, report_dir: Path,
                    environ: Mapping[str, str] | None = None, out: TextIO | None = None) -> None:
    """Append the Markdown summary to the job summary (GitHub) or upload it (Azure)."""
    environ = os.environ if environ is None else environ
    kind = platform(environ)
    if kind is None:
        return
    text = markdown_summary(step, cases, headline)
    if kind == "github" and environ.get("GITHUB_STEP_SUMMARY"):
        with open(environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    elif kind == "azure":
        path = report_dir / f"{step}-summary.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"##vso[task.uploadsummary]{path}", file=out or sys.stdout, flush=True)
