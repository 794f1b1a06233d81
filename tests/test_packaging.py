"""arcmirror as a Python package and as one file: the command, the declared Python minimum, the wheel and
wheelhouse, arcmirror.pyz importing an archive on a machine that has nothing but a Python interpreter, and
arcmirror.pyz loading its compiled dependencies on every CPython 3.9-3.13 this machine has."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
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


#: The CPython minor versions arcmirror.pyz claims (arcmirror/runs/build.py's PYTHONS, written out here).
CLAIMED = ("3.9", "3.10", "3.11", "3.12", "3.13")


def _cpythons() -> dict[str, str]:
    """Every distinct CPython of :data:`CLAIMED` on this machine (path -> "3.X"): pyenv's versions, the
    ``python3`` and ``python3.X`` on PATH (not pyenv's shims), the one the venv was made from."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [str(p) for p in sorted(pyenv.glob("*/bin/python3.*")) if re.fullmatch(r"python3\.\d+", p.name)]
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if folder and "shims" not in Path(folder).parts:
            candidates += [str(p) for p in sorted(Path(folder).glob("python3*"))
                           if re.fullmatch(r"python3(\.\d+)?", p.name)]
    candidates.append(_bare_python())
    found: dict[str, str] = {}
    seen: set[str] = set()
    for candidate in candidates:
        real = os.path.realpath(candidate)
        if real in seen or not os.access(real, os.X_OK):
            continue
        seen.add(real)
        asked = subprocess.run([candidate, "-I", "-S", "-c", "import sys; print(sys.implementation.name, "
                                "'%d.%d' % sys.version_info[:2])"], capture_output=True, text=True, timeout=30)
        if asked.returncode == 0 and asked.stdout.split()[:1] == ["cpython"] and asked.stdout.split()[1] in CLAIMED:
            found[candidate] = asked.stdout.split()[1]
    return found


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


def test_the_wheelhouse_holds_the_wheels_for_every_claimed_python_of_its_platform(built):
    wheels = sorted(p.name for p in (built / "wheelhouse").glob("*.whl"))
    of = lambda project: [w for w in wheels if w.lower().startswith(project + "-")]  # noqa: E731
    assert of("cryptography") == [w for w in of("cryptography") if "-cp39-abi3-manylinux2014_x86_64" in w] != []
    assert len(of("cryptography")) == 1  # the abi3 wheel every CPython from 3.9 on loads, glibc 2.17
    assert {w.split("-")[2] for w in of("cffi")} == {"cp" + v.replace(".", "") for v in CLAIMED}
    assert all("manylinux2014_x86_64" in w for w in of("cffi"))
    assert of("cbor2") == ["cbor2-5.9.0-py3-none-any.whl"]  # never its compiled wheels
    assert of("asn1crypto") and all(w.endswith("-none-any.whl") for w in of("asn1crypto") + of("pycparser"))


#: Run inside arcmirror.pyz: the signature verification's imports, cryptography's Rust binding (which
#: loads cffi's _cffi_backend of this Python) at work, and cbor2 (its pure code); says where each came from.
PROBE = """
import sys, os, cryptography, cryptography.x509, cryptography.hazmat.primitives.asymmetric.padding, cbor2
import asn1crypto.cms, _cffi_backend
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
key = ec.generate_private_key(ec.SECP256R1())
key.public_key().verify(key.sign(b"x", ec.ECDSA(hashes.SHA256())), b"x", ec.ECDSA(hashes.SHA256()))
assert cbor2.loads(cbor2.dumps({1: [b"x", "y"]})) == {1: [b"x", "y"]}
root = os.environ["SHIV_ROOT"]
assert all(m.__file__.startswith(root) for m in (cryptography, cbor2, asn1crypto.cms, _cffi_backend)), root
pure = cbor2.loads is cbor2._decoder.loads and "_cbor2" not in sys.modules
print("%d.%d" % sys.version_info[:2], "pure-cbor2" if pure else "C-cbor2", os.path.basename(_cffi_backend.__file__))
"""


def test_the_zipapp_runs_on_every_cpython_it_claims_that_this_machine_has(built, tmp_path):
    pyz = built / "arcmirror.pyz"
    with zipfile.ZipFile(pyz) as archive:
        files = [n.split("/", 1)[1] for n in archive.namelist() if n.startswith("site-packages/")]
    assert "cbor2/__init__.py" in files
    assert not [f for f in files if Path(f).name.startswith("_cbor2")]  # cbor2's C extension is not in it
    assert {f for f in files if f.startswith("_cffi_backend.")} == {
        f"_cffi_backend.cpython-{v.replace('.', '')}-x86_64-linux-gnu.so" for v in CLAIMED}
    assert [f for f in files if f.endswith(".so") and not f.startswith("_cffi_backend.")] == [
        "cryptography/hazmat/bindings/_rust.abi3.so"]  # no other compiled code: PyYAML's and the rest pure

    pythons = _cpythons()
    ran = []
    for python, minor in sorted(pythons.items(), key=lambda item: (tuple(map(int, item[1].split("."))), item[0])):
        folder = tmp_path / f"{minor}-{len(ran)}"
        folder.mkdir()
        shiv_root = str(folder / "shiv")
        home = folder / "home"
        home.mkdir()
        run = lambda *args, **env: subprocess.run(  # noqa: E731
            [python, *BARE, str(pyz), *args], cwd=folder, capture_output=True, text=True, timeout=300,
            stdin=subprocess.DEVNULL, env={"PATH": os.environ["PATH"], "HOME": str(home), "SHIV_ROOT": shiv_root,
                                           **env})
        version = run("--version")
        assert version.returncode == 0 and version.stdout.strip() == f"arcmirror {_version()}", (
            python, version.stdout + version.stderr)
        probe = run("-c", PROBE, SHIV_INTERPRETER="1")
        assert probe.returncode == 0, (python, probe.stdout + probe.stderr)
        assert probe.stdout.split() == [minor, "pure-cbor2",
                                        f"_cffi_backend.cpython-{minor.replace('.', '')}-x86_64-linux-gnu.so"], python
        ran.append(f"{minor} ({python})")
    print(f"arcmirror.pyz ran on CPython {', '.join(ran)}")
    assert ran, f"no CPython of {', '.join(CLAIMED)} on this machine"


def test_build_names_the_platforms_it_can_build_for(tmp_path):
    run = invoke(["build", "--platform", "s390x", "--dist", str(tmp_path / "dist")], {}, tmp_path)
    assert run.code == 2 and "x86_64, aarch64" in run.stderr, run.output
    assert not (tmp_path / "dist").exists()


def test_with_tool_without_a_zipapp_says_how_to_get_one(tmp_path):
    run = invoke(["export", "--archive", "x.tar", "--with-tool"], {}, tmp_path)
    if (ROOT / "dist" / "arcmirror.pyz").exists():
        pytest.skip("this checkout has dist/arcmirror.pyz")
    assert run.code == 2 and "run 'invoke build' first" in run.stderr
