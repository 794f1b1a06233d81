"""Tests proving the registry personalities themselves: each one answers, on the wire, what its module's
docstring says its product answers (status, headers, the error body's code and message).

Only plain ``requests`` and the test bed (no arcmirror code: the test bed's tests must not grade the code
with the code). Three registries of this module's own sit behind the fronts, one per kind of login
(anonymous, Basic, bearer token); every test works in repositories of its own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from testbed.personalities import (
    ACR, ECR, ArtifactRegistry, Artifactory, DockerHub, GitLab, Gitea, Harbor, Nexus, Quay, Zot,
)
from testbed.registry import MANIFEST_ACCEPT, Registry
from testbed.tokenserver import TokenServer, decode_jwt_part

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
SBOM = "application/vnd.example.sbom.v1+json"
SIGNATURE = "application/vnd.example.signature.v1+json"
ABSENT = "sha256:" + "0" * 64
EMPTY_DIGEST = "sha256:" + hashlib.sha256(b"").hexdigest()
TIMEOUT = 10


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def session() -> requests.Session:
    """A session that ignores proxy settings from the environment."""
    s = requests.Session()
    s.trust_env = False
    return s


def errors(response: requests.Response) -> list[dict]:
    """The ``errors`` of a distribution-API error body."""
    return response.json()["errors"]


def error(code: str, message: str, **detail) -> list[dict]:
    """The ``errors`` a refusal carries (``detail=`` when it has one)."""
    return [{"code": code, "message": message, **detail}]


def challenge(value: str) -> tuple[str, dict[str, str]]:
    """A ``WWW-Authenticate`` value: its scheme and parameters."""
    scheme, _, rest = value.partition(" ")
    return scheme, dict(re.findall(r'(\w+)="([^"]*)"', rest))


# -- pushing with plain requests --------------------------------------------------------------------

@dataclass
class Pushed:
    """A manifest pushed (or refused): its digest, its body and the answer to its PUT."""

    digest: str
    body: bytes
    response: requests.Response

    def descriptor(self, media_type: str = OCI_MANIFEST) -> dict:
        return {"mediaType": media_type, "digest": self.digest, "size": len(self.body)}


def upload_blob(client: requests.Session, base: str, repo: str, data: bytes, headers: dict | None = None) -> str:
    """A monolithic upload (POST, then PUT the Location, relative or not, with ``?digest=``)."""
    digest = sha256(data)
    started = client.post(f"{base}/v2/{repo}/blobs/uploads/", headers=headers, timeout=TIMEOUT)
    assert started.status_code == 202, started.text
    done = client.put(urljoin(base, started.headers["Location"]), params={"digest": digest}, data=data,
                      headers={**(headers or {}), "Content-Type": "application/octet-stream"}, timeout=TIMEOUT)
    assert done.status_code == 201, done.text
    return digest


def put_manifest(client: requests.Session, base: str, repo: str, reference: str, body: bytes,
                 headers: dict | None = None, media_type: str = OCI_MANIFEST) -> requests.Response:
    return client.put(f"{base}/v2/{repo}/manifests/{reference}", data=body,
                      headers={**(headers or {}), "Content-Type": media_type}, timeout=TIMEOUT)


def push_image(client: requests.Session, base: str, repo: str, reference: str, *, headers: dict | None = None,
               layer: bytes = b"a layer", artifact_type: str | None = None, subject: Pushed | None = None,
               expect: int | None = 201) -> Pushed:
    """A small OCI image (or, with ``artifact_type``, an artifact with the empty config) under ``reference``."""
    config, config_type = b"{}", OCI_EMPTY
    if not artifact_type:
        config_type = OCI_CONFIG
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]}}).encode()
    manifest: dict = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_type, "digest": upload_blob(client, base, repo, config, headers),
                   "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": upload_blob(client, base, repo, layer, headers),
                    "size": len(layer)}],
    }
    if artifact_type:
        manifest["artifactType"] = artifact_type
    if subject is not None:
        manifest["subject"] = subject.descriptor()
    body = json.dumps(manifest).encode()
    response = put_manifest(client, base, repo, reference, body, headers)
    if expect is not None:
        assert response.status_code == expect, response.text
    return Pushed(sha256(body), body, response)


def admin(upstream: Registry, repo: str) -> dict:
    """Headers that let the test act as administrator on ``repo`` straight in ``upstream``."""
    if upstream.token is not None:
        return {"Authorization": "Bearer " + upstream.token.mint([f"repository:{repo}:pull,push,delete"])}
    if upstream.htpasswd:
        login = f"{upstream.username}:{upstream.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(login).decode()}
    return {}


def tag_many(upstream: Registry, repo: str, tags: list[str]) -> Pushed:
    """One image under every tag of ``tags``, straight in ``upstream`` (a few connections at once)."""
    headers = admin(upstream, repo)
    with session() as client:
        image = push_image(client, upstream.url, repo, tags[0], headers=headers)
    local = threading.local()

    def put(tag: str) -> int:
        if not hasattr(local, "client"):
            local.client = session()
        return put_manifest(local.client, upstream.url, repo, tag, image.body, headers).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(put, tags[1:])) <= {201}
    return image


# -- the bearer flow ------------------------------------------------------------------------------------

def ask_token(client: requests.Session, base: str, scopes: list[str],
              creds: tuple[str, str] | None) -> requests.Response:
    """GET /v2/ for the challenge, then ask its realm for ``scopes`` (Basic ``creds``)."""
    ping = client.get(f"{base}/v2/", timeout=TIMEOUT)
    assert ping.status_code == 401, ping.text
    scheme, params = challenge(ping.headers["WWW-Authenticate"])
    assert scheme == "Bearer"
    return client.get(params["realm"], params={"service": params.get("service", ""), "scope": scopes},
                      auth=creds, timeout=TIMEOUT)


def bearer(client: requests.Session, base: str, *scopes: str, creds: tuple[str, str] | None) -> dict:
    """The Authorization header of a token for ``scopes`` (asked as a client asks: the realm challenged)."""
    got = ask_token(client, base, list(scopes), creds)
    assert got.status_code == 200, got.text
    return {"Authorization": "Bearer " + got.json()["token"]}


# -- fixtures -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def anonymous(testbed_tools, tmp_path_factory) -> Iterator[Registry]:
    """An anonymous registry behind the fronts of products whose logins do not matter here."""
    with Registry(tmp_path_factory.mktemp("personalities-anonymous")) as registry:
        yield registry


@pytest.fixture(scope="module")
def basic(testbed_tools, tmp_path_factory) -> Iterator[Registry]:
    """A Basic-auth registry (user ``mirror``)."""
    with Registry(tmp_path_factory.mktemp("personalities-basic"), htpasswd={"mirror": "basic-secret"}) as registry:
        yield registry


@pytest.fixture(scope="module")
def token(testbed_tools, tmp_path_factory) -> Iterator[Registry]:
    """A bearer-token registry (its token server: ``.token``, user ``mirror``)."""
    workdir = tmp_path_factory.mktemp("personalities-token")
    with TokenServer(workdir / "token-server", users={"mirror": "token-secret"}) as server, \
            Registry(workdir / "registry", token=server) as registry:
        yield registry


@pytest.fixture
def client() -> Iterator[requests.Session]:
    with session() as s:
        yield s


def creds(upstream: Registry) -> tuple[str, str]:
    return upstream.username, upstream.password


def access(headers: dict) -> list[dict]:
    """The ``access`` claim of the bearer token in ``headers``."""
    return decode_jwt_part(headers["Authorization"].split()[1].split(".")[1])["access"]


# -- Harbor -----------------------------------------------------------------------------------------------

def test_harbor_refuses_a_missing_project_with_an_empty_challenge(registry_front, token, client):
    front = registry_front(token, Harbor())
    headers = bearer(client, front.url, "repository:nowhere/app:pull", creds=creds(token))  # issued all the same

    response = client.get(f"{front.url}/v2/nowhere/app/manifests/latest", headers=headers, timeout=TIMEOUT)

    assert not any(entry["actions"] for entry in access(headers))  # with no actions
    assert response.status_code == 401
    assert "Www-Authenticate" in response.headers and response.headers["Www-Authenticate"] == ""
    assert errors(response) == error("UNAUTHORIZED", "project nowhere not found: project nowhere not found")


def test_harbor_lets_a_first_anonymous_get_on_a_missing_project_meet_the_challenge(registry_front, token, client):
    front = registry_front(token, Harbor())
    response = client.get(f"{front.url}/v2/nowhere/app/manifests/latest", timeout=TIMEOUT)
    assert response.status_code == 401
    assert challenge(response.headers["WWW-Authenticate"])[1]["realm"] == f"{front.url}/service/token"


def test_harbor_refuses_a_one_segment_repository(registry_front, token, client):
    front = registry_front(token, Harbor())
    headers = bearer(client, front.url, "repository:app:pull", creds=creds(token))
    response = client.get(f"{front.url}/v2/app/tags/list", headers=headers, timeout=TIMEOUT)
    assert response.status_code == 400
    assert errors(response) == error("BAD_REQUEST", "bad request: invalid repository name: app")


def test_harbor_refuses_a_mount_from_a_missing_project_instead_of_opening_an_upload(registry_front, token, client):
    front = registry_front(token, Harbor())
    headers = bearer(client, front.url, "repository:mirror/mount-missing:pull,push", "repository:nowhere/app:pull",
                     creds=creds(token))

    response = client.post(f"{front.url}/v2/mirror/mount-missing/blobs/uploads/",
                           params={"mount": ABSENT, "from": "nowhere/app"}, headers=headers, timeout=TIMEOUT)

    assert response.status_code == 401
    assert response.headers["Www-Authenticate"] == ""
    assert errors(response) == error("UNAUTHORIZED", "project nowhere not found: project nowhere not found")


def test_harbor_refuses_a_mount_from_an_unreadable_project_with_its_basic_challenge(registry_front, token, client):
    front = registry_front(token, Harbor(projects=("mirror", "secret"), unreadable=("secret",)))
    headers = bearer(client, front.url, "repository:mirror/mount-unreadable:pull,push", creds=creds(token))

    response = client.post(f"{front.url}/v2/mirror/mount-unreadable/blobs/uploads/",
                           params={"mount": ABSENT, "from": "secret/app"}, headers=headers, timeout=TIMEOUT)

    assert response.status_code == 401
    assert response.headers["Www-Authenticate"] == 'Basic realm="harbor"'
    message = "unauthorized to access repository: secret/app, action: pull"
    assert errors(response) == error("UNAUTHORIZED", f"{message}: {message}")


def test_harbor_2_7_answers_referrers_with_an_unrecognized_request(registry_front, token, client):
    front = registry_front(token, Harbor(version=(2, 7)))
    headers = bearer(client, front.url, "repository:mirror/referrers-27:pull", creds=creds(token))

    response = client.get(f"{front.url}/v2/mirror/referrers-27/referrers/{ABSENT}", headers=headers, timeout=TIMEOUT)

    assert response.status_code == 401
    assert response.headers["Www-Authenticate"] == ""
    message = f"un-recognized request: GET /v2/mirror/referrers-27/referrers/{ABSENT}"
    assert errors(response) == error("UNAUTHORIZED", f"{message}: {message}")


@pytest.mark.parametrize("version, oci_subject", [((2, 8), False), ((2, 11), True)], ids=["2.8", "2.11"])
def test_harbor_lists_referrers_from_2_8_and_says_oci_subject_from_2_9(registry_front, token, client,
                                                                         version, oci_subject):
    front = registry_front(token, Harbor(version=version))
    repo = f"mirror/referrers-{version[1]}"
    headers = bearer(client, front.url, f"repository:{repo}:pull,push", creds=creds(token))
    image = push_image(client, front.url, repo, "1.0", headers=headers)

    sbom = push_image(client, front.url, repo, "sbom", headers=headers, artifact_type=SBOM, subject=image)
    listed = client.get(f"{front.url}/v2/{repo}/referrers/{image.digest}", headers=headers, timeout=TIMEOUT)

    assert sbom.response.headers.get("OCI-Subject") == (image.digest if oci_subject else None)
    assert listed.status_code == 200
    assert listed.headers["Content-Type"] == OCI_INDEX
    assert [(d["digest"], d["artifactType"]) for d in listed.json()["manifests"]] == [(sbom.digest, SBOM)]


def test_harbor_keeps_the_catalog_for_administrators(registry_front, token, client):
    front = registry_front(token, Harbor())
    headers = bearer(client, front.url, "registry:catalog:*", creds=creds(token))
    response = client.get(f"{front.url}/v2/_catalog", headers=headers, timeout=TIMEOUT)
    assert response.status_code == 401
    assert response.headers["Www-Authenticate"] == 'Basic realm="harbor"'
    assert errors(response) == error("UNAUTHORIZED", "unauthorized to list catalog: unauthorized to list catalog")


def test_harbor_names_a_missing_manifest_an_artifact(registry_front, token, client):
    front = registry_front(token, Harbor())
    headers = bearer(client, front.url, "repository:mirror/missing:pull", creds=creds(token))

    by_tag = client.get(f"{front.url}/v2/mirror/missing/manifests/nope", headers=headers, timeout=TIMEOUT)
    by_digest = client.get(f"{front.url}/v2/mirror/missing/manifests/{ABSENT}", headers=headers, timeout=TIMEOUT)
    tags = client.get(f"{front.url}/v2/mirror/missing/tags/list", headers=headers, timeout=TIMEOUT)

    assert by_tag.status_code == by_digest.status_code == tags.status_code == 404
    assert errors(by_tag) == error("NOT_FOUND", "artifact mirror/missing:nope not found")
    assert errors(by_digest) == error("NOT_FOUND", f"artifact mirror/missing@{ABSENT} not found")
    assert errors(tags) == error("NOT_FOUND", "repository mirror/missing not found")


def test_harbor_refuses_to_overwrite_an_immutable_tag_even_with_the_same_manifest(registry_front, token, client):
    front = registry_front(token, Harbor(immutable_tags=("stable",)))
    headers = bearer(client, front.url, "repository:mirror/immutable:pull,push", creds=creds(token))
    image = push_image(client, front.url, "mirror/immutable", "stable", headers=headers)

    again = put_manifest(client, front.url, "mirror/immutable", "stable", image.body, headers)

    assert again.status_code == 412
    assert errors(again) == error("PRECONDITION",
                                  "Failed to process request due to 'immutable:stable' configured as immutable.")
    assert put_manifest(client, front.url, "mirror/immutable", "latest", image.body, headers).status_code == 201
    assert put_manifest(client, front.url, "mirror/immutable", "latest", image.body, headers).status_code == 201


def test_harbor_serves_tokens_at_service_token(registry_front, token, client):
    front = registry_front(token, Harbor())
    ping = client.get(f"{front.url}/v2/", timeout=TIMEOUT)
    scheme, params = challenge(ping.headers["WWW-Authenticate"])
    assert (ping.status_code, scheme, params["realm"]) == (401, "Bearer", f"{front.url}/service/token")

    headers = bearer(client, front.url, "repository:mirror/realm:pull,push", creds=creds(token))
    push_image(client, front.url, "mirror/realm", "1.0", headers=headers)
    listed = client.get(f"{front.url}/v2/mirror/realm/tags/list", headers=headers, timeout=TIMEOUT)
    assert (listed.status_code, listed.json()["tags"]) == (200, ["1.0"])


# -- Artifactory ---------------------------------------------------------------------------------------------

def test_artifactory_answers_403_to_a_head_of_a_missing_manifest(registry_front, anonymous, client):
    front = registry_front(anonymous, Artifactory())
    image = push_image(client, front.url, "art/head", "1.0")
    url = f"{front.url}/v2/art/head/manifests"

    missing = client.head(f"{url}/nope", headers={"Accept": MANIFEST_ACCEPT}, timeout=TIMEOUT)
    present = client.head(f"{url}/1.0", headers={"Accept": MANIFEST_ACCEPT}, timeout=TIMEOUT)

    assert missing.status_code == 403
    assert (present.status_code, present.headers["Docker-Content-Digest"]) == (200, image.digest)


def test_artifactory_lists_the_children_of_an_index_among_the_tags(registry_front, anonymous, client):
    front = registry_front(anonymous, Artifactory())
    amd64 = push_image(client, front.url, "art/index", "amd64", layer=b"amd64 layer")
    arm64 = push_image(client, front.url, "art/index", "arm64", layer=b"arm64 layer")
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": [amd64.descriptor(), arm64.descriptor()]}).encode()
    assert put_manifest(client, front.url, "art/index", "multi", index, media_type=OCI_INDEX).status_code == 201

    listed = client.get(f"{front.url}/v2/art/index/tags/list", timeout=TIMEOUT)

    assert listed.status_code == 200
    assert listed.json() == {"name": "art/index", "tags": sorted(["amd64", "arm64", "multi",
                                                                 amd64.digest, arm64.digest])}


def test_artifactory_opens_a_plain_upload_for_a_mount(registry_front, anonymous, client):
    front = registry_front(anonymous, Artifactory())
    digest = upload_blob(client, front.url, "art/source", b"mounted blob")

    response = client.post(f"{front.url}/v2/art/target/blobs/uploads/",
                           params={"mount": digest, "from": "art/source"}, timeout=TIMEOUT)

    assert response.status_code == 202
    assert "/v2/art/target/blobs/uploads/" in response.headers["Location"]
    assert not anonymous.has_blob("art/target", digest)


def test_artifactory_says_status_instead_of_code_when_refusing_an_upload_delete(registry_front, anonymous, client):
    front = registry_front(anonymous, Artifactory())
    started = client.post(f"{front.url}/v2/art/delete/blobs/uploads/", timeout=TIMEOUT)

    response = client.delete(urljoin(front.url, started.headers["Location"]), timeout=TIMEOUT)

    assert response.status_code == 406
    assert response.json() == {"errors": [{"status": 406, "message": "Not Acceptable"}]}


# -- Nexus -------------------------------------------------------------------------------------------------------

def test_nexus_starts_a_tag_list_with_null(registry_front, anonymous, client):
    front = registry_front(anonymous, Nexus())
    push_image(client, front.url, "nexus/nulls", "1.0")
    listed = client.get(f"{front.url}/v2/nexus/nulls/tags/list", timeout=TIMEOUT)
    assert (listed.status_code, listed.json()) == (200, {"name": "nexus/nulls", "tags": [None, "1.0"]})


NEXUS_REFUSAL = error("BLOB_UPLOAD_INVALID", "blob upload invalid",
                      detail="Repository does not allow updating assets: docker-hosted")


def test_nexus_without_redeploy_refuses_a_put_of_an_existing_tag(registry_front, anonymous, client):
    front = registry_front(anonymous, Nexus(redeploy=False))
    image = push_image(client, front.url, "nexus/existing-tag", "1.0")
    again = put_manifest(client, front.url, "nexus/existing-tag", "1.0", image.body)
    assert again.status_code == 400
    assert errors(again) == NEXUS_REFUSAL


def test_nexus_without_redeploy_refuses_a_new_tag_on_a_stored_manifest(registry_front, anonymous, client):
    front = registry_front(anonymous, Nexus(redeploy=False))
    image = push_image(client, front.url, "nexus/new-tag", "1.0")
    retag = put_manifest(client, front.url, "nexus/new-tag", "1.1", image.body)
    assert retag.status_code == 400
    assert errors(retag) == NEXUS_REFUSAL


def test_nexus_without_redeploy_takes_a_new_manifest_under_a_new_tag(registry_front, anonymous, client):
    front = registry_front(anonymous, Nexus(redeploy=False))
    push_image(client, front.url, "nexus/new-manifest", "1.0")
    second = push_image(client, front.url, "nexus/new-manifest", "2.0", layer=b"another layer")
    assert second.response.status_code == 201
    assert anonymous.manifest_digest("nexus/new-manifest", "2.0") == second.digest


# -- Quay --------------------------------------------------------------------------------------------------------

QUAY_NOT_AUTHORIZED = error("UNAUTHORIZED", "access to the requested resource is not authorized", detail={})


def test_quay_refuses_nested_repositories_at_its_token_endpoint(registry_front, token, client):
    front = registry_front(token, Quay(nested="refused"))

    response = ask_token(client, front.url, ["repository:a/b/c:pull"], creds(token))

    assert response.request.url.startswith(f"{front.url}/v2/auth?")
    assert response.status_code == 400
    assert errors(response) == error("NAME_INVALID", "Nested repositories are not supported. Found: a/b/c", detail={})


def test_quay_issues_a_token_without_rights_for_nested_repositories_then_refuses(registry_front, token, client):
    front = registry_front(token, Quay(nested="unauthorized"))
    headers = bearer(client, front.url, "repository:mirror/b/c:pull,push", creds=creds(token))

    response = client.get(f"{front.url}/v2/mirror/b/c/tags/list", headers=headers, timeout=TIMEOUT)

    assert response.status_code == 401
    assert errors(response) == QUAY_NOT_AUTHORIZED


def test_quay_gives_no_access_in_an_organization_that_does_not_exist(registry_front, token, client):
    front = registry_front(token, Quay())
    headers = bearer(client, front.url, "repository:elsewhere/app:pull,push", creds=creds(token))

    response = client.post(f"{front.url}/v2/elsewhere/app/blobs/uploads/", headers=headers, timeout=TIMEOUT)

    assert response.status_code == 401
    assert errors(response) == QUAY_NOT_AUTHORIZED


def test_quay_3_11_pages_tags_by_50_in_push_order_through_an_opaque_next_page(registry_front, token, client):
    front = registry_front(token, Quay(version=(3, 11)))
    repo = "mirror/paged-311"
    headers = bearer(client, front.url, f"repository:{repo}:pull,push", creds=creds(token))
    pushed = random.Random(7).sample([f"t{i:02d}" for i in range(60)], 60)
    image = push_image(client, front.url, repo, pushed[0], headers=headers)
    for tag in pushed[1:]:
        assert put_manifest(client, front.url, repo, tag, image.body, headers).status_code == 201

    first = client.get(f"{front.url}/v2/{repo}/tags/list", headers=headers, timeout=TIMEOUT)
    link = re.fullmatch(rf'<(/v2/{repo}/tags/list\?n=50&next_page=[^&>]+)>; rel="next"', first.headers["Link"])
    assert link, first.headers["Link"]
    second = client.get(front.url + link[1], headers=headers, timeout=TIMEOUT)
    after_last = client.get(f"{front.url}/v2/{repo}/tags/list", params={"last": first.json()["tags"][-1]},
                            headers=headers, timeout=TIMEOUT)

    assert first.json()["tags"] == pushed[:50] != sorted(pushed[:50])
    assert second.json()["tags"] == pushed[50:] and "Link" not in second.headers
    assert after_last.json()["tags"] == pushed[:50]  # last= is ignored: page 1 again


def test_quay_3_12_pages_tags_by_name_with_last_and_at_least_100(registry_front, token, client):
    repo = "mirror/paged-312"
    tags = [f"t{i:03d}" for i in range(120)]
    tag_many(token, repo, random.Random(8).sample(tags, len(tags)))
    front = registry_front(token, Quay(version=(3, 12)))
    headers = bearer(client, front.url, f"repository:{repo}:pull", creds=creds(token))

    first = client.get(f"{front.url}/v2/{repo}/tags/list", headers=headers, timeout=TIMEOUT)
    after = client.get(f"{front.url}/v2/{repo}/tags/list", params={"last": "t029"}, headers=headers, timeout=TIMEOUT)

    assert first.json()["tags"] == tags[:100]
    assert first.headers["Link"] == f'</v2/{repo}/tags/list?n=100&last=t099>; rel="next"'
    assert after.json()["tags"] == tags[30:] and "Link" not in after.headers


def test_quay_3_12_refuses_referrers_of_an_unknown_subject_and_lists_a_known_one(registry_front, token, client):
    front = registry_front(token, Quay(version=(3, 12)))
    repo = "mirror/referrers-312"
    headers = bearer(client, front.url, f"repository:{repo}:pull,push", creds=creds(token))
    image = push_image(client, front.url, repo, "1.0", headers=headers)
    url = f"{front.url}/v2/{repo}/referrers"

    unknown = client.get(f"{url}/{ABSENT}", headers=headers, timeout=TIMEOUT)
    none_yet = client.get(f"{url}/{image.digest}", headers=headers, timeout=TIMEOUT)

    assert unknown.status_code == 400
    assert errors(unknown) == error("MANIFEST_INVALID", "manifest invalid", detail={})
    assert none_yet.status_code == 200
    assert none_yet.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


def test_quay_3_12_indexes_a_referrer_without_saying_oci_subject(registry_front, token, client):
    front = registry_front(token, Quay(version=(3, 12)))
    repo = "mirror/subject-312"
    headers = bearer(client, front.url, f"repository:{repo}:pull,push", creds=creds(token))
    image = push_image(client, front.url, repo, "1.0", headers=headers)

    sbom = push_image(client, front.url, repo, "sbom", headers=headers, artifact_type=SBOM, subject=image)
    listed = client.get(f"{front.url}/v2/{repo}/referrers/{image.digest}", headers=headers, timeout=TIMEOUT)

    assert "OCI-Subject" not in sbom.response.headers
    assert [d["digest"] for d in listed.json()["manifests"]] == [sbom.digest]


# -- ECR ---------------------------------------------------------------------------------------------------------

ECR_ACCOUNT = "123456789012"


def test_ecr_answers_name_unknown_for_a_repository_not_created(registry_front, basic, client):
    front = registry_front(basic, ECR())
    client.auth = creds(basic)
    message = f"The repository with name 'ecr/missing' does not exist in the registry with id '{ECR_ACCOUNT}'"

    manifest = client.get(f"{front.url}/v2/ecr/missing/manifests/latest", timeout=TIMEOUT)
    tags = client.get(f"{front.url}/v2/ecr/missing/tags/list", timeout=TIMEOUT)

    assert manifest.status_code == tags.status_code == 404
    assert errors(manifest) == errors(tags) == error("NAME_UNKNOWN", message)


def test_ecr_ends_the_connection_on_an_upload_into_a_repository_not_created(registry_front, basic, client):
    personality = ECR()
    front = registry_front(basic, personality)
    client.auth = creds(basic)

    with pytest.raises(requests.exceptions.ConnectionError):
        client.post(f"{front.url}/v2/ecr/created-later/blobs/uploads/", timeout=TIMEOUT)

    personality.create_repository("ecr/created-later")
    image = push_image(client, front.url, "ecr/created-later", "1.0")
    assert basic.manifest_digest("ecr/created-later", "1.0") == image.digest


def test_ecr_refuses_to_overwrite_an_immutable_tag_even_with_the_same_manifest(registry_front, basic, client):
    front = registry_front(basic, ECR(repositories=["ecr/immutable"], immutable=True))
    client.auth = creds(basic)
    image = push_image(client, front.url, "ecr/immutable", "1.0")

    again = put_manifest(client, front.url, "ecr/immutable", "1.0", image.body)

    assert again.status_code == 400
    assert errors(again) == error("TAG_INVALID", "The image tag '1.0' already exists in the 'ecr/immutable' "
                                                 "repository and cannot be overwritten because the repository is "
                                                 "immutable.")


def test_ecr_refuses_more_than_1000_tags_a_page(registry_front, basic, client):
    front = registry_front(basic, ECR(repositories=["ecr/many"]))
    client.auth = creds(basic)
    response = client.get(f"{front.url}/v2/ecr/many/tags/list", params={"n": 1001}, timeout=TIMEOUT)
    assert response.status_code == 405
    assert errors(response) == error("UNSUPPORTED", "Invalid parameter at 'maxResults' failed to satisfy "
                                                    "constraint: 'Member must have value less than or equal to 1000'")


def test_ecr_refuses_to_complete_an_upload_without_parts(registry_front, basic, client):
    front = registry_front(basic, ECR(repositories=["ecr/empty"]))
    client.auth = creds(basic)
    started = client.post(f"{front.url}/v2/ecr/empty/blobs/uploads/", timeout=TIMEOUT)
    location = urljoin(front.url, started.headers["Location"])
    upload = urlsplit(location).path.rsplit("/", 1)[1]

    response = client.put(location, params={"digest": EMPTY_DIGEST}, data=b"", timeout=TIMEOUT)

    assert response.status_code == 400
    assert errors(response) == error(
        "BLOB_UPLOAD_INVALID", f"The upload with id '{upload}' in the repository with name 'ecr/empty' in registry "
                               f"with id '{ECR_ACCOUNT}' cannot be completed because it does not have any parts.")
    assert not basic.has_blob("ecr/empty", EMPTY_DIGEST)


def test_ecr_shows_its_own_basic_realm(registry_front, basic, client):
    front = registry_front(basic, ECR())
    response = client.get(f"{front.url}/v2/", timeout=TIMEOUT)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Basic realm="https://{ECR_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/",service="ecr.amazonaws.com"')


def test_ecr_opens_a_plain_upload_for_a_mount(registry_front, basic, client):
    front = registry_front(basic, ECR(repositories=["ecr/source", "ecr/target"]))
    client.auth = creds(basic)
    digest = upload_blob(client, front.url, "ecr/source", b"ecr mounted blob")

    response = client.post(f"{front.url}/v2/ecr/target/blobs/uploads/",
                           params={"mount": digest, "from": "ecr/source"}, timeout=TIMEOUT)

    assert response.status_code == 202
    assert not basic.has_blob("ecr/target", digest)


def test_ecr_says_oci_subject(registry_front, basic, client):
    front = registry_front(basic, ECR(repositories=["ecr/subject"]))
    client.auth = creds(basic)
    image = push_image(client, front.url, "ecr/subject", "1.0")
    sbom = push_image(client, front.url, "ecr/subject", "sbom", artifact_type=SBOM, subject=image)
    assert sbom.response.headers["OCI-Subject"] == image.digest


# -- Artifact Registry ---------------------------------------------------------------------------------------

def test_artifact_registry_uploads_through_a_relative_location_outside_v2(registry_front, anonymous, client):
    front = registry_front(anonymous, ArtifactRegistry())
    data = b"artifact registry blob"

    started = client.post(f"{front.url}/v2/gar/app/blobs/uploads/", timeout=TIMEOUT)
    location = started.headers["Location"]
    done = client.put(urljoin(front.url, location), params={"digest": sha256(data)}, data=data, timeout=TIMEOUT)

    assert started.status_code == 202
    assert location.startswith("/artifacts-uploads/")
    assert done.status_code == 201, done.text
    assert anonymous.has_blob("gar/app", sha256(data))


def test_artifact_registry_refuses_a_second_patch(registry_front, anonymous, client):
    front = registry_front(anonymous, ArtifactRegistry())
    started = client.post(f"{front.url}/v2/gar/chunked/blobs/uploads/", timeout=TIMEOUT)
    first = client.patch(urljoin(front.url, started.headers["Location"]), data=b"first",
                         headers={"Content-Type": "application/octet-stream"}, timeout=TIMEOUT)

    second = client.patch(urljoin(front.url, first.headers["Location"]), data=b"second",
                          headers={"Content-Type": "application/octet-stream"}, timeout=TIMEOUT)

    assert first.status_code == 202
    assert second.status_code == 400
    assert errors(second)[0]["code"] == "BLOB_UPLOAD_INVALID"


def test_artifact_registry_refuses_an_empty_blob(registry_front, anonymous, client):
    front = registry_front(anonymous, ArtifactRegistry())
    started = client.post(f"{front.url}/v2/gar/empty/blobs/uploads/", timeout=TIMEOUT)

    response = client.put(urljoin(front.url, started.headers["Location"]), params={"digest": EMPTY_DIGEST},
                          data=b"", timeout=TIMEOUT)

    assert response.status_code == 400
    assert not anonymous.has_blob("gar/empty", EMPTY_DIGEST)


def test_gcr_sends_401_without_a_challenge_after_the_ping(registry_front, token, client):
    front = registry_front(token, ArtifactRegistry(bare_401=True))
    ping = client.get(f"{front.url}/v2/", timeout=TIMEOUT)
    later = client.get(f"{front.url}/v2/gar/app/tags/list", timeout=TIMEOUT)
    assert (ping.status_code, later.status_code) == (401, 401)
    assert ping.headers["WWW-Authenticate"].startswith("Bearer ")
    assert "WWW-Authenticate" not in later.headers


# -- Docker Hub ------------------------------------------------------------------------------------------------

RATE_LIMITED = ("You have reached your pull rate limit. You may increase the limit by authenticating and "
                "upgrading: https://www.docker.com/increase-rate-limits")


def test_docker_hub_answers_429_past_the_pull_limit(registry_front, anonymous, client):
    with session() as pusher:
        push_image(pusher, anonymous.url, "hub/limited", "1.0")
    front = registry_front(anonymous, DockerHub(limit=2))
    url = f"{front.url}/v2/hub/limited/manifests/1.0"

    pulls = [client.get(url, headers={"Accept": MANIFEST_ACCEPT}, timeout=TIMEOUT) for _ in range(3)]

    assert [p.status_code for p in pulls] == [200, 200, 429]
    assert [p.headers["ratelimit-remaining"] for p in pulls] == ["1;w=21600", "0;w=21600", "0;w=21600"]
    refused = pulls[2]
    assert refused.headers["ratelimit-limit"] == "2;w=21600"
    assert refused.headers["docker-ratelimit-source"]
    assert refused.headers["Retry-After"] == "1"
    assert errors(refused) == error("TOOMANYREQUESTS", RATE_LIMITED)


def test_docker_hub_never_counts_or_refuses_a_head(registry_front, anonymous, client):
    with session() as pusher:
        push_image(pusher, anonymous.url, "hub/heads", "1.0")
    front = registry_front(anonymous, DockerHub(limit=1))
    url = f"{front.url}/v2/hub/heads/manifests/1.0"
    accept = {"Accept": MANIFEST_ACCEPT}

    heads_before = [client.head(url, headers=accept, timeout=TIMEOUT) for _ in range(3)]
    pulls = [client.get(url, headers=accept, timeout=TIMEOUT) for _ in range(2)]
    head_after = client.head(url, headers=accept, timeout=TIMEOUT)

    assert [h.status_code for h in heads_before] == [200, 200, 200]
    assert {h.headers["ratelimit-remaining"] for h in heads_before} == {"1;w=21600"}
    assert [p.status_code for p in pulls] == [200, 429]
    assert head_after.status_code == 200
    assert (head_after.headers["ratelimit-limit"], head_after.headers["ratelimit-remaining"]) == (
        "1;w=21600", "0;w=21600")


def test_docker_hub_answers_401_for_a_repository_that_does_not_exist(registry_front, anonymous, client):
    front = registry_front(anonymous, DockerHub())

    response = client.get(f"{front.url}/v2/library/nothing/manifests/latest", timeout=TIMEOUT)

    assert response.status_code == 401
    assert errors(response) == error("UNAUTHORIZED", "authentication required", detail=[
        {"Type": "repository", "Class": "", "Name": "library/nothing", "Action": "pull"}])
    scheme, params = challenge(response.headers["WWW-Authenticate"])
    assert (scheme, params["realm"], params["service"], params["scope"], params["error"]) == (
        "Bearer", f"{front.url}/token", "registry.docker.io", "repository:library/nothing:pull", "insufficient_scope")


# -- GitLab ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("repo", ["group/mirror/a/b/c", "elsewhere/app"], ids=["too-deep", "no-project"])
def test_gitlab_issues_a_token_without_the_access_then_refuses(registry_front, token, client, repo):
    front = registry_front(token, GitLab())
    headers = bearer(client, front.url, f"repository:{repo}:pull,push", creds=creds(token))

    response = client.post(f"{front.url}/v2/{repo}/blobs/uploads/", headers=headers, timeout=TIMEOUT)

    assert response.status_code == 401
    assert errors(response)[0]["code"] == "UNAUTHORIZED"
    scheme, params = challenge(response.headers["WWW-Authenticate"])
    assert (scheme, params["realm"], params["error"]) == ("Bearer", f"{front.url}/jwt/auth", "insufficient_scope")


def test_gitlab_takes_two_more_names_after_the_project(registry_front, token, client):
    front = registry_front(token, GitLab())
    repo = "group/mirror/a/b"
    headers = bearer(client, front.url, f"repository:{repo}:pull,push", creds=creds(token))
    image = push_image(client, front.url, repo, "1.0", headers=headers)
    assert token.manifest_digest(repo, "1.0") == image.digest


def test_gitlab_never_grants_the_catalog(registry_front, token, client):
    front = registry_front(token, GitLab())
    headers = bearer(client, front.url, "registry:catalog:*", creds=creds(token))
    response = client.get(f"{front.url}/v2/_catalog", headers=headers, timeout=TIMEOUT)
    assert response.status_code == 401


@pytest.mark.parametrize("personality", [GitLab, Gitea])
def test_gitlab_and_gitea_have_no_referrers_api(registry_front, token, client, personality):
    front = registry_front(token, personality())
    repo = "group/mirror/referrers"
    headers = bearer(client, front.url, f"repository:{repo}:pull,push", creds=creds(token))
    image = push_image(client, front.url, repo, "1.0", headers=headers)
    response = client.get(f"{front.url}/v2/{repo}/referrers/{image.digest}", headers=headers, timeout=TIMEOUT)
    assert response.status_code == 404


# -- ACR -----------------------------------------------------------------------------------------------------------

ACR_TAGS = [f"t{i:04d}" for i in range(1010)]


@pytest.fixture(scope="module")
def acr_many(token) -> str:
    """A repository of :data:`ACR_TAGS` tags (more than ACR's largest page) in :func:`token`."""
    repo = "acr/many"
    tag_many(token, repo, ACR_TAGS)
    return repo


def test_acr_pages_tags_by_100_through_an_absolute_link(registry_front, token, acr_many, client):
    front = registry_front(token, ACR())
    headers = bearer(client, front.url, f"repository:{acr_many}:pull", creds=creds(token))
    url, pages = f"{front.url}/v2/{acr_many}/tags/list", []

    while url:
        page = client.get(url, headers=headers, timeout=TIMEOUT)
        assert page.status_code == 200
        pages.append(page.json()["tags"])
        link = page.headers.get("Link")
        assert link is None or link.startswith(f"<{front.url}/v2/{acr_many}/tags/list?")
        url = page.links.get("next", {}).get("url")

    assert [len(p) for p in pages] == [100] * 10 + [10]
    assert sum(pages, []) == ACR_TAGS


def test_acr_lowers_n_to_1000_without_a_word(registry_front, token, acr_many, client):
    front = registry_front(token, ACR())
    headers = bearer(client, front.url, f"repository:{acr_many}:pull", creds=creds(token))

    page = client.get(f"{front.url}/v2/{acr_many}/tags/list", params={"n": 5000}, headers=headers, timeout=TIMEOUT)

    assert page.status_code == 200
    assert page.json()["tags"] == ACR_TAGS[:1000]
    assert page.links["next"]["url"] == f"{front.url}/v2/{acr_many}/tags/list?last=t0999&n=1000"


def test_acr_lists_an_empty_catalog_to_a_repository_scoped_token(registry_front, token, client):
    front = registry_front(token, ACR(scoped_token=True))
    headers = bearer(client, front.url, "registry:catalog:*", creds=creds(token))
    response = client.get(f"{front.url}/v2/_catalog", headers=headers, timeout=TIMEOUT)
    assert (response.status_code, response.json()) == (200, {"repositories": []})


def test_acr_says_oci_subject(registry_front, token, client):
    front = registry_front(token, ACR())
    ping = client.get(f"{front.url}/v2/", timeout=TIMEOUT)
    assert challenge(ping.headers["WWW-Authenticate"])[1]["realm"] == f"{front.url}/oauth2/token"
    headers = bearer(client, front.url, "repository:acr/subject:pull,push", creds=creds(token))
    image = push_image(client, front.url, "acr/subject", "1.0", headers=headers)

    sbom = push_image(client, front.url, "acr/subject", "sbom", headers=headers, artifact_type=SBOM, subject=image)

    assert sbom.response.headers["OCI-Subject"] == image.digest


# -- Gitea -------------------------------------------------------------------------------------------------------

def test_gitea_challenges_for_the_scope_star(registry_front, token, client):
    front = registry_front(token, Gitea())
    response = client.get(f"{front.url}/v2/", timeout=TIMEOUT)
    scheme, params = challenge(response.headers["WWW-Authenticate"])
    assert (response.status_code, scheme, params["realm"], params["scope"]) == (
        401, "Bearer", f"{front.url}/v2/token", "*")


def test_gitea_issues_a_token_for_the_scope_star(registry_front, token, client):
    front = registry_front(token, Gitea())
    got = ask_token(client, front.url, ["*"], creds(token))
    assert got.status_code == 200, got.text
    assert got.json()["token"]
    assert token.token.requests[-1].scopes == ()  # the token server behind would refuse "*" (not type:name:actions)


def test_gitea_refuses_a_second_stream_patch(registry_front, token, client):
    front = registry_front(token, Gitea())
    headers = bearer(client, front.url, "repository:gitea/app:pull,push", creds=creds(token))
    octets = {**headers, "Content-Type": "application/octet-stream"}
    started = client.post(f"{front.url}/v2/gitea/app/blobs/uploads/", headers=headers, timeout=TIMEOUT)
    first = client.patch(urljoin(front.url, started.headers["Location"]), data=b"abc", headers=octets,
                         timeout=TIMEOUT)
    location = urljoin(front.url, first.headers["Location"])

    stream = client.patch(location, data=b"def", headers=octets, timeout=TIMEOUT)
    ranged = client.patch(location, data=b"def", headers={**octets, "Content-Range": "3-5"}, timeout=TIMEOUT)

    assert (started.status_code, first.status_code) == (202, 202)
    assert stream.status_code == 400
    assert errors(stream) == error("BLOB_UPLOAD_INVALID", "Stream uploads after first write are not allowed")
    assert ranged.status_code == 202, ranged.text


# -- zot ----------------------------------------------------------------------------------------------------------

def test_zot_filters_referrers_by_artifact_type(registry_front, anonymous, client):
    front = registry_front(anonymous, Zot())
    image = push_image(client, front.url, "zot/app", "1.0")
    sbom = push_image(client, front.url, "zot/app", "sbom", artifact_type=SBOM, subject=image)
    signature = push_image(client, front.url, "zot/app", "sig", artifact_type=SIGNATURE, subject=image,
                           layer=b"a signature")
    url = f"{front.url}/v2/zot/app/referrers/{image.digest}"

    everything = client.get(url, timeout=TIMEOUT)
    filtered = client.get(url, params={"artifactType": SBOM}, timeout=TIMEOUT)

    assert sbom.response.headers["OCI-Subject"] == signature.response.headers["OCI-Subject"] == image.digest
    assert [d["digest"] for d in everything.json()["manifests"]] == [sbom.digest, signature.digest]
    assert "OCI-Filters-Applied" not in everything.headers
    assert filtered.status_code == 200
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert filtered.json()["manifests"] == [{"mediaType": OCI_MANIFEST, "digest": sbom.digest,
                                            "size": len(sbom.body), "artifactType": SBOM}]
