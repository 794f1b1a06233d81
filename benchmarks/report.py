"""The report: the results as Markdown and text tables, the machine's description, docs/benchmarks.md.

:class:`BenchReport` holds a benchmark's rows and renders them: :meth:`~BenchReport.results_table`
(every case and tool: the median, each run, ratios to the floor and to ``skopeo copy``, CPU and
notes), :meth:`~BenchReport.noop_table` (the cost of one more image), :meth:`~BenchReport.wan_table`
(the WAN cases: medians against their latency floor, requests counted at the relays),
:meth:`~BenchReport.targets` (the issue's goals, met or not) and :meth:`~BenchReport.markdown` (the
whole ``docs/benchmarks.md``).
:func:`machine_info` describes the machine and the versions measured; :func:`code_version` is the
commit of the work tree that runs.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from benchmarks.measure import MB, Row, megabytes
from benchmarks.scenarios import NOOP_COUNTS, ROOT
from benchmarks.tools import FLOOR_PARALLEL, TOOLS, arcmirror_python
from benchmarks.wan import LINK_CROSSINGS, WAN_KINDS, wan_label
from testbed import dockerd

#: The peer every ratio is also quoted against.
BASELINE = "skopeo-copy"
#: The WAN goals' delay (ms) and their bounds.
WAN_GOAL_DELAY = 25.0
WAN_LOOPBACK_RATIO = 2.0  # cold and incremental within 2× of the same run on loopback
WAN_NOOP_REQUESTS = 3  # per image, source + target
WAN_SKOPEO_SYNC_SPEEDUP = 5.0
#: The loopback case holding the same data as a WAN case kind (the loopback no-op has other images).
LOOPBACK_OF = {"cold": "cold", "incremental": "incremental"}


def _version(command: Sequence[str]) -> str:
    try:
        result = subprocess.run(list(command), capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (result.stdout or result.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


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

    @property
    def wan_rows(self) -> list[Row]:
        return [row for row in self.rows if row.scenario == "wan"]

    # -- rendering ---------------------------------------------------------------------------

    def results_table(self) -> str | None:
        lines = ["| case | tool | median s | runs (s) | × floor | × skopeo copy | CPU s: tool + source + target "
                 "| notes |",
                 "| --- | --- | ---: | --- | ---: | ---: | --- | --- |"]
        loopback = [row for row in self.rows if row.scenario != "wan"]  # the WAN rows: wan_table()
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
            if row.peak() and (row.case == "memory" or row.tool in ("arcmirror", "pull-push")):
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
            loopback = LOOPBACK_OF.get(case["wan_kind"])
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
                f"| {row.case} | {case['delay_ms']:g} ms | {_cap(case['bandwidth'])} | {floor.text()} | "
                f"{row.tool} | {_s(median)} | {runs} | {_ratio(median, floor.seconds)} | "
                f"{_ratio(median, self.median(row.case, 'arcmirror'))} | {_ratio(median, local)} | {counts} | "
                f"{per_image} | {methods} | {connections} |")
        return "\n".join(lines)

    def wan_floors(self) -> list[str]:
        """Each WAN case's latency floor with its formula."""
        return [f"{c['label']}: {c['floor'].formula()}" for c in self.cases if c.get("floor")]

    def wan_skipped(self) -> list[str]:
        """The tools the WAN scenario did not measure, and why (once each)."""
        reasons = {row.tool: row.skipped for row in self.wan_rows if row.skipped}
        return [f"{tool}: {reason}" for tool, reason in reasons.items()]

    def wan_targets(self) -> list[tuple[str, str, bool | None]]:
        """The WAN goals, at D = 25 ms (none when the wan scenario did not run)."""
        if not self.wan_rows:
            return []
        delay = WAN_GOAL_DELAY
        cap = next((c["bandwidth"] for c in self.cases if c.get("floor")), None)
        at = f"WAN D = {delay:g} ms{', ' + _cap(cap) if cap else ''}"
        lacking = f"not measured (--wan-delays lacks {delay:g})"
        goals: list[tuple[str, str, bool | None]] = []

        def loopback_goal(kind: str) -> None:
            goal = f"{at}: {kind} ≤ {WAN_LOOPBACK_RATIO:g}× the same run on loopback"
            far, near = self.median(wan_label(kind, delay), "arcmirror"), self.median(kind, "arcmirror")
            if far is None:
                goals.append((goal, lacking if self.case(wan_label(kind, delay)) is None else "not measured", None))
            elif near is None:
                goals.append((goal, f"{far:.2f} s; not measured on loopback (add {kind} to --scenarios)", None))
            else:
                goals.append((goal, f"{far / near:.2f}× ({far:.2f} s vs {near:.2f} s)",
                              far / near <= WAN_LOOPBACK_RATIO))

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
        return goals + self.wan_targets()

    def _wan_section(self, table: str) -> list[str]:
        return [
            "## WAN: tens of milliseconds from both registries",
            "",
            "The same cases again with the tool far from both registries, as a CI runner is from MCR and "
            "from the private registry: a latency relay (`testbed/relay.py`) in front of the source and one "
            "in front of each run's fresh target delays every chunk D ms in each direction (a request costs "
            "a round trip, 2 × D), sharing one bandwidth cap when one is given (the runner's one link: "
            "downloads and uploads draw from the same budget). The tool is given the relays' hosts. "
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
            "changes). A cap adds the bytes to move crossing the link twice (down from the source, up to "
            "the target) at the capped rate:",
            "",
            f"`floor = round_trips × 2 × D + {LINK_CROSSINGS} × bytes_to_move / bandwidth` (no bandwidth "
            "term uncapped; manifests' bytes left out). With a cap it can be up to D above the true "
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

    def _memory_layer(self) -> int:
        case = next((c for c in self.cases if c["label"] == "memory"), None)
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
                "```", ""]
        return "\n".join(out)


def _cap(bandwidth: float | None) -> str:
    """A link's cap in bytes per second as "10 MB/s"; "none" for None."""
    return f"{bandwidth / MB:g} MB/s" if bandwidth else "none"


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
