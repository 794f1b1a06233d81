"""What carries arcmirror across an air gap: a wheel, a wheelhouse, and ``arcmirror.pyz``, one file that runs
with nothing installed but python3, CPython 3.9 to 3.13, on the platform it was built for: Linux x86_64
with glibc 2.17 or newer (RHEL 7 and later, Debian 9, Ubuntu 18.04; not Alpine's musl) unless
``invoke build --platform aarch64`` made it for 64-bit Arm.

The wheel is built by PyPA's ``build`` (setuptools, ``pyproject.toml``). The runtime set is no longer pure
Python: signature verification needs ``cryptography`` (Rust, OpenSSL linked in) and, imported at run time,
cffi's ``_cffi_backend``, a C extension compiled for one CPython minor version. So nothing is taken from the
building interpreter: every wheel is downloaded (``pip download --only-binary=:all:`` from pip's configured
index) for the target platform's manylinux2014 tag and the supported Pythons:

- ``cryptography``: its ``cp39-abi3`` wheel, which every CPython from 3.9 on loads (the ``cp311-abi3`` one
  pip would pick on 3.11 does not load on 3.9 or 3.10, and its manylinux_2_34 variant needs glibc 2.34);
- a wheel compiled per minor version (``cp39-cp39``: cffi, PyYAML): one per supported Python, all in the
  wheelhouse; ``arcmirror.pyz`` holds the 3.9 one installed plus, for :data:`SIDE_BY_SIDE` (cffi), the other
  versions' extension modules beside it (their file names differ by ABI tag:
  ``_cffi_backend.cpython-39-x86_64-linux-gnu.so`` ... ``cpython-313``); the compiled speed-ups of
  :data:`SPEED_UPS_LEFT_OUT` (PyYAML's libyaml binding, used only by the C loaders) are left out of it;
- :data:`PURE` (cbor2, charset-normalizer): the ``py3-none-any`` wheel, although compiled ones exist, so that
  the same pure-Python code runs everywhere and cbor2's C extension is not in the zipapp;
- the rest are pure Python wheels, as before.

The wheelhouse (``pip install --no-index --find-links``) thus installs on any of those Pythons on that
platform. The zipapp is made by shiv from a site-packages folder that pip installs from the wheelhouse alone
(``--target``, for CPython 3.9 on the target platform, resolving ``arcmirror`` and every pin: a pin missing
from the set fails the build), so it holds exactly the pinned set. shiv rather than pex: a shiv file is a
plain zipapp (``python3 arcmirror.pyz``) with a small bootstrap that unpacks it once into ``~/.shiv``
(``SHIV_ROOT`` moves that). A new Python (3.14) needs its version added to :data:`PYTHONS` (cffi 2.0.0 has
cp314 wheels); another platform, its manylinux tags in :data:`PLATFORMS` (one ``.pyz`` per platform:
cryptography's ``_rust.abi3.so`` has the same name on every architecture).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import __version__
from ..oci.errors import HintedError

PYZ = "arcmirror.pyz"

#: The CPython minor versions the wheelhouse and ``arcmirror.pyz`` serve, each with the version pip judges
#: the wheels' Requires-Python by: pip reads "3.9" as 3.9.0, which cryptography's (``!=3.9.0, !=3.9.1``)
#: excludes, so 3.9 is given as its last release. The first is the one the zipapp's site-packages is for.
PYTHONS = {"3.9": "3.9.25", "3.10": "3.10", "3.11": "3.11", "3.12": "3.12", "3.13": "3.13"}

#: The platforms a build can be for, each with the wheel platform tags pip may take: manylinux2014 is glibc
#: 2.17 or newer (pip also accepts manylinux2010 and manylinux1 wheels for x86_64). The default runs here.
PLATFORMS = {
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_17_x86_64"),
    "aarch64": ("manylinux2014_aarch64", "manylinux_2_17_aarch64"),
}
DEFAULT_PLATFORM = "x86_64"

#: Pins taken as their pure-Python ``py3-none-any`` wheel although compiled ones exist: cbor2's C extension
#: must not be in the zipapp (its pure decoder is what is tested, on every Python), charset-normalizer's
#: mypyc build is only a speed-up of requests' guessing of text encodings.
PURE = frozenset({"cbor2", "charset-normalizer"})

#: Per-version wheels whose compiled modules the zipapp carries for every Python in :data:`PYTHONS`, side by
#: side: cryptography imports ``_cffi_backend`` when it loads.
SIDE_BY_SIDE = frozenset({"cffi"})

#: Per-version wheels whose compiled modules are optional speed-ups the zipapp leaves out (their pure Python
#: runs): PyYAML's ``yaml._yaml`` serves only the C loaders; arcmirror uses ``yaml.safe_load``.
SPEED_UPS_LEFT_OUT = frozenset({"pyyaml"})


def runs_on(platform: str) -> str:
    """Where a build for ``platform`` runs, in words."""
    return f"Linux {platform} (glibc >= 2.17) with CPython {min(PYTHONS, key=_minor)}-{max(PYTHONS, key=_minor)}"


def _minor(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


class BuildError(HintedError):
    """A build step failed; the message quotes its tool."""


@dataclass
class Built:
    wheel: Path
    wheelhouse: Path
    pyz: Path
    platform: str = DEFAULT_PLATFORM

    def describe(self) -> str:
        size = self.pyz.stat().st_size
        return (f"{self.wheel}\n{self.wheelhouse}/ ({len(list(self.wheelhouse.glob('*.whl')))} wheels)\n"
                f"{self.pyz} ({size / 1e6:.1f} MB, sha256 {sha256_file(self.pyz)})\n"
                f"{PYZ} and the wheelhouse are for {runs_on(self.platform)}, nothing else")


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


HINT = ("run scripts/bootstrap (it installs build and shiv from requirements-dev.txt); the wheels come from "
        "pip's configured package index")


def _run(command: list[str], what: str, cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise BuildError(f"{what} failed ({' '.join(command[:4])} ...):\n{tail}", HINT)


@dataclass(frozen=True)
class WheelName:
    """The parts of a wheel's file name that matter here (PEP 427: name-version[-build]-python-abi-platform)."""
    path: Path
    project: str
    version: str
    abi: str

    @classmethod
    def of(cls, path: Path) -> WheelName:
        parts = path.name[: -len(".whl")].split("-")
        return cls(path, parts[0].lower().replace("_", "-").replace(".", "-"), parts[1], parts[-2])

    @property
    def per_version(self) -> bool:
        """Compiled for one CPython minor version (``cp39``), not for all (``abi3``) nor pure (``none``)."""
        return self.abi.startswith("cp")


