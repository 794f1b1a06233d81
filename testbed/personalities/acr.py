"""Azure Container Registry.

* Tag lists come 100 a page unless ``n`` says otherwise, at most 1000 (a larger ``n`` is lowered without a
  word), the next page through an absolute ``Link`` (Azure/acr#749).
* A token of a repository-scoped identity (a scope map without ``*``) lists an empty catalog
  (Azure/acr#751: "ACR only supports ``*`` scope-mapped tokens when listing all repositories").
* The OCI referrers API with ``OCI-Subject`` (GA 2023; not on registries with customer-managed keys,
  Azure/acr#784).
* Tokens from ``/oauth2/token``; repositories are created on push.
"""

from __future__ import annotations

from ..front import Call, Reply
from .referrers import ReferrersAPI


class ACR(ReferrersAPI):
    name = "acr"
    token_path = "/oauth2/token"

    def __init__(self, *, scoped_token: bool = False) -> None:
        super().__init__()
        self.scoped_token = scoped_token

    def request(self, call: Call):
        if call.kind == "catalog" and self.scoped_token:
            return Reply.json_body(200, {"repositories": []})
        if call.kind == "tags" and call.method == "GET":
            reply = self.response(call, self.front.upstream_call("GET", f"/v2/{call.name}/tags/list", like=call))
            if reply.status != 200:
                return reply
            size = min(int(call.param("n") or 100), 1000)
            last = call.param("last")
            tags = sorted(t for t in reply.json().get("tags") or [] if last is None or t > last)
            page, rest = tags[:size], tags[size:]
            headers = [("Link", f"<{self.front.url}/v2/{call.name}/tags/list?last={page[-1]}&n={size}>; "
                                'rel="next"')] if rest else []
            return Reply.json_body(200, {"name": call.name, "tags": page}, headers)
        return super().request(call)
