"""What the registry products sites run answer, and what the site must do about it, in that product's terms.

Harbor, Quay, GitLab, Nexus, ECR and the others each depart from the distribution spec in documented
ways. Where their answer means "the site must set something up" (a Harbor project, an ECR repository,
a path Quay accepts), :func:`explain` turns it into an error that says so; the product is recognised
from what the registry answered (its error message, or the token service its challenge names), never
from its host name. The sources of each behaviour are cited beside its rule, and README's registry
table sums them up. What arcmirror does on its own (an absent manifest answered 403, a refused mount,
tags that are not tags) lives where the request is made; this module only explains.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..oci.errors import HintedError, NotFoundError
from .auth import Challenge
from .errors import AuthError, RefusedError, RepositoryMissing, SetupError


@dataclass(frozen=True)
class Answer:
    """One refusal, as far as explaining it goes."""

    status: int
    method: str
    what: str  # "manifest mirror/arcdata/x:tag"
    repository: str | None  # the repository the request was about, if any
    errors: Sequence[tuple[str, str, str]] = ()  # (code, message, detail) of the error body
    detail: str = ""  # describe_errors(errors), for messages

    def says(self, pattern: str) -> re.Match | None:
        """The first match of ``pattern`` in the body's messages or details."""
        for code, message, detail in self.errors:
            found = re.search(pattern, f"{message} {detail}")
            if found:
                return found
        return None

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(code for code, _, _ in self.errors)

    @property
    def writes(self) -> bool:
        return self.method in ("PUT", "POST", "PATCH", "DELETE")


@dataclass(frozen=True)
class Registry:
    """What is known about the registry that answered: for messages."""

    label: str  # "target registry HOST"
    prefix: str  # "TARGET_DOCKER"
    host: str
    user: str | None = None
    product: str | None = None  # from the challenge of its /v2/ (:func:`identify`)
    #: the actions the token of the refused request granted on its repository (None: no token, or unreadable)
    granted: frozenset[str] | None = None
    needed: frozenset[str] = field(default_factory=frozenset)  # the actions the request needed

    @property
    def who(self) -> str:
        return f"user {self.user!r}" if self.user else "anonymous access"


# -- recognising the product from its challenge ------------------------------------------------------------

#: (product, test of the /v2/ challenge): token services and realms as each product documents them
_CHALLENGES: tuple[tuple[str, Callable[[Challenge], bool]], ...] = (
    ("Harbor", lambda c: _realm_path(c).endswith("/service/token") or c.params.get("realm") == "harbor"),
    ("GitLab", lambda c: _realm_path(c).endswith("/jwt/auth")),
    ("Quay", lambda c: _realm_path(c) == "/v2/auth"),
    ("Gitea", lambda c: _realm_path(c).endswith("/v2/token") and c.service == "container_registry"),
    ("Azure Container Registry", lambda c: _realm_path(c) == "/oauth2/token"),
    ("Amazon ECR", lambda c: c.service == "ecr.amazonaws.com"),
    ("Docker Hub", lambda c: c.service == "registry.docker.io"),
    ("Artifactory", lambda c: "/artifactory/api/docker/" in _realm_path(c)),
    ("Nexus", lambda c: "nexus" in (c.params.get("realm") or "").lower()),
)


def _realm_path(challenge: Challenge) -> str:
    return urllib.parse.urlsplit(challenge.realm or "").path.rstrip("/")


def identify(challenge: Challenge | None) -> str | None:
    """The product a registry's ``/v2/`` challenge names (its token service, its realm), if any."""
    if challenge is None:
        return None
    return next((name for name, test in _CHALLENGES if test(challenge)), None)


# -- explaining a refusal --------------------------------------------------------------------------------

def explain(answer: Answer, registry: Registry) -> HintedError | None:
    """The error that says what the site must do about ``answer``, or None when no rule knows it."""
    for rule in _RULES:
        explained = rule(answer, registry)
        if explained is not None:
            return explained
    return None