def pins(requirements: Path) -> dict[str, str]:
    """``requirements.txt``'s pins, project (normalized) -> version; anything but ``name==version`` is refused."""
    found = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip() or any(c in line for c in ";[<>~!@"):
            raise BuildError(f"{requirements}: {line!r} is not a plain pin (name==version)",
                             "pin the runtime set exactly: the wheelhouse and arcmirror.pyz hold those versions")
        found[name.strip().lower().replace("_", "-").replace(".", "-")] = version.strip()
    return found


def _download(python: str, wheelhouse: Path, requirements: list[str], options: list[str], root: Path,
              what: str) -> None:
    _run([python, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
          "--only-binary=:all:", "--dest", str(wheelhouse), *options, *requirements], what, root)


def _binary(platform: str, version: str) -> list[str]:
    """pip's options for CPython ``version`` (a key of :data:`PYTHONS`) on ``platform``: its own ABI, abi3, pure."""
    abi = "cp" + version.replace(".", "")
    tags = [f"--platform={tag}" for tag in PLATFORMS[platform]]
    return ["--implementation=cp", f"--python-version={PYTHONS[version]}", f"--abi={abi}", "--abi=abi3",
            "--abi=none", *tags]


def wheelhouse_for(python: str, root: Path, wheelhouse: Path, platform: str) -> dict[str, list[WheelName]]:
    """Download the pinned runtime set's wheels for ``platform`` and every Python of :data:`PYTHONS`.

    Returns the per-version wheels by project (what the zipapp must treat per version)."""
    pinned = pins(root / "requirements.txt")
    oldest, *others = sorted(PYTHONS, key=_minor)
    pure = [f"{name}=={version}" for name, version in pinned.items() if name in PURE]
    rest = [f"{name}=={version}" for name, version in pinned.items() if name not in PURE]
    _download(python, wheelhouse, pure, ["--implementation=py", f"--python-version={PYTHONS[oldest]}",
                                         "--abi=none", "--platform=any"], root, "downloading the pure wheels")
    _download(python, wheelhouse, rest, _binary(platform, oldest), root,
              f"downloading the wheels for CPython {oldest} on {platform}")
    per_version = {w.project: w for w in map(WheelName.of, wheelhouse.glob("*.whl")) if w.per_version}
    unplaced = sorted(set(per_version) - SIDE_BY_SIDE - SPEED_UPS_LEFT_OUT)
    if unplaced:
        raise BuildError(f"{', '.join(unplaced)}: compiled for one Python version only, and the build does not "
                         "know whether arcmirror.pyz needs its compiled modules",
                         "add it to SIDE_BY_SIDE (needed at run time) or SPEED_UPS_LEFT_OUT (optional) in "
                         "arcmirror/runs/build.py, or to PURE if it has a py3-none-any wheel")
    found = {name: [wheel] for name, wheel in per_version.items()}
    for version in others:
        before = set(wheelhouse.glob("*.whl"))
        if per_version:
            _download(python, wheelhouse, [f"{w.project}=={w.version}" for w in per_version.values()],
                      _binary(platform, version), root, f"downloading the wheels for CPython {version} on {platform}")
        for wheel in map(WheelName.of, set(wheelhouse.glob("*.whl")) - before):
            found[wheel.project].append(wheel)
    return found


