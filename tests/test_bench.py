"""The benchmark harness works end to end at a tiny scale (no time is ever asserted here).

Marked ``bench`` (about a minute in all): ``pytest -m "not bench"`` leaves it out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks.bench import DEFAULT_SCENARIOS, SCENARIOS, TOOLS, main, run_benchmark
from benchmarks.measure import MB, LinkTimeline, gnu_time, run_measured
from benchmarks.report import timelines_folder
from benchmarks.scenarios import clone_storage
from benchmarks.wan import WAN_KINDS, LatencyFloor, parse_duplex, wan_label
from testbed import dockerd

pytestmark = pytest.mark.bench

TINY = {"scale": 0.01, "runs": 1}
NOOP = (8, 20)  # 16 Arc names + arc-extra-NN beyond them, fewer than the real 16/64 to save time


def _measured(report, case: str, tool: str) -> bool:
    row = report.row(case, tool)
    return row is not None and not row.skipped and len(row.good) == 1


def test_every_scenario_and_tool_runs_on_tiny_data(tmp_path, testbed_tools):
    output = tmp_path / "benchmarks.md"
    tools = [t for t in TOOLS if t not in ("docker", "arcmirror-baseline")]  # the engine has its own test below
    report = run_benchmark(**TINY, tools=tools, scenarios=["cold", "noop", "incremental", "memory"],
                           workdir=tmp_path / "work", output=output, noop_counts=NOOP)

    assert report.ok, report.results_table()
    noops = [f"noop-{n}" for n in NOOP]
    for case in ("cold", *noops, "incremental", "memory"):
        assert _measured(report, case, "arcmirror"), case
        assert _measured(report, case, "skopeo-copy"), case
    for case in ("cold", *noops, "incremental"):
        assert _measured(report, case, "skopeo-sync"), case
    for case in ("cold", "incremental", "memory"):
        assert _measured(report, case, "floor"), case
        assert _measured(report, case, "floor-relay"), case
    assert "nothing to send" in report.row(noops[0], "floor").skipped
    assert report.row(noops[1], "arcmirror").good[0].extra == {} and len(report.cases) == 5
    pull_push = report.row("cold", "pull-push")
    assert pull_push.skipped is None or "not available" in pull_push.skipped

    # arcmirror's own figures are read back: bytes sent from mirror.json, peak RSS of the process.
    incremental = report.row("incremental", "arcmirror").good[0]
    new_bytes = next(c["new_bytes"] for c in report.cases if c["label"] == "incremental")
    assert 0 < new_bytes < next(c["bytes"] for c in report.cases if c["label"] == "cold")
    assert isinstance(incremental.bytes_sent, int) and incremental.bytes_sent > 0
    assert "noop_after" in incremental.extra
    assert report.row("memory", "arcmirror").peak() > 1_000_000

    text = output.read_text()
    for heading in ("## Machine", "## Data", "## Results", "## No-op: cost of one more image",
                    "## The issue's targets"):
        assert heading in text
    assert "| cold | arcmirror |" in text and "skopeo" in report.machine["skopeo"]
    assert report.targets()
    assert not (tmp_path / "work" / "runs").exists() or not any((tmp_path / "work" / "runs").iterdir())


def test_wan_runs_through_relays_that_count_each_runs_requests(tmp_path, testbed_tools):
    output = tmp_path / "wan.md"
    report = run_benchmark(**TINY, tools=["floor", "arcmirror", "skopeo-sync"], scenarios=["wan"],
                           wan_delays=(5,), wan_bandwidth=200, workdir=tmp_path / "work", output=output)

    assert report.ok, report.wan_table()
    capped = {duplex: wan_label("cold", 5, 200 * MB, duplex) for duplex in ("full", "half")}
    assert capped == {"full": "wan-cold@5ms/200MBps-full", "half": "wan-cold@5ms/200MBps-half"}
    labels = [wan_label(kind, 5) for kind in WAN_KINDS] + list(capped.values())
    assert [c["label"] for c in report.cases] == labels  # the capped link runs cold only
    for label in labels:
        assert "modelled, not measured" in report.row(label, "floor").skipped
        for tool in ("arcmirror", "skopeo-sync"):
            assert _measured(report, label, tool), (label, tool)
            run = report.row(label, tool).good[0]
            requests = run.requests
            assert requests.source > 0 and requests.target > 0, (label, tool)
            assert sum(requests.source_by_method.values()) == requests.source
            assert sum(requests.target_by_method.values()) == requests.target
            # The link's timeline covers the run; the blobs crossed it down and up.
            timeline = run.timeline
            moved = report.case(label)["floor"].bytes_to_move
            assert timeline.seconds == pytest.approx(run.seconds, abs=0.5), (label, tool)
            assert len(timeline.down) == len(timeline.up) >= timeline.seconds / timeline.slice_seconds
            if moved:
                assert moved <= timeline.bytes("down") < 1.2 * moved + 1e6, (label, tool)
                assert moved <= timeline.bytes("up") < 1.2 * moved + 1e6, (label, tool)
        floor = report.case(label)["floor"]
        kind = report.case(label)["wan_kind"]
        assert (floor.round_trips, floor.delay_ms) == (1 if kind == "noop" else 4, 5)
    for kind in WAN_KINDS:
        assert report.case(wan_label(kind, 5))["floor"].bandwidth is None  # uncapped as ever
    for duplex, label in capped.items():
        floor, case = report.case(label)["floor"], report.case(label)
        assert (floor.bandwidth, floor.duplex, case["duplex"], case["loopback"]) == (200e6, duplex, duplex, "cold")
        timeline = report.row(label, "arcmirror").good[0].timeline
        assert (timeline.cap, timeline.duplex) == (200e6, duplex)
        assert 0 <= timeline.idle_share("down") <= 1 and 0 < timeline.utilisation("up") <= 1.5
    # half duplex counts the bytes twice against one budget; full duplex once each way
    full, half = (report.case(capped[d])["floor"] for d in ("full", "half"))
    assert half.transfer == pytest.approx(2 * full.transfer) and full.latency == half.latency
    # Only the timed run is counted: a no-op uploads nothing, a cold run puts every image's manifest.
    noop = report.row(wan_label("noop", 5), "arcmirror").good[0].requests
    cold = report.row(wan_label("cold", 5), "arcmirror").good[0].requests
    assert not {"POST", "PATCH"} & set(noop.target_by_method)
    assert cold.target_by_method["PUT"] >= 17 and cold.total > noop.total

    text = output.read_text()
    assert "## WAN: tens of milliseconds from both registries" in text
    assert "| wan-cold@5ms | 5 ms | none |" in text and "wan-noop@5ms: 1 × 2 × 5 ms" in text
    assert "| wan-cold@5ms/200MBps-full | 5 ms | 200 MB/s full duplex |" in text
    assert "| wan-cold@5ms/200MBps-half | 5 ms | 200 MB/s half duplex |" in text
    assert "## Capped links: where the link idles" in text
    assert "| wan-cold@5ms/200MBps-half | skopeo-sync |" in text  # the link table has every tool
    sparklines = report.link_sparklines()
    assert "wan-cold@5ms/200MBps-full: floor" in sparklines and "skopeo" not in sparklines
    assert sparklines.count(" both |") == 1  # the half-duplex link's one budget
    assert report.results_table() is None  # the WAN rows have their own table
    wan_goals = [(goal, value, met) for goal, value, met in report.targets() if goal.startswith("WAN")]
    assert len(wan_goals) == 8
    assert all("lacks 25" in value for _, value, _ in wan_goals[:6])
    assert [g for g, _, _ in wan_goals[6:]] == ["WAN D = 5 ms, 200 MB/s full duplex: cold ≤ 1.1× floor",
                                                "WAN D = 5 ms, 200 MB/s half duplex: cold ≤ 1.1× floor"]
    assert all(met is not None for _, _, met in wan_goals[6:])

    # Every run's timeline, a JSON file per WAN case, beside the report: timelines/wan/ for wan.md (only
    # docs/benchmarks.md has timelines/ itself), so another report's files are never removed
    folder = tmp_path / "timelines" / "wan"
    assert "`timelines/wan/` beside this file" in text
    files = sorted(p.name for p in folder.iterdir())
    assert files == sorted(f"{label.replace('/', '_')}.json" for label in labels)
    saved = json.loads((folder / "wan-cold@5ms_200MBps-full.json").read_text())
    assert saved["duplex"] == "full" and saved["cap_bytes_per_second"] == 200e6
    run = saved["tools"]["arcmirror"][0]
    assert run["down"] == report.row(capped["full"], "arcmirror").good[0].timeline.down
    assert set(saved["tools"]) == {"arcmirror", "skopeo-sync"}


def test_big_runs_cold_and_incremental_on_loopback_and_through_a_capped_link(tmp_path, testbed_tools):
    """The GB-scale scenario's code path, at 1/200 of its size (about 20 MB)."""
    report = run_benchmark(scale=0.005, runs=1, tools=["floor", "arcmirror"], scenarios=["big"],
                           wan_bandwidth=100, wan_duplex="full", workdir=tmp_path / "work",
                           output=tmp_path / "big.md")

    assert report.ok, (report.results_table(), report.wan_table())
    far = [wan_label(kind, 10, 100 * MB, "full", prefix="big") for kind in ("cold", "incremental")]
    assert [c["label"] for c in report.cases] == ["big-cold", "big-incremental", *far]
    cold, incremental = report.case("big-cold"), report.case("big-incremental")
    assert cold["images"] == 17 and 18 * MB < cold["bytes"] < 23 * MB  # about 4 GB at scale 1
    assert cold["largest_blob"] > 4.4 * MB and "3 layers over" in cold["description"]
    assert 0 < incremental["new_bytes"] < cold["bytes"] / 3
    for label in ("big-cold", "big-incremental", *far):
        assert _measured(report, label, "arcmirror"), label
        assert report.row(label, "arcmirror").peak() > 10 * MB  # the process tree, polled
    for label in ("big-cold", "big-incremental"):
        assert _measured(report, label, "floor"), label
    for label in far:
        assert "modelled, not measured" in report.row(label, "floor").skipped
        timeline = report.row(label, "arcmirror").good[0].timeline
        assert timeline.duplex == "full" and timeline.bytes("down") >= report.case(label)["new_bytes"]
    assert report.case(far[0])["loopback"] == "big-cold"
    goals = {goal: (value, met) for goal, value, met in report.targets() if goal.startswith("big")}
    assert set(goals) == {"big D = 10 ms, 100 MB/s full duplex: cold ≤ 1.1× floor",
                          "big D = 10 ms, 100 MB/s full duplex: incremental ≤ 1.1× floor",
                          "big: peak RSS < 150.0 MB (arcmirror's whole process tree)",
                          "big: the target's digests are the source's (every image, every run)"}
    assert goals["big: the target's digests are the source's (every image, every run)"] == \
        ("4 of 4 runs, 17 images each", True)
    text = (tmp_path / "big.md").read_text()
    assert "| big-cold | arcmirror |" in text and "| big-cold@10ms/100MBps-full | 10 ms |" in text
    assert "big-incremental@10ms/100MBps-full: floor" in text  # its sparkline


