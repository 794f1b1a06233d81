"""An image's signatures, found in any :class:`~arcmirror.endpoints.base.Source` and verified: the entry point of
signature verification for every run (at the source before copying, in the target, in an archive on import).

Which manifests are verified: the image's own manifest (a multi-platform index copied whole keeps its signature,
and the index's digest binds its platforms); with ``MIRROR_PLATFORMS`` the rewritten index exists nowhere signed,
so each kept platform manifest must verify on its own. The signatures of a manifest are its referrers of artifact
type ``application/vnd.cncf.notary.signature`` (referrers API or tag schema: signature-specification.md § OCI
Signatures) and cosign's ``sha256-<hex>.sig`` tag. The registry scope a trust policy statement is chosen by is
``registry/repository`` of the place verified: the source's at the source, the target's in the target and on import.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Sequence

from ..copy.referrers import find
from ..endpoints.base import Source
from ..oci.digest import digest_of
from ..oci.errors import HintedError
from ..oci.manifest import Manifest
from ..oci.mediatypes import OCI_EMPTY, OCI_MANIFEST
from . import cosign, notary
from .envelope import COSE_TYPE, JWS_TYPE, MAX_ENVELOPE_BYTES, SIGNATURE_ARTIFACT, IntegrityError
from .policy import ENFORCE
from .store import TrustFolder

#: notation's default (``--max-signatures 100``): signatures looked at per manifest
MAX_SIGNATURES = 100


@dataclass
class ManifestTrust:
    """The verdict on one manifest's signatures."""

    digest: str
    reference: str  # registry/repository@digest: what the trust policy statement was chosen by
    ok: bool
    message: str  # the verdict in words: who signed, or why it fails
    policy: str | None = None
    signatures: list[notary.SignatureResult] = field(default_factory=list)
    cosign: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"signature verification of {self.reference}: {'PASSED' if self.ok else 'FAILED'} - {self.message}"]
        if self.policy:
            out.append(f"  trust policy: {self.policy}")
        for result in self.signatures:
            out.append(f"  signature {result.digest} ({result.format}): {'verified' if result.ok else 'not verified'}")
            if result.signer:
                out.append(f"    signed by: {result.signer}")
            if result.signing_time:
                out.append(f"    signing time: {result.signing_time:%Y-%m-%d %H:%M:%S} UTC"
                           + (" (authentic)" if result.scheme == "notary.x509.signingAuthority" else " (claimed)"))
            if result.timestamp:
                out.append(f"    timestamp: {result.timestamp:%Y-%m-%d %H:%M:%S} UTC by {result.tsa}")
            out += [f"    {check.line()}" for check in result.checks]
        out += [f"  cosign: {line}" for line in self.cosign]
        return out


@dataclass
class ImageTrust:
    manifests: list[ManifestTrust]
    note: str | None = None

    @property
    def ok(self) -> bool:
        return all(m.ok for m in self.manifests)

    def signers(self) -> list[str]:
        return sorted({r.signer for m in self.manifests for r in m.signatures if r.ok and r.signer})

    def failure(self) -> str | None:
        failed = [m for m in self.manifests if not m.ok]
        return f"{failed[0].reference}: {failed[0].message}" if failed else None

    def lines(self) -> list[str]:
        return ([self.note] if self.note else []) + [line for m in self.manifests for line in m.lines()]

    def record(self) -> dict:
        return {"ok": self.ok, "signers": self.signers(), "note": self.note,
                "manifests": [{"digest": m.digest, "reference": m.reference, "ok": m.ok, "message": m.message,
                               "policy": m.policy,
                               "signatures": [{"digest": r.digest, "format": r.format, "ok": r.ok, "signer": r.signer,
                                               "error": r.error,
                                               "timestamp": r.timestamp.isoformat() if r.timestamp else None}
                                              for r in m.signatures]} for m in self.manifests]}


class SignatureRejected(HintedError):
    """An image whose signatures fail an enforced check: it is not copied, pushed or passed."""

    def __init__(self, message: str, hint: str | None = None, *, trust: ImageTrust) -> None:
        super().__init__(message, hint)
        self.trust = trust


