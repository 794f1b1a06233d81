"""Gitea's (and Forgejo's) container registry (go-gitea/gitea ``routers/api/packages/container``).

* Its challenge asks for the scope ``*``: ``Bearer realm="<AppURL>v2/token",service="container_registry",
  scope="*"`` (``ReqContainerAccess``/``APIUnauthorizedError``), and its token endpoint ignores scopes.
* A PATCH without ``Content-Range`` after the first write is refused: 400 ``BLOB_UPLOAD_INVALID
  "Stream uploads after first write are not allowed"`` (``container.go`` ``UploadBlob``).
* No referrers API ("TODO: Content Discovery / References (not implemented yet)": 404).
* The first path segment is the owner (a Gitea user or organization), created in Gitea.
"""

from __future__ import annotations

import re

from ..front import Call, Personality, Reply


class Gitea(Personality):
    name = "gitea"
    token_path = "/v2/token"
    service = "container_registry"

    def __init__(self) -> None:
        super().__init__()
        self._written: set[str] = set()

    def challenge(self, call: Call, value: str) -> str:
        value = super().challenge(call, value)
        if value.lower().startswith("bearer "):
            value = re.sub(r',?scope="[^"]*"', "", value) + ',scope="*"'
        return value

    def grant(self, call: Call, scope: str) -> str | None:
        return None if scope == "*" else scope

    def request(self, call: Call):
        if call.kind == "upload" and call.method == "PATCH":
            with self.lock:
                again = call.path in self._written
                self._written.add(call.path)
            if again and not call.header("Content-Range"):
                return Reply.error(400, "BLOB_UPLOAD_INVALID", "Stream uploads after first write are not allowed")
        return super().request(call)
