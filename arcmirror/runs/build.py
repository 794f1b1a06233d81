"""What carries arcmirror across an air gap: a wheel, a wheelhouse, and ``arcmirror.pyz``, one file that runs
on any CPython 3.9 or newer with nothing installed.

The wheel is built by PyPA's ``build`` (setuptools, ``pyproject.toml``); the wheelhouse is ``pip wheel``
of the pinned runtime set (``requirements.txt``) plus that wheel, for ``pip install --no-index
--find-links``; the zipapp is made by shiv from the wheelhouse alone, so it holds exactly the pinned
set. shiv rather than pex: a shiv file is a plain zipapp (``python3 arcmirror.pyz``) built by pip from
the same pins, with a small bootstrap that unpacks it once into ``~/.shiv`` (``SHIV_ROOT`` moves that);
pex's strength, resolving for many interpreters and platforms, is not needed: every dependency is pure
Python except the optional speed-ups of PyYAML and charset-normalizer, which fall back to their pure
Python code on another interpreter.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import __version__
from ..oci.errors import HintedError

PYZ = "arcmirror.pyz"


class BuildError(HintedError):
    """A build step failed; the message quotes its tool."""


@dataclass
class Built:
    wheel: Path
    wheelhouse: Path
    pyz: Path

    def describe(self) -> str:
        size = self.pyz.stat().st_size
        return (f"{self.wheel}\n{self.wheelhouse}/ ({len(list(self.wheelhouse.glob('*.whl')))} wheels)\n"
                f"{self.pyz} ({size / 1e6:.1f} MB, sha256 {sha256_file(self.pyz)})")


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def _run(command: list[str], what: str, cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise BuildError(f"{what} failed ({' '.join(command[:4])} ...):\n{tail}",
                         "run scripts/bootstrap (it installs build and shiv from requirements-dev.txt)")


def build(root: Path, dist: Path, say: Callable[[str], None] = lambda _: None) -> Built:
    """Build the wheel, the wheelhouse and ``arcmirror.pyz`` of the checkout at ``root`` into ``dist``."""
    if not (root / "pyproject.toml").is_file():
        raise BuildError(f"{root} is not a checkout of arcmirror (no pyproject.toml)",
                         "run 'invoke build' in a clone of arcmirror")
    python = sys.executable
    wheelhouse = dist / "wheelhouse"
    for old in [*dist.glob("arcmirror-*.whl"), dist / PYZ]:
        old.unlink(missing_ok=True)
    shutil.rmtree(wheelhouse, ignore_errors=True)
    wheelhouse.mkdir(parents=True)
    say(f"1/3 the wheel (python -m build) into {dist}")
    _run([python, "-m", "build", "--wheel", "--outdir", str(dist), str(root)], "building the wheel", root)
    wheel = next(dist.glob(f"arcmirror-{__version__}-*.whl"))
    say(f"2/3 the wheelhouse (pip wheel -r requirements.txt) into {wheelhouse}")
    _run([python, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--wheel-dir", str(wheelhouse),
          "-r", str(root / "requirements.txt")], "building the wheelhouse", root)
    shutil.copy2(wheel, wheelhouse / wheel.name)
    say(f"3/3 {PYZ} (shiv, from the wheelhouse only)")
    pyz = dist / PYZ
    _run([python, "-m", "shiv", "--reproducible", "--compressed", "--python", "/usr/bin/env python3",
          "--entry-point", "arcmirror.__main__:main", "--output-file", str(pyz),
          "--no-index", "--find-links", str(wheelhouse), f"arcmirror=={__version__}"], f"building {PYZ}", root)
    return Built(wheel, wheelhouse, pyz)


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
