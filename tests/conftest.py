"""Pytest fixtures: real registries, a token server and a synthetic Arc release.

Session-scoped fixtures are shared by every test: treat them as read-only (use
``new_registry`` for a registry a test may break). All data lives under a
``tmp_path_factory`` directory.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import pytest
import trustme
from helpers import BIG_NAMES, BIG_TAG, walk

from testbed.images import build_release
from testbed.registry import INSTALL_HINT, Registry
from testbed.skopeo import Release, load_release
from testbed.tokenserver import TokenServer

if TYPE_CHECKING:
    from testbed.faultproxy import FaultProxy
    from testbed.front import RegistryFront

RELEASE_TAG = "v1.41.0_2025-09-09"
RELEASE_REPO = "arcdata"
#: Images loaded as OCI (digests preserved from the layout).
OCI_NAMES = ("arc-bootstrapper", "arc-controller", "arc-controller-db", "arc-sqlmi",
             "arc-postgres-14")
#: Images loaded with Docker media types (``skopeo --format v2s2``).
DOCKER_NAMES = ("arc-monitor-fluentbit", "arc-logsdb-dashboards")
#: Images built as linux/amd64 + linux/arm64 indexes (a Docker manifest list for
#: ``arc-logsdb-dashboards``).
MULTIARCH_NAMES = ("arc-sqlmi", "arc-logsdb-dashboards")
MIRROR_USER = "mirror"
BIG_LAYER = 3 * 1024 * 1024


@pytest.fixture(scope="session")
def testbed_tools() -> None:
    """Fail (never skip) when the external tools of the test bed are missing."""
    missing = [t for t in ("docker-registry", "skopeo", "htpasswd") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: {INSTALL_HINT}", pytrace=False)


@pytest.fixture(scope="session")
def testbed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's work directory for registries, layouts and certificates."""
    return tmp_path_factory.mktemp("testbed")


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A throw-away certificate authority for the HTTPS registries."""
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_bundle(ca: trustme.CA, testbed_dir: Path) -> Path:
    """PEM file of :func:`ca`, for ``requests``' ``verify=`` and similar."""
    path = testbed_dir / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def _password() -> str:
    return secrets.token_urlsafe(16)


def _started(registry: Registry) -> Iterator[Registry]:
    """Start ``registry`` for the duration of a fixture."""
    with registry:
        yield registry


@pytest.fixture(scope="session")
def source_registry(testbed_tools, testbed_dir: Path) -> Iterator[Registry]:
    """An anonymous plain-HTTP registry (holds :func:`release`)."""
    yield from _started(Registry(testbed_dir / "source"))


@pytest.fixture(scope="session")
def basic_registry(testbed_tools, testbed_dir: Path) -> Iterator[Registry]:
    """Plain HTTP with Basic auth; ``.username`` is ``mirror``, ``.password`` random."""
    yield from _started(Registry(testbed_dir / "basic", htpasswd={MIRROR_USER: _password()}))


@pytest.fixture(scope="session")
def tls_registry(testbed_tools, testbed_dir: Path, ca: trustme.CA) -> Iterator[Registry]:
    """HTTPS (cert for 127.0.0.1 and localhost from :func:`ca`) with Basic auth.

    ``.ca_bundle`` is the CA PEM, ``.cert_dir`` a directory with ``ca.crt``.
    """
    yield from _started(Registry(
        testbed_dir / "tls",
        tls=ca.issue_cert("127.0.0.1", "localhost"), ca=ca,
        htpasswd={MIRROR_USER: _password()},
    ))


@pytest.fixture(scope="session")
def token_server(testbed_tools, testbed_dir: Path) -> Iterator[TokenServer]:
    """The bearer-token server of :func:`token_registry` (user ``mirror``).

    Its ``issued``/``requests`` counters are shared by the session: compare
    before/after values, or call ``reset_counters()``.
    """
    with TokenServer(testbed_dir / "token-server", users={MIRROR_USER: _password()}) as server:
        yield server


@pytest.fixture(scope="session")
def token_registry(testbed_dir: Path, token_server: TokenServer) -> Iterator[Registry]:
    """Bearer-token auth like MCR/ACR/Harbor: anonymous pull and catalog, push for ``mirror``."""
    yield from _started(Registry(testbed_dir / "token", token=token_server))


NewRegistry = Callable[..., Registry]