def _harbor_project(answer: Answer, registry: Registry) -> HintedError | None:
    # goharbor/harbor src/server/middleware/v2auth/auth.go: a project that does not exist answers 401 with an
    # empty challenge and "project P not found: project P not found" (harbor#17097, go-containerregistry#1393)
    found = answer.says(r"\bproject ([a-z0-9][a-z0-9._-]*) not found")
    if not found:
        return None
    project = found[1]
    return SetupError(
        f"the {registry.label} (Harbor) has no project '{project}' ({answer.what}: HTTP {answer.status}{answer.detail})",
        f"create the project '{project}' in Harbor (Projects > New Project) and give {registry.who} push and pull "
        f"rights in it (the Developer role, or a robot account), or set {registry.prefix}_REPOSITORY to a path "
        "in a project that exists",
        status=answer.status)


def _harbor_outside_projects(answer: Answer, registry: Registry) -> HintedError | None:
    # artifact_info.go projectNameFromRepo: 400 BAD_REQUEST "bad request: invalid repository name: X" for a name
    # of one segment (every Harbor repository is <project>/<path>)
    found = answer.says(r"invalid repository name: ([^\s/:]+)(?:$|\s|:)")
    if answer.status != 400 or not found or "BAD_REQUEST" not in answer.codes:
        return None
    return SetupError(
        f"the {registry.label} (Harbor) refuses repository '{found[1]}': Harbor keeps every repository in a "
        f"project, as <project>/<name> ({answer.what}: HTTP 400{answer.detail})",
        f"set {registry.prefix}_REPOSITORY to a Harbor project (and any path below it), e.g. "
        f"{registry.prefix}_REPOSITORY=arcdata", status=400)


def _immutable_tag(answer: Answer, registry: Registry) -> HintedError | None:
    harbor = answer.status == 412 and answer.says(r"'([^']+)' configured as immutable")  # src/server/middleware/immutable
    ecr = "TAG_INVALID" in answer.codes and answer.says(  # aws/containers-roadmap#862, aws-sdk#750
        r"The image tag '([^']+)' already exists in the '([^']+)' repository and cannot be overwritten")
    quay = "TAG_IMMUTABLE" in answer.codes  # quay/quay PR #4839 (3.17)
    if not (harbor or ecr or quay):
        return None
    where = f"{answer.what} already exists in the {registry.label} and points at another image"
    said = f"(HTTP {answer.status}{answer.detail})"
    if harbor:
        return SetupError(f"{where}, and a tag immutability rule of its Harbor project protects it {said}",
                          f"mirror under a tag that no rule protects ({registry.prefix}_TAG), or change the project's "
                          "rules in Harbor (Project > Policy > Tag Immutability)", status=answer.status)
    if ecr:
        repository = ecr[2]
        return SetupError(f"{where}, and its Amazon ECR repository has IMMUTABLE tags {said}",
                          f"mirror under a new tag ({registry.prefix}_TAG), or make the repository's tags mutable: "
                          f"aws ecr put-image-tag-mutability --repository-name {repository} "
                          f"--image-tag-mutability MUTABLE{_ecr_region(registry)}", status=answer.status)
    return SetupError(f"{where}, and Quay keeps that tag immutable {said}",
                      f"mirror under a new tag ({registry.prefix}_TAG), or lift the tag's immutability in Quay",
                      status=answer.status)


_ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?(?::\d+)?$")


def _ecr_region(registry: Registry) -> str:
    found = _ECR_HOST.match(registry.host)
    return f" --region {found[1]}" if found else ""


def _ecr_repository(answer: Answer, registry: Registry) -> HintedError | None:
    # aws/containers-roadmap#1970: 404 NAME_UNKNOWN "The repository with name 'R' does not exist in the registry
    # with id 'A'" (and an upload POST into it is dropped without an answer)
    found = answer.says(r"The repository with name '([^']+)' does not exist in the registry with id '(\d+)'")
    if not found:
        return None
    repository, account = found[1], found[2]
    return RepositoryMissing(
        f"repository {repository} does not exist in the {registry.label} (Amazon ECR, registry {account}), and ECR "
        "creates no repository on push",
        f"create it: aws ecr create-repository --repository-name {repository} --registry-id {account}"
        f"{_ecr_region(registry)}", status=answer.status, certain=True)


