"""Google Artifact Registry (``*-docker.pkg.dev``) and Container Registry (``gcr.io``).

* Uploads are monolithic: "Artifact Registry does not support Docker chunked uploads"
  (quoted in dotnet/sdk-container-builds#287; kitops#777, #780): a second PATCH into an upload is refused.
* The upload ``Location`` is outside ``/v2/``: ``/artifacts-uploads/namespaces/<project>/repositories/
  <repo>/uploads/<opaque>``, relative (oras-project/oras#532, containers/skopeo#1101).
* A 0-byte blob is refused with 400 (oras-project/oras-go#294: "GAR will return 400 for empty blob";
  oras-go pushes ``{}`` as an empty config for that reason).
* gcr.io sent 401 without ``WWW-Authenticate`` on requests after the ping (containers/image
  ``docker/docker_client.go``: "gcr.io is sending 401 without a WWW-Authenticate header in the real
  request"), so a client keeps the ping's challenge (``bare_401=True``).
"""

from __future__ import annotations

import secrets

from ..faultproxy import _Head
from ..front import Call, Personality, Reply


class ArtifactRegistry(Personality):
    name = "artifact-registry"
    UPLOADS = "/artifacts-uploads/namespaces/arc-project/repositories/mirror/uploads/"

    def __init__(self, *, bare_401: bool = False) -> None:
        super().__init__()
        self.bare_401 = bare_401
        self._uploads: dict[str, str] = {}  # opaque id -> the registry behind's upload path and query
        self._written: set[str] = set()  # uploads that already took a PATCH

    def route(self, head: _Head) -> _Head:
        if not head.path.startswith(self.UPLOADS):
            return head
        opaque = head.path[len(self.UPLOADS):]
        with self.lock:
            behind = self._uploads.get(opaque)
        if behind is None:
            return head
        query = head.query
        target = behind + (("&" if "?" in behind else "?") + query if query else "")
        return _Head(f"{head.method} {target} {head.version}", head.headers)

    def request(self, call: Call):
        if call.kind == "upload" and call.method == "PATCH":
            with self.lock:
                again = call.path in self._written
                self._written.add(call.path)
            if again:
                return Reply.error(400, "BLOB_UPLOAD_INVALID", "chunked uploads are not supported")
        if call.kind == "upload" and call.method == "PUT" and call.header("Content-Length") == "0" \
                and call.path not in self._written:
            return Reply(400, [("Content-Type", "text/html; charset=UTF-8")], b"<html><title>400 Bad Request</title></html>")
        return super().request(call)

    def response(self, call: Call, reply: Reply):
        reply = super().response(call, reply)
        location = reply.get("Location")
        if call.kind == "upload" and call.method == "POST" and reply.status == 202 and location:
            behind = location.split("://", 1)[-1]
            behind = behind[behind.index("/"):] if "/" in behind else behind
            opaque = secrets.token_urlsafe(18)
            with self.lock:
                self._uploads[opaque] = behind
            reply.set("Location", self.UPLOADS + opaque)
        if self.bare_401 and reply.status == 401 and call.kind != "ping":
            reply.set("WWW-Authenticate", None)
        return reply
