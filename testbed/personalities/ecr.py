"""Amazon ECR (closed source), from what its users and the copiers saw on the wire.

* Logins are Basic: ``Basic realm="https://<account>.dkr.ecr.<region>.amazonaws.com/",service="ecr.amazonaws.com"``
  (mayflower/docker-ls#28); user ``AWS``, password from ``aws ecr get-login-password``.
* A repository must be created before anything is pushed (``aws ecr create-repository``): requests on one
  that does not exist answer 404 ``NAME_UNKNOWN "The repository with name 'R' does not exist in the
  registry with id 'A'"``, and a POST that starts an upload into it ends the connection without an
  answer (aws/containers-roadmap#1970; dotnet/sdk-container-builds#279: "If the repository being pushed
  does not exist ECR abruptly ends the request").
* Immutable tags (``imageTagMutability: IMMUTABLE``): a PUT to a tag that exists answers 400
  ``TAG_INVALID "The image tag 'T' already exists in the 'R' repository and cannot be overwritten because
  the repository is immutable."``, even for the same manifest (aws/aws-sdk#750, containers-roadmap#862).
* ``n`` above 1000 on a list is refused: ``UNSUPPORTED "Invalid parameter at 'maxResults' failed to
  satisfy constraint: 'Member must have value less than or equal to 1000'"`` (go-containerregistry#681;
  405 as distribution answers UNSUPPORTED).
* Blob mounting is an opt-in registry setting (AWS ECR user guide, "blob mounting"): without it
  ``?mount=&from=`` opens a plain upload, 202.
* Completing an upload that received no bytes answers 400 ``BLOB_UPLOAD_INVALID "The upload with id 'U'
  in the repository with name 'R' in registry with id 'A' cannot be completed because it does not have any
  parts."`` (radius-project/radius#7855): ECR stores no 0-byte blob.
* OCI 1.1 referrers API with ``OCI-Subject`` (AWS ECR user guide, "OCI v1.1").
"""

from __future__ import annotations

from ..front import DROP, Call, Reply
from .referrers import ReferrersAPI


class ECR(ReferrersAPI):
    name = "ecr"

    def __init__(self, *, account: str = "123456789012", region: str = "eu-west-1", repositories=(),
                 immutable: bool = False) -> None:
        super().__init__()
        self.account = account
        self.region = region
        self.repositories = set(repositories)
        self.immutable = immutable

    def create_repository(self, name: str) -> None:
        """``aws ecr create-repository --repository-name NAME``."""
        self.repositories.add(name)

    def challenge(self, call: Call, value: str) -> str:
        if value.lower().startswith("basic"):
            return (f'Basic realm="https://{self.account}.dkr.ecr.{self.region}.amazonaws.com/",'
                    'service="ecr.amazonaws.com"')
        return value

    def _missing(self, name: str) -> Reply:
        return Reply.error(404, "NAME_UNKNOWN", f"The repository with name '{name}' does not exist in the "
                                                f"registry with id '{self.account}'")

    def request(self, call: Call):
        if call.kind in ("tags", "catalog") and int(call.param("n") or 0) > 1000:
            return Reply.error(405, "UNSUPPORTED", "Invalid parameter at 'maxResults' failed to satisfy constraint: "
                                                   "'Member must have value less than or equal to 1000'")
        if call.name is not None and call.name not in self.repositories and call.header("Authorization"):
            if call.kind == "upload" and call.method == "POST":
                return DROP
            return self._missing(call.name)
        if call.kind == "upload" and call.method == "POST" and call.param("mount"):
            reply = self.front.upstream_call("POST", f"/v2/{call.name}/blobs/uploads/", like=call)
            return self.response(call, reply)
        if call.kind == "upload" and call.method == "PUT" and call.header("Content-Length") == "0":
            upload = (call.reference or "").split("?")[0]
            return Reply.error(400, "BLOB_UPLOAD_INVALID", f"The upload with id '{upload}' in the repository with name "
                                                           f"'{call.name}' in registry with id '{self.account}' cannot "
                                                           "be completed because it does not have any parts.")
        if self.immutable and call.kind == "manifest" and call.method == "PUT" and call.by_tag:
            if self.front.has_manifest(call, call.reference):
                return Reply.error(400, "TAG_INVALID", f"The image tag '{call.reference}' already exists in the "
                                                       f"'{call.name}' repository and cannot be overwritten because "
                                                       "the repository is immutable.")
        return super().request(call)