class TrustVerifier:
    """Verifies images against the trust folder and/or cosign keys, for one registry (whose host names the scope)."""

    def __init__(self, folder: TrustFolder | None, cosign_keys: Sequence | None, registry: str,
                 now: dt.datetime | None = None) -> None:
        self.folder = folder
        self.cosign_keys = list(cosign_keys) if cosign_keys else None
        self.registry = registry
        self.now = now

    def verify_image(self, source: Source, repository: str, manifest: Manifest,
                     kept: Sequence[Manifest] | None = None, scope: str | None = None) -> ImageTrust:
        """Verify ``manifest`` (or, with ``kept``, each of those platform manifests of a rewritten index), read
        from ``repository`` of ``source``; ``scope``: the repository the trust policy is chosen by, when it is not
        that one (on import: the target's)."""
        subjects = list(kept) if kept is not None else [manifest]
        note = None if kept is None else (f"the index was rewritten by MIRROR_PLATFORMS, so it has no signature; "
                                          f"each kept platform manifest ({len(subjects)}) is verified on its own")
        return ImageTrust([self._manifest(source, repository, m, scope or repository) for m in subjects], note)

    def admit(self, source: Source, repository: str, manifest: Manifest,
              kept: Sequence[Manifest] | None = None, scope: str | None = None) -> ImageTrust:
        """Verify, and raise SignatureRejected when the image must not go further."""
        verdict = self.verify_image(source, repository, manifest, kept, scope)
        if not verdict.ok:
            raise SignatureRejected(f"signature verification failed for {verdict.failure()}",
                                    _hint(verdict), trust=verdict)
        return verdict

    def _manifest(self, source: Source, repository: str, manifest: Manifest, scope: str) -> ManifestTrust:
        digest = manifest.digest
        reference = f"{self.registry}/{scope}@{digest}"
        descriptor = {"mediaType": manifest.media_type, "digest": digest, "size": len(manifest.data)}
        verdict = ManifestTrust(digest, reference, True, "")
        messages = []
        statement = None
        if self.folder is not None:
            statement = self.folder.policy.for_reference(reference)
            if statement is None:
                verdict.ok = False
                verdict.message = (f"no trust policy statement applies to {self.registry}/{scope} (no such "
                                   f"registryScope, and no '*' statement) in {self.folder.policy.source}")
                return verdict
            verdict.policy = statement.describe()
            if statement.level == "skip":
                messages.append(f"not verified: policy {statement.name!r} says skip")
                statement = None
        found = find(source, repository, [digest], (SIGNATURE_ARTIFACT, "cosign"), top=digest) \
            if statement is not None or self.cosign_keys else None
        if statement is not None:
            signatures = [r for r in found.referrers if r.subject == digest][:MAX_SIGNATURES]
            for referrer in signatures:
                verdict.signatures.append(self._notary(source, repository, referrer.digest, descriptor, statement))
            passing = [r for r in verdict.signatures if r.ok]
            if not signatures:
                verdict.ok = False
                messages.append(f"no Notary signature is associated with it (policy {statement.name!r}, level "
                                f"{statement.level})")
            elif not passing:
                verdict.ok = False
                messages.append(verdict.signatures[0].error or "no signature verified")
            else:
                logged = [c for c in passing[0].checks if c.ok is False and c.action != ENFORCE]
                messages.append(f"signed by {passing[0].signer}" +
                                (f" ({len(logged)} check{'s' if len(logged) > 1 else ''} failed, logged)" if logged else ""))
        if self.cosign_keys:
            ok, lines = self._cosign(source, repository, digest, found.cosign)
            verdict.cosign = lines
            verdict.ok = verdict.ok and ok
            messages.append(lines[0] if not ok else "cosign: " + lines[0])
        verdict.message = "; ".join(messages)
        return verdict

    def _notary(self, source: Source, repository: str, digest: str, descriptor: dict, statement) -> notary.SignatureResult:
        try:
            media_type, envelope = signature_envelope(source, repository, digest, descriptor["digest"])
        except IntegrityError as exc:
            result = notary.SignatureResult(digest, "?")
            result.record(notary.Check("integrity", ENFORCE, False, str(exc)))
            return result
        return notary.verify(digest, media_type, envelope, descriptor, statement, self.folder, self.now)

    def _cosign(self, source: Source, repository: str, digest: str, tags: dict) -> tuple[bool, list[str]]:
        tag = f"{digest.replace(':', '-')}.sig"
        if tag not in tags:
            return False, [f"no cosign signature ({tag}) to verify with MIRROR_COSIGN_KEYS"]
        lines = []
        manifest = source.get_manifest(repository, tags[tag])
        for layer in manifest.json().get("layers") or []:
            if not isinstance(layer, dict) or layer.get("mediaType") != cosign.SIMPLE_SIGNING:
                continue
            payload = _blob(source, repository, layer)
            result = cosign.verify_layer(payload, layer.get("annotations") or {}, digest, self.cosign_keys)
            lines.append(result.message)
            if result.ok:
                return True, [result.message] + lines[:-1]
        return False, lines or [f"the cosign signature manifest {tag} has no simple signing layer"]


def _hint(verdict: ImageTrust) -> str:
    return ("the image is not copied: its signature does not meet the trust policy (each check's outcome is in the "
            "image's report); if the publisher or the policy changed, update MIRROR_TRUST_DIR (trust stores, "
            "trustedIdentities) after checking why")