def test_the_default_scenarios_leave_out_big():
    assert "big" in SCENARIOS and "big" not in DEFAULT_SCENARIOS
    assert set(DEFAULT_SCENARIOS) == set(SCENARIOS) - {"big"}


def test_the_latency_floor_model():
    cold = LatencyFloor.of(17, 25, 400_000_000, 10_000_000)
    assert cold.round_trips == 4 and cold.seconds == pytest.approx(4 * 0.05 + 2 * 40)
    assert cold.formula() == "4 × 2 × 25 ms + 2 × 400.0 MB / 10 MB/s = 80.20 s"
    assert cold.duplex == "half"  # one budget for both directions, as the cap always was
    full = LatencyFloor.of(17, 25, 400_000_000, 10_000_000, "full")  # a budget each way: down and up at once
    assert full.seconds == pytest.approx(4 * 0.05 + 40)
    assert full.formula() == "4 × 2 × 25 ms + 400.0 MB / 10 MB/s = 40.20 s"
    noop = LatencyFloor.of(0, 10, 0, 10_000_000)
    assert noop.seconds == pytest.approx(0.02) and noop.formula() == "1 × 2 × 10 ms = 0.020 s"
    with pytest.raises(ValueError):
        LatencyFloor.of(1, 10, 1, 1, "simplex")
    assert parse_duplex("both") == ("full", "half") and parse_duplex("half") == ("half",)
    assert wan_label("cold", 10) == "wan-cold@10ms"
    assert wan_label("cold", 10, 40 * MB, "full") == "wan-cold@10ms/40MBps-full"
    assert wan_label("incremental", 25, 12.5 * MB, "half", prefix="big") == "big-incremental@25ms/12.5MBps-half"


