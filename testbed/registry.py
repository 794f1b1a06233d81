"""A real OCI registry (CNCF distribution, ``docker-registry``) run as a subprocess.

:class:`Registry` writes a distribution config into its work dir, serves on
``127.0.0.1`` (plain HTTP, HTTPS, Basic auth or bearer-token auth) and offers
inspection helpers built on plain ``requests`` with an administrator identity,
so tests can check what a mirror run did without using arcmirror's own code.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import requests
import yaml

if TYPE_CHECKING:
    import trustme

    from .tokenserver import TokenServer

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MANIFEST_ACCEPT = ", ".join(MANIFEST_TYPES)
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
INSTALL_HINT = ("`.ci/run` installs the test bed's tools "
                "(apt-get install docker-registry skopeo apache2-utils)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_tool(name: str) -> str:
    """The path of executable ``name``; raise a helpful error when missing."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name!r} is not installed: {INSTALL_HINT}")
    return path


def bcrypt_entry(user: str, password: str) -> str:
    """An htpasswd line with a bcrypt hash (the only kind distribution accepts)."""
    result = subprocess.run(
        [require_tool("htpasswd"), "-Bbn", user, password],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"htpasswd failed: {result.stderr.strip()}")
    return result.stdout.strip()


def _loopback_session(ca_bundle: Path | None) -> requests.Session:
    """A session that ignores the environment (proxies, ``REQUESTS_CA_BUNDLE``).

    ``requests`` lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` override
    ``Session.verify``; the test bed must verify against its own CA only.
    """
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca_bundle) if ca_bundle else False
    return session


