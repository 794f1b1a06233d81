"""What every run shares: one JUnit test case per image (junit-xml), a JSON record, a plain summary.

A run (mirror, a step, verify, the air gap, the Docker engine route) ends in a :class:`StepRun`:
its cases, written by :func:`write_step` to ``STEP.xml`` and ``STEP.json``. The cases of an image
that could not be planned, or that a cancellation stopped, are made here, the same for every run.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .. import cancel
from ..copy.copier import Copier, ImageJob, ImageResult
from ..oci.errors import Cancelled, HintedError
from ..settings.load import Settings
from .plan import Plan, PlannedImage


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _details(result: ImageResult, source: str, target: str) -> str:
    lines = [
        f"source: {source}",
        f"target: {target}",
        f"status: {result.status}",
        f"source digest: {result.source_digest or '-'}",
        f"target digest: {result.digest or '-'}",
    ]
    if result.rewritten:
        lines.append("note: the index was filtered by MIRROR_PLATFORMS, so the target digest differs from the source")
    if result.platforms:
        lines.append(f"platforms: {', '.join(result.platforms)}")
    lines += [
        f"media type: {result.media_type or '-'}",
        f"bytes sent: {result.bytes_sent}",
        f"blobs copied: {result.blobs_copied}",
        f"blobs mounted: {result.blobs_mounted}",
        f"blobs skipped (already in target): {result.blobs_skipped}",
        f"manifests pushed: {result.manifests_pushed}",
        f"referrers (signatures, SBOMs, attestations): {result.referrers} found, {result.referrers_copied} copied",
        f"duration: {result.duration:.2f}s",
    ]
    if result.trust is not None:
        lines += result.trust.lines()
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    """Write a file so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Case:
    """One JUnit test case: an image in one step."""

    name: str
    step: str
    ok: bool
    details: list[str] = field(default_factory=list)
    duration: float = 0.0
    message: str | None = None
    hint: str | None = None
    skipped: bool = False
    cancelled: bool = False  # failed because the run was cancelled before this image was done
    facts: dict = field(default_factory=dict)  # what the step's JSON record says of this image, besides

    @classmethod
    def failed(cls, name: str, step: str, details: list[str], exc: HintedError, duration: float = 0.0) -> "Case":
        """A failed case saying what ``exc`` says (a cancellation is marked as one)."""
        return cls(name, step, False, details, duration, exc.message, exc.hint, cancelled=isinstance(exc, Cancelled))


def copy_case(step: str, result: ImageResult, source: str, target: str) -> Case:
    return Case(result.job.name, step, result.ok, _details(result, source, target).splitlines(),
                result.duration, result.error, result.hint, cancelled=result.status == "cancelled")


def junit(suite_name: str, cases: Sequence[Case]) -> str:
    """A JUnit document: one test case per image; failures say what went wrong and what to do."""
    from junit_xml import TestCase, TestSuite, to_xml_report_string

    out = []
    for c in cases:
        case = TestCase(name=c.name, classname=f"arcmirror.{c.step}", elapsed_sec=round(c.duration, 3),
                        stdout="\n".join(c.details))
        if c.skipped:
            case.add_skipped_info(message=c.message or "skipped")
        elif not c.ok:
            message = (c.message or "failed") + (f" -- {c.hint}" if c.hint else "")
            case.add_failure_info(message=message, output="\n".join(c.details),
                                  failure_type="cancelled" if c.cancelled else f"{c.step}-failed")
        out.append(case)
    # junit-xml's own pretty printing goes through minidom (milliseconds per case); ElementTree indents in C
    root = ET.fromstring(to_xml_report_string([TestSuite(suite_name, out)], prettyprint=False, encoding="utf-8"))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def record(results: Sequence[ImageResult], refs: dict[str, tuple[str, str]]) -> dict:
    """A JSON-friendly record of a run (for later steps, tools and people)."""
    images = []
    for r in results:
        source, target = refs[r.job.name]
        images.append({
            "name": r.job.name, "status": r.status, "source": source, "target": target,
            "source_digest": r.source_digest, "digest": r.digest, "media_type": r.media_type,
            "platforms": r.platforms, "rewritten": r.rewritten, "bytes_sent": r.bytes_sent,
            "blobs_copied": r.blobs_copied, "blobs_mounted": r.blobs_mounted, "blobs_skipped": r.blobs_skipped,
            "manifests_pushed": r.manifests_pushed, "referrers": r.referrers, "referrers_copied": r.referrers_copied,
            "duration": round(r.duration, 3),
            "error": r.error, "hint": r.hint,
            **({"signatures": r.trust.record()} if r.trust is not None else {}),
        })
    return {
        "images": images,
        "totals": {
            "images": len(results),
            "ok": sum(r.ok for r in results),
            "failed": sum(not r.ok for r in results),
            "bytes_sent": sum(r.bytes_sent for r in results),
        },
    }


def write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def summary(results: Sequence[ImageResult], elapsed: float, report: Path | None,
            cases: Sequence[Case] = ()) -> str:
    """The plain end-of-run summary: counts, bytes, and every failure with what to do."""
    copied = sum(r.status == "copied" for r in results)
    current = sum(r.status == "up-to-date" for r in results)
    sent = sum(r.bytes_sent for r in results)
    blobs = sum(r.blobs_copied for r in results)
    cases = list(cases) or [copy_case("", r, "", "") for r in results]
    cancelled = sum(c.cancelled for c in cases)
    total = max(len(results), len(cases))
    lines = [
        f"{total} images: {copied} copied, {current} already up to date, "
        f"{sum(not c.ok and not c.skipped for c in cases) - cancelled} failed"
        + (f", {cancelled} cancelled" if cancelled else "")
        + f"; {blobs} blobs ({human_bytes(sent)}) sent in {elapsed:.1f}s",
    ]
    lines += failure_lines(cases)
    if report is not None:
        lines.append(f"JUnit report: {report}")
    return "\n".join(lines)


