"""One Notary Project signature verified against the trust folder, check by check.

specs/trust-store-trust-policy.md § Signature Verification details and § Steps (and
signing-and-verification-workflow.md § Verification Steps), in notation-go's order (``verifier/verifier.go``
``processSignature``): integrity (always enforced), authenticity with the trusted identities, expiry, the
authentic timestamp, revocation -- each enforced, logged or skipped as the policy statement's level and overrides
say -- then the payload's ``targetArtifact`` must be the manifest being verified (mediaType, digest, size), which
no level relaxes. A signature passes when no enforced check failed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.serialization import Encoding

from . import cose, jws, revocation, timestamp
from .certs import ChainError, describe, subject_attributes, valid_at
from .envelope import COSE_TYPE, JWS_TYPE, SCHEME_AUTHORITY, Envelope, IntegrityError, check_content
from .policy import ENFORCE, SKIP, Statement, is_subset
from .store import TrustFolder, TrustFolderError


@dataclass
class Check:
    name: str  # integrity, authenticity, authenticTimestamp, expiry, revocation, payload
    action: str  # enforce, log, skip
    ok: bool | None  # None: skipped
    message: str

    def line(self) -> str:
        outcome = "skipped" if self.ok is None else "passed" if self.ok else \
            ("FAILED" if self.action == ENFORCE else "failed (logged)")
        return f"{self.name}: {outcome} ({self.action}) - {self.message}"


@dataclass
class SignatureResult:
    """What one signature showed, for the report: who, when, which checks, and the verdict."""

    digest: str  # the signature manifest's
    format: str  # COSE, JWS, cosign
    checks: list[Check] = field(default_factory=list)
    signer: str | None = None
    signing_time: dt.datetime | None = None
    scheme: str | None = None
    tsa: str | None = None
    timestamp: dt.datetime | None = None
    error: str | None = None  # the enforced failure, in words to act on

    @property
    def ok(self) -> bool:
        return self.error is None

    def record(self, check: Check) -> bool:
        """Add a check; False when it failed and is enforced (the signature fails here)."""
        self.checks.append(check)
        if check.ok is False and check.action == ENFORCE:
            self.error = f"{check.name}: {check.message}"
            return False
        return True


def read(media_type: str, data: bytes) -> Envelope:
    """The envelope of a signature manifest's layer, its signature verified with its own leaf (integrity)."""
    if media_type == COSE_TYPE:
        envelope = cose.verify(data)
    elif media_type == JWS_TYPE:
        envelope = jws.verify(data)
    else:
        raise IntegrityError(f"the signature envelope's media type {media_type!r} is not {COSE_TYPE} or {JWS_TYPE}")
    check_content(envelope)
    return envelope


def verify(digest: str, media_type: str, data: bytes, descriptor: dict, statement: Statement, folder: TrustFolder,
           now: dt.datetime | None = None) -> SignatureResult:
    """Verify one envelope for the manifest ``descriptor`` ({mediaType, digest, size}) under ``statement``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    result = SignatureResult(digest, {COSE_TYPE: "COSE", JWS_TYPE: "JWS"}.get(media_type, media_type))
    actions = statement.actions
    try:
        envelope = read(media_type, data)
    except IntegrityError as exc:
        result.record(Check("integrity", ENFORCE, False, str(exc)))
        return result
    result.signer, result.scheme = envelope.signer, envelope.scheme
    result.signing_time = envelope.signing_time or envelope.authentic_signing_time
    result.record(Check("integrity", ENFORCE, True, f"{result.format} envelope, {envelope.algorithm.name}, signed by "
                                                    f"{describe(envelope.leaf)}"))
    checks = (lambda: _authenticity(envelope, statement, folder),
              lambda: _expiry(envelope, now),
              lambda: _authentic_timestamp(envelope, statement, folder, now, result),
              lambda: _revocation(envelope, statement, folder, now))
    for name, run in zip(("authenticity", "expiry", "authenticTimestamp", "revocation"), checks):
        if actions[name] == SKIP:
            result.record(Check(name, SKIP, None, "skipped by the trust policy"))
            continue
        ok, message = run()
        if not result.record(Check(name, actions[name], ok, message)):
            return result
    try:
        target = envelope.target()
    except IntegrityError as exc:
        result.record(Check("payload", ENFORCE, False, str(exc)))
        return result
    same = all(target.get(k) == descriptor.get(k) for k in ("mediaType", "digest", "size"))
    result.record(Check("payload", ENFORCE, same, "the signed targetArtifact is this manifest" if same else
                        f"the signature is for {target['digest']} ({target['mediaType']}, {target['size']} bytes), "
                        f"not for this manifest {descriptor['digest']}"))
    return result


def _stores(statement: Statement, folder: TrustFolder, kind: str):
    return folder.certificates(kind, statement.stores_of(kind))


def _authenticity(envelope: Envelope, statement: Statement, folder: TrustFolder) -> tuple[bool, str]:
    """§ Steps 4: a certificate of the envelope's chain is one of the trust store's (byte for byte: notation-core-go
    ``VerifyAuthenticity``), then the leaf's subject matches a trusted identity. The envelope's own certificates are
    never trusted for being there: only an identical one in the site's trust store anchors the chain."""
    kind = "signingAuthority" if envelope.scheme == SCHEME_AUTHORITY else "ca"
    try:
        trusted = _stores(statement, folder, kind)
    except TrustFolderError as exc:
        return False, str(exc)
    if not trusted:
        return False, (f"the trust policy statement {statement.name!r} names no {kind} trust store, which a "
                       f"{envelope.scheme} signature is verified with")
    anchors = {_der(c) for c in trusted}
    anchor = next((c for c in envelope.chain if _der(c) in anchors), None)
    if anchor is None:
        root = envelope.chain[-1]
        return False, (f"the signature is by {describe(envelope.leaf)}, whose chain ends at {describe(root)}, and no "
                       f"certificate of it is in the trust stores {', '.join(f'{kind}:{n}' for n in statement.stores_of(kind))} "
                       f"of policy {statement.name!r}: if you trust this publisher, put its root certificate in "
                       f"truststore/x509/{kind}/<name>/")
    if statement.identities == ("*",):
        return True, f"chain anchored at {describe(anchor)}; any identity trusted (*)"
    try:
        subject = subject_attributes(envelope.leaf)
    except ChainError as exc:
        return False, f"the signing certificate {describe(envelope.leaf)} cannot match a trusted identity: {exc}"
    if any(is_subset(identity, subject) for identity in statement.identities):
        return True, f"chain anchored at {describe(anchor)}; {describe(envelope.leaf)} is a trusted identity"
    return False, (f"the signer {describe(envelope.leaf)} is not one of the trusted identities of policy "
                   f"{statement.name!r} ({'; '.join(statement.identity_texts)}): add it to trustedIdentities if you "
                   "trust it")