def _empty_blob(answer: Answer, registry: Registry) -> HintedError | None:
    # ECR: BLOB_UPLOAD_INVALID "... cannot be completed because it does not have any parts" (radius#7855);
    # Artifact Registry: 400 to an empty blob (oras-project/oras-go#294). The caller marks a 0-byte blob's PUT.
    if not answer.what.startswith("empty blob"):
        return None
    if answer.status != 400 and not answer.says("does not have any parts"):
        return None
    return RefusedError(
        f"the {registry.label} refuses the image's empty (0-byte) blob ({answer.what}: HTTP {answer.status}"
        f"{answer.detail}); Amazon ECR and Google Artifact Registry store no empty blob",
        "this image cannot be mirrored into that registry as it is; mirror it into another registry",
        status=answer.status, codes=answer.codes)


def _nexus_redeploy(answer: Answer, registry: Registry) -> HintedError | None:
    # GoogleContainerTools/jib#3057 (Nexus 3.29): 400 BLOB_UPLOAD_INVALID, detail "Repository does not allow
    # updating assets: R"; a new tag on a manifest already stored is such an update (jib#2395)
    found = answer.says(r"does not allow updating assets: (\S+)")
    if not found:
        return None
    repository = found[1]
    return SetupError(
        f"the Nexus repository {repository} behind the {registry.label} does not allow redeploy: it refuses "
        f"{answer.what}, since a manifest or tag it holds cannot be written again there, and a new tag on an "
        f"image it already holds counts as that (HTTP {answer.status}{answer.detail})",
        f"in Nexus, set the Deployment policy of repository {repository} to 'Allow redeploy' (Settings > "
        "Repositories)", status=answer.status)


def _quay_nested(answer: Answer, registry: Registry) -> HintedError | None:
    # quay/quay endpoints/v2/v2auth.py: 400 NAME_INVALID "Nested repositories are not supported. Found: X" from its
    # token endpoint, unless FEATURE_EXTENDED_REPOSITORY_NAMES (openshift-docs#37155, oc-mirror --max-nested-paths)
    found = answer.says(r"Nested repositories are not supported\. Found: (\S+)")
    if not found:
        return None
    repository = found[1]
    return SetupError(f"the {registry.label} (Quay) refuses repository {repository}: it has "
                      f"{repository.count('/') + 1} segments, where Quay allows 2 (organization/repository)",
                      _nested_hint(repository, registry, administrator=True), status=answer.status)


def _nested_hint(repository: str, registry: Registry, *, administrator: bool) -> str:
    organization = repository.split("/")[0]
    hint = (f"set {registry.prefix}_REPOSITORY={organization} (a Quay organization: the images become "
            f"{organization}/<image>)")
    if administrator:
        hint += ", or have the Quay administrator set FEATURE_EXTENDED_REPOSITORY_NAMES: true in config.yaml"
    return hint


def _token_without_rights(answer: Answer, registry: Registry) -> HintedError | None:
    """A token service that accepted the login but granted no rights on the repository (its JWT says so):
    not a password problem. GitLab (container_registry_authentication_service.rb: no project, or a path too
    deep: a token without that access), Quay (no organization, or nested paths on quay.io)."""
    if answer.status not in (401, 403) or registry.granted is None or not answer.repository:
        return None
    missing = sorted(registry.needed - registry.granted)
    if not missing:
        return None
    repository = answer.repository
    rights = "/".join(missing)
    given = f"only {'/'.join(sorted(registry.granted))} rights" if registry.granted else "no rights"
    product = f" ({registry.product})" if registry.product else ""
    head = (f"the {registry.label}{product} accepted the login of {registry.who} but its token service gave {given} "
            f"on {repository}, where {rights} is needed")
    segments = repository.count("/") + 1
    if registry.product == "GitLab":
        return SetupError(
            f"{head} ({answer.what}, HTTP {answer.status})",
            f"{repository} must be the path of a GitLab project followed by at most two more names (GitLab allows "
            f"two, e.g. group/project/arcdata/<image>): create the project in GitLab (it creates none on push), "
            f"give {registry.who} the Developer role in it, and set {registry.prefix}_REPOSITORY to match",
            status=answer.status)
    if registry.product == "Quay":
        organization = repository.split("/")[0]
        hint = (f"the organization '{organization}' must exist in Quay (Quay creates repositories on push, not "
                f"organizations) and {registry.who} needs write rights in it (a robot account with the Creator "
                "role)")
        if segments > 2:
            return SetupError(f"{head}: {repository} has {segments} segments, where Quay allows 2 "
                              "(organization/repository)", _nested_hint(repository, registry, administrator=False)
                              + "; " + hint, status=answer.status)
        return SetupError(head, hint, status=answer.status)
    return AuthError(
        f"{head} ({answer.what}, HTTP {answer.status})",
        f"give {registry.who} {rights} rights on {repository}; where the registry creates no repository or "
        f"namespace on push (a project, an organization), create it first; check {registry.prefix}_REPOSITORY",
        status=answer.status)