def test_a_link_timeline_tells_idle_from_busy():
    """50 ms slices of a 1 s run on a 40 MB/s link (2 MB per slice at the cap)."""
    down = [0] * 4 + [2_000_000] * 12 + [500_000] * 4
    up = [0] * 6 + [2_000_000] * 12 + [0] * 2
    full = LinkTimeline(0.05, 1.0, down, up, 40 * MB, "full")
    assert full.bytes("down") == 26_000_000 and full.bytes("both") == 50_000_000
    assert full.idle_share("down") == pytest.approx(0.2) and full.under_half_share("down") == pytest.approx(0.4)
    assert full.idle_share("up") == pytest.approx(0.4) and full.utilisation("up") == pytest.approx(0.6)
    assert full.busy_span("down") == pytest.approx((0.2, 0.8)) and full.busy_span("up") == pytest.approx((0.3, 0.9))
    assert full.sparkline("down") == " " * 4 + "█" * 12 + "▂" * 4
    assert full.sparkline("up", width=2) == "   ██████ "
    # Half duplex: one budget; the link is idle only when neither direction uses it.
    half = LinkTimeline(0.05, 1.0, down, up, 40 * MB, "half")
    assert half.idle_share("both") == pytest.approx(0.2) and half.utilisation("both") == pytest.approx(1.25)
    # A partial last slice weighs what it covers; uncapped, no shares, the sparkline is relative.
    short = LinkTimeline(0.05, 0.06, [2_000_000, 0], [0, 0], 40 * MB, "full")
    assert short.idle_share("down") == pytest.approx(0.01 / 0.06)
    free = LinkTimeline(0.05, 0.1, [10, 5], [0, 0])
    assert free.idle_share("down") is None and free.sparkline("down") == "█▄"


