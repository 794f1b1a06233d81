"""Attach referrers (signatures, SBOMs, attestations) to images in a test registry.

Artifacts are written as OCI manifests with ``subject`` and ``artifactType`` into a layout, loaded
with skopeo (each under a temporary tag, since skopeo cannot push by digest alone), and listed with
the referrers tag schema: an index under the tag ``sha256-<hex>`` of the subject, which this
module PUTs with the registry's own admin helper. distribution 2.8 has no referrers API, so this
is how such a registry serves referrers. Never uses arcmirror's code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .images import OCI_INDEX, OCI_MANIFEST, LayoutBuilder, canonical_json
from .registry import Registry
from .skopeo import load

EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
NOTATION = "application/vnd.cncf.notary.signature"
SBOM = "application/spdx+json"
COSIGN_LAYER = "application/vnd.dev.cosign.simplesigning.v1+json"


@dataclass
class Attached:
    subject: str
    digests: dict[str, str]  # artifact type -> referrer manifest digest
    index_digest: str | None  # the tag-schema index
    cosign_digest: str | None = None


def _subject(registry: Registry, repo: str, ref: str) -> dict:
    data, media_type = registry.get_manifest(repo, ref)
    body = json.loads(data)
    digest = registry.manifest_digest(repo, ref)
    return {"mediaType": body.get("mediaType") or media_type, "digest": digest, "size": len(data)}


def _artifact(builder: LayoutBuilder, subject: dict, artifact_type: str, payload: bytes, layer_type: str) -> dict:
    empty = builder.write_blob(b"{}")
    layer = builder.write_blob(payload)
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_CONFIG, **empty},
        "layers": [{"mediaType": layer_type, **layer}],
        "subject": subject,
        "annotations": {"org.opencontainers.image.created": "2025-09-09T00:00:00Z"},
    }
    written = builder.write_blob(canonical_json(manifest))
    return {"mediaType": OCI_MANIFEST, "artifactType": artifact_type, **written,
            "annotations": manifest["annotations"]}


def attach(registry: Registry, repo: str, ref: str, layout: Path, *, kinds=(NOTATION, SBOM), cosign: bool = False,
           subject_digest: str | None = None) -> Attached:
    """Sign ``repo:ref`` (or the manifest ``subject_digest`` in ``repo``) with one artifact per kind."""
    subject = _subject(registry, repo, subject_digest or ref)
    builder = LayoutBuilder(layout)
    descriptors = []
    for number, kind in enumerate(kinds):
        payload = json.dumps({"kind": kind, "subject": subject["digest"]}).encode()
        layer_type = "application/jose+json" if kind == NOTATION else kind
        descriptor = _artifact(builder, subject, kind, payload, layer_type)
        temporary = f"referrer-{subject['digest'][7:19]}-{number}"
        builder._set_ref(temporary, {k: v for k, v in descriptor.items() if k in ("mediaType", "digest", "size")})
        load(layout, temporary, f"{registry.host}/{repo}:{temporary}", creds=registry.creds,
             tls_verify=bool(registry.cert_dir), cert_dir=registry.cert_dir)
        descriptors.append(descriptor)
    tag = "sha256-" + subject["digest"][7:]
    index_digest = None
    if descriptors:
        existing = registry.manifest_digest(repo, tag)
        entries = json.loads(registry.get_manifest(repo, tag)[0])["manifests"] if existing else []
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries + descriptors}
        data = canonical_json(index)
        response = registry.request("PUT", f"/v2/{repo}/manifests/{tag}", scopes=[f"repository:{repo}:pull,push"],
                                    data=data, headers={"Content-Type": OCI_INDEX})
        response.raise_for_status()
        index_digest = response.headers["Docker-Content-Digest"]
    cosign_digest = None
    if cosign:
        signature = builder.write_blob(json.dumps({"critical": {"image": {"docker-manifest-digest": subject["digest"]}}}).encode())
        config = builder.write_blob(canonical_json({"architecture": "", "os": "", "rootfs": {"type": "layers",
                                                    "diff_ids": [signature["digest"]]}, "config": {}}))
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                    "layers": [{"mediaType": COSIGN_LAYER, **signature,
                                "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="}}]}
        written = builder.write_blob(canonical_json(manifest))
        builder._set_ref(tag + ".sig", {"mediaType": OCI_MANIFEST, **written})
        load(layout, tag + ".sig", f"{registry.host}/{repo}:{tag}.sig", creds=registry.creds,
             tls_verify=bool(registry.cert_dir), cert_dir=registry.cert_dir)
        cosign_digest = written["digest"]
    return Attached(subject["digest"], {d["artifactType"]: d["digest"] for d in descriptors}, index_digest,
                    cosign_digest)
