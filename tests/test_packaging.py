"""arcmirror as a Python package and as one file: the command, the declared Python minimum, the wheel and
wheelhouse, and arcmirror.pyz importing an archive on a machine that has nothing but a Python interpreter."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, invoke, registry_env, walk

TAG = "v1.41.0_2025-09-09"
NAMES = ["arc-bootstrapper", "arc-sqlmi", "arc-monitor-fluentbit"]


def _version() -> str:
    return re.search(r'__version__ = "([^"]+)"', (ROOT / "arcmirror" / "__init__.py").read_text())[1]


def _bare_python() -> str:
    """The interpreter the project's venv was made from: no venv."""
    base = getattr(sys, "_base_executable", sys.executable)
    return base if Path(base).exists() else shutil.which("python3")


#: ``python3 -I``, and ``-S``: no site-packages at all, so whatever this machine's Python has installed
#: cannot help (this one has python-dotenv, for one); the zipapp must carry everything.
BARE = ("-I", "-S")


def _bare_run(args: list[str], cwd: Path, flags: tuple[str, ...] = BARE, **env: str) -> subprocess.CompletedProcess:
    """``python3 -I -S ARGS`` with nothing in the environment but PATH and a fresh HOME (and ``env``)."""
    home = cwd / "home"
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run([_bare_python(), *flags, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PATH": os.environ["PATH"], "HOME": str(home), **env}, stdin=subprocess.DEVNULL)


def _task_names(listing: str) -> set[str]:
    return set(re.findall(r"^  ([a-z]+) ", listing, re.MULTILINE))


def test_the_code_runs_on_the_oldest_python_it_claims():
    declared = re.search(r'requires-python = ">=([0-9.]+)"', (ROOT / "pyproject.toml").read_text())[1]
    done = subprocess.run([str(Path(sys.executable).parent / "vermin"), "--no-tips", "--violations", f"-t={declared}-",
                           "--eval-annotations", "arcmirror", "tasks.py"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_command_offers_the_tasks_of_tasks_py_from_any_folder(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    listed = subprocess.run([sys.executable, "-m", "arcmirror", "--list"], cwd=tmp_path, capture_output=True,
                            text=True, env={**env, "PYTHONPATH": str(ROOT)})
    assert listed.returncode == 0, listed.stderr
    checkout = invoke(["--list"], {}, tmp_path / "checkout")
    assert _task_names(listed.stdout) == _task_names(checkout.stdout) == {
        "discover", "mirror", "pull", "tag", "push", "verify", "gate", "export", "import", "demo", "bench", "test",
        "build"}
    version = subprocess.run([sys.executable, "-m", "arcmirror", "--version"], cwd=tmp_path, capture_output=True,
                             text=True, env={**env, "PYTHONPATH": str(ROOT)})
    assert version.stdout.strip() == f"arcmirror {_version()}"
    unknown = subprocess.run([sys.executable, "-m", "arcmirror", "mirror", "--no-such-option"], cwd=tmp_path,
                             capture_output=True, text=True, env={**env, "PYTHONPATH": str(ROOT)})
    assert unknown.returncode == 2  # the same usage errors as invoke's


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """``invoke build`` once: the wheel, the wheelhouse and arcmirror.pyz."""
    dist = tmp_path_factory.mktemp("dist")
    done = invoke(["build", "--dist", str(dist)], {}, tmp_path_factory.mktemp("build-run"), timeout=600)
    assert done.code == 0, done.output
    return dist


def test_the_build_writes_the_wheel_a_wheelhouse_and_the_zipapp(built, tmp_path):
    version = _version()
    assert (built / f"arcmirror-{version}-py3-none-any.whl").is_file()
    wheels = {p.name.split("-")[0].lower().replace("_", "-") for p in (built / "wheelhouse").glob("*.whl")}
    pinned = {line.split("==")[0].lower() for line in (ROOT / "requirements.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    assert wheels == pinned | {"arcmirror"}  # exactly the runtime set: no test tool in it
    venv = tmp_path / "venv"
    subprocess.run([_bare_python(), "-m", "venv", str(venv)], check=True)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--find-links",
                                str(built / "wheelhouse"), "arcmirror"], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    shown = subprocess.run([str(venv / "bin" / "arcmirror"), "--version"], capture_output=True, text=True,
                           cwd=tmp_path)
    assert shown.stdout.strip() == f"arcmirror {version}"


def test_the_zipapp_alone_imports_an_archive_on_a_bare_python(built, release, new_registry, tmp_path):
    alone = tmp_path / "disconnected"
    alone.mkdir()
    shutil.copy2(built / "arcmirror.pyz", alone / "arcmirror.pyz")
    for module in ("arcmirror", "invoke", "dotenv"):  # the interpreter has nothing of ours
        assert _bare_run(["-c", f"import {module}"], alone).returncode != 0, module
    for flags in (BARE, ("-I",)):  # and as the README says to run it
        version = _bare_run(["arcmirror.pyz", "--version"], alone, flags)
        assert version.returncode == 0 and version.stdout.strip() == f"arcmirror {_version()}", version.stderr

    # the connected side, from the zipapp too: export with the tool beside the archive
    connected = tmp_path / "connected"
    connected.mkdir()
    shutil.copy2(built / "arcmirror.pyz", connected / "arcmirror.pyz")
    source = {**registry_env("SOURCE_DOCKER", release.registry), "SOURCE_DOCKER_REPOSITORY": release.repo,
              "SOURCE_DOCKER_TAG": release.tag, "MIRROR_IMAGES": ",".join(NAMES)}
    exported = _bare_run(["arcmirror.pyz", "export", "--archive", "out/release.tar", "--with-tool"], connected,
                         **source)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert (connected / "out" / "arcmirror.pyz").read_bytes() == (built / "arcmirror.pyz").read_bytes()
    assert "python3 arcmirror.pyz import --archive release.tar" in exported.stderr

    shutil.copy2(connected / "out" / "release.tar", alone / "release.tar")
    target = new_registry(auth="basic")
    env = {**registry_env("TARGET_DOCKER", target), "TARGET_DOCKER_REPOSITORY": "site/arcdata"}
    imported = _bare_run(["arcmirror.pyz", "import", "--archive", "release.tar"], alone, **env)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    for name in NAMES:
        assert target.manifest_digest(f"site/arcdata/{name}", TAG) == release.digests[name]
        assert walk(target, f"site/arcdata/{name}", TAG) == walk(release.registry, f"{release.repo}/{name}", TAG)
    assert (alone / "reports" / "import.xml").is_file() and (alone / "reports" / "verify.xml").is_file()
    assert target.password not in imported.stdout + imported.stderr


def test_with_tool_without_a_zipapp_says_how_to_get_one(tmp_path):
    run = invoke(["export", "--archive", "x.tar", "--with-tool"], {}, tmp_path)
    if (ROOT / "dist" / "arcmirror.pyz").exists():
        pytest.skip("this checkout has dist/arcmirror.pyz")
    assert run.code == 2 and "run 'invoke build' first" in run.stderr
