"""The operator's and the pipeline's experience: --list/--help, progress, dry runs, JSON, CI logs, JUnit schema."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
import xmlschema
from helpers import INVOKE, ROOT, invoke, mirror_env

TASKS = ["discover", "mirror", "pull", "tag", "push", "verify", "gate", "export", "import", "demo", "bench", "test"]
SCHEMA = xmlschema.XMLSchema(str(Path(__file__).parent / "data" / "junit.xsd"))
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but \t and \n


def test_list_tells_the_story_and_every_task_has_help(tmp_path):
    listing = invoke(["--list"], {}, tmp_path)
    assert listing.code == 0
    for name in TASKS:
        assert re.search(rf"^\s+{name}\s+\S", listing.stdout, re.M), name
    for name in TASKS:
        helped = invoke(["--help", name], {}, tmp_path)
        assert helped.code == 0 and "Docstring:" in helped.stdout and "Options:" in helped.stdout, name
    assert "SOURCE_DOCKER_" in invoke(["--help", "mirror"], {}, tmp_path).stdout


def test_reports_of_every_step_validate_against_the_junit_schema(release, new_registry, tmp_path):
    target = new_registry()
    env = mirror_env(release.registry, target, release, MIRROR_IMAGES="arc-bootstrapper,arc-sqlmi,arc-gone")
    for step in (["discover"], ["mirror"], ["pull"], ["tag"], ["push"], ["verify"]):
        invoke(step, env, tmp_path)
    files = sorted((tmp_path / "reports").glob("*.xml"))
    assert {f.stem for f in files} == {"discover", "mirror", "pull", "tag", "push", "verify"}
    for path in files:
        SCHEMA.validate(str(path))
    failing = (tmp_path / "reports" / "mirror.xml").read_text()
    assert "<failure" in failing and "arc-gone" in failing


def test_plain_progress_has_no_control_characters_and_the_arc_hint(release, new_registry, tmp_path):
    target = new_registry(auth="basic")
    run = invoke(["mirror"], mirror_env(release.registry, target, release), tmp_path)
    assert run.code == 0, run.output
    assert not CONTROL.search(run.output)
    assert re.search(r"^\[\d+/7\] arc-sqlmi: copied", run.stderr, re.M)
    assert f'"registry": "{target.host}"' in run.stderr and '"repository": "mirror/arcdata"' in run.stderr
    assert "kubectl create secret docker-registry" in run.stderr and "--docker-password=<password>" in run.stderr
    assert target.password not in run.output


def test_terminal_progress_draws_bars(release, new_registry, tmp_path):
    """On a TTY (a pseudo-terminal here) progress is drawn with rich; the summary still follows."""
    target = new_registry()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TERM": "xterm-256color", "COLUMNS": "120",
           **mirror_env(release.registry, target, release)}
    main, secondary = pty.openpty()
    process = subprocess.Popen(INVOKE + ["mirror"], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                               stdout=secondary, stderr=secondary)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=60)
    os.close(main)
    screen = b"".join(chunks).decode(errors="replace")
    assert process.returncode == 0, screen
    assert "\x1b[" in screen  # drawn, not printed
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert "copied arc-sqlmi" in plain and "7 images: 7 copied" in plain


def test_dry_runs_change_nothing(release, new_registry, tmp_path):
    target = new_registry()
    env = mirror_env(release.registry, target, release)
    run = invoke(["mirror", "--dry-run"], env, tmp_path)
    assert run.code == 0, run.output
    assert "Dry run of mirror: nothing was changed" in run.stdout
    assert re.search(r"arc-sqlmi\s+would send \d+ blobs", run.stdout)
    assert target.catalog() == [] and not (tmp_path / "reports").exists()

    assert invoke(["mirror", "--images", "arc-bootstrapper"], env, tmp_path).code == 0
    again = invoke(["mirror", "--dry-run"], env, tmp_path / "again")
    assert re.search(r"arc-bootstrapper\s+up to date", again.stdout)
    assert re.search(r"arc-controller\s+would send \d+ blobs .* mount [1-9]", again.stdout)
    assert target.catalog() == ["mirror/arcdata/arc-bootstrapper"]

    # push and import dry runs
    assert invoke(["pull"], env, tmp_path).code == 0 and invoke(["tag"], env, tmp_path).code == 0
    pushed = invoke(["push", "--dry-run"], env, tmp_path)
    assert pushed.code == 0 and "Dry run of push" in pushed.stdout
    assert invoke(["export", "--archive", str(tmp_path / "a.tar")], env, tmp_path).code == 0
    empty = new_registry()
    imported = invoke(["import", "--dry-run", "--archive", str(tmp_path / "a.tar")],
                      {"TARGET_DOCKER_REGISTRY": empty.host, "TARGET_DOCKER_INSECURE": "true"}, tmp_path / "imp")
    assert imported.code == 0, imported.output
    assert "Dry run of import" in imported.stdout and empty.catalog() == []
    assert target.catalog() == ["mirror/arcdata/arc-bootstrapper"]


def test_json_summaries(release, new_registry, tmp_path):
    target = new_registry()
    env = mirror_env(release.registry, target, release, MIRROR_IMAGES="arc-bootstrapper,arc-sqlmi")
    run = invoke(["mirror", "--json"], env, tmp_path)
    assert run.code == 0
    data = json.loads(run.stdout)
    assert data["ok"] is True and data["totals"]["images"] == 2
    assert {i["name"]: i["digest"] for i in data["images"]} == {
        n: release.digests[n] for n in ("arc-bootstrapper", "arc-sqlmi")}
    verified = invoke(["verify", "--json"], env, tmp_path)
    assert verified.code == 0
    assert all(i["ok"] for i in json.loads(verified.stdout)["images"])


def test_github_actions_annotations_masks_and_summary(release, new_registry, tmp_path):
    target = new_registry(auth="basic")
    summary = tmp_path / "summary.md"
    env = mirror_env(release.registry, target, release, MIRROR_IMAGES="arc-bootstrapper,arc-gone",
                     GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary))
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 1
    assert re.search(r"^::error title=arcmirror mirror%3A arc-gone::arc-gone: .*does not exist", run.stdout, re.M)
    assert "::add-mask::" in run.stdout  # the derived Basic credential is announced
    assert target.password not in run.output  # the pipeline's own secret is not repeated
    text = summary.read_text()
    assert "| arc-gone | **failed** |" in text and "| arc-bootstrapper | passed |" in text


def test_azure_pipelines_log_issues_and_secrets_from_an_env_file(release, new_registry, tmp_path):
    target = new_registry(auth="basic")
    env = mirror_env(release.registry, target, release, MIRROR_IMAGES="arc-bootstrapper,arc-gone", TF_BUILD="True")
    password = env.pop("TARGET_DOCKER_PASSWORD")
    (tmp_path / ".env").write_text(f"TARGET_DOCKER_PASSWORD={password}\n")
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 1
    assert re.search(r"^##vso\[task\.logissue type=error\]arcmirror mirror: arc-gone: ", run.stdout, re.M)
    assert "##vso[task.setvariable variable=ARCMIRROR_MASK_TARGET_DOCKER_PASSWORD;issecret=true]" in run.stdout
    assert "##vso[task.uploadsummary]" in run.stdout
    assert (tmp_path / "reports" / "mirror-summary.md").is_file()


@pytest.mark.parametrize("args", [["mirror", "--concurrency", "0"], ["mirror", "--platforms", "linux"],
                                  ["mirror", "--shard", "3/2"], ["export"]])
def test_bad_options_exit_2(tmp_path, args):
    run = invoke(args, {"SOURCE_DOCKER_TAG": "v1", "TARGET_DOCKER_REGISTRY": "r.example"}, tmp_path)
    assert run.code == 2, run.output


def test_the_readme_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    commands = [line for line in lines[:4] if line.startswith("./scripts/bootstrap")]
    assert commands == ["./scripts/bootstrap && .venv/bin/invoke demo     # install everything, run the demo mirror end to end",
                        "./scripts/bootstrap && .venv/bin/invoke test     # install everything, run the whole test suite"]
    assert "./scripts/bootstrap && .venv/bin/invoke test" in (ROOT / ".ci" / "run").read_text()
    assert sys.executable
