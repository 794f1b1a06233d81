"""A private Docker engine (``dockerd``, Debian's ``docker.io``) run as a subprocess.

:class:`DockerEngine` starts ``dockerd`` with everything it owns in one work directory (data root,
daemon config, log, client config) and its runtime files (API socket, exec root, pid file) in a
short directory under ``/tmp`` (unix socket paths are limited to 107 bytes, and containerd puts
its own socket under the exec root). It does not touch ``/var/run/docker.sock``,
``/etc/docker/daemon.json`` or ``~/.docker``, needs no iptables and creates no bridge; it uses the
``vfs`` storage driver, which works anywhere (no overlay mounts) and is enough to pull, tag and
push images (running containers is not a goal).

Use it as a context manager or with :meth:`~DockerEngine.start` / :meth:`~DockerEngine.stop`::

    with DockerEngine(workdir, insecure_registries=[source.host, target.host]) as engine:
        engine.docker("pull", ref)                 # the CLI, on this engine only
        client = engine.client()                   # the Docker SDK (docker-py), same engine

:attr:`~DockerEngine.env` holds ``DOCKER_HOST`` and ``DOCKER_CONFIG`` for any other client.
The engine treats 127.0.0.0/8 registries as insecure by default; ``insecure_registries`` adds
others (``host:port`` or CIDR).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:
    import docker as docker_sdk

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
INSTALL_HINT = "install Debian's Docker engine: apt-get install -y docker.io"


class DockerEngineError(RuntimeError):
    """The engine could not start, or a ``docker`` command failed (the message has the details)."""


def dockerd_path() -> str | None:
    """Where ``dockerd`` is (PATH, then /usr/sbin and /usr/bin, where Debian puts it), or None."""
    found = shutil.which("dockerd")
    if found:
        return found
    for candidate in ("/usr/sbin/dockerd", "/usr/bin/dockerd"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def docker_cli_path() -> str | None:
    """The ``docker`` client: Debian's ``/usr/bin/docker`` (the engine's own version) first."""
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    return shutil.which("docker")


def unavailable_reason() -> str | None:
    """Why a :class:`DockerEngine` cannot start here, or None when it should."""
    if dockerd_path() is None:
        return f"dockerd is not installed ({INSTALL_HINT})"
    if docker_cli_path() is None:
        return f"the docker client is not installed ({INSTALL_HINT})"
    if os.geteuid() != 0:
        return "dockerd needs root here (no rootless setup)"
    return None


class DockerEngine:
    """A ``dockerd`` process private to its caller.

    * ``workdir``: data root, daemon config (``daemon.json``), log (``dockerd.log``) and the
      client config directory (``client/``, used as ``DOCKER_CONFIG``).
    * ``insecure_registries``: ``host:port`` entries (or CIDRs) allowed over plain HTTP.
    * ``storage_driver``: ``vfs`` by default (no kernel overlay support needed).
    * ``extra_args``: more ``dockerd`` options.
    """

    def __init__(
        self,
        workdir: os.PathLike | str,
        *,
        insecure_registries: Iterable[str] = (),
        storage_driver: str = "vfs",
        extra_args: Sequence[str] = (),
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.data_root = self.workdir / "data"
        self.config_path = self.workdir / "daemon.json"
        self.log = self.workdir / "dockerd.log"
        self.client_config = self.workdir / "client"
        self.insecure_registries = list(dict.fromkeys(insecure_registries))
        self.storage_driver = storage_driver
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.runtime_dir: Path | None = None
        self._process: subprocess.Popen | None = None

    # -- where things are ----------------------------------------------------------------------

    @property
    def socket(self) -> Path:
        if self.runtime_dir is None:
            raise DockerEngineError("the engine is not started")
        return self.runtime_dir / "docker.sock"

    @property
    def host(self) -> str:
        """The ``DOCKER_HOST`` value of this engine (``unix:///tmp/.../docker.sock``)."""
        return f"unix://{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        """Variables pointing a Docker client at this engine, with a private client config."""
        return {"DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.client_config)}

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        """The ``dockerd`` command line (after :meth:`start` has chosen the runtime directory)."""
        daemon = dockerd_path()
        if daemon is None:
            raise DockerEngineError(f"dockerd is not installed: {INSTALL_HINT}")
        args = [
            daemon,
            "--config-file", str(self.config_path),
            "--data-root", str(self.data_root),
            "--exec-root", str(self.runtime_dir / "exec"),
            "--pidfile", str(self.runtime_dir / "dockerd.pid"),
            "--host", self.host,
            "--storage-driver", self.storage_driver,
            "--iptables=false",
            "--ip-masq=false",
            "--bridge=none",
            "--userland-proxy=false",
        ]
        for registry in self.insecure_registries:
            args += ["--insecure-registry", registry]
        return args + self.extra_args

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> "DockerEngine":
        """Start ``dockerd`` and wait until its API answers ``/_ping``; raise with its log if not."""
        if self.running:
            return self
        reason = unavailable_reason()
        if reason:
            raise DockerEngineError(reason)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.client_config.mkdir(parents=True, exist_ok=True)
        (self.client_config / "config.json").write_text("{}\n")
        self.config_path.write_text(json.dumps({}) + "\n")  # not /etc/docker/daemon.json
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="dockerd-", dir="/tmp"))
        with self.log.open("ab") as log:
            # A session of its own: dockerd's managed containerd goes with it on a forced stop.
            self._process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise DockerEngineError(
                    f"dockerd exited with code {self._process.returncode}:\n{self.log_tail()}")
            if self.socket.exists() and self.ping():
                return
            time.sleep(0.1)
        raise DockerEngineError(f"dockerd did not answer within {self.start_timeout:.0f}s:\n{self.log_tail()}")

    def ping(self) -> bool:
        """Whether the engine's API answers ``GET /_ping`` with ``OK``."""
        import socket

        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect(str(self.socket))
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                reply = b""
                while chunk := sock.recv(4096):
                    reply += chunk
        except OSError:
            return False
        return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0] and reply.endswith(b"OK")

    def stop(self) -> None:
        """Stop the engine cleanly (SIGTERM, then SIGKILL to its process group after 20 s)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None

    def __enter__(self) -> "DockerEngine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def remove_data(self) -> None:
        """Delete the engine's data root (images, layers); only while stopped."""
        if self.running:
            raise DockerEngineError("stop the engine before removing its data")
        shutil.rmtree(self.data_root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def __repr__(self) -> str:
        state = self.host if self.runtime_dir else "stopped"
        return f"<DockerEngine {state} data-root={self.data_root}>"

    # -- clients -------------------------------------------------------------------------------

    def docker(self, *args: str, check: bool = True, timeout: float | None = 600,
               capture: bool = True) -> subprocess.CompletedProcess:
        """Run ``docker ARGS`` against this engine only; raise :class:`DockerEngineError` on failure."""
        cli = docker_cli_path()
        if cli is None:
            raise DockerEngineError(f"the docker client is not installed: {INSTALL_HINT}")
        environ = {**os.environ, **self.env}
        result = subprocess.run([cli, *args], env=environ, stdin=subprocess.DEVNULL, timeout=timeout,
                                capture_output=capture, text=True, check=False)
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout or "").strip() if capture else ""
            raise DockerEngineError(f"docker {' '.join(args)} failed ({result.returncode}): {detail}")
        return result

    def client(self, **kwargs) -> "docker_sdk.DockerClient":
        """A Docker SDK client (``docker`` package) bound to this engine."""
        import docker as docker_sdk

        return docker_sdk.DockerClient(base_url=self.host, **kwargs)

    def version(self) -> str:
        """The engine's version, e.g. ``20.10.24+dfsg1``."""
        return self.docker("version", "--format", "{{.Server.Version}}").stdout.strip()

    def image_ids(self) -> list[str]:
        """IDs of every image the engine holds."""
        out = self.docker("images", "--all", "--quiet", "--no-trunc").stdout
        return sorted(set(out.split()))

    def remove_all_images(self) -> None:
        """Forget every image (tags and layers): the next pull starts from nothing."""
        out = self.docker("images", "--all", "--format", "{{.Repository}}:{{.Tag}}").stdout
        refs = [r for r in out.split() if "<none>" not in r]
        if refs:
            self.docker("rmi", "--force", *refs)
        ids = self.image_ids()
        if ids:
            self.docker("rmi", "--force", *ids)
