"""What the registry products answer, read without a server: the error bodies as they write them, the
product named by a challenge, a token's claims, and each rule of ``registry/products.py``. The same rules
run against the fronts of every product in ``test_registries.py``."""

from __future__ import annotations

import base64
import json

import pytest

from arcmirror.registry import products
from arcmirror.registry.auth import granted_access, parse_challenge
from arcmirror.registry.errors import AuthError, RefusedError, RepositoryMissing, SetupError, error_entries

TARGET = products.Registry("target registry r.example", "TARGET_DOCKER", "r.example", user="robot")


class _Body:
    """The little of a requests.Response that error_entries reads."""

    def __init__(self, body) -> None:
        self._data = body if isinstance(body, bytes) else json.dumps(body).encode()

    def iter_content(self, size):
        yield self._data


def answer(status, method="GET", what="manifest a/b:t", repository="a/b", errors=()):
    return products.Answer(status, method, what, repository, errors, "")


@pytest.mark.parametrize("body, expected", [
    ({"errors": [{"code": "NAME_UNKNOWN", "message": "m", "detail": {"name": "x"}}]}, [("NAME_UNKNOWN", "m", '{"name": "x"}')]),
    ({"errors": [{"status": 406, "message": "Not Acceptable"}]}, [("HTTP 406", "Not Acceptable", "")]),  # Artifactory
    ({"details": "invalid repository name"}, [("", "invalid repository name", "")]),  # Docker Hub's token service
    ({"errors": [{"code": "BLOB_UPLOAD_INVALID", "message": "m", "detail": "Repository does not allow updating assets: h"}]},
     [("BLOB_UPLOAD_INVALID", "m", "Repository does not allow updating assets: h")]),  # Nexus: a string detail
    (b"<html>404 page not found</html>", []),
])
def test_error_bodies_as_products_write_them(body, expected):
    assert error_entries(_Body(body)) == expected


@pytest.mark.parametrize("challenge, product", [
    ('Bearer realm="https://h/service/token",service="harbor-registry"', "Harbor"),
    ('Basic realm="harbor"', "Harbor"),
    ('Bearer realm="https://gitlab.example/jwt/auth",service="container_registry"', "GitLab"),
    ('Bearer realm="https://quay.example/v2/auth",service="quay.example"', "Quay"),
    ('Bearer realm="https://git.example/v2/token",service="container_registry",scope="*"', "Gitea"),
    ('Bearer realm="https://x.azurecr.io/oauth2/token",service="x.azurecr.io"', "Azure Container Registry"),
    ('Basic realm="https://1.dkr.ecr.eu-west-1.amazonaws.com/",service="ecr.amazonaws.com"', "Amazon ECR"),
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io"', "Docker Hub"),
    ('Bearer realm="https://a.example/artifactory/api/docker/docker/v2/token",service="a.example"', "Artifactory"),
    ('Basic realm="Sonatype Nexus Repository Manager"', "Nexus"),
    ('Bearer realm="http://127.0.0.1:5001/token",service="registry"', None),
])
def test_the_product_named_by_a_challenge(challenge, product):
    assert products.identify(parse_challenge(challenge)) == product


def jwt(claims: dict) -> str:
    part = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"e30.{part}.c2ln"


def test_a_token_s_claims_say_what_it_grants():
    token = jwt({"access": [{"type": "repository", "name": "a/b", "actions": ["pull"]},
                            {"type": "repository", "name": "a/b", "actions": ["push"]}]})
    assert granted_access(token) == {"repository:a/b": frozenset({"pull", "push"})}
    assert granted_access("opaque-token") is None
    assert granted_access(jwt({"sub": "x"})) is None


def test_harbor_project_not_found():
    error = products.explain(answer(401, errors=[("UNAUTHORIZED", "project arcdata not found: project arcdata not found", "")]),
                             TARGET)
    assert isinstance(error, SetupError) and "Harbor" in error.message and "project 'arcdata'" in error.message
    assert "Projects > New Project" in error.hint and "PASSWORD" not in error.hint