def _catalog_refused(answer: Answer, registry: Registry) -> HintedError | None:
    # Harbor: system administrators only, Basic auth only (harbor#7898, #13573); GitLab: never for users
    # (portainer#2956); ACR: a scope map without "*" lists nothing (Azure/acr#751)
    if answer.what != "repositories" or answer.status not in (401, 403):
        return None
    product = f" ({registry.product})" if registry.product else ""
    return AuthError(
        f"the {registry.label}{product} does not let {registry.who} list its repositories (HTTP {answer.status}"
        f"{answer.detail})",
        "set MIRROR_DISCOVER=set to take the images of the image set (or MIRROR_IMAGES) instead of the catalog"
        + (", or use a Harbor system administrator's login" if registry.product == "Harbor" else ""),
        status=answer.status)


def _docker_hub_hidden(answer: Answer, registry: Registry) -> HintedError | None:
    # Docker Hub answers 401 "authentication required" for a repository that does not exist, not 404, so as not
    # to tell it from a private one (docker-library/meta-scripts#33); the CLI says "does not exist or may require
    # 'docker login'"
    if registry.product != "Docker Hub" or answer.status != 401 or answer.writes or not answer.repository:
        return None
    return NotFoundError(
        f"{answer.what} does not exist on the {registry.label} (Docker Hub), or {registry.who} may not see it: "
        f"Docker Hub answers 401 for both (HTTP 401{answer.detail})",
        f"check the image name and {registry.prefix}_REPOSITORY"
        + ("" if registry.user else f"; if the repository is private, set {registry.prefix}_USERNAME and "
                                    f"{registry.prefix}_PASSWORD"), status=401)


def _artifactory_forbidden(answer: Answer, registry: Registry) -> HintedError | None:
    # RTFACT-13797: a virtual repository answers 403 where the user cannot read one of the repositories behind it
    if registry.product != "Artifactory" or answer.status != 403:
        return None
    return AuthError(
        f"the {registry.label} (Artifactory) does not allow {registry.who} to {answer.method} {answer.what}"
        f"{answer.detail}",
        f"give {registry.who} read (and, on the target, deploy) rights on the Artifactory repository; a virtual "
        "repository answers 403 as soon as one of the repositories behind it is not readable: grant read on each, "
        f"or point {registry.prefix}_REPOSITORY at a local repository", status=403)


def _repository_not_created(answer: Answer, registry: Registry) -> HintedError | None:
    # a registry that creates no repository on push answers a write into one that does not exist NAME_UNKNOWN
    if not (answer.writes and "NAME_UNKNOWN" in answer.codes and answer.repository):
        return None
    return RepositoryMissing(
        f"repository {answer.repository} does not exist in the {registry.label}, which creates no repository on "
        f"push ({answer.what}: HTTP {answer.status}{answer.detail})",
        f"create {answer.repository} there first, or set {registry.prefix}_REPOSITORY to a path where repositories "
        "exist", status=answer.status)


_RULES = (_harbor_project, _harbor_outside_projects, _immutable_tag, _ecr_repository, _empty_blob, _nexus_redeploy,
          _quay_nested, _catalog_refused, _docker_hub_hidden, _artifactory_forbidden, _token_without_rights,
          _repository_not_created)
