"""Media types: every one arcmirror knows, spelled once."""

from __future__ import annotations

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

#: The manifests arcmirror copies (Docker schema 1 is refused: registries no longer accept it).
MANIFEST_MEDIA_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})

#: Layers a registry never holds (Windows base layers): the manifest points at them elsewhere (``urls``).
FOREIGN_LAYER_TYPES = frozenset({
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
})

#: Notary Project signatures (signature-specification.md): the signature manifest's artifact type, its empty config
#: (OCI image spec), the two envelope formats (its one layer), and the signed payload's content type
NOTARY_SIGNATURE = "application/vnd.cncf.notary.signature"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
COSE_ENVELOPE = "application/cose"
JWS_ENVELOPE = "application/jose+json"
NOTARY_PAYLOAD = "application/vnd.cncf.notary.payload.v1+json"
#: cosign's simple signing payload layer (sigstore/cosign specs/SIGNATURE_SPEC.md)
COSIGN_SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