def _blob(source: Source, repository: str, descriptor: dict) -> bytes:
    size, digest = descriptor.get("size"), descriptor.get("digest")
    if type(size) is not int or not isinstance(digest, str) or size > MAX_ENVELOPE_BYTES:
        raise IntegrityError("the signature's blob descriptor is not valid (or larger than 32 MiB)")
    data = b"".join(source.iter_blob(repository, digest, size))
    if len(data) != size or digest_of([data]) != digest:
        raise IntegrityError(f"the signature blob {digest} does not match its digest")
    return data


def signature_envelope(source: Source, repository: str, digest: str, subject: str) -> tuple[str, bytes]:
    """The envelope of the signature manifest ``digest`` (signature-specification.md § OCI Signatures): an image
    manifest with artifactType notary and the empty config, or no artifactType and a notary config (the older
    layout), exactly one layer of application/cose or application/jose+json, its subject the signed manifest."""
    try:
        manifest = source.get_manifest(repository, digest)
    except HintedError as exc:
        raise IntegrityError(f"the signature manifest cannot be read: {exc.message}") from None
    body = manifest.json()
    config = (body.get("config") or {}).get("mediaType")
    artifact_type = body.get("artifactType")
    if manifest.media_type != OCI_MANIFEST:
        raise IntegrityError(f"the signature manifest is {manifest.media_type}, not an OCI image manifest")
    if not ((artifact_type == SIGNATURE_ARTIFACT and config == OCI_EMPTY) or
            (artifact_type is None and config == SIGNATURE_ARTIFACT)):
        raise IntegrityError("the signature manifest's artifactType and config are not those of a Notary signature")
    layers = body.get("layers")
    if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
        raise IntegrityError("a Notary signature manifest has exactly one layer (the envelope)")
    if (body.get("subject") or {}).get("digest") != subject:
        raise IntegrityError("the signature manifest's subject is not the manifest verified")
    media_type = layers[0].get("mediaType")
    if media_type not in (COSE_TYPE, JWS_TYPE):
        raise IntegrityError(f"the signature envelope's media type {media_type!r} is not {COSE_TYPE} or {JWS_TYPE}")
    return media_type, _blob(source, repository, layers[0])


def survey(source: Source, repository: str, referrers: list[dict], cosign_keys: Sequence | None = None) -> list[dict]:
    """What signatures an image carries and who made them, without a trust folder (discover records it, so the
    monthly job shows the day a repository starts or stops being signed): each Notary signature's envelope is read
    and checked against its own certificate only -- the signer named is the one it claims, not yet trusted."""
    found = []
    for entry in referrers:
        if entry.get("artifact_type") == SIGNATURE_ARTIFACT:
            record = {"kind": "notary", "digest": entry["digest"], "subject": entry.get("subject")}
            try:
                media_type, data = signature_envelope(source, repository, entry["digest"], entry.get("subject"))
                envelope = notary.read(media_type, data)
            except IntegrityError as exc:
                record.update(format="?", problem=str(exc))
            else:
                record.update(format=envelope.format, signer=envelope.signer, scheme=envelope.scheme,
                              signing_time=(envelope.signing_time or envelope.authentic_signing_time).isoformat(),
                              timestamped=envelope.timestamp is not None,
                              issuer=envelope.chain[-1].subject.rfc4514_string())
            found.append(record)
        elif str(entry.get("tag", "")).endswith(".sig"):
            record = {"kind": "cosign", "digest": entry["digest"], "tag": entry["tag"]}
            if cosign_keys:
                subject = entry["tag"][:-4].replace("-", ":", 1)
                manifest = source.get_manifest(repository, entry["digest"])
                results = [cosign.verify_layer(_blob(source, repository, layer), layer.get("annotations") or {},
                                               subject, list(cosign_keys))
                           for layer in manifest.json().get("layers") or []
                           if isinstance(layer, dict) and layer.get("mediaType") == cosign.SIMPLE_SIGNING]
                record["signer"] = next((r.message for r in results if r.ok), "no key of MIRROR_COSIGN_KEYS")
            found.append(record)
    return found


def survey_lines(signatures: list[dict]) -> list[str]:
    """The discover case's lines for an image's signatures."""
    if not signatures:
        return ["signatures: none (no Notary signature, no cosign signature)"]
    lines = [f"signatures: {len(signatures)}"]
    for s in signatures:
        if s["kind"] == "notary":
            lines.append(f"  Notary {s.get('format')} on {s.get('subject')}: " +
                         (f"signed by {s['signer']} (claimed, chain to {s.get('issuer')}), {s.get('signing_time')}"
                          + (", timestamped" if s.get("timestamped") else "") if "signer" in s
                          else f"unreadable: {s.get('problem')}"))
        else:
            lines.append(f"  cosign {s['tag']}" + (f": {s['signer']}" if "signer" in s else ""))
    return lines
