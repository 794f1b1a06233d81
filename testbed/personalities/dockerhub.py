"""Docker Hub as a source (``registry-1.docker.io``, tokens from ``auth.docker.io``).

* Pull rate limit: manifest GETs over the limit answer 429 ``TOOMANYREQUESTS "You have reached your pull
  rate limit. You may increase the limit by authenticating and upgrading:
  https://www.docker.com/increase-rate-limits"``; manifest answers carry ``ratelimit-limit: 100;w=21600``,
  ``ratelimit-remaining: N;w=21600`` and ``docker-ratelimit-source`` (docker/docs PR #11707, #13499).
  A HEAD is not counted ("checking ratelimits via HEAD requests, which don't count against your limit",
  docker/docs #11707). Whether Hub sends ``Retry-After`` is not documented; this front sends it (a
  client must also cope without: ``retry_after=None``).
* A repository that does not exist answers 401 UNAUTHORIZED "authentication required" with the access
  that was missing as ``detail``, not 404 (a 404 would tell private repositories from missing ones:
  docker-library/meta-scripts#33).
* Tokens come from another host (``auth.docker.io/token``, service ``registry.docker.io``).
"""

from __future__ import annotations

import threading
import time

from ..front import Call, Personality, Reply


class DockerHub(Personality):
    name = "docker-hub"
    token_path = "/token"
    service = "registry.docker.io"

    def __init__(self, *, limit: int = 100, window: float = 21600.0, retry_after: float | None = 1.0) -> None:
        super().__init__()
        self.limit = limit
        self.window = window  # seconds until the pulls spent come back
        self.retry_after = retry_after
        self._spent: list[float] = []
        self._pulls = threading.Lock()
        self.refused = 0

    def _remaining(self) -> int:
        now = time.monotonic()
        self._spent = [t for t in self._spent if now - t < self.window]
        return self.limit - len(self._spent)

    def _headers(self, remaining: int) -> list[tuple[str, str]]:
        return [("ratelimit-limit", f"{self.limit};w={int(self.window)}"),
                ("ratelimit-remaining", f"{max(remaining, 0)};w={int(self.window)}"),
                ("docker-ratelimit-source", "127.0.0.1")]

    def request(self, call: Call):
        if call.kind == "manifest" and call.method == "GET":
            with self._pulls:
                remaining = self._remaining()
                if remaining <= 0:
                    self.refused += 1
                    headers = self._headers(0) + ([("Retry-After", f"{self.retry_after:g}")]
                                                  if self.retry_after is not None else [])
                    return Reply.error(429, "TOOMANYREQUESTS", "You have reached your pull rate limit. You may "
                                       "increase the limit by authenticating and upgrading: "
                                       "https://www.docker.com/increase-rate-limits", headers=headers)
                self._spent.append(time.monotonic())
        return super().request(call)

    def response(self, call: Call, reply: Reply):
        reply = super().response(call, reply)
        if call.kind == "manifest" and reply.status == 200:
            with self._pulls:
                reply.headers += self._headers(self._remaining())
        if call.kind in ("manifest", "tags", "blob") and reply.status == 404 and self._no_repository(call):
            detail = [{"Type": "repository", "Class": "", "Name": call.name, "Action": "pull"}]
            challenge = (f'Bearer realm="{self.front.url}{self.token_path}",service="{self.service}",'
                         f'scope="repository:{call.name}:pull",error="insufficient_scope"')
            return Reply.error(401, "UNAUTHORIZED", "authentication required", detail,
                               headers=[("WWW-Authenticate", challenge)])
        return reply

    def _no_repository(self, call: Call) -> bool:
        return self.front.upstream_call("GET", f"/v2/{call.name}/tags/list", like=call).status == 404
