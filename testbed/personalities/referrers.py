"""The OCI referrers API, as the registries that have it keep it (distribution-spec v1.1,
"Listing Referrers" and "Pushing Manifests with Subject").

distribution 2.8 has no such API; :class:`ReferrersAPI` adds it in front of one: it lists a manifest
with a ``subject`` under that subject once the manifest went *through the front* (a registry indexes
what is pushed to it), answers ``GET /v2/<name>/referrers/<digest>`` with an OCI index (filtered by
``artifactType``, saying so in ``OCI-Filters-Applied``) and, where the product does, answers such a
PUT with ``OCI-Subject``. Products differ (research notes in README's registry table):

* ``oci_subject``: Harbor >= 2.9 (goharbor/harbor PR #18885, ``src/server/middleware/subject``), zot
  (zot#1410), ACR, ECR send ``OCI-Subject``; Harbor 2.8 and Quay >= 3.12 do not (Quay: no
  ``OCI-Subject`` anywhere in its source) -- a client cannot tell from the PUT that the API is there.
* ``unknown_subject``: for a subject the repository does not hold, the spec answers 200 with an empty
  index; Quay 3.12 answers 400 MANIFEST_INVALID (quay/quay ``endpoints/v2/referrers.py``: the subject's
  lookup fails, ``raise ManifestInvalid(str(e))``).
"""

from __future__ import annotations

from ..front import Call, Personality, Reply

OCI_INDEX = "application/vnd.oci.image.index.v1+json"


class ReferrersAPI(Personality):
    """A personality mix-in: the referrers API, kept from the manifests pushed through the front."""

    #: answer a PUT of a manifest with a subject with ``OCI-Subject``
    oci_subject = True
    #: 200 with an empty index for a subject never seen (spec), or a (status, code, message) refusal
    unknown_subject: tuple[int, str, str] | None = None
    #: False: the product of this version has no referrers API (the registry behind answers)
    referrers_api = True

    def __init__(self) -> None:
        super().__init__()
        self.referrers: dict[tuple[str, str], list[dict]] = {}

    def request(self, call: Call):
        if call.kind == "referrers" and self.referrers_api and call.method == "GET":
            return self.list_referrers(call)
        return super().request(call)

    def response(self, call: Call, reply: Reply):
        reply = super().response(call, reply)
        if isinstance(reply, Reply) and call.kind == "manifest" and call.method == "PUT" and reply.status == 201:
            body = call.json()
            subject = body.get("subject") if isinstance(body.get("subject"), dict) else None
            if subject and isinstance(subject.get("digest"), str) and self.referrers_api:
                self.index(call, body, subject["digest"], reply.get("Docker-Content-Digest"))
                if self.oci_subject:
                    reply.set("OCI-Subject", subject["digest"])
        return reply

    def index(self, call: Call, body: dict, subject: str, digest: str | None) -> None:
        descriptor = {"mediaType": body.get("mediaType") or call.header("Content-Type"), "digest": digest,
                      "size": len(call.body or b"")}
        artifact_type = body.get("artifactType") or (body.get("config") or {}).get("mediaType")
        if artifact_type:
            descriptor["artifactType"] = artifact_type
        if body.get("annotations"):
            descriptor["annotations"] = body["annotations"]
        with self.lock:
            listed = self.referrers.setdefault((call.name, subject), [])
            if all(d["digest"] != digest for d in listed):
                listed.append(descriptor)

    def list_referrers(self, call: Call) -> Reply:
        with self.lock:
            listed = list(self.referrers.get((call.name, call.reference), []))
        if not listed and self.unknown_subject is not None and not self.front.has_manifest(call, call.reference):
            status, code, message = self.unknown_subject
            return self.refusal(status, code, message.format(digest=call.reference))
        headers = []
        wanted = call.param("artifactType")
        if wanted:
            listed = [d for d in listed if d.get("artifactType") == wanted]
            headers.append(("OCI-Filters-Applied", "artifactType"))
        return Reply.json_body(200, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": listed},
                               headers, content_type=OCI_INDEX)

    def refusal(self, status: int, code: str, message: str) -> Reply:
        """An error in this product's envelope (products override it)."""
        return Reply.error(status, code, message)
