"""Sonatype Nexus Repository 3 (a docker-hosted repository on a connector port).

* A tag list may hold JSON ``null`` entries (containers/skopeo#2409, Nexus 3.58:
  ``{"name": "imagename", "tags": [null, "1.0.0-1", ...]}``; containers/image PR #2544 drops them).
* With the repository's deployment policy "Disable redeploy", a manifest PUT that would update an asset
  answers 400 ``BLOB_UPLOAD_INVALID "blob upload invalid"`` with a *string* detail "Repository does not
  allow updating assets: <repository>" (GoogleContainerTools/jib#3057, Nexus 3.29.2); a second tag on a
  manifest the repository already holds counts as such an update (jib#2395).
"""

from __future__ import annotations

import hashlib

from ..front import Call, Personality, Reply


class Nexus(Personality):
    name = "nexus"

    def __init__(self, *, null_tags: bool = True, redeploy: bool = True, repository: str = "docker-hosted") -> None:
        super().__init__()
        self.null_tags = null_tags
        self.redeploy = redeploy
        self.repository = repository  # the Nexus repository's name (not an image path)

    def request(self, call: Call):
        if not self.redeploy and call.kind == "manifest" and call.method == "PUT" and self._updates(call):
            return Reply.error(400, "BLOB_UPLOAD_INVALID", "blob upload invalid",
                               f"Repository does not allow updating assets: {self.repository}")
        return super().request(call)

    def _updates(self, call: Call) -> bool:
        """The PUT would change an asset: the tag exists, or the manifest is already stored."""
        digest = "sha256:" + hashlib.sha256(call.body or b"").hexdigest()
        return any(self.front.has_manifest(call, reference) for reference in {call.reference, digest})

    def response(self, call: Call, reply: Reply):
        reply = super().response(call, reply)
        if self.null_tags and call.kind == "tags" and reply.status == 200:
            body = reply.json()
            body["tags"] = [None, *(body.get("tags") or [])]
            return Reply.json_body(200, body, [(k, v) for k, v in reply.headers if k.lower() != "content-type"])
        return reply
