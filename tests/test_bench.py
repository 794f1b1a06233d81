"""The benchmark harness works end to end at a tiny scale (no time is ever asserted here).

Marked ``bench`` (about a minute in all): ``pytest -m "not bench"`` leaves it out.
"""

from __future__ import annotations

import pytest

from benchmarks.bench import TOOLS, main, run_benchmark
from benchmarks.wan import WAN_KINDS, LatencyFloor, wan_label
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
    for kind in WAN_KINDS:
        label = wan_label(kind, 5)
        assert "modelled, not measured" in report.row(label, "floor").skipped
        for tool in ("arcmirror", "skopeo-sync"):
            assert _measured(report, label, tool), (label, tool)
            requests = report.row(label, tool).good[0].requests
            assert requests.source > 0 and requests.target > 0, (label, tool)
            assert sum(requests.source_by_method.values()) == requests.source
            assert sum(requests.target_by_method.values()) == requests.target
        floor = report.case(label)["floor"]
        assert (floor.round_trips, floor.delay_ms, floor.bandwidth) == (1 if kind == "noop" else 4, 5, 200e6)
    # Only the timed run is counted: a no-op uploads nothing, a cold run puts every image's manifest.
    noop = report.row(wan_label("noop", 5), "arcmirror").good[0].requests
    cold = report.row(wan_label("cold", 5), "arcmirror").good[0].requests
    assert not {"POST", "PATCH"} & set(noop.target_by_method)
    assert cold.target_by_method["PUT"] >= 17 and cold.total > noop.total

    text = output.read_text()
    assert "## WAN: tens of milliseconds from both registries" in text
    assert "| wan-cold@5ms | 5 ms | 200 MB/s |" in text and "wan-noop@5ms: 1 × 2 × 5 ms" in text
    assert report.results_table() is None  # the WAN rows have their own table
    wan_goals = [(goal, value) for goal, value, met in report.targets() if goal.startswith("WAN")]
    assert len(wan_goals) == 6 and all("lacks 25" in value for _, value in wan_goals)


def test_the_latency_floor_model():
    cold = LatencyFloor.of(17, 25, 400_000_000, 10_000_000)
    assert cold.round_trips == 4 and cold.seconds == pytest.approx(4 * 0.05 + 2 * 40)
    assert cold.formula() == "4 × 2 × 25 ms + 2 × 400.0 MB / 10 MB/s = 80.20 s"
    noop = LatencyFloor.of(0, 10, 0, 10_000_000)
    assert noop.seconds == pytest.approx(0.02) and noop.formula() == "1 × 2 × 10 ms = 0.020 s"


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
                  ["--wan-bandwidth", "0"]):
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
