"""Tests proving the test bed itself works (registries, token server, images, skopeo)."""

from __future__ import annotations

import json
import time

import pytest
import requests

from testbed import skopeo
from testbed.images import (
    OCI_INDEX,
    LayoutBuilder,
    build_release,
    image_blobs,
    layout_refs,
)
from testbed.registry import Registry
from testbed.tokenserver import TokenServer, decode_jwt_part

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def parse_bearer_challenge(header: str) -> dict[str, str]:
    """The parameters of a ``WWW-Authenticate: Bearer k="v",...`` header."""
    scheme, _, params = header.partition(" ")
    assert scheme == "Bearer"
    return dict(
        (key.strip(), value.strip('"'))
        for key, _, value in (item.partition("=") for item in params.split(","))
    )


def fetch_token(server: TokenServer, *scopes: str, auth=None) -> requests.Response:
    """GET a token like a Docker client would."""
    params = [("service", server.service)] + [("scope", s) for s in scopes]
    return requests.get(server.realm, params=params, auth=auth, timeout=10)


def granted_access(token: str) -> list[dict]:
    """The ``access`` claim of a JWT."""
    return decode_jwt_part(token.split(".")[1])["access"]


def load_sample(layout, refs, registry: Registry, name: str) -> str:
    """Load one release image into ``registry`` as ``test/NAME:v1``; return its repo."""
    skopeo.load(layout, refs[name], f"{registry.host}/test/{name}:v1", creds=registry.creds,
                cert_dir=registry.cert_dir, tls_verify=registry.cert_dir is not None)
    return f"test/{name}"


# -- registry flavours ---------------------------------------------------------

def test_source_registry_is_anonymous(source_registry):
    assert requests.get(f"{source_registry.url}/v2/", timeout=10).status_code == 200


def test_basic_registry_needs_credentials(basic_registry):
    url = f"{basic_registry.url}/v2/"
    assert basic_registry.username == "mirror" and basic_registry.password
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, auth=("mirror", "wrong"), timeout=10).status_code == 401
    assert requests.get(url, auth=basic_registry.creds, timeout=10).status_code == 200


def test_tls_registry_verifies_with_ca_bundle(tls_registry, ca_bundle):
    url = f"{tls_registry.url}/v2/"
    assert url.startswith("https://127.0.0.1:")
    response = requests.get(url, auth=tls_registry.creds, verify=str(ca_bundle), timeout=10)
    assert response.status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, timeout=10)
    localhost = url.replace("127.0.0.1", "localhost")
    assert requests.get(localhost, verify=str(ca_bundle), timeout=10).status_code == 401


def test_token_registry_challenges_and_accepts_token(token_registry, token_server):
    url = f"{token_registry.url}/v2/"
    response = requests.get(url, timeout=10)
    assert response.status_code == 401
    challenge = parse_bearer_challenge(response.headers["WWW-Authenticate"])
    assert challenge == {"realm": token_server.realm, "service": token_server.service}
    issued = token_server.issued
    body = fetch_token(token_server).json()
    assert body["token"] == body["access_token"] and body["expires_in"] == token_server.ttl
    assert token_server.issued == issued + 1
    headers = {"Authorization": f"Bearer {body['token']}"}
    assert requests.get(url, headers=headers, timeout=10).status_code == 200


def test_token_server_rejects_wrong_password(token_server):
    response = fetch_token(token_server, "repository:arcdata/x:pull", auth=("mirror", "wrong"))
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"
    seen = token_server.requests[-1]
    assert (seen.user, seen.status) == ("mirror", 401)
    assert "wrong" not in repr(seen)