def site_packages_for(python: str, root: Path, wheelhouse: Path, platform: str, per_version: dict[str, list[WheelName]],
                      target: Path) -> None:
    """What ``arcmirror.pyz`` unpacks: arcmirror and the pinned set for the oldest Python, installed from the
    wheelhouse alone, plus the other Pythons' compiled modules of :data:`SIDE_BY_SIDE`, minus the
    speed-ups of :data:`SPEED_UPS_LEFT_OUT`."""
    oldest = min(PYTHONS, key=_minor)
    pinned = pins(root / "requirements.txt")
    _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile", "--no-index",
          "--find-links", str(wheelhouse), "--only-binary=:all:", *_binary(platform, oldest), "--target",
          str(target), f"arcmirror=={__version__}", *(f"{name}=={version}" for name, version in pinned.items())],
         f"installing the wheelhouse for {PYZ}", root)
    for project, wheels in per_version.items():
        first, *rest = wheels
        if project in SPEED_UPS_LEFT_OUT:
            with zipfile.ZipFile(first.path) as archive:
                for name in archive.namelist():
                    if name.endswith(".so"):
                        (target / name).unlink(missing_ok=True)
            continue
        for wheel in rest:
            with zipfile.ZipFile(wheel.path) as archive:
                for info in archive.infolist():
                    top = info.filename.split("/", 1)[0]
                    if info.is_dir() or top.endswith((".dist-info", ".data")):
                        continue
                    there = target / info.filename
                    if not there.exists():
                        there.parent.mkdir(parents=True, exist_ok=True)
                        there.write_bytes(archive.read(info))
                        there.chmod(0o755 if info.filename.endswith(".so") else 0o644)
                    elif there.read_bytes() != archive.read(info):
                        raise BuildError(f"{wheel.path.name}: {info.filename} differs from the one of "
                                         f"{first.path.name}: the two cannot lie side by side",
                                         f"take {project} out of SIDE_BY_SIDE in arcmirror/runs/build.py")


def build(root: Path, dist: Path, say: Callable[[str], None] = lambda _: None,
          platform: str = DEFAULT_PLATFORM) -> Built:
    """Build the wheel, the wheelhouse and ``arcmirror.pyz`` for ``platform`` of the checkout at ``root`` into
    ``dist``."""
    if not (root / "pyproject.toml").is_file():
        raise BuildError(f"{root} is not a checkout of arcmirror (no pyproject.toml)",
                         "run 'invoke build' in a clone of arcmirror")
    if platform not in PLATFORMS:
        raise BuildError(f"no build for the platform {platform!r}", f"use one of: {', '.join(PLATFORMS)}")
    python = sys.executable
    wheelhouse = dist / "wheelhouse"
    for old in [*dist.glob("arcmirror-*.whl"), dist / PYZ]:
        old.unlink(missing_ok=True)
    shutil.rmtree(wheelhouse, ignore_errors=True)
    wheelhouse.mkdir(parents=True)
    say(f"Building for {runs_on(platform)}")
    say(f"1/4 the wheel (python -m build) into {dist}")
    _run([python, "-m", "build", "--wheel", "--outdir", str(dist), str(root)], "building the wheel", root)
    wheel = next(dist.glob(f"arcmirror-{__version__}-*.whl"))
    say(f"2/4 the wheelhouse (pip download of requirements.txt for {platform}, "
        f"CPython {', '.join(PYTHONS)}) into {wheelhouse}")
    per_version = wheelhouse_for(python, root, wheelhouse, platform)
    shutil.copy2(wheel, wheelhouse / wheel.name)
    pyz = dist / PYZ
    with tempfile.TemporaryDirectory(prefix="site-packages-", dir=dist) as staging:
        say(f"3/4 its site-packages (pip install --target from the wheelhouse only; {', '.join(sorted(SIDE_BY_SIDE))}"
            f" compiled for each Python side by side)")
        site_packages_for(python, root, wheelhouse, platform, per_version, Path(staging))
        say(f"4/4 {PYZ} (shiv)")
        _run([python, "-m", "shiv", "--reproducible", "--compressed", "--python", "/usr/bin/env python3",
              "--entry-point", "arcmirror.__main__:main", "--output-file", str(pyz), "--site-packages", staging],
             f"building {PYZ}", root)
    return Built(wheel, wheelhouse, pyz, platform)


def running_zipapp() -> Path | None:
    """The ``arcmirror.pyz`` this process runs from, if it runs from one."""
    candidate = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    if candidate and candidate.is_file() and zipfile.is_zipfile(candidate):
        return candidate
    return None


def carried_tool(checkout: Path | None) -> Path:
    """The ``arcmirror.pyz`` to put beside an archive: the running one, else the checkout's ``dist/``."""
    found = running_zipapp() or (checkout / "dist" / PYZ if checkout else None)
    if found is None or not found.is_file():
        raise BuildError(f"--with-tool needs {PYZ}, and there is none"
                         + (f" in {checkout / 'dist'}" if checkout else ""),
                         "run 'invoke build' first (it writes dist/arcmirror.pyz), or run export from arcmirror.pyz")
    return found
