"""Load test images into registries with ``skopeo`` (1.9.x).

Images come from an OCI layout built by :mod:`testbed.images`
(``oci:LAYOUT:REFNAME``). Credentials go through a temporary 0600 auth file,
never the command line.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Collection, Iterator, Mapping

from .images import OCI_INDEX, layout_refs
from .registry import require_tool

if TYPE_CHECKING:
    from .registry import Registry

SKOPEO_TIMEOUT = 300


class SkopeoError(RuntimeError):
    """skopeo exited with an error; the message carries its stderr."""


def run(*args: str) -> bytes:
    """Run ``skopeo ARGS`` (insecure policy, so no policy.json is needed); return stdout."""
    command = [require_tool("skopeo"), "--insecure-policy", *args]
    result = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL,
                            timeout=SKOPEO_TIMEOUT, check=False)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        raise SkopeoError(f"skopeo {' '.join(args)} failed ({result.returncode}):\n{stderr}")
    return result.stdout


@contextmanager
def authfile(host: str, creds: tuple[str, str] | None) -> Iterator[str | None]:
    """A temporary containers auth file (mode 0600) for ``host``; None without creds."""
    if creds is None:
        yield None
        return
    user, password = creds
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    with tempfile.TemporaryDirectory(prefix="testbed-auth-") as tmp:
        path = Path(tmp) / "auth.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"auths": {host: {"auth": auth}}}, f)
        yield str(path)


def _registry_options(prefix: str, authpath: str | None, tls_verify: bool,
                      cert_dir: os.PathLike | str | None) -> list[str]:
    """``--{prefix}authfile``/``tls-verify``/``cert-dir`` options for one side of a copy."""
    options = [f"--{prefix}tls-verify={'true' if tls_verify else 'false'}"]
    if authpath:
        options.append(f"--{prefix}authfile={authpath}")
    else:
        options.append(f"--{prefix}no-creds")
    if cert_dir:
        options.append(f"--{prefix}cert-dir={cert_dir}")
    return options


def load(
    layout_dir: os.PathLike | str,
    ref_name: str,
    dest_ref: str,
    *,
    creds: tuple[str, str] | None = None,
    tls_verify: bool = False,
    cert_dir: os.PathLike | str | None = None,
    docker_format: bool = False,
) -> None:
    """Copy ``oci:LAYOUT:REF_NAME`` (all platforms) to ``docker://DEST_REF``.

    ``dest_ref`` is ``host:port/repo/name:tag``. OCI images keep their digests;
    ``docker_format`` converts to Docker media types (manifest lists for
    indexes), which changes manifest and config digests (layers stay the same).
    """
    host = dest_ref.split("/", 1)[0]
    with authfile(host, creds) as authpath:
        args = ["copy", "--quiet", "--all",
                *_registry_options("dest-", authpath, tls_verify, cert_dir)]
        args += ["--format=v2s2"] if docker_format else ["--preserve-digests"]
        run(*args, f"oci:{Path(layout_dir)}:{ref_name}", f"docker://{dest_ref}")


def inspect_raw(
    ref: str,
    *,
    creds: tuple[str, str] | None = None,
    tls_verify: bool = False,
    cert_dir: os.PathLike | str | None = None,
) -> bytes:
    """The raw top-level manifest of ``docker://REF`` as the registry serves it."""
    host = ref.split("/", 1)[0]
    with authfile(host, creds) as authpath:
        return run("inspect", "--raw", *_registry_options("", authpath, tls_verify, cert_dir),
                   f"docker://{ref}")


def inspect_digest(ref: str, **kwargs) -> str:
    """The digest of ``docker://REF``'s top-level manifest (list/index included)."""
    return "sha256:" + hashlib.sha256(inspect_raw(ref, **kwargs)).hexdigest()


@dataclass
class Release:
    """A built release loaded into a registry."""

    layout: Path
    refs: dict[str, str]                 # name -> ref name in the layout
    tag: str
    registry: "Registry"
    repo: str
    digests: dict[str, str]              # name -> manifest digest in the registry
    layout_digests: dict[str, str]       # name -> manifest digest in the layout
    docker_format: frozenset[str] = field(default_factory=frozenset)
    multiarch: frozenset[str] = field(default_factory=frozenset)

    @property
    def names(self) -> list[str]:
        return list(self.refs)

    def repository(self, name: str) -> str:
        """The registry repository holding image ``name`` (``repo/name``)."""
        return f"{self.repo}/{name}"

    def ref(self, name: str) -> str:
        """``host/repo/name:tag`` of image ``name`` in the registry."""
        return f"{self.registry.host}/{self.repository(name)}:{self.tag}"


def load_release(
    layout_dir: os.PathLike | str,
    refs: Mapping[str, str],
    registry: "Registry",
    repo: str,
    tag: str,
    *,
    docker_format: Collection[str] = (),
    workers: int = 4,
    **kwargs,
) -> Release:
    """Load every image of a release into ``registry`` as ``repo/NAME:TAG``.

    Names in ``docker_format`` are converted to Docker media types. Credentials
    and TLS settings default to the registry's own (``creds``, ``cert_dir``);
    other ``kwargs`` go to :func:`load`. Images load in parallel.
    """
    kwargs.setdefault("creds", registry.creds)
    if registry.cert_dir:
        kwargs.setdefault("cert_dir", registry.cert_dir)
        kwargs.setdefault("tls_verify", True)

    def load_one(name: str) -> None:
        load(layout_dir, refs[name], f"{registry.host}/{repo}/{name}:{tag}",
             docker_format=name in docker_format, **kwargs)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(load_one, refs))
    layout = layout_refs(layout_dir)
    layout_digests = {name: layout[ref] for name, ref in refs.items()}
    return Release(
        layout=Path(layout_dir), refs=dict(refs), tag=tag, registry=registry, repo=repo,
        digests={name: registry.manifest_digest(f"{repo}/{name}", tag) for name in refs},
        layout_digests=layout_digests,
        docker_format=frozenset(docker_format),
        multiarch=frozenset(n for n in refs if _is_index(layout_dir, layout_digests[n])),
    )


def _is_index(layout_dir: os.PathLike | str, digest: str) -> bool:
    """Whether blob ``digest`` of the layout is an OCI image index."""
    algo, _, hexpart = digest.partition(":")
    manifest = json.loads((Path(layout_dir) / "blobs" / algo / hexpart).read_bytes())
    return manifest.get("mediaType") == OCI_INDEX
