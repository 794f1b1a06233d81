"""The release gate: every expected image has a passing verification in the reports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

VERIFY_CLASS = "arcmirror.verify"


@dataclass
class GateResult:
    ok: bool
    lines: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def render(self, limit: int = 20) -> str:
        shown = self.lines[:limit]
        if len(self.lines) > limit:
            shown.append(f"... and {len(self.lines) - limit} more")
        return "\n".join(shown)


def _find_plan(report_dir: Path) -> Path | None:
    root = report_dir / "plan.json"
    if root.is_file():
        return root
    return next(iter(sorted(report_dir.rglob("plan.json"))), None)


def _why_no_plan(report_dir: Path) -> str:
    """No plan: say what discover said when it failed, else that it was not run."""
    try:
        failure = ET.parse(report_dir / "discover.xml").getroot().find(".//testcase/failure")
    except (ET.ParseError, OSError):
        failure = None
    if failure is not None:
        return f"discover failed, so there is no plan: {(failure.get('message') or '')[:300]}"
    return f"no plan.json under {report_dir}: the expected images are unknown (run 'invoke discover')"


def _signers(report_dir: Path) -> dict[str, list[str]]:
    """Image name -> the signers whose signatures verify verified, from every verify.json under ``report_dir``."""
    found: dict[str, list[str]] = {}
    for path in sorted(report_dir.rglob("verify.json")):
        try:
            images = json.loads(path.read_text()).get("images") or []
        except (OSError, ValueError, AttributeError):
            continue
        for image in images:
            record = image.get("signatures") if isinstance(image, dict) else None
            if isinstance(record, dict):
                found.setdefault(str(image.get("name")), []).extend(
                    s for s in record.get("signers") or [] if isinstance(s, str))
    return {name: sorted(set(values)) for name, values in found.items()}


def gate(report_dir: Path) -> GateResult:
    """Read every JUnit file under ``report_dir`` (shards' sub-folders included) and judge the release."""
    problems: list[str] = []
    if not report_dir.is_dir():
        return GateResult(False, [f"GATE FAILED: the report folder {report_dir} does not exist",
                                  "run 'invoke discover' and 'invoke verify' (or gather the jobs' reports) first"])
    plan_path = _find_plan(report_dir)
    expected: list[str] = []
    tag = "?"
    if plan_path is None:
        problems.append(_why_no_plan(report_dir))
    else:
        try:
            plan = json.loads(plan_path.read_text())
            expected = [i["name"] for i in plan["images"]]
            tag = plan.get("tag", "?")
            if not expected:
                problems.append(f"the plan {plan_path} holds no images of release {tag}: nothing was mirrored "
                                "(check SOURCE_DOCKER_TAG and run 'invoke discover' again)")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"the plan {plan_path} is unreadable: {exc}")

    passed: dict[str, int] = {}
    failed: dict[str, str] = {}
    verify_files = 0
    other_failures: list[str] = []
    for path in sorted(report_dir.rglob("*.xml")):
        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, OSError) as exc:
            problems.append(f"report {path} is unreadable: {exc}")
            continue
        if root.tag not in ("testsuites", "testsuite"):
            problems.append(f"report {path} is not a JUnit report")
            continue
        cases = list(root.iter("testcase"))
        if any(c.get("classname") == VERIFY_CLASS for c in cases):
            verify_files += 1
        for case in cases:
            name = case.get("name") or "?"
            bad = case.find("failure") if case.find("failure") is not None else case.find("error")
            if case.get("classname") == VERIFY_CLASS:
                if bad is not None:
                    failed[name] = bad.get("message") or "failed"
                elif case.find("skipped") is None:
                    passed[name] = passed.get(name, 0) + 1
            elif bad is not None:
                other_failures.append(f"  ({path.name}) {name}: {(bad.get('message') or '')[:120]}")
    if verify_files == 0:
        problems.append(f"no verification report (verify.xml) under {report_dir}: run 'invoke verify'")
    for name in expected:
        if name in failed:
            problems.append(f"{name}: verification failed: {failed[name][:200]}")
        elif name not in passed:
            problems.append(f"{name}: no passing verification in any report")
    for name in sorted(set(failed) - set(expected)):
        problems.append(f"{name}: verification failed: {failed[name][:200]}")

    ok_count = sum(1 for n in expected if n in passed and n not in failed)
    head = (f"{'GATE PASSED' if not problems else 'GATE FAILED'}: release {tag}, "
            f"{ok_count} of {len(expected)} expected images verified, {verify_files} verification report(s)")
    lines = [head] + [f"  - {p}" for p in problems]
    signers = _signers(report_dir)
    if signers:
        lines.append("Who signed each image (signatures verified in the target, MIRROR_TRUST_DIR):")
        for name in expected or sorted(signers):
            found = signers.get(name)
            lines.append(f"  {name}: " + ("; ".join(found) if found else "no verified signature" if name in signers
                                          else "not verified"))
    if problems and other_failures:
        lines.append("Failures in other steps:")
        lines += other_failures
    return GateResult(not problems, lines)