def failure_lines(cases: Sequence[Case]) -> list[str]:
    """Each failed case with what to do; the cases a cancellation stopped, on one line."""
    lines = [f"FAILED {c.name}: {c.message}" + (f"\n       what to do: {c.hint}" if c.hint else "")
             for c in cases if not c.ok and not c.skipped and not c.cancelled]
    cancelled = [c.name for c in cases if c.cancelled]
    if cancelled:
        lines.append(f"CANCELLED before they were done ({len(cancelled)}): {', '.join(cancelled)}")
    return lines


def dry_run_summary(step: str, results: Sequence[ImageResult], cases: Sequence[Case]) -> str:
    """What a step would do; nothing was changed."""
    lines = [f"Dry run of {step}: nothing was changed, no report was written."]
    width = max((len(r.job.name) for r in results), default=10)
    for r in results:
        if r.status == "up-to-date":
            what = "up to date"
        elif r.ok:
            what = (f"would send {r.blobs_copied} blobs ({human_bytes(r.bytes_sent)}), mount {r.blobs_mounted}, "
                    f"push {r.manifests_pushed} manifests")
        else:
            what = f"FAILED: {r.error}"
        lines.append(f"  {r.job.name:<{width}}  {what}")
    done = {r.job.name for r in results}
    lines += [f"  {c.name:<{width}}  FAILED: {c.message}" for c in cases if not c.ok and c.name not in done]
    would = [r for r in results if r.status == "would-copy"]
    lines.append(f"Would send {sum(r.blobs_copied for r in would)} blobs, "
                 f"{human_bytes(sum(r.bytes_sent for r in would))}, for {len(would)} images; "
                 f"{sum(r.status == 'up-to-date' for r in results)} images up to date.")
    return "\n".join(lines)


@dataclass
class StepRun:
    step: str
    cases: list[Case]
    junit: Path | None
    elapsed: float
    results: list[ImageResult] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return all(c.ok or c.skipped for c in self.cases)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def summary(self) -> str:
        if self.dry_run:
            return dry_run_summary(self.step, self.results, self.cases)
        if self.results:
            text = summary(self.results, self.elapsed, self.junit, self.cases)
            return text if self.step == "mirror" else f"{self.step}: {text}"
        failed = [c for c in self.cases if not c.ok and not c.skipped and not c.cancelled]
        cancelled = sum(c.cancelled for c in self.cases)
        lines = [f"{self.step}: {len(self.cases)} images, {len(failed)} failed"
                 + (f", {cancelled} cancelled" if cancelled else "") + f" ({self.elapsed:.1f}s)"]
        lines += failure_lines(self.cases)
        lines.append(f"JUnit report: {self.junit}")
        return "\n".join(lines)


def write_step(settings: Settings, step: str, cases: list[Case], started: float,
               record: dict | None = None, results: Sequence[ImageResult] = (), dry_run: bool = False) -> StepRun:
    """Write ``STEP.xml`` (and ``STEP.json``) unless this is a dry run, which writes nothing."""
    path = None if dry_run else settings.report_dir / f"{step}.xml"
    record = dict(record or {})
    record["elapsed"] = round(time.monotonic() - started, 3)
    if path is not None:
        write_atomic(path, junit(f"arcmirror {step}", cases))
        write_json(settings.report_dir / f"{step}.json", record)
    return StepRun(step, cases, path, time.monotonic() - started, list(results), record, dry_run)


def whole_run_failed(settings: Settings, step: str, exc: HintedError, started: float) -> StepRun:
    """A failure before any image could start (e.g. the release tag cannot be read): every image of the
    set becomes a failed case with that message, so a pipeline still shows each image's result."""
    cases = [Case.failed(name, step, [f"image: {name}"], exc) for name in settings.images]
    return write_step(settings, step, cases, started, {"error": exc.message, "hint": exc.hint})


def unplanned_case(step: str, image: PlannedImage) -> Case:
    """The failed case, in any step, of an image that discover could not plan."""
    return Case(image.name, step, False, [f"source: {image.source}"], message=f"not planned: {image.error}",
                        hint=image.hint)


def cancelled_case(step: str, image: PlannedImage) -> Case:
    """The failed case of an image a cancellation stopped before its step was done with it."""
    return Case.failed(image.name, step, [f"source: {image.source}"], cancel.error("this image"))


def unplanned_cases(step: str, plan: Plan) -> list[Case]:
    return [unplanned_case(step, i) for i in plan.images if not i.ok]


def copy_step(settings: Settings, plan: Plan | None, step: str, copier: Copier, jobs: list[ImageJob],
              refs: dict[str, tuple[str, str]], started: float, preflight: Sequence[Case] = ()) -> StepRun:
    """Run the copier over ``jobs`` and write the step's reports (none in a dry run)."""
    results = copier.copy_all(jobs)
    cases = [copy_case(step, r, *refs[r.job.name]) for r in results] + list(preflight)
    if plan is not None:
        cases += unplanned_cases(step, plan)
    data = record(results, refs)
    if plan is not None:
        data["plan"] = plan.record()
    return write_step(settings, step, cases, started, data, results, dry_run=copier.dry_run)
