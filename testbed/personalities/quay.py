"""Red Hat Quay (quay/quay, read in its source) and quay.io.

* Nested repositories (``org/a/b``) are refused **at the token endpoint** unless
  ``FEATURE_EXTENDED_REPOSITORY_NAMES`` is on (``endpoints/v2/v2auth.py``
  ``_authorize_or_downscope_request``: 400 ``NAME_INVALID "Nested repositories are not supported.
  Found: org/a/b"``); the feature exists from 3.6 and is on by default from 3.7, so Quay <= 3.5 and
  installations that turned it off refuse them (openshift/openshift-docs#37155: "Red Hat Quay does not
  support nested repositories ... 401 unauthorized"; oc-mirror's ``--max-nested-paths``). quay.io was
  still reported to answer such paths with a token without rights and then 401 "access to the requested
  resource is not authorized" (``nested="unauthorized"``).
* The organization (namespace) must exist (``CREATE_NAMESPACE_ON_PUSH`` is off by default): the token is
  issued with no actions, and the registry answers 401 UNAUTHORIZED. Repositories are created on push.
* Error bodies always carry ``"detail": {}`` (``endpoints/v2/errors.py``).
* Tag lists, <= 3.11 (``endpoints/v2/__init__.py`` ``paginate``): 50 a page, in tag-id order (not by
  name), the next page only through an opaque ``next_page`` token in a relative ``Link``; ``last=`` is
  ignored (page 1 again) (regclient#272, #274). >= 3.12 (PR #2884): by name, ``last=``, at least 100 a page.
* Referrers API from 3.12 (``endpoints/v2/referrers.py``): no ``OCI-Subject`` on a PUT, and a subject it
  does not know is 400 MANIFEST_INVALID.
"""

from __future__ import annotations

import secrets

from ..front import Call, Reply
from .referrers import ReferrersAPI

NOT_AUTHORIZED = "access to the requested resource is not authorized"


class Quay(ReferrersAPI):
    name = "quay"
    token_path = "/v2/auth"
    oci_subject = False
    unknown_subject = (400, "MANIFEST_INVALID", "manifest invalid")

    def __init__(self, *, version: tuple[int, int] = (3, 11), nested: str = "allowed", organizations=("mirror",),
                 page_size: int | None = None) -> None:
        super().__init__()
        if nested not in ("allowed", "refused", "unauthorized"):
            raise ValueError("nested: allowed, refused or unauthorized")
        self.version = version
        self.nested = nested
        self.organizations = set(organizations)
        self.referrers_api = version >= (3, 12)
        self.page_size = page_size or (50 if version < (3, 12) else 100)
        self._pages: dict[str, int] = {}  # next_page token -> offset
        self._created: list[str] = []  # tags in the order they were pushed through the front (their ids)

    def create_organization(self, name: str) -> None:
        self.organizations.add(name)

    def refusal(self, status: int, code: str, message: str) -> Reply:
        return Reply.error(status, code, message, detail={})

    def grant(self, call: Call, scope: str) -> str | None:
        kind, _, rest = scope.partition(":")
        name = rest.rpartition(":")[0]
        if kind != "repository":
            return scope
        if name.count("/") > 1 and self.nested == "unauthorized":
            return None
        return scope if name.split("/")[0] in self.organizations else None

    def token(self, call: Call) -> Reply:
        for scope in call.query.get("scope", []):
            name = scope.partition(":")[2].rpartition(":")[0]
            if scope.startswith("repository:") and name.count("/") > 1 and self.nested == "refused":
                return self.refusal(400, "NAME_INVALID", f"Nested repositories are not supported. Found: {name}")
        return super().token(call)

    def request(self, call: Call):
        if call.kind == "tags" and call.method == "GET":
            return self._tag_page(call)
        return super().request(call)

    def response(self, call: Call, reply: Reply):
        reply = super().response(call, reply)
        if call.kind == "manifest" and call.method == "PUT" and call.by_tag and reply.status == 201:
            with self.lock:
                self._created.append(f"{call.name}:{call.reference}")
        if reply.status == 401 and call.name and call.header("Authorization"):
            return Reply.error(401, "UNAUTHORIZED", NOT_AUTHORIZED, detail={},
                               headers=[("WWW-Authenticate", reply.get("WWW-Authenticate") or "")])
        errors = (reply.json() or {}).get("errors") if reply.status >= 400 and reply.body[:1] == b"{" else None
        if isinstance(errors, list):  # Quay's envelope: detail always there
            body = {"errors": [{**e, "detail": e.get("detail") or {}} for e in errors if isinstance(e, dict)]}
            return Reply.json_body(reply.status, body, [(k, v) for k, v in reply.headers if k.lower() != "content-type"])
        return reply

    def _tag_page(self, call: Call):
        reply = self.response(call, self.front.upstream_call("GET", f"/v2/{call.name}/tags/list", like=call))
        if reply.status != 200:
            return reply
        tags = [t for t in reply.json().get("tags") or []]
        size = min(int(call.param("n") or self.page_size), self.page_size)
        if self.version < (3, 12):
            with self.lock:
                pushed = [c.split(":", 1)[1] for c in self._created if c.startswith(call.name + ":")]
                offset = self._pages.get(call.param("next_page") or "", 0)  # last= is not a token: page 1
            tags = [t for t in pushed if t in tags] + sorted((t for t in tags if t not in pushed), reverse=True)
            page, rest = tags[offset:offset + size], tags[offset + size:]
            link = None
            if rest:
                token = "gAAAAA" + secrets.token_urlsafe(24)  # a Fernet token looks like this
                with self.lock:
                    self._pages[token] = offset + size
                link = f"</v2/{call.name}/tags/list?n={size}&next_page={token}>; rel=\"next\""
        else:
            tags = sorted(tags)
            last = call.param("last")
            tags = [t for t in tags if last is None or t > last]
            page, rest = tags[:size], tags[size:]
            link = f"</v2/{call.name}/tags/list?n={size}&last={page[-1]}>; rel=\"next\"" if rest else None
        headers = [("Link", link)] if link else []
        return Reply.json_body(200, {"name": call.name, "tags": page}, headers)