def _der(cert) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _expiry(envelope: Envelope, now: dt.datetime) -> tuple[bool, str]:
    """§ Steps 5: expired when now >= expiry (notation-go ``!time.Now().Before(expiry)``)."""
    if envelope.expiry is None:
        return True, "the signature has no expiry"
    if now >= envelope.expiry:
        return False, f"the signature expired on {envelope.expiry:%Y-%m-%d %H:%M:%S} UTC"
    return True, f"the signature expires on {envelope.expiry:%Y-%m-%d %H:%M:%S} UTC"


def _authentic_timestamp(envelope: Envelope, statement: Statement, folder: TrustFolder, now: dt.datetime,
                         result: SignatureResult) -> tuple[bool, str]:
    """§ Steps 6: when the signature was made, authentically, and that every signing certificate was valid then."""
    chain = envelope.chain
    if envelope.scheme == SCHEME_AUTHORITY:
        when = envelope.authentic_signing_time
        late = [c for c in chain if not valid_at(c, when)]
        if late:
            return False, f"{describe(late[0])} was not valid at the authentic signing time {when:%Y-%m-%d %H:%M:%S} UTC"
        return True, f"every certificate was valid at the authentic signing time {when:%Y-%m-%d %H:%M:%S} UTC"
    tsa_stores = statement.stores_of("tsa")
    expired = any(now > c.not_valid_after_utc for c in chain)
    triggered = bool(tsa_stores) and (statement.verify_timestamp == "always" or expired)
    if not triggered:
        invalid = [c for c in chain if not valid_at(c, now)]
        if invalid:
            cert = invalid[0]
            hint = ("; a timestamp would prove it was signed while valid: add a tsa trust store to the policy"
                    if not tsa_stores else "")
            return False, (f"{describe(cert)} is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} to "
                           f"{cert.not_valid_after_utc:%Y-%m-%d}) and no timestamp is verified{hint}")
        return True, "every certificate is valid now (no timestamp verified: " + \
            ("the policy has no tsa trust store)" if not tsa_stores else "verifyTimestamp is afterCertExpiry)")
    if not envelope.timestamp:
        return False, ("the signature has no timestamp countersignature, which the policy requires "
                       f"(tsa:{', tsa:'.join(tsa_stores)}, verifyTimestamp {statement.verify_timestamp})")
    try:
        roots = _stores(statement, folder, "tsa")
        stamp = timestamp.verify(envelope.timestamp, envelope.signature, roots)
    except (TrustFolderError, timestamp.TimestampError) as exc:
        return False, f"the timestamp does not verify: {exc}"
    result.tsa, result.timestamp = stamp.tsa.subject.rfc4514_string(), stamp.time
    outside = [c for c in chain if not (stamp.earliest >= c.not_valid_before_utc and stamp.latest <= c.not_valid_after_utc)]
    if outside:
        cert = outside[0]
        return False, (f"the timestamp ({stamp.time:%Y-%m-%d %H:%M:%S} UTC by {describe(stamp.tsa)}) is outside the "
                       f"validity of {describe(cert)} ({cert.not_valid_before_utc:%Y-%m-%d} to "
                       f"{cert.not_valid_after_utc:%Y-%m-%d})")
    # trust-store-trust-policy.md § Timestamp ... Revocation check: "always enforced when timestamp countersignature
    # verification is triggered" (notation-go verifyTimestamp step 5), whatever the revocation setting
    status = revocation.check(stamp.chain, folder.crls(), now, "timestamping")
    if not status.ok:
        return False, status.message + (_OFFLINE_TSA if status.unavailable else "")
    return True, (f"timestamped {stamp.time:%Y-%m-%d %H:%M:%S} UTC by {describe(stamp.tsa)}, inside the validity of "
                  "every signing certificate")


_OFFLINE_TSA = (": arcmirror checks no revocation online; put the TSA's current CRLs into the trust folder's crl/ "
                "folder, or set \"authenticTimestamp\": \"log\" in the policy's override")
_OFFLINE = (": arcmirror checks no revocation online; put the issuers' current CRLs into the trust folder's crl/ "
            "folder, or set \"revocation\": \"log\" (or \"skip\") in the policy's override")


def _revocation(envelope: Envelope, statement: Statement, folder: TrustFolder, now: dt.datetime) -> tuple[bool, str]:
    """§ Steps 7 and § Certificate Revocation Evaluation, offline (:mod:`.revocation`)."""
    try:
        crls = folder.crls()
    except TrustFolderError as exc:
        return False, str(exc)
    status = revocation.check(envelope.chain, crls, now)
    return status.ok, status.message + (_OFFLINE if status.unavailable else "")