def test_ecr_repository_missing_is_certain_and_names_the_command():
    ecr = products.Registry("target registry", "TARGET_DOCKER", "123456789012.dkr.ecr.eu-west-1.amazonaws.com")
    error = products.explain(answer(404, errors=[(
        "NAME_UNKNOWN", "The repository with name 'm/x' does not exist in the registry with id '123456789012'", "")]), ecr)
    assert isinstance(error, RepositoryMissing) and error.certain
    assert error.hint.endswith("aws ecr create-repository --repository-name m/x --registry-id 123456789012 "
                               "--region eu-west-1")


def test_a_bare_name_unknown_on_a_write_is_not_certain():
    error = products.explain(answer(404, "PUT", errors=[("NAME_UNKNOWN", "repository name not known to registry", "")]),
                             TARGET)
    assert isinstance(error, RepositoryMissing) and not error.certain
    assert products.explain(answer(404, "GET", errors=[("NAME_UNKNOWN", "x", "")]), TARGET) is None


@pytest.mark.parametrize("status, code, message, words", [
    (412, "PRECONDITION", "Failed to process request due to 'x:t' configured as immutable.", "Tag Immutability"),
    (400, "TAG_INVALID", "The image tag 't' already exists in the 'a/b' repository and cannot be overwritten because "
                         "the repository is immutable.", "put-image-tag-mutability --repository-name a/b"),
    (409, "TAG_IMMUTABLE", "tag is immutable and cannot be overwritten", "Quay"),
])
def test_an_immutable_tag(status, code, message, words):
    error = products.explain(answer(status, "PUT", errors=[(code, message, "")]), TARGET)
    assert isinstance(error, SetupError) and "TARGET_DOCKER_TAG" in error.hint
    assert words in error.message + error.hint


def test_quay_nested_and_the_repository_that_fits():
    error = products.explain(answer(400, errors=[("NAME_INVALID", "Nested repositories are not supported. Found: t/a/b", "")]),
                             TARGET)
    assert "3 segments" in error.message and "TARGET_DOCKER_REPOSITORY=t " in error.hint
    assert "FEATURE_EXTENDED_REPOSITORY_NAMES" in error.hint


def test_a_token_without_rights_is_not_a_password_problem():
    quay = products.Registry("target registry", "TARGET_DOCKER", "q", user="robot", product="Quay",
                             granted=frozenset(), needed=frozenset({"pull", "push"}))
    error = products.explain(answer(401, repository="t/a/b"), quay)
    assert "organization 't'" in error.hint and "TARGET_DOCKER_REPOSITORY=t " in error.hint
    other = products.Registry("target registry", "TARGET_DOCKER", "r", user="robot", granted=frozenset({"pull"}),
                              needed=frozenset({"pull", "push"}))
    error = products.explain(answer(401, repository="a/b"), other)
    assert isinstance(error, AuthError) and "only pull rights" in error.message and "PASSWORD" not in error.hint
    granted = products.Registry("target registry", "TARGET_DOCKER", "r", user="robot",
                                granted=frozenset({"pull", "push"}), needed=frozenset({"pull", "push"}))
    assert products.explain(answer(401, repository="a/b"), granted) is None  # then it is the credentials


def test_nexus_redeploy_and_the_empty_blob():
    error = products.explain(answer(400, "PUT", errors=[("BLOB_UPLOAD_INVALID", "blob upload invalid",
                                                         "Repository does not allow updating assets: docker-hosted")]),
                             TARGET)
    assert "Allow redeploy" in error.hint and "docker-hosted" in error.hint
    empty = products.explain(answer(400, "PUT", what="empty blob sha256:e3b0 upload to a/b"), TARGET)
    assert isinstance(empty, RefusedError) and "0-byte" in empty.message
    assert products.explain(answer(400, "PUT", what="blob sha256:e3b0 upload to a/b"), TARGET) is None