class Registry:
    """A ``docker-registry serve`` process with its config, storage and log in ``workdir``.

    * ``htpasswd``: users -> passwords for Basic auth.
    * ``tls`` (a ``trustme.LeafCert``) serves HTTPS; give its issuing ``ca`` so the
      helpers (and :attr:`cert_dir` / :attr:`ca_bundle`) can verify it.
    * ``token``: a started :class:`~testbed.tokenserver.TokenServer`
      to use for bearer-token auth.

    :attr:`username` / :attr:`password` are the credentials a client should use:
    the first htpasswd user, or the first user of the token server.
    """

    def __init__(
        self,
        workdir: os.PathLike | str,
        *,
        port: int | None = None,
        htpasswd: dict[str, str] | None = None,
        tls: "trustme.LeafCert | None" = None,
        ca: "trustme.CA | None" = None,
        token: "TokenServer | None" = None,
        delete: bool = True,
        foreign_urls: bool = False,
    ):
        if htpasswd and token:
            raise ValueError("choose htpasswd or token auth, not both")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.scheme = "https" if tls else "http"
        self.url = f"{self.scheme}://{self.host}"
        self.storage = self.workdir / "storage"
        self.log = self.workdir / "registry.log"
        self.config_path = self.workdir / "config.yml"
        self.htpasswd = dict(htpasswd or {})
        self.token = token
        self.delete_enabled = delete
        self.foreign_urls = foreign_urls  # accept manifests whose foreign layers point at any https URL
        self._http_secret = secrets.token_hex(16)
        self.username, self.password = self._client_credentials()
        self.ca_bundle: Path | None = None
        self.cert_dir: Path | None = None
        self._tls_files = self._write_tls(tls, ca) if tls else None
        self._process: subprocess.Popen | None = None
        self._session = _loopback_session(self.ca_bundle)
        self._write_config()

    # -- setup ---------------------------------------------------------------

    def _client_credentials(self) -> tuple[str | None, str | None]:
        users = self.htpasswd or (self.token.users if self.token else {})
        return next(iter(users.items()), (None, None))

    @property
    def creds(self) -> tuple[str, str] | None:
        """``(username, password)`` for clients, or None on anonymous registries."""
        return (self.username, self.password) if self.username else None

    def _write_tls(self, leaf: "trustme.LeafCert", ca: "trustme.CA | None") -> dict:
        cert = self.workdir / "tls-chain.pem"
        key = self.workdir / "tls-key.pem"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        for pem in leaf.cert_chain_pems[1:]:
            pem.write_to_path(str(cert), append=True)
        leaf.private_key_pem.write_to_path(str(key))
        if ca is not None:
            self.ca_bundle = self.workdir / "ca.pem"
            ca.cert_pem.write_to_path(str(self.ca_bundle))
            self.cert_dir = self.workdir / "certs.d"
            self.cert_dir.mkdir(exist_ok=True)
            ca.cert_pem.write_to_path(str(self.cert_dir / "ca.crt"))
        return {"certificate": str(cert), "key": str(key)}

    def config(self) -> dict:
        """The distribution configuration this registry runs with."""
        http = {"addr": self.host, "secret": self._http_secret}
        if self._tls_files:
            http["tls"] = self._tls_files
        config = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": self.delete_enabled},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http,
        }
        auth = self._auth_config()
        if auth:
            config["auth"] = auth
        if self.foreign_urls:
            config["validation"] = {"manifests": {"urls": {"allow": ["^https://"]}}}
        return config

    def _auth_config(self) -> dict | None:
        if self.htpasswd:
            path = self.workdir / "htpasswd"
            path.write_text("".join(bcrypt_entry(u, p) + "\n" for u, p in self.htpasswd.items()))
            return {"htpasswd": {"realm": "testbed", "path": str(path)}}
        if self.token:
            return {"token": {
                "realm": self.token.realm,
                "service": self.token.service,
                "issuer": self.token.issuer,
                "rootcertbundle": str(self.token.cert_path),
            }}
        return None

    def _write_config(self) -> None:
        self.storage.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> "Registry":
        """Start the registry and wait until ``/v2/`` answers."""
        if self.running:
            return self
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [require_tool("docker-registry"), "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            try:
                status = self._session.get(f"{self.url}/v2/", timeout=1).status_code
            except requests.ConnectionError:
                status = None
            if status in (200, 401):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"registry on {self.host} did not start:\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate the registry (kill it if it lingers past 5 s)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> "Registry":
        """Stop and start again on the same port with the same storage."""
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> "Registry":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the registry log."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"<Registry {self.url} storage={self.storage}>"

    # -- admin HTTP helpers --------------------------------------------------

    def _auth(self, scopes: list[str]) -> dict:
        """Request kwargs that authenticate as administrator for ``scopes``."""
        if self.htpasswd:
            return {"auth": (self.username.encode(), self.password.encode())}  # UTF-8, as Docker sends it
        if self.token:
            return {"headers": {"Authorization": f"Bearer {self.token.mint(scopes)}"}}
        return {}

    def request(self, method: str, path: str, *, scopes: Iterable[str] = (),
                **kwargs) -> requests.Response:
        """An admin request to ``path`` (relative to the registry URL)."""
        auth = self._auth(list(scopes))
        headers = {**auth.pop("headers", {}), **kwargs.pop("headers", {})}
        url = path if path.startswith("http") else f"{self.url}{path}"
        return self._session.request(method, url, headers=headers, timeout=30, **auth, **kwargs)

    @staticmethod
    def _repo_scope(repo: str) -> list[str]:
        return [f"repository:{repo}:pull,push,delete"]

    def manifest_digest(self, repo: str, ref: str) -> str | None:
        """The ``Docker-Content-Digest`` of ``repo:ref`` (tag or digest), None if absent."""
        response = self.request("HEAD", f"/v2/{repo}/manifests/{ref}",
                                scopes=self._repo_scope(repo),
                                headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.headers["Docker-Content-Digest"]

    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str]:
        """The raw manifest of ``repo:ref`` and its content type."""
        response = self.request("GET", f"/v2/{repo}/manifests/{ref}",
                                scopes=self._repo_scope(repo),
                                headers={"Accept": MANIFEST_ACCEPT})
        response.raise_for_status()
        return response.content, response.headers["Content-Type"]

    def delete_manifest(self, repo: str, digest: str) -> None:
        """Delete the manifest ``digest`` (and so every tag pointing at it) from ``repo``."""
        self.request("DELETE", f"/v2/{repo}/manifests/{digest}",
                     scopes=self._repo_scope(repo)).raise_for_status()

    def has_blob(self, repo: str, digest: str) -> bool:
        """Whether ``repo`` serves blob ``digest``."""
        response = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scopes=self._repo_scope(repo))
        if response.status_code == 404:
            return False
        response.raise_for_status()
        return True

    def push_tree(self, layout: os.PathLike | str, digest: str, repo: str, tag: str) -> None:
        """Upload the manifest ``digest`` of an OCI layout and everything under it (children first,
        then ``tag``), straight over the registry API: for what skopeo cannot copy (an index in an
        index, foreign layers that are not in the layout)."""
        blobs = Path(layout) / "blobs" / "sha256"

        def upload(data: bytes, blob_digest: str) -> None:
            if self.has_blob(repo, blob_digest):
                return
            started = self.request("POST", f"/v2/{repo}/blobs/uploads/", scopes=self._repo_scope(repo))
            started.raise_for_status()
            location = started.headers["Location"]
            url = location + ("&" if "?" in location else "?") + f"digest={blob_digest}"
            self.request("PUT", url, scopes=self._repo_scope(repo), data=data,
                         headers={"Content-Type": "application/octet-stream"}).raise_for_status()

        def push(manifest_digest: str, reference: str) -> None:
            data = (blobs / manifest_digest.split(":", 1)[1]).read_bytes()
            body = json.loads(data)
            for child in body.get("manifests", []):
                push(child["digest"], child["digest"])
            for descriptor in [body.get("config"), *body.get("layers", [])]:
                if descriptor and not descriptor.get("urls"):
                    upload((blobs / descriptor["digest"].split(":", 1)[1]).read_bytes(), descriptor["digest"])
            response = self.request("PUT", f"/v2/{repo}/manifests/{reference}", scopes=self._repo_scope(repo),
                                    data=data, headers={"Content-Type": body["mediaType"]})
            response.raise_for_status()

        push(digest, tag)

    def delete_blob(self, repo: str, digest: str) -> None:
        """Unlink blob ``digest`` from ``repo`` (the data stays on disk until GC)."""
        self.request("DELETE", f"/v2/{repo}/blobs/{digest}",
                     scopes=self._repo_scope(repo)).raise_for_status()

    def tags(self, repo: str) -> list[str]:
        """The tags of ``repo`` (empty when the repository does not exist)."""
        result: list[str] = []
        for page in self._pages(f"/v2/{repo}/tags/list", self._repo_scope(repo)):
            result.extend(page.get("tags") or [])
        return result

    def catalog(self) -> list[str]:
        """Every repository name in the registry."""
        result: list[str] = []
        for page in self._pages("/v2/_catalog", ["registry:catalog:*"]):
            result.extend(page.get("repositories") or [])
        return result

    def _pages(self, path: str, scopes: list[str]) -> Iterator[dict]:
        """JSON pages of a paginated listing, following ``Link`` headers."""
        url: str | None = path
        while url:
            response = self.request("GET", url, scopes=scopes)
            if response.status_code == 404:
                return
            response.raise_for_status()
            yield response.json()
            url = response.links.get("next", {}).get("url")

    # -- storage on disk -----------------------------------------------------

    @property
    def blobs_dir(self) -> Path:
        return self.storage / "docker" / "registry" / "v2" / "blobs"

    def blob_digests(self) -> set[str]:
        """Digests of every blob stored on disk (manifests and configs included)."""
        return {
            f"{data.parent.parent.parent.name}:{data.parent.name}"
            for data in self.blobs_dir.glob("*/*/*/data")
        }

    def blob_count(self) -> int:
        """Number of blobs stored on disk."""
        return len(self.blob_digests())
