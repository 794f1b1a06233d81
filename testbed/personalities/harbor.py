"""Harbor 2.x (goharbor/harbor) in front of a registry: projects, its own error codes, referrers by version.

Harbor puts its core in front of an embedded distribution; everything below is what that core answers,
read in its source (``src/server/middleware/v2auth/auth.go`` and ``access.go``,
``src/server/middleware/artifactinfo/artifact_info.go``, ``src/lib/http/error.go``, unchanged from v2.0
to v2.15) and seen on the wire in the issues cited.

* A repository is ``<project>/<path>``; a project is created in Harbor, never by a push.
  - A request on a project that does not exist, once it carries an ``Authorization`` header, answers
    **401** with ``Www-Authenticate`` present but *empty* and ``UNAUTHORIZED "project P not found:
    project P not found"`` (the message doubles: Harbor appends the cause) -- auth.go ``reqChecker.check``
    returns ``""`` as the challenge when ``projectID`` fails; goharbor/harbor#17097,
    go-containerregistry#1393. Its token service still issues a token (with no actions).
  - A one-segment name answers 400 ``BAD_REQUEST "bad request: invalid repository name: X"``
    (artifact_info.go ``projectNameFromRepo``).
* A cross-repository mount needs *pull* on ``from`` (access.go ``accessList``), so the whole POST fails
  instead of answering 202: 401 with the empty challenge when ``from``'s project does not exist, 401
  ``Basic realm="harbor"`` "unauthorized to access repository: R, action: pull" when it is not readable
  (go-containerregistry#1404, #1609; bazel-contrib/rules_img#751).
* Errors carry Harbor's own codes without ``detail``: a manifest that does not exist is 404
  ``NOT_FOUND "artifact R:T not found"`` (containers/image#2203), a repository 404 ``NOT_FOUND
  "repository R not found"``; ``_catalog`` is for system administrators only: 401 ``Basic
  realm="harbor"`` "unauthorized to list catalog" (goharbor/harbor#7898, #13573).
* Tag immutability rules: a PUT to a tag they protect that exists answers 412 ``PRECONDITION "Failed to
  process request due to 'R:T' configured as immutable."``, even with the same digest
  (``src/server/middleware/immutable``).
* Referrers, by version: <= 2.7 has no route, and the v2auth middleware answers 401 with the empty
  challenge "un-recognized request: GET /v2/..." (v2.7.0 auth.go; regclient#384 and PR #389 treat that as
  "no API"); 2.8 has the API without ``OCI-Subject`` (PR #18324); >= 2.9 both (PR #18885).
* The token service is at ``/service/token`` (service ``harbor-registry``).
"""

from __future__ import annotations

from ..front import Call, Reply
from .referrers import ReferrersAPI

UNAUTHORIZED_EMPTY = [("Www-Authenticate", ""), ("Docker-Distribution-Api-Version", "registry/2.0")]


def _doubled(message: str) -> str:
    """Harbor's ``Message + ": " + Cause`` where the cause says the same (``src/lib/errors``)."""
    return f"{message}: {message}"


class Harbor(ReferrersAPI):
    name = "harbor"
    token_path = "/service/token"
    service = "harbor-registry"

    def __init__(self, *, version: tuple[int, int] = (2, 11), projects=("mirror",), unreadable=(),
                 immutable_tags: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.version = version
        self.projects = set(projects)
        self.unreadable = set(unreadable)  # projects the client's user may not pull from
        self.immutable_tags = set(immutable_tags)
        self.referrers_api = version >= (2, 8)
        self.oci_subject = version >= (2, 9)

    def create_project(self, name: str) -> None:
        """What an administrator does in Harbor's UI (Projects > New Project)."""
        self.projects.add(name)

    def refusal(self, status: int, code: str, message: str) -> Reply:
        return Reply.error(status, code, message)

    def grant(self, call: Call, scope: str) -> str | None:
        kind, _, rest = scope.partition(":")
        name = rest.rpartition(":")[0]
        if kind == "repository" and name.split("/")[0] not in self.projects:
            return None  # a project that does not exist: a token all the same, with no actions
        return scope

    def request(self, call: Call):
        if call.kind == "catalog":
            return Reply.error(401, "UNAUTHORIZED", _doubled("unauthorized to list catalog"),
                               headers=[("Www-Authenticate", 'Basic realm="harbor"')])
        if call.name is None:
            return super().request(call)
        refused = self._project_check(call, call.name)
        if refused is not None:
            return refused
        if call.kind == "upload" and call.method == "POST" and call.param("mount") and call.param("from"):
            source = call.param("from")
            refused = self._project_check(call, source, mounting=True)
            if refused is not None:
                return refused
            if source.split("/")[0] in self.unreadable:
                message = _doubled(f"unauthorized to access repository: {source}, action: pull")
                return Reply.error(401, "UNAUTHORIZED", message,
                                   headers=[("Www-Authenticate", 'Basic realm="harbor"')])
        if call.kind == "referrers" and not self.referrers_api:
            message = _doubled(f"un-recognized request: {call.method} {call.path}")
            return Reply.error(401, "UNAUTHORIZED", message, headers=UNAUTHORIZED_EMPTY)
        if call.kind == "manifest" and call.method == "PUT" and call.by_tag and call.reference in self.immutable_tags:
            if self.front.has_manifest(call, call.reference):
                repo = call.name.split("/", 1)[1]
                return Reply.error(412, "PRECONDITION", "Failed to process request due to "
                                   f"'{repo}:{call.reference}' configured as immutable.")
        return super().request(call)

    def _project_check(self, call: Call, name: str, mounting: bool = False) -> Reply | None:
        if "/" not in name:
            return Reply.error(400, "BAD_REQUEST", f"bad request: invalid repository name: {name}")
        project = name.split("/")[0]
        if project in self.projects:
            return None
        if not mounting and not call.header("Authorization") and call.method in ("GET", "HEAD"):
            return None  # auth.go: a CLI's first HEAD/GET gets the challenge (harbor#11271), from the registry behind
        return Reply.error(401, "UNAUTHORIZED", _doubled(f"project {project} not found"), headers=UNAUTHORIZED_EMPTY)

    def response(self, call: Call, reply: Reply):
        reply = super().response(call, reply)
        if reply.status == 404 and call.kind == "manifest":
            sep = ":" if call.by_tag else "@"
            return Reply.error(404, "NOT_FOUND", f"artifact {call.name}{sep}{call.reference} not found")
        if reply.status == 404 and call.kind == "tags":
            return Reply.error(404, "NOT_FOUND", f"repository {call.name} not found")
        return reply