def test_token_server_policy(token_server, token_registry):
    scope = "repository:arcdata/arc-controller:pull,push"
    anonymous = fetch_token(token_server, scope, "registry:catalog:*").json()["token"]
    assert granted_access(anonymous) == [
        {"type": "repository", "name": "arcdata/arc-controller", "actions": ["pull"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]
    user = fetch_token(token_server, scope, auth=token_registry.creds).json()["token"]
    assert granted_access(user)[0]["actions"] == ["pull", "push"]
    assert token_server.requests[-1].user == "mirror"


def test_token_server_post_password_and_refresh_grants(token_server):
    form = {"grant_type": "password", "username": "mirror",
            "password": token_server.users["mirror"], "service": token_server.service,
            "scope": "repository:arcdata/a:pull,push", "access_type": "offline",
            "client_id": "testbed"}
    body = requests.post(token_server.realm, data=form, timeout=10).json()
    assert granted_access(body["access_token"])[0]["actions"] == ["pull", "push"]
    refreshed = requests.post(token_server.realm, timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": body["refresh_token"],
        "service": token_server.service, "scope": "repository:arcdata/b:push"}).json()
    assert granted_access(refreshed["access_token"])[0]["name"] == "arcdata/b"
    bad = requests.post(token_server.realm, data={**form, "password": "x"}, timeout=10)
    assert bad.status_code == 401


def test_token_expires_at_ttl_with_leeway_compensation(new_registry):
    registry = new_registry(auth="token", ttl=2, registry_leeway=60)
    headers = {"Authorization": f"Bearer {fetch_token(registry.token).json()['token']}"}
    url = f"{registry.url}/v2/"
    assert requests.get(url, headers=headers, timeout=10).status_code == 200
    time.sleep(3.2)
    assert requests.get(url, headers=headers, timeout=10).status_code == 401


# -- the release -----------------------------------------------------------------

def test_release_oci_digests_match_layout(release):
    oci_names = [n for n in release.names if n not in release.docker_format]
    assert oci_names
    for name in oci_names:
        assert release.digests[name] == release.layout_digests[name]
        assert skopeo.inspect_digest(release.ref(name)) == release.digests[name]
    assert sorted(release.registry.catalog()) == sorted(
        release.repository(n) for n in release.names)


def test_release_docker_formats(release):
    single = [n for n in release.docker_format if n not in release.multiarch]
    lists = [n for n in release.docker_format if n in release.multiarch]
    assert single and lists
    for names, media_type in ((single, DOCKER_MANIFEST), (lists, DOCKER_LIST)):
        for name in names:
            _, content_type = release.registry.get_manifest(release.repository(name), release.tag)
            assert content_type == media_type
            assert release.digests[name] != release.layout_digests[name]


def test_release_multiarch_index_shares_base_layer(release):
    name = next(n for n in release.multiarch if n not in release.docker_format)
    raw, content_type = release.registry.get_manifest(release.repository(name), release.tag)
    assert content_type == OCI_INDEX
    index = json.loads(raw)
    platforms = {m["platform"]["architecture"] for m in index["manifests"]}
    assert platforms == {"amd64", "arm64"}
    layers = [
        [layer["digest"] for layer in json.loads(release.registry.get_manifest(
            release.repository(name), m["digest"])[0])["layers"]]
        for m in index["manifests"]
    ]
    assert layers[0][0] == layers[1][0] and layers[0][-1] != layers[1][-1]


def test_token_release_matches_source(release, token_release):
    assert token_release.digests == release.digests
    anonymous = fetch_token(token_release.registry.token,
                            f"repository:{token_release.repository('arc-controller')}:pull")
    url = (f"{token_release.registry.url}/v2/"
           f"{token_release.repository('arc-controller')}/tags/list")
    headers = {"Authorization": f"Bearer {anonymous.json()['token']}"}
    assert requests.get(url, headers=headers, timeout=10).json()["tags"] == [token_release.tag]


# -- images ------------------------------------------------------------------------

def test_layers_are_deterministic(tmp_path):
    first = LayoutBuilder(tmp_path / "a").layer(seed=7, size=10_000)
    second = LayoutBuilder(tmp_path / "b").layer(seed=7, size=10_000)
    assert (first.digest, first.diff_id) == (second.digest, second.diff_id)
    assert first.data == second.data and first.size == len(first.data)
    assert LayoutBuilder(tmp_path / "c").layer(seed=8, size=10_000).digest != first.digest


def test_second_release_reuses_unchanged_layers(tmp_path):
    names = ["arc-bootstrapper", "arc-controller", "arc-sqlmi"]
    old = build_release(tmp_path, names, "v1", multiarch=["arc-sqlmi"])
    new = build_release(tmp_path, names, "v2", multiarch=["arc-sqlmi"], changed=["arc-controller"])
    refs = layout_refs(tmp_path)

    def blobs(ref: str) -> set[str]:
        return image_blobs(tmp_path, refs[ref])

    # Shared across tags: base + runtime layers, plus the unique layer(s) unless changed.
    expected_shared = {"arc-bootstrapper": 3, "arc-controller": 2, "arc-sqlmi": 4}
    for name in names:
        assert refs[old[name]] != refs[new[name]]
        assert len(blobs(old[name]) & blobs(new[name])) == expected_shared[name]


# -- registry helpers --------------------------------------------------------------

@pytest.mark.parametrize("auth,tls", [(None, False), ("basic", True), ("token", False)])
def test_helpers_work_on_every_flavour(new_registry, release_layout, auth, tls):
    registry = new_registry(auth=auth, tls=tls)
    layout, refs = release_layout
    assert registry.blob_count() == 0
    repo = load_sample(layout, refs, registry, "arc-sqlmi")
    digest = layout_refs(layout)[refs["arc-sqlmi"]]
    assert registry.manifest_digest(repo, "v1") == digest
    assert registry.manifest_digest(repo, "missing") is None
    assert registry.tags(repo) == ["v1"] and registry.catalog() == [repo]
    assert registry.blob_digests() == image_blobs(layout, digest)


def test_restart_keeps_data(new_registry, release_layout):
    registry = new_registry(auth="basic")
    layout, refs = release_layout
    repo = load_sample(layout, refs, registry, "arc-controller")
    digest, url = registry.manifest_digest(repo, "v1"), registry.url
    registry.restart()
    assert registry.url == url and registry.manifest_digest(repo, "v1") == digest


def test_delete_blob_unlinks_layer(new_registry, release_layout):
    registry = new_registry()
    layout, refs = release_layout
    repo = load_sample(layout, refs, registry, "arc-controller")
    raw, _ = registry.get_manifest(repo, "v1")
    layer = json.loads(raw)["layers"][-1]["digest"]
    on_disk = registry.blob_digests()
    assert registry.has_blob(repo, layer)
    registry.delete_blob(repo, layer)
    assert not registry.has_blob(repo, layer)
    assert registry.blob_digests() == on_disk  # data stays until garbage collection


def test_registry_start_failure_reports_log(testbed_tools, tmp_path):
    registry = Registry(tmp_path)
    registry.config_path.write_text("version: 0.1\n")  # no storage: the registry exits
    with pytest.raises(RuntimeError, match="(?s)did not start.*storage"):
        registry.start()
    assert not registry.running


def test_skopeo_error_carries_stderr(source_registry, tmp_path):
    with pytest.raises(skopeo.SkopeoError, match="skopeo copy"):
        skopeo.load(tmp_path, "nothing:here", f"{source_registry.host}/x/y:z")
