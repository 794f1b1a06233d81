"""The GitLab container registry (a distribution fork behind GitLab's own token service).

* An image path is a GitLab project's full path plus at most two more segments
  (``lib/container_registry/path.rb``: ``Project.where_full_path_in(components.first(3))``; gitlab MR
  !102063 "we can only add two additional names at the project full path"); projects are created in
  GitLab, never by a push.
* The token service (``/jwt/auth``, service ``container_registry``) still answers 200 for a path with no
  project or too deep, with a token that lacks that access
  (``app/services/auth/container_registry_authentication_service.rb`` ``process_repository_access``:
  ``return unless requested_project``); the registry then refuses the request as distribution does
  (401 ``insufficient_scope``; what clients show as "requested access to the resource is denied":
  containers/skopeo#2484).
* ``_catalog`` is not for users (the token never grants ``registry:catalog:*``: portainer#2956).
* No referrers API (distribution's 404).
"""

from __future__ import annotations

from ..front import Call, Personality


class GitLab(Personality):
    name = "gitlab"
    token_path = "/jwt/auth"
    service = "container_registry"

    def __init__(self, *, projects=("group/mirror",)) -> None:
        super().__init__()
        self.projects = set(projects)

    def create_project(self, path: str) -> None:
        self.projects.add(path)

    def project_of(self, name: str) -> str | None:
        parts = name.split("/")
        for extra in (0, 1, 2):  # the project's path, then one or two more names
            candidate = "/".join(parts[:len(parts) - extra])
            if extra < len(parts) and candidate in self.projects:
                return candidate
        return None

    def grant(self, call: Call, scope: str) -> str | None:
        kind, _, rest = scope.partition(":")
        if kind == "registry":
            return None
        name = rest.rpartition(":")[0]
        return scope if kind == "repository" and self.project_of(name) else None
