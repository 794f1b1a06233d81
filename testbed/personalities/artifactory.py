"""JFrog Artifactory (closed source) as sites run it: what copiers had to work around.

* A HEAD of a manifest that does not exist answers **403**, not 404, with virtual repositories whose
  members the user cannot all read (RTFACT-13797; go-containerregistry PR #1691, ``pkg/v1/remote/pusher.go``
  ``manifestExists`` treats that 403 as absent: "this existence check is an optimization and some
  registries will return a 403 instead of a 404").
* A tag list can hold digests (``sha256:...``, the children of its multi-platform images) among the
  tags (containers/skopeo#2346; containers/image#2440 skips entries that parse as a digest).
* A cross-repository mount is not done: ``?mount=&from=`` opens a plain upload, 202
  (bazel-contrib/rules_img ``docs/registry-support.md``: "Blob mount: a mount is refused").
* Some error bodies say ``status`` where the spec says ``code``: ``{"errors":[{"status":406,"message":
  "Not Acceptable"}]}`` (containers/skopeo#765, on a DELETE).
"""

from __future__ import annotations

import json

from ..front import MANIFEST_ACCEPT, Call, Personality, Reply

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")


class Artifactory(Personality):
    name = "artifactory"

    def request(self, call: Call):
        if call.kind == "upload" and call.method == "POST" and call.param("mount"):
            return self._plain_upload(call)
        if call.kind == "upload" and call.method == "DELETE":
            return Reply(406, [("Content-Type", "application/json")],
                         json.dumps({"errors": [{"status": 406, "message": "Not Acceptable"}]}, indent=2).encode())
        return super().request(call)

    def _plain_upload(self, call: Call) -> Reply:
        reply = self.front.upstream_call("POST", f"/v2/{call.name}/blobs/uploads/", like=call)
        return self.response(call, reply)

    def response(self, call: Call, reply: Reply):
        reply = super().response(call, reply)
        if call.kind == "manifest" and call.method == "HEAD" and reply.status == 404:
            return Reply(403, [("Content-Type", "application/json")])
        if call.kind == "tags" and reply.status == 200:
            body = reply.json()
            tags = list(body.get("tags") or [])
            for tag in list(tags):
                child = self.front.upstream_call("GET", f"/v2/{call.name}/manifests/{tag}", like=call,
                                                 headers=[("Accept", MANIFEST_ACCEPT)])
                manifest = child.json() or {}
                if manifest.get("mediaType") in INDEX_TYPES:
                    tags += [m["digest"] for m in manifest.get("manifests", []) if isinstance(m, dict)]
            body["tags"] = sorted(dict.fromkeys(tags))
            return Reply.json_body(200, body, [(k, v) for k, v in reply.headers if k.lower() != "content-type"])
        return reply