@pytest.fixture
def new_registry(testbed_tools, tmp_path: Path, ca: trustme.CA) -> Iterator[NewRegistry]:
    """Factory ``new_registry(auth=None|"basic"|"token", tls=False, **token_options)``.

    Returns a fresh, empty, started registry, stopped at teardown. With
    ``auth="token"`` a dedicated token server (``registry.token``) is created;
    ``token_options`` (e.g. ``ttl=2, registry_leeway=60``) go to it.
    """
    stack: list[Registry | TokenServer] = []

    def factory(auth: str | None = None, tls: bool = False, **token_options) -> Registry:
        workdir = tmp_path / f"registry-{len(stack)}"
        options: dict = {}
        if tls:
            options.update(tls=ca.issue_cert("127.0.0.1", "localhost"), ca=ca)
        if auth == "basic":
            options["htpasswd"] = {MIRROR_USER: _password()}
        elif auth == "token":
            server = TokenServer(workdir / "token-server",
                                 users={MIRROR_USER: _password()}, **token_options).start()
            stack.append(server)
            options["token"] = server
        elif auth is not None:
            raise ValueError(f"auth must be None, 'basic' or 'token', not {auth!r}")
        registry = Registry(workdir, **options)
        stack.append(registry)
        return registry.start()

    yield factory
    for item in reversed(stack):
        item.stop()


@pytest.fixture(scope="session")
def release_layout(testbed_dir: Path) -> tuple[Path, dict[str, str]]:
    """The release as an OCI layout: ``(layout_dir, {name: ref_name})``."""
    layout = testbed_dir / "release-layout"
    refs = build_release(layout, OCI_NAMES + DOCKER_NAMES, RELEASE_TAG, multiarch=MULTIARCH_NAMES)
    return layout, refs


@pytest.fixture(scope="session")
def release(release_layout, source_registry: Registry) -> Release:
    """A small Arc release in :func:`source_registry` under ``arcdata/NAME:TAG``.

    ``release.docker_format`` names the images loaded with Docker media types,
    ``release.multiarch`` the indexes / manifest lists; ``release.digests``
    are read back from the registry.
    """
    layout, refs = release_layout
    return load_release(layout, refs, source_registry, RELEASE_REPO, RELEASE_TAG,
                        docker_format=DOCKER_NAMES)


@pytest.fixture(scope="session")
def token_release(release_layout, token_registry: Registry) -> Release:
    """The same release in :func:`token_registry` (an MCR-like bearer-token source)."""
    layout, refs = release_layout
    return load_release(layout, refs, token_registry, RELEASE_REPO, RELEASE_TAG,
                        docker_format=DOCKER_NAMES)


@pytest.fixture(scope="session")
def big_layout(tmp_path_factory):
    """Three images with 3 MB layers (uncompressed gzip: transfers that take a while behind a trickle)."""
    layout = tmp_path_factory.mktemp("big") / "layout"
    refs = build_release(layout, BIG_NAMES, BIG_TAG, unique_size=BIG_LAYER, base_size=512 * 1024,
                         multiarch=["arc-sqlmi"], compresslevel=0)
    return layout, refs


@pytest.fixture(scope="session")
def big(big_layout, tmp_path_factory, testbed_tools):
    """The :func:`big_layout` release in an anonymous registry (the upstream of fault proxies);
    ``release.blobs`` maps every blob of it to its size."""
    layout, refs = big_layout
    with Registry(tmp_path_factory.mktemp("big-source")) as source:
        release = load_release(layout, refs, source, "arcdata", BIG_TAG)
        release.blobs = {}
        for name in BIG_NAMES:
            release.blobs.update(walk(source, f"arcdata/{name}", BIG_TAG)[0])
        yield release


@pytest.fixture
def fault_proxy() -> Iterator[Callable[..., "FaultProxy"]]:
    """Factory ``fault_proxy(upstream, port=None)``: a started fault-injecting proxy.

    ``upstream`` is a plain-HTTP :class:`Registry` (or its ``"127.0.0.1:PORT"``);
    point clients at ``proxy.host``/``proxy.url``. Every proxy is stopped at teardown.
    See :mod:`testbed.faultproxy`.
    """
    from testbed.faultproxy import FaultProxy

    proxies: list[FaultProxy] = []

    def factory(upstream: Registry | str, port: int | None = None) -> FaultProxy:
        host = upstream.host if isinstance(upstream, Registry) else upstream
        proxy = FaultProxy(host, port=port)
        proxies.append(proxy)
        return proxy.start()

    yield factory
    for proxy in reversed(proxies):
        proxy.stop()


@pytest.fixture
def registry_front() -> Iterator[Callable[..., "RegistryFront"]]:
    """Factory ``registry_front(upstream, personality)``: a started :class:`testbed.front.RegistryFront`
    (a product's documented behaviour before the real ``upstream`` registry), stopped at teardown.

    The front has ``username``/``password`` of the registry behind it (``registry_env`` reads them) and is
    plain HTTP like that registry.
    """
    from testbed.front import RegistryFront

    fronts: list[RegistryFront] = []

    def factory(upstream: Registry, personality) -> RegistryFront:
        front = RegistryFront(upstream.host, personality)
        front.username, front.password, front.scheme, front.ca_bundle = (
            upstream.username, upstream.password, "http", None)
        fronts.append(front)
        return front.start()

    yield factory
    for front in reversed(fronts):
        front.stop()