def test_peak_rss_is_the_commands_own_not_the_harness(tmp_path):
    """Linux hands a child the parent's RSS high-water mark across fork and exec: the harness's
    memory (the relays' buffers) must not show up as the tool's peak."""
    if gnu_time() is None:
        pytest.skip("GNU time is not installed (apt-get install time)")
    ballast = bytearray(200 * MB)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    assert run_measured(["true"]).peak_rss < 20 * MB
    del ballast


def test_a_seed_is_cloned_with_its_blobs_hard_linked(tmp_path):
    seed = tmp_path / "seed"
    blob = seed / "docker/registry/v2/blobs/sha256/ab/abcd/data"
    link = seed / "docker/registry/v2/repositories/r/_manifests/tags/t/current/link"
    for path, text in ((blob, "bytes"), (link, "sha256:abcd")):
        path.parent.mkdir(parents=True)
        path.write_text(text)
    clone_storage(seed, tmp_path / "target")
    cloned_blob = tmp_path / "target/docker/registry/v2/blobs/sha256/ab/abcd/data"
    cloned_link = tmp_path / "target/docker/registry/v2/repositories/r/_manifests/tags/t/current/link"
    assert os.path.samefile(blob, cloned_blob) and not os.path.samefile(link, cloned_link)
    assert cloned_blob.read_text() == "bytes" and cloned_link.read_text() == "sha256:abcd"


def test_docker_is_skipped_with_its_reason_when_dockerd_is_absent(tmp_path, monkeypatch, testbed_tools):
    monkeypatch.setattr(dockerd, "dockerd_path", lambda: None)
    output = tmp_path / "b.md"
    report = run_benchmark(**TINY, tools=["docker"], scenarios=["cold"], workdir=tmp_path / "work", output=output)
    skipped = report.row("cold", "docker").skipped
    assert skipped and "dockerd is not installed" in skipped
    assert f"| cold | docker | – | – | – | – | – | skipped: {skipped} |" in output.read_text()


@pytest.mark.skipif(dockerd.unavailable_reason() is not None, reason=str(dockerd.unavailable_reason()))
def test_docker_pull_tag_push_through_a_private_engine(tmp_path, testbed_tools):
    report = run_benchmark(**TINY, tools=["docker"], scenarios=["cold"], workdir=tmp_path / "work")
    assert report.ok, report.results_table()
    assert _measured(report, "cold", "docker")
    assert not list((tmp_path / "work").glob("dockerd/data/*")), "the engine's data is removed at the end"


def test_command_line(tmp_path, capsys, testbed_tools):
    output = tmp_path / "memory.md"
    assert main(["--scale", "0.01", "--runs", "1", "--only", "arcmirror,floor", "--scenarios", "memory",
                 "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "| memory | arcmirror |" in printed and "peak RSS" in printed
    assert output.exists()
    for wrong in (["--only", "rsync"], ["--wan-delays", "10,x"], ["--wan-delays", "10,10"],
                  ["--wan-bandwidth", "0"], ["--wan-duplex", "simplex"], ["--scenarios", "huge"]):
        with pytest.raises(SystemExit) as exit_info:
            main(wrong)
        assert exit_info.value.code == 2, wrong


@pytest.mark.parametrize("how", ["no git installed", "not a git work tree"])
def test_a_source_tree_without_git_records_an_unknown_commit(tmp_path, monkeypatch, how):
    import benchmarks.report as report

    if how == "no git installed":
        monkeypatch.setenv("PATH", str(tmp_path))  # no git on it
    else:
        monkeypatch.setattr(report, "ROOT", tmp_path)  # an unpacked archive: no .git
    assert report.code_version() == "unknown"



def test_each_report_keeps_its_own_timelines():
    # the big run's report once removed the default run's timelines (one folder, its *.json removed first)
    assert timelines_folder(Path("docs/benchmarks.md")) == "timelines"
    assert timelines_folder(Path("docs/benchmarks-big.md")) == "timelines/benchmarks-big"
    assert timelines_folder(Path("/tmp/big.md")) == "timelines/big"
