"""The report: the results as Markdown and text tables, the machine's description, docs/benchmarks.md.

:class:`BenchReport` holds a benchmark's rows and renders them: :meth:`~BenchReport.results_table`
(every case and tool: the median, each run, ratios to the floor and to ``skopeo copy``, CPU and
notes), :meth:`~BenchReport.noop_table` (the cost of one more image), :meth:`~BenchReport.wan_table`
(the WAN cases: medians against their latency floor, requests counted at the relays),
:meth:`~BenchReport.link_table` and :meth:`~BenchReport.link_sparklines` (where a capped link idled,
from each median run's timeline), :meth:`~BenchReport.targets` (the issue's goals, met or not),
:meth:`~BenchReport.markdown` (the whole ``docs/benchmarks.md``) and
:meth:`~BenchReport.write_timelines` (every WAN run's timeline as JSON, a file per case).
:func:`machine_info` describes the machine and the versions measured; :func:`code_version` is the
commit of the work tree that runs.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from benchmarks.measure import HALF_SHARE, IDLE_SHARE, MB, Row, megabytes
from benchmarks.scenarios import NOOP_COUNTS, ROOT
from benchmarks.tools import FLOOR_PARALLEL, TOOLS, arcmirror_python
from benchmarks.wan import WAN_CAPPED_KINDS, WAN_KINDS, cap_text, wan_label
from testbed import dockerd

#: The peer every ratio is also quoted against.
BASELINE = "skopeo-copy"
#: The WAN goals' delay (ms) and their bounds.
WAN_GOAL_DELAY = 25.0
#: at 25 ms, the same run on loopback times this at most: cold (issue 14), next month's release (issue 20)
WAN_LOOPBACK_RATIO = {"cold": 2.0, "incremental": 1.5}
WAN_NOOP_REQUESTS = 3  # per image, source + target
WAN_SKOPEO_SYNC_SPEEDUP = 5.0
#: Through a capped link: arcmirror within this factor of the case's floor (bytes / cap + round trips).
CAPPED_FLOOR_RATIO = 1.1
#: The big release: peak RSS of arcmirror's whole process tree below this.
BIG_PEAK_RSS = 150 * MB
#: The tools whose link timelines the report draws (all measured tools are in the table and the JSON).
SPARKLINE_TOOLS = ("arcmirror", "arcmirror-baseline")
#: The most columns a sparkline takes (slices are merged to fit).
SPARKLINE_COLUMNS = 120


def _version(command: Sequence[str]) -> str:
    try:
        result = subprocess.run(list(command), capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (result.stdout or result.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


def timelines_folder(output: Path) -> str:
    """The timelines' folder of the report ``output``, relative to it: ``timelines`` for the default
    ``benchmarks.md``, ``timelines/<stem>`` for another report (``benchmarks-big.md``), so that writing
    one report's timelines never removes another's."""
    return "timelines" if output.name == "benchmarks.md" else f"timelines/{output.stem}"


@dataclass
class BenchReport:
    scale: float
    runs: int
    rows: list[Row]
    cases: list[dict]
    machine: dict[str, str]
    started: str
    elapsed: float
    command: str
    notes: list[str] = field(default_factory=list)
    noop_counts: tuple[int, int] = NOOP_COUNTS
    #: where :meth:`write_timelines` goes, relative to the report (see :func:`timelines_folder`)
    timelines_dir: str = "timelines"

    @property
    def ok(self) -> bool:
        return not any(row.failed for row in self.rows)

    def row(self, case: str, tool: str) -> Row | None:
        return next((r for r in self.rows if r.case == case and r.tool == tool), None)

    def median(self, case: str, tool: str) -> float | None:
        row = self.row(case, tool)
        return row.median() if row else None

    def case(self, label: str) -> dict | None:
        return next((c for c in self.cases if c["label"] == label), None)

    def far(self, row: Row) -> bool:
        """Whether ``row``'s case runs through the WAN relays (it has a latency floor)."""
        case = self.case(row.case)
        return bool(case and case.get("floor"))

    @property
    def wan_rows(self) -> list[Row]:
        """The rows of every case through the relays: the ``wan`` scenario's, the ``big`` one's capped cases."""
        return [row for row in self.rows if self.far(row)]

    @property
    def capped_cases(self) -> list[dict]:
        return [c for c in self.cases if c.get("floor") and c.get("bandwidth")]

    # -- rendering ---------------------------------------------------------------------------

    def results_table(self) -> str | None:
        lines = ["| case | tool | median s | runs (s) | × floor | × skopeo copy | CPU s: tool + source + target "
                 "| notes |",
                 "| --- | --- | ---: | --- | ---: | ---: | --- | --- |"]
        loopback = [row for row in self.rows if not self.far(row)]  # the WAN rows: wan_table()
        if not loopback:
            return None
        for row in loopback:
            if row.skipped:
                lines.append(f"| {row.case} | {row.tool} | – | – | – | – | – | skipped: {row.skipped} |")
                continue
            median = row.median()
            floor, skopeo = self.median(row.case, "floor"), self.median(row.case, BASELINE)
            runs = ", ".join(f"{m.seconds:.2f}" if m.ok else "FAILED" for m in row.measurements)
            notes = []
            if row.failed:
                notes.append("FAILED: " + "; ".join(sorted({m.error or "?" for m in row.failed}))[:300])
            sent = row.median("bytes_sent")
            if sent is not None and not row.tool.startswith("floor"):
                notes.append(f"sent {megabytes(sent)}")
            stored = row.median("stored_bytes")
            if stored is not None and row.case == "incremental":
                notes.append(f"new in target {megabytes(stored)}")
            if row.peak() and (row.case == "memory" or row.scenario == "big"
                               or row.tool in ("arcmirror", "pull-push")):
                notes.append(f"peak RSS {megabytes(row.peak())}")
            inner = row.median("inner_seconds")
            if inner is not None and median:
                notes.append(f"in-process {inner:.2f} s")
            changed = next((m.extra["digests_changed"] for m in row.good if "digests_changed" in m.extra), None)
            if changed:
                notes.append(f"{changed} digests differ from the source")
            after = row.median_extra("noop_after")
            if after is not None:
                notes.append(f"then no-op {after:.2f} s")
            cpu = " + ".join(_s(row.median(a)) for a in ("cpu", "cpu_source", "cpu_target"))
            lines.append(f"| {row.case} | {row.tool} | {_s(median)} | {runs} | {_ratio(median, floor)} | "
                         f"{_ratio(median, skopeo)} | {cpu} | {'; '.join(notes)} |")
        return "\n".join(lines)

    def noop_table(self) -> str | None:
        few, many = self.noop_counts
        small, large = f"noop-{few}", f"noop-{many}"
        extra = many - few
        lines = [f"| tool | {few} images s | {many} images s | ms per extra image | × arcmirror at {few} |",
                 "| --- | ---: | ---: | ---: | ---: |"]
        arc16 = self.median(small, "arcmirror")
        found = False
        for tool in TOOLS:
            a, b = self.median(small, tool), self.median(large, tool)
            if a is None and b is None:
                continue
            found = True
            per = f"{(b - a) / extra * 1000:.1f}" if a is not None and b is not None else "–"
            lines.append(f"| {tool} | {_s(a)} | {_s(b)} | {per} | {_ratio(a, arc16)} |")
        return "\n".join(lines) if found else None

    def wan_table(self) -> str | None:
        """The WAN cases: per tool the median, each run, ratios to the case's latency floor, to
        arcmirror and to the same tool on loopback, and the median run's requests at the relays."""
        measured = [row for row in self.wan_rows if not row.skipped]
        if not measured:
            return None
        lines = ["| case | D one way | cap | floor s | tool | median s | runs (s) | × floor | × arcmirror "
                 "| × loopback | requests src + tgt | requests per image | by method: source; target | connections |",
                 "| --- | ---: | --- | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
        for row in measured:
            case = self.case(row.case)
            floor = case["floor"]
            median = row.median()
            runs = ", ".join(f"{m.seconds:.2f}" if m.ok else "FAILED" for m in row.measurements)
            loopback = case.get("loopback")
            local = self.median(loopback, row.tool) if loopback else None
            requests = row.median_requests()
            counts = per_image = methods = connections = "–"
            if requests:
                counts = f"{requests.source} + {requests.target} = {requests.total}"
                per_image = f"{requests.total / case['images']:.1f}"
                methods, connections = requests.methods(), str(requests.connections)
            if row.failed:
                runs += " (FAILED: " + "; ".join(sorted({m.error or "?" for m in row.failed}))[:200] + ")"
            lines.append(
                f"| {row.case} | {case['delay_ms']:g} ms | {cap_text(case['bandwidth'], case.get('duplex'))} | "
                f"{floor.text()} | "
                f"{row.tool} | {_s(median)} | {runs} | {_ratio(median, floor.seconds)} | "
                f"{_ratio(median, self.median(row.case, 'arcmirror'))} | {_ratio(median, local)} | {counts} | "
                f"{per_image} | {methods} | {connections} |")
        return "\n".join(lines)

    def link_table(self) -> str | None:
        """Per capped case and tool, from the median run's timeline: the bytes each way, how much of
        the cap they used over the run, and the share of the run each direction was idle (under 5%
        of the cap) or under half of it; half duplex also the one budget's (``both``)."""
        lines = ["| case | tool | median run s | floor s | × floor | down MB (of cap) | up MB (of cap) "
                 "| idle: down / up / both | under half: down / up / both | down at ≥ half cap | "
                 "up at ≥ half cap | peak RSS |",
                 "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- | ---: |"]
        found = False
        for case in self.capped_cases:
            for row in self.rows:
                run = row.median_run() if row.case == case["label"] else None
                if run is None or run.timeline is None:
                    continue
                found = True
                t, floor = run.timeline, case["floor"]
                directions = ("down", "up", "both") if t.duplex == "half" else ("down", "up")

                def shares(fraction: float) -> str:
                    return " / ".join(_pct(t.share_below(d, fraction)) for d in directions) + \
                        (" / –" if len(directions) == 2 else "")

                def span(direction: str) -> str:
                    busy = t.busy_span(direction)
                    return f"{busy[0]:.2f}–{busy[1]:.2f} s" if busy else "never"

                lines.append(
                    f"| {case['label']} | {row.tool} | {run.seconds:.2f} | {floor.text()} | "
                    f"{_ratio(run.seconds, floor.seconds)} | {t.bytes('down') / MB:.1f} ({_pct(t.utilisation('down'))}) | "
                    f"{t.bytes('up') / MB:.1f} ({_pct(t.utilisation('up'))}) | {shares(IDLE_SHARE)} | "
                    f"{shares(HALF_SHARE)} | {span('down')} | {span('up')} | "
                    f"{megabytes(run.peak_rss) if run.peak_rss else '–'} |")
        return "\n".join(lines) if found else None

    def link_sparklines(self) -> str | None:
        """arcmirror's (and the baseline's) median run through each capped link, drawn per direction:
        one character per column of time, from ' ' (nothing) to '█' (the cap). One time scale per case."""
        blocks = []
        for case in self.capped_cases:
            runs = [(tool, row.median_run()) for tool in SPARKLINE_TOOLS
                    if (row := self.row(case["label"], tool)) and row.median_run() and row.median_run().timeline]
            if not runs:
                continue
            width = max(run.timeline.column_slices(SPARKLINE_COLUMNS) for _, run in runs)
            column_ms = width * runs[0][1].timeline.slice_seconds * 1000
            blocks.append(f"{case['label']}: floor {case['floor'].text()} s; one column = {column_ms:g} ms")
            for tool, run in runs:
                t = run.timeline
                directions = ("down", "up", "both") if t.duplex == "half" else ("down", "up")
                for direction in directions:
                    name = f"{tool} {run.seconds:.2f} s" if direction == "down" else ""
                    blocks.append(f"  {name:<26} {direction:<4} |{t.sparkline(direction, width)}|")
            blocks.append("")
        return "\n".join(blocks).rstrip() if blocks else None

    def timelines(self) -> dict[str, dict]:
        """Every WAN case's runs' timelines: ``{file name: JSON-ready dict}`` (a file per case)."""
        files = {}
        for case in self.cases:
            if not case.get("floor"):
                continue
            tools = {}
            for row in self.rows:
                if row.case == case["label"]:
                    runs = [{"run": m.run, "seconds": round(m.seconds, 4), **m.timeline.as_dict()}
                            for m in row.good if m.timeline is not None]
                    if runs:
                        tools[row.tool] = runs
            if tools:
                floor = case["floor"]
                name = re.sub(r"[^A-Za-z0-9@._-]+", "_", case["label"]) + ".json"
                files[name] = {
                    "case": case["label"], "delay_ms": case["delay_ms"], "cap_bytes_per_second": case["bandwidth"],
                    "duplex": case.get("duplex"), "floor_seconds": round(floor.seconds, 4),
                    "floor": floor.formula(), "bytes_to_move": floor.bytes_to_move, "started": self.started,
                    "arcmirror": self.machine.get("arcmirror"),
                    "note": "down/up: bytes the relays delivered to / from the tool in each slice_seconds "
                            "slice of the run, from the start of the timed command",
                    "tools": tools,
                }
        return files

    def write_timelines(self, folder: Path) -> list[Path]:
        """Write :meth:`timelines` into ``folder`` (its earlier ``*.json`` removed); the paths written."""
        files = self.timelines()
        if not files:
            return []
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.json"):
            old.unlink()
        written = []
        for name, content in files.items():
            path = folder / name
            text = json.dumps(content, indent=1)
            # one line per list of counters: compact, and still a diff per run
            path.write_text(re.sub(r"\[\s*([0-9,\s]+?)\s*\]", lambda m: "[" + re.sub(r"\s+", "", m.group(1))
                                   .replace(",", ", ") + "]", text) + "\n")
            written.append(path)
        return written

    def wan_floors(self) -> list[str]:
        """Each WAN case's latency floor with its formula."""
        return [f"{c['label']}: {c['floor'].formula()}" for c in self.cases if c.get("floor")]

    def wan_skipped(self) -> list[str]:
        """The tools the WAN scenario did not measure, and why (once each)."""
        reasons = {row.tool: row.skipped for row in self.wan_rows if row.skipped}
        return [f"{tool}: {reason}" for tool, reason in reasons.items()]

    def wan_targets(self) -> list[tuple[str, str, bool | None]]:
        """The WAN goals, at D = 25 ms uncapped, and through each capped link (none when the wan
        scenario did not run)."""
        if not any(row.scenario == "wan" for row in self.rows):
            return []
        delay = WAN_GOAL_DELAY
        at = f"WAN D = {delay:g} ms"
        lacking = f"not measured (--wan-delays lacks {delay:g})"
        goals: list[tuple[str, str, bool | None]] = []

        def loopback_goal(kind: str) -> None:
            goal = f"{at}: {kind} ≤ {WAN_LOOPBACK_RATIO[kind]:g}× the same run on loopback"
            far, near = self.median(wan_label(kind, delay), "arcmirror"), self.median(kind, "arcmirror")
            if far is None:
                goals.append((goal, lacking if self.case(wan_label(kind, delay)) is None else "not measured", None))
            elif near is None:
                goals.append((goal, f"{far:.2f} s; not measured on loopback (add {kind} to --scenarios)", None))
            else:
                goals.append((goal, f"{far / near:.2f}× ({far:.2f} s vs {near:.2f} s)",
                              far / near <= WAN_LOOPBACK_RATIO[kind]))

        loopback_goal("cold")
        goal = f"{at}: no-op ≤ {WAN_NOOP_REQUESTS} requests per image (source + target)"
        noop, case = self.row(wan_label("noop", delay), "arcmirror"), self.case(wan_label("noop", delay))
        requests = noop.median_requests() if noop else None
        if requests is None:
            goals.append((goal, lacking if case is None else "not measured", None))
        else:
            per = requests.total / case["images"]
            goals.append((goal, f"{per:.1f} ({requests.source} + {requests.target} for {case['images']} images)",
                          per <= WAN_NOOP_REQUESTS))
        loopback_goal("incremental")
        for kind in WAN_KINDS:
            label = wan_label(kind, delay)
            goal = f"{at}: {kind.replace('noop', 'no-op')} ≥ {WAN_SKOPEO_SYNC_SPEEDUP:g}× faster than skopeo sync"
            arc, sync = self.median(label, "arcmirror"), self.median(label, "skopeo-sync")
            if arc and sync is not None:
                goals.append((goal, f"{sync / arc:.2f}× ({arc:.2f} s vs {sync:.2f} s)",
                              sync / arc >= WAN_SKOPEO_SYNC_SPEEDUP))
            else:
                goals.append((goal, lacking if self.case(label) is None else "not measured", None))
        capped = [c for c in self.capped_cases if c["scenario"] == "wan" and c["wan_kind"] in WAN_CAPPED_KINDS]
        if not capped:
            goals.append((f"WAN through a capped link: cold ≤ {CAPPED_FLOOR_RATIO:g}× floor (bytes / cap + "
                          "round trips), full and half duplex", "not measured (give --wan-bandwidth)", None))
        goals += [self._floor_goal(c) for c in capped]
        return goals

    def _floor_goal(self, case: dict) -> tuple[str, str, bool | None]:
        """arcmirror within :data:`CAPPED_FLOOR_RATIO` of a capped case's floor."""
        scenario = "WAN" if case["scenario"] == "wan" else case["scenario"]
        goal = (f"{scenario} D = {case['delay_ms']:g} ms, {cap_text(case['bandwidth'], case['duplex'])}: "
                f"{case['wan_kind']} ≤ {CAPPED_FLOOR_RATIO:g}× floor")
        arc, floor = self.median(case["label"], "arcmirror"), case["floor"]
        if arc is None:
            return goal, "not measured", None
        return goal, f"{arc / floor.seconds:.2f}× ({arc:.2f} s vs floor {floor.formula()})", \
            arc / floor.seconds <= CAPPED_FLOOR_RATIO

    def big_targets(self) -> list[tuple[str, str, bool | None]]:
        """The big release's goals: each capped case within 1.1× its floor, arcmirror's peak RSS (the
        whole process tree, every big case) under 150 MB, every run ending with the source's digests."""
        rows = [r for r in self.rows if r.scenario == "big" and r.tool == "arcmirror" and not r.skipped]
        if not rows:
            return []
        goals = [self._floor_goal(c) for c in self.capped_cases if c["scenario"] == "big"]
        peaks = [(row.peak(), row.case) for row in rows if row.peak()]
        if peaks:
            peak, where = max(peaks)
            goals.append((f"big: peak RSS < {megabytes(BIG_PEAK_RSS)} (arcmirror's whole process tree)",
                          f"{megabytes(peak)} (at most, in {where}; largest layer "
                          f"{megabytes(self._largest('big-cold'))})", peak < BIG_PEAK_RSS))
        runs = [m for row in rows for m in row.measurements]
        good = [m for m in runs if m.ok]
        images = self.case("big-cold")["images"] if self.case("big-cold") else 0
        goals.append(("big: the target's digests are the source's (every image, every run)",
                      f"{len(good)} of {len(runs)} runs" + (f", {images} images each" if images else "")
                      + ("" if len(good) == len(runs) else ": see the failed runs"), len(good) == len(runs)))
        return goals

    def targets(self) -> list[tuple[str, str, bool | None]]:
        """The issue's goals: (goal, measured, met?)."""
        goals: list[tuple[str, str, bool | None]] = []
        cold_arc, cold_floor = self.median("cold", "arcmirror"), self.median("cold", "floor")
        if cold_arc is not None and cold_floor:
            goals.append(("cold ≤ 1.25× floor", f"{cold_arc / cold_floor:.2f}× ({cold_arc:.2f} s vs "
                          f"{cold_floor:.2f} s)", cold_arc / cold_floor <= 1.25))
        few, many = self.noop_counts
        relay = self.median("cold", "floor-relay")
        if cold_arc is not None and relay:
            goals.append(("(context) cold against floor-relay (curl GET piped into curl PUT, 4 at a time)",
                          f"{cold_arc / relay:.2f}× ({cold_arc:.2f} s vs {relay:.2f} s)", None))
        arc16 = self.median(f"noop-{few}", "arcmirror")
        for peer in (BASELINE, "skopeo-sync"):
            other = self.median(f"noop-{few}", peer)
            if arc16 and other is not None:
                goals.append((f"no-op at {few} images ≥ 2× faster than {peer.replace('-', ' ')}",
                              f"{other / arc16:.2f}× ({arc16:.2f} s vs {other:.2f} s)", other / arc16 >= 2))
        sync16 = self.median(f"noop-{few}", "skopeo-sync")
        if arc16 and sync16 is not None:  # issue 20's, where issue 14's above stays unmet
            goals.append((f"no-op at {few} images no slower than skopeo sync",
                          f"{arc16:.2f} s vs {sync16:.2f} s", arc16 <= sync16))
        arc64 = self.median(f"noop-{many}", "arcmirror")
        if arc16 is not None and arc64 is not None:
            per = (arc64 - arc16) / (many - few) * 1000
            goals.append((f"no-op < 5 ms per extra image ({few} → {many})", f"{per:.1f} ms", per < 5))
        inc = self.row("incremental", "arcmirror")
        case = next((c for c in self.cases if c["label"] == "incremental"), None)
        if inc and inc.good and case:
            sent, new = inc.median("bytes_sent"), case["new_bytes"]
            goals.append(("incremental: bytes sent == new blobs' bytes",
                          f"{int(sent)} B sent, {new} B new", int(sent) == new))
            floor, noop = self.median("incremental", "floor"), inc.median_extra("noop_after")
            if floor is not None and noop is not None:
                bound = 1.25 * (floor + noop)
                goals.append(("incremental ≤ 1.25× (floor for new blobs + no-op)",
                              f"{inc.median():.2f} s vs bound {bound:.2f} s "
                              f"(floor {floor:.2f} s + no-op {noop:.2f} s)", inc.median() <= bound))
        mem = self.row("memory", "arcmirror")
        if mem and mem.peak():
            goals.append(("memory < 150 MB peak RSS copying the big layer",
                          f"{megabytes(mem.peak())} (layer {megabytes(self._memory_layer())})",
                          mem.peak() < 150 * MB))
        pp, cold_arc = self.median("cold", "pull-push"), self.median("cold", "arcmirror")
        pp_row = self.row("cold", "pull-push")
        if pp is not None and cold_arc:
            goals.append(("pull + push ≤ 2× mirror (cold)", f"{pp / cold_arc:.2f}×", pp / cold_arc <= 2))
        elif pp_row and pp_row.skipped:
            goals.append(("pull + push ≤ 2× mirror (cold)", pp_row.skipped, None))
        return goals + self.wan_targets() + self.big_targets()

    def _wan_section(self, table: str) -> list[str]:
        return [
            "## WAN: tens of milliseconds from both registries",
            "",
            "The same cases again with the tool far from both registries, as a CI runner is from MCR and "
            "from the private registry: a latency relay (`testbed/relay.py`) in front of the source and one "
            "in front of each run's fresh target delays every chunk D ms in each direction (a request costs "
            "a round trip, 2 × D). With `--wan-bandwidth`, `cold` runs again at each D through a capped "
            "link that both relays share, the runner's one network link, of two kinds: **full duplex** "
            "(`…-full`, as one Ethernet interface: the cap each way, so downloads, *down* to the tool, and "
            "uploads, *up* from it, do not share it) and **half duplex** (`…-half`: one budget that down and "
            "up share). The `big` scenario's capped cases (`big-…@10ms/…`) are here too. The tool is given "
            "the relays' hosts. "
            "`wan-noop` is the release into a target holding it (the same 17 images), `wan-cold` and "
            "`wan-incremental` the loopback `cold` and `incremental` data. The relays count the HTTP "
            "requests of the timed run (counters reset just before it; untimed set-up is not counted); "
            "`requests` are those of the run with the median count; `connections` the TCP connections the "
            "tool opened to both relays in that run.",
            "",
            table,
            "",
            "Latency floor: what the run would take if every request cost exactly one round trip (2 × D) "
            "and the only waits were those the protocol forces. All images in parallel, and all blobs of "
            "an image; per image a chain of round trips, one after the other. An image the target already "
            "holds: resolve the source tag and the target tag at once, compare the digests (1). An image "
            "to copy: GET the source manifest by tag (the digest and the blob list come with it; the "
            "target's tag is checked alongside) → GET each blob from the source (the target's blobs are "
            "checked alongside) → stream it into a one-request upload to the target (`POST ?digest=`), "
            "which must have answered before → the PUT of the manifest by tag (4). cold: every image is "
            "copied (4); no-op: none (1); incremental: the images whose manifest changed (4: every config "
            "changes). A cap adds the time the bytes to move need on the link: each crosses it twice, down "
            "from the source and up to the target (bytes_down = bytes_up = bytes_to_move). Full duplex: "
            "both directions at once, max(bytes_down, bytes_up) / cap; half duplex: one budget, "
            "(bytes_down + bytes_up) / cap:",
            "",
            "`floor = round_trips × 2 × D + bytes_to_move / cap` (full duplex), "
            "`floor = round_trips × 2 × D + 2 × bytes_to_move / cap` (half duplex); no bandwidth term "
            "uncapped; manifests' bytes and HTTP heads left out. With a cap it can be up to D above the true "
            "minimum (the transfer overlaps the blob round trips). It leaves out what loopback costs too "
            "(CPU, the registries' own time): on loopback cold takes seconds whatever D.",
            "",
            *[f"* {line}" for line in self.wan_floors()],
            "",
            *([f"Not measured over WAN: {'; '.join(self.wan_skipped())}.", ""] if self.wan_skipped() else []),
            "Limits: the relays add no round trip for a TCP handshake (nor TLS: the registries are plain "
            "HTTP), so a new connection costs nothing extra here and a real one costs one round trip more "
            "(a tool opening a connection per request, see `connections`, is flattered; the relays' own "
            "set-up of a connection, about 1-2 ms of threads, goes the other way); "
            "no packet loss, jitter or slow start; one connection's stream tops out at 4 MiB per D (160 "
            "MiB/s at 25 ms); the relays run in the harness's Python process and take CPU from the same "
            "cores as the tool and the registries (`--wan-delays 0` measures the relays alone).",
            "",
        ]

    def _link_section(self, table: str) -> list[str]:
        sparklines = self.link_sparklines()
        return [
            "## Capped links: where the link idles",
            "",
            "Each run through the relays counts the bytes they delivered per direction per 50 ms (a counter "
            "array in `testbed/relay.py`'s `Timeline`): *down* is what the tool received (the source's "
            "blobs, every answer), *up* what it sent (requests, the uploads to the target). Below, for each "
            "capped case and tool, the run with the median time: the bytes each way and the share of the "
            "cap they used over the whole run (100% = the link full from the first to the last "
            "millisecond); the share of the run's time each direction was *idle* (under "
            f"{IDLE_SHARE:.0%} of the cap) or *under half* the cap; on a half-duplex link also `both`, "
            "the one budget (idle only when neither direction uses it); and when each direction first and "
            "last ran at half the cap or more (the run starts with the command: interpreter start-up, "
            "discovery and manifests come first; the tail is the last uploads and manifests). A tool that "
            "keeps the link full is at its floor; what is idle or under half, while the run lasts, is what "
            "is left to win.",
            "",
            table,
            "",
            *(["arcmirror's median run through each link, per direction, from the start of the command to "
               "its exit: one character per column of time, ' ' nothing, '▁'…'█' up to the cap (the baseline "
               "on the same scale when measured):",
               "",
               "```text",
               sparklines,
               "```",
               ""] if sparklines else []),
            f"Every run's timeline (both directions, every tool, 50 ms slices) is in `{self.timelines_dir}/` "
            "beside this file, one JSON file per case, to compare before and after a change.",
            "",
        ]

    def _memory_layer(self) -> int:
        return self._largest("memory")

    def _largest(self, label: str) -> int:
        case = self.case(label)
        return case["largest_blob"] if case else 0

    def markdown(self) -> str:
        m = self.machine
        out = [
            "# arcmirror benchmarks",
            "",
            "Generated by `benchmarks/bench.py` (`invoke bench`); do not edit by hand: run it again.",
            f"Run {self.started} with `{self.command}` ({self.elapsed / 60:.1f} min). "
            f"Scale {self.scale:g}, {self.runs} run(s) per figure: the median, each run into a fresh "
            "target registry (new storage directory, new process).",
            "",
            "## Machine",
            "",
            "| | |",
            "| --- | --- |",
            *[f"| {k} | {v} |" for k, v in m.items()],
            "",
            "## Data",
            "",
            "| case | images | tag | distinct blob bytes (configs + layers) | what is measured |",
            "| --- | ---: | --- | ---: | --- |",
            *[f"| {c['label']} | {c['images']} | {c['tag']} | {megabytes(c['bytes'])} | {c['description']} |"
              for c in self.cases],
            "",
            "Layers hold pseudo-random bytes in gzip level 0 (stored) tar files, so they do not "
            "compress further; every image: the shared base layer, one of two runtime layers, its own "
            "layer. The floor pushes each distinct blob (configs and layers; manifests are tiny) once, "
            f"largest first, {FLOOR_PARALLEL} at a time, from the source registry's files with curl.",
            "",
        ]
        results = self.results_table()
        if results:
            out += ["## Results", "", results, ""]
        noop = self.noop_table()
        if noop:
            out += ["## No-op: cost of one more image", "", noop, ""]
        wan = self.wan_table()
        if wan:
            out += self._wan_section(wan)
        links = self.link_table()
        if links:
            out += self._link_section(links)
        goals = self.targets()
        if goals:
            out += ["## The issue's targets", "", "| target | measured | met |", "| --- | --- | --- |"]
            out += [f"| {g} | {v} | {'yes' if ok else ('no' if ok is False else '–')} |" for g, v, ok in goals]
            out.append("")
        out += ["## How to read this", "",
                "* `× floor`: the tool's median over the floor's in the same case (1.00× = as fast as the "
                "target can take the bytes in). `× skopeo copy`: over `skopeo copy` image after image. "
                "`floor-relay` streams each blob from the source registry instead (`curl GET | curl PUT`, "
                "4 at a time): what any registry-to-registry relay costs before its own work.",
                "* arcmirror and pull-push run as `python -m invoke …` subprocesses, so interpreter start-up "
                "and imports count; `in-process` is the elapsed time arcmirror writes in `mirror.json`.",
                "* `sent`: arcmirror's `bytes_sent` (reports/mirror.json totals); `new in target`: bytes of "
                "blobs that appeared in the target's storage during the run (docker's are re-compressed).",
                "* Peak RSS: the largest of `wait4`'s `ru_maxrss` and the polled RSS sum of the whole process "
                "tree (polled every 50 ms in the memory case).",
                "* docker (when measured) starts every run with an empty image store (`cold`) or with the "
                "images its untimed preparation pulled (`noop`: the same release, `incremental`: last "
                "month's), and its layers are re-compressed on push, so its target digests differ. Its engine "
                "uses the vfs storage driver (every layer unpacks into a full copy of its parent), which "
                "makes its pulls slower than with overlay2; its CPU column is the engine's.",
                "* pull-push is `invoke pull`, `invoke tag` and `invoke push` with one store; `pull` discovers "
                "the plan first when the report folder has none (cold, incremental); in `noop` the plan of "
                "its untimed preparation is reused.",
                "* skopeo sync reads the image list from a YAML file (`--src yaml`: registry, `tls-verify`, "
                "`images: {REPO/NAME: [TAG]}`) and writes `DEST/NAME:TAG` (the last path component), so it "
                "lands in the same repositories as the others. skopeo keeps a blob-info cache "
                "(/var/lib/containers/cache for root) across runs: every target is new (new port), so it "
                "only helps skopeo mount blobs between repositories of the same target.",
                "* CPU: user + system seconds of the tool's processes (wait4), and of the source and target "
                "registries during the run (/proc). With 2 cores, a relay (source → tool → target) competes "
                "with the target for CPU; the floor does not read through the source registry.",
                ""]
        if self.notes:
            out += ["## Notes", "", *[f"* {n}" for n in self.notes], ""]
        out += ["## Reproduce", "", "```sh",
                "scripts/bootstrap && apt-get install -y docker.io   # docker.io is optional",
                ".venv/bin/python -m benchmarks.bench --scale 1 --runs 3 --output docs/benchmarks.md",
                "# a capped link (full and half duplex) and the 4 GB release too, beside the last release:",
                ".venv/bin/python -m benchmarks.bench --runs 3 --wan-bandwidth 40 --baseline DIR "
                "--scenarios cold,cold-multiarch,noop,incremental,memory,wan,big",
                "```", ""]
        return "\n".join(out)


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{share:.0%}"


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "–"
    return f"{value / base:.2f}×"


def code_version(root: Path | None = None) -> str:
    """The commit of the work tree at ``root`` (this one by default; ``+ uncommitted changes`` when tracked
    files differ); "unknown" in a tree without git (an unpacked archive, or no git installed)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root or ROOT), *args], capture_output=True, text=True,
                                  timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown"
    return f"{commit}{' + uncommitted changes' if git('status', '--porcelain', '--untracked-files=no') else ''}"


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    os_name = platform.system()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    daemon = dockerd.dockerd_path()
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "OS": os_name,
        "kernel": platform.release(),
        "Python (arcmirror)": _version([arcmirror_python(), "-V"]),
        "arcmirror": code_version(),
        "registry": _version(["docker-registry", "--version"]).replace("docker-registry github.com/docker/", ""),
        "skopeo": _version(["skopeo", "--version"]).replace("skopeo version ", "skopeo "),
        "docker engine": _version([daemon, "--version"]).replace("Docker version ", "dockerd ") if daemon
        else "not installed",
        "curl": " ".join(_version(["curl", "--version"]).split()[:2]),
    }
