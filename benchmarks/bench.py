"""Benchmark arcmirror against its peers and the target registry's own floor, on the same data.

The runner: :func:`main` (the command line, ``python -m benchmarks.bench``) and
:func:`run_benchmark` (from Python). For each scenario the data is built once and loaded into a
source registry (:mod:`benchmarks.scenarios`); then every tool (:mod:`benchmarks.tools`) copies
it, run after run, each time into a fresh target registry (a new storage directory and a new
process, seeded with a snapshot when the scenario needs a non-empty target), and the target is
checked. Each figure is the median of ``--runs`` runs (tools interleaved, their order rotated per
run; :mod:`benchmarks.measure`), quoted as ratios to the floor and to ``skopeo copy``. The table
goes to stdout and, with the machine's description, to ``--output`` (``docs/benchmarks.md``;
:mod:`benchmarks.report`). In the WAN scenario (and the big scenario's capped cases) each run goes
through a pair of latency relays (:mod:`benchmarks.wan`), which count the timed run's requests and
the bytes they deliver each way per 50 ms (the link's timeline, saved beside the report in
``timelines/``).

Imports go one way: this module uses report, tools and scenarios; report uses tools and scenarios;
tools use scenarios; scenarios use wan; all of them use measure, which uses none of them.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Iterable, Sequence

from benchmarks.measure import MB, Measurement, Row, log, process_cpu, registry_pid, stored_bytes
from benchmarks.report import BenchReport, code_version, machine_info, timelines_folder
from benchmarks.scenarios import (BIG_BANDWIDTH, BIG_DELAY_MS, DEFAULT_SCENARIOS, NOOP_COUNTS, NOT_MEASURED, REPO,
                                  ROOT, SCENARIOS, Case, ScenarioData, clone_storage)
from benchmarks.tools import OPTIONAL_TOOLS, TOOLS, FloorTool, RunContext, Tool, ToolError, invoke_tasks, make_tools
from benchmarks.wan import BOTH_DUPLEX, DUPLEX, HALF, WAN_DELAYS, Relays, check_delays, parse_delays, parse_duplex
from testbed import dockerd
from testbed.registry import Registry

__all__ = ["DEFAULT_SCENARIOS", "SCENARIOS", "TOOLS", "main", "run_benchmark"]

DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"


class Bench:
    """Runs every tool on every case of the scenarios asked for; one instance per benchmark."""

    def __init__(self, workdir: Path, *, scale: float, runs: int, tools: Sequence[str], keep: bool,
                 drop_caches: bool, noop_counts: tuple[int, int] = NOOP_COUNTS, baseline: Path | None = None,
                 wan_delays: Sequence[float] = WAN_DELAYS, wan_bandwidth: float | None = None,
                 wan_duplex: Sequence[str] = BOTH_DUPLEX) -> None:
        self.workdir = workdir
        self.runs = runs
        self.keep = keep
        self.drop_caches = drop_caches
        self._tasks: set[str] | None = None
        self.data = ScenarioData(workdir, scale=scale, noop_counts=noop_counts, wan_delays=wan_delays,
                                 wan_bandwidth=wan_bandwidth, wan_duplex=wan_duplex)
        self.tools = make_tools(tools, tasks=self.tasks, workdir=workdir, baseline=baseline)
        self.targets: list[Registry] = []
        self.rows: list[Row] = []
        self.case_info: list[dict] = []
        self.notes: list[str] = []
        self._counter = 0

    def tasks(self) -> set[str]:
        if self._tasks is None:
            self._tasks = invoke_tasks()
        return self._tasks

    def _fresh_target(self, case: Case) -> tuple[Registry, Path]:
        self._counter += 1
        run_dir = self.workdir / "runs" / f"{self._counter:03d}"
        target = Registry(run_dir / "target")
        if case.seed is not None:
            clone_storage(case.seed, target.storage)
        self.targets.append(target)
        return target.start(), run_dir

    def _drop_caches(self) -> None:
        if not self.drop_caches:
            return
        os.sync()
        try:
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
        except OSError as exc:
            self.notes.append(f"--drop-caches: could not drop the page cache ({exc.strerror}); runs were warm")
            self.drop_caches = False

    def _verify(self, case: Case, tool: Tool, target: Registry) -> int:
        """Check the target holds what the tool had to copy; return how many digests differ."""
        if isinstance(tool, FloorTool):
            missing = set(case.blobs.data) - target.blob_digests()
            if missing:
                raise ToolError(f"{len(missing)} blobs missing in the target after the floor run")
            return 0
        changed = 0
        for name in case.names:
            got = target.manifest_digest(f"{REPO}/{name}", case.tag)
            if got is None:
                raise ToolError(f"{REPO}/{name}:{case.tag} is missing in the target")
            if got != case.digests[name]:
                if tool.preserves_digests:
                    raise ToolError(f"{REPO}/{name}:{case.tag} is {got} in the target, not {case.digests[name]}")
                changed += 1
        return changed

    @staticmethod
    def _network(case: Case, target: Registry) -> Relays | nullcontext:
        """WAN: the relays the tool talks through, D ms in front of both registries; else nothing."""
        if case.delay_ms is None:
            return nullcontext()
        return Relays(case.source.host, target.host, case.delay_ms, case.bandwidth, case.duplex or HALF)

    def measure(self, case: Case, tool: Tool, run: int) -> Measurement:
        target, run_dir = self._fresh_target(case)
        try:
            with self._network(case, target) as relays:
                if tool.stateful:  # set-up goes to the registries directly
                    tool.reset()
                    if case.prep_tag:
                        tool.run(RunContext(case, target, run_dir, case.prep_tag))
                before = target.blob_digests()
                self._drop_caches()
                source_cpu, target_cpu = process_cpu(registry_pid(case.source)), process_cpu(registry_pid(target))
                if relays:
                    relays.reset()  # count the timed run only
                try:
                    outcome = tool.run(RunContext(case, target, run_dir, case.tag, relays))
                finally:
                    if relays:
                        relays.stop_timeline()
                requests = relays.requests() if relays else None
                timeline = relays.timeline() if relays else None
                source_cpu = process_cpu(registry_pid(case.source)) - source_cpu
                target_cpu = process_cpu(registry_pid(target)) - target_cpu
            changed = self._verify(case, tool, target)
            if not tool.preserves_digests:
                outcome.extra["digests_changed"] = f"{changed}/{len(case.names)}"
            return Measurement(case.scenario, case.label, tool.name, run, outcome.seconds, True,
                               peak_rss=outcome.peak_rss, bytes_sent=outcome.bytes_sent,
                               stored_bytes=stored_bytes(target, before), inner_seconds=outcome.inner_seconds,
                               cpu=outcome.cpu, cpu_source=source_cpu, cpu_target=target_cpu, requests=requests,
                               timeline=timeline, extra=outcome.extra)
        except (ToolError, dockerd.DockerEngineError, OSError, subprocess.SubprocessError) as exc:
            return Measurement(case.scenario, case.label, tool.name, run, None, False, error=str(exc)[:500])
        finally:
            target.stop()
            if self.targets and self.targets[-1] is target:
                self.targets.pop()
            if not self.keep:
                shutil.rmtree(run_dir, ignore_errors=True)

    def run_scenario(self, scenario: str) -> None:
        started = time.monotonic()
        cases = self.data.cases(scenario)
        self.case_info.extend(self.data.describe(case) for case in cases)
        rows: dict[tuple[str, str], Row] = {}
        active: list[Tool] = []
        for name, tool in self.tools.items():
            told: set[str] = set()
            for case in cases:
                reason = (case.not_measured.get(name) or NOT_MEASURED.get(scenario, {}).get(name)
                          or tool.unavailable())
                rows[(case.label, name)] = Row(scenario, case.label, name, [], skipped=reason)
                if reason and reason not in told:
                    told.add(reason)
                    log(f"[{scenario}] {name}: skipped{'' if len(cases) == 1 else ' in ' + case.label}: {reason}")
            if any(not rows[(case.label, name)].skipped for case in cases):
                active.append(tool)
        for run in range(1, self.runs + 1):
            shift = (run - 1) % max(1, len(active))
            order = active[shift:] + active[:shift]
            for case in cases:
                for tool in order:
                    if rows[(case.label, tool.name)].skipped:
                        continue
                    m = self.measure(case, tool, run)
                    rows[(case.label, tool.name)].measurements.append(m)
                    detail = f"{m.seconds:.2f}s" if m.ok else f"FAILED: {m.error}"
                    if m.requests:
                        detail += f", {m.requests.source} + {m.requests.target} requests"
                    log(f"[{case.label}] run {run}/{self.runs} {tool.name}: {detail}")
        self.rows.extend(rows[(case.label, name)] for case in cases for name in self.tools)
        log(f"[{scenario}] done in {time.monotonic() - started:.0f}s")

    def close(self) -> None:
        for tool in self.tools.values():
            try:
                tool.close()
            except Exception as exc:  # noqa: BLE001 - cleanup goes on
                log(f"closing {tool.name}: {exc}")
        self.data.close()
        for registry in self.targets:
            registry.stop()
        self.targets.clear()


def run_benchmark(
    *,
    scale: float = 1.0,
    runs: int = 3,
    tools: Iterable[str] = tuple(t for t in TOOLS if t not in OPTIONAL_TOOLS),
    scenarios: Iterable[str] = DEFAULT_SCENARIOS,
    workdir: os.PathLike | str | None = None,
    output: os.PathLike | str | None = None,
    keep: bool = False,
    drop_caches: bool = False,
    command: str | None = None,
    noop_counts: Sequence[int] = NOOP_COUNTS,
    baseline: os.PathLike | str | None = None,
    wan_delays: Sequence[float] = WAN_DELAYS,
    wan_bandwidth: float | None = None,
    wan_duplex: Sequence[str] | str = BOTH_DUPLEX,
) -> BenchReport:
    """Run the benchmark; write the Markdown report to ``output`` (when given) and return it.

    ``tools`` / ``scenarios``: subsets of :data:`TOOLS` / :data:`SCENARIOS` (by default every
    scenario but ``big``). ``workdir``: where layouts, registries and the Docker engine live (a
    temporary directory, removed at the end, when not given; a given one is kept). ``wan_delays``:
    the one-way delays (ms) of the ``wan`` scenario, a case each; ``wan_bandwidth``: a cap (MB/s)
    through which the ``wan`` scenario's ``cold`` runs again at each delay (None for none; the
    ``big`` scenario's capped cases use it, else 40 MB/s); ``wan_duplex``: the kinds of capped link,
    a case each (``"full"``: the cap each way; ``"half"``: one budget for both; ``"both"``).
    With ``output``, every WAN run's link timeline goes to ``timelines/`` beside it (JSON, a file
    per case). Timing never raises: a failing tool run is recorded as failed (``report.ok`` is then
    False).
    """
    tools, scenarios = list(tools), list(scenarios)
    unknown = [t for t in tools if t not in TOOLS] + [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown tools or scenarios: {', '.join(unknown)}")
    if scale <= 0 or runs < 1:
        raise ValueError("scale must be > 0 and runs >= 1")
    few, many = (int(n) for n in noop_counts)
    if not 1 <= few < many:
        raise ValueError("noop_counts must be two image counts, the first smaller, e.g. (16, 64)")
    wan_delays = check_delays(wan_delays)
    if wan_bandwidth is not None and wan_bandwidth <= 0:
        raise ValueError("wan_bandwidth must be > 0 (MB/s), or None for no cap")
    wan_duplex = parse_duplex(wan_duplex) if isinstance(wan_duplex, str) else tuple(wan_duplex)
    if not wan_duplex or any(d not in DUPLEX for d in wan_duplex):
        raise ValueError(f"wan_duplex: some of {', '.join(DUPLEX)}, or 'both' (got {wan_duplex!r})")
    temporary = workdir is None
    work = Path(tempfile.mkdtemp(prefix="arcmirror-bench-") if temporary else workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    started_at = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg()
    machine = machine_info()  # before the runs: the versions that were measured
    started = time.monotonic()
    baseline = Path(baseline).resolve() if baseline else None
    if baseline is not None:
        machine["arcmirror-baseline"] = f"{baseline} at {code_version(baseline)}"
    bench = Bench(work, scale=scale, runs=runs, tools=tools, keep=keep, drop_caches=drop_caches,
                  noop_counts=(few, many), baseline=baseline, wan_delays=wan_delays,
                  wan_bandwidth=wan_bandwidth * MB if wan_bandwidth else None, wan_duplex=wan_duplex)
    try:
        for scenario in SCENARIOS:
            if scenario in scenarios:
                bench.run_scenario(scenario)
        load_after = os.getloadavg()
        code_after = code_version()
        if code_after != machine["arcmirror"]:
            bench.notes.append(f"arcmirror's work tree changed during the run ({machine['arcmirror']} at the "
                               f"start, {code_after} at the end): each run used the code on disk at that time.")
        machine["load average (1, 5, 15 min)"] = (
            f"{' '.join(f'{x:.2f}' for x in load_before)} at the start, "
            f"{' '.join(f'{x:.2f}' for x in load_after)} at the end")
        busiest = max(load_before[0], load_after[0], load_after[1])
        if busiest > 0.75 * (os.cpu_count() or 1):
            bench.notes.append(
                f"Other work shared the machine during this run (load average up to {busiest:.1f} on "
                f"{os.cpu_count()} cores): absolute times are noisy; compare ratios, and the runs column.")
    finally:
        bench.close()
        if temporary and not keep:
            shutil.rmtree(work, ignore_errors=True)
    timelines = timelines_folder(Path(output)) if output is not None else "timelines"
    report = BenchReport(
        scale=scale, runs=runs, rows=bench.rows, cases=bench.case_info, machine=machine,
        started=started_at, elapsed=time.monotonic() - started,
        command=command or f"python -m benchmarks.bench --scale {scale:g} --runs {runs}",
        notes=bench.notes, noop_counts=(few, many), timelines_dir=timelines,
    )
    if output is not None:
        path = Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report.markdown())
        report.write_timelines(path.parent / timelines)
    return report


def _delays(text: str) -> tuple[float, ...]:
    try:
        return parse_delays(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--wan-delays: distinct one-way delays in ms, each >= 0, "
                                         f"e.g. 10,25 (got {text!r})") from None


def _names(text: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in items if t not in allowed]
    if unknown or not items:
        raise argparse.ArgumentTypeError(f"{what}: choose from {', '.join(allowed)} (got {text!r})")
    return items


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns 0, 1 when a tool run failed, 2 on a usage error."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description="Time arcmirror against skopeo, docker and the target's floor on a synthetic Arc release.",
    )
    parser.add_argument("--scale", type=float, default=1.0,
                        help="data size factor: 1 = about 400 MB of distinct blobs (a 1 GB layer "
                             "in the memory case, 4 GB in big); 0.01 for a smoke run")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported (default 3)")
    parser.add_argument("--baseline", default=None, metavar="DIR",
                        help="another checkout of arcmirror (e.g. a git worktree of an older commit): timed as "
                             "arcmirror-baseline on the same data, in the same run")
    parser.add_argument("--only", type=lambda t: _names(t, TOOLS, "--only"), default=None,
                        metavar="TOOLS", help=f"comma-separated tools (default all but arcmirror-baseline, which "
                                              f"needs --baseline: {','.join(TOOLS)})")
    parser.add_argument("--scenarios", type=lambda t: _names(t, SCENARIOS, "--scenarios"),
                        default=list(DEFAULT_SCENARIOS), metavar="LIST",
                        help=f"comma-separated scenarios of {','.join(SCENARIOS)} (default all but big). big: "
                             f"a release at real size (about 4 GB at --scale 1, 17 images, three layers over "
                             f"500 MB), cold and incremental on loopback and through a capped link "
                             f"{BIG_DELAY_MS:g} ms away (--wan-bandwidth, else {BIG_BANDWIDTH / MB:g} MB/s; "
                             f"--wan-duplex); slow: about 22 min per run on 2 cores (65 min at --runs 3)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT),
                        help="Markdown report to write (default docs/benchmarks.md); '-' for none")
    parser.add_argument("--workdir", default=None,
                        help="where layouts, registries and the Docker engine live (kept; default: a "
                             "temporary directory, removed)")
    parser.add_argument("--keep", action="store_true", help="keep every run's target registry and the work dir")
    parser.add_argument("--noop-images", default=",".join(map(str, NOOP_COUNTS)), metavar="FEW,MANY",
                        help="image counts of the two no-op cases (default 16,64; the first 16 are Arc "
                             "names, then arc-extra-NN)")
    parser.add_argument("--drop-caches", action="store_true",
                        help="sync and drop the OS page cache before every timed run (root)")
    parser.add_argument("--wan-delays", type=_delays, default=WAN_DELAYS, metavar="MS,MS",
                        help="the wan scenario's one-way delays in ms, a case each (default "
                             f"{','.join(f'{d:g}' for d in WAN_DELAYS)}; 0 = the relays' own cost)")
    parser.add_argument("--wan-bandwidth", type=float, default=None, metavar="MBPS",
                        help="a bandwidth cap in megabytes per second: the wan scenario runs cold again at "
                             "each delay through a link so capped, whose budgets the source and target "
                             "relays share (default: none; big's capped cases: 40)")
    parser.add_argument("--wan-duplex", choices=("full", "half", "both"), default="both",
                        help="the capped link's kind, a case each: full (the cap each way: downloads and "
                             "uploads do not share it, as on one Ethernet interface), half (one budget for "
                             "both directions), both (default)")
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.runs < 1:
        parser.error("--scale must be > 0 and --runs >= 1")
    if args.wan_bandwidth is not None and args.wan_bandwidth <= 0:
        parser.error("--wan-bandwidth takes megabytes per second, > 0")
    try:
        noop_counts = tuple(int(n) for n in args.noop_images.split(","))
        if len(noop_counts) != 2 or not 1 <= noop_counts[0] < noop_counts[1]:
            raise ValueError
    except ValueError:
        parser.error("--noop-images takes two image counts, the first smaller, e.g. 16,64")
    given = argv if argv is not None else sys.argv[1:]
    command = "python -m benchmarks.bench " + " ".join(shlex.quote(a) for a in given)
    tools = args.only or [t for t in TOOLS if t not in OPTIONAL_TOOLS or args.baseline]
    report = run_benchmark(scale=args.scale, runs=args.runs, tools=tools, scenarios=args.scenarios,
                           workdir=args.workdir, output=None if args.output == "-" else args.output,
                           keep=args.keep, drop_caches=args.drop_caches, command=command.strip(),
                           noop_counts=noop_counts, baseline=args.baseline, wan_delays=args.wan_delays,
                           wan_bandwidth=args.wan_bandwidth, wan_duplex=args.wan_duplex)
    tables = [t for t in (report.results_table(), report.noop_table(), report.wan_table(), report.link_table(),
                          report.link_sparklines()) if t]
    print("\n\n".join(tables))
    for goal, value, met in report.targets():
        print(f"{'MET ' if met else ('MISS' if met is False else '----')} {goal}: {value}")
    if args.output != "-":
        print(f"\nwrote {args.output}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
