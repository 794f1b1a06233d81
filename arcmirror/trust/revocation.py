"""Revocation, offline (specs/trust-store-trust-policy.md § Certificate Revocation Evaluation).

arcmirror makes no network call to check revocation. The spec: a certificate that names no OCSP responder and no
CRL distribution point is not checked (taken as not revoked); one that does and whose status "cannot be
determined (revocation unavailable)" fails the check, which the policy's level then enforces or logs; the root is
never checked (notation-go passes it as non-revokable). A disconnected site can still have revocation checked:
CRLs downloaded on the connected side and put into the trust folder's ``crl/`` are used, each verified with the
certificate that issued it (cryptography), current (``nextUpdate`` not passed), and without unknown critical
extensions (notation-core-go ``revocation/internal/crl``). OCSP answers cannot be carried (they are fetched per
certificate, live): a certificate with OCSP only stays "unavailable".
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Sequence

from cryptography import x509
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

from .certs import Certificate, describe, revocation_pointers

#: CRL extensions notation-core-go understands; any other critical one makes the CRL unusable
_CRL_KNOWN = {ExtensionOID.CRL_NUMBER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.DELTA_CRL_INDICATOR,
              ExtensionOID.ISSUING_DISTRIBUTION_POINT}


@dataclass(frozen=True)
class Status:
    ok: bool
    message: str  # what was found, for the report (the revoked or unknown certificate named)
    unavailable: bool = False  # True when the status could not be determined (offline)


def check(chain: Sequence[Certificate], crls: Sequence[x509.CertificateRevocationList], now: dt.datetime,
          what: str = "signing") -> Status:
    """The revocation status of every certificate of ``chain`` but its root."""
    unknown: list[str] = []
    for index, cert in enumerate(chain[:-1]):
        pointers = revocation_pointers(cert)
        if not pointers:
            continue
        issuer = chain[index + 1]
        crl = _usable_crl(issuer, crls, now)
        if crl is None:
            unknown.append(f"{describe(cert)} ({', '.join(pointers)})")
            continue
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None and not _removed(entry):
            return Status(False, f"the {what} certificate {describe(cert)} is revoked (CRL of {describe(issuer)}, "
                                 f"since {entry.revocation_date_utc:%Y-%m-%d})")
    if unknown:
        return Status(False, f"the revocation status of the {what} certificate{'s' if len(unknown) > 1 else ''} "
                             f"{'; '.join(unknown)} cannot be determined offline", unavailable=True)
    return Status(True, "no certificate of the chain is revoked" if any(revocation_pointers(c) for c in chain[:-1])
                  else "no certificate of the chain names a revocation service")


def _usable_crl(issuer: Certificate, crls, now: dt.datetime):
    """A complete, current CRL the issuer signed (an OCSP-only certificate is covered too, if the site has one)."""
    for crl in crls:
        if crl.issuer.public_bytes() != issuer.subject.public_bytes():
            continue
        try:
            if not crl.is_signature_valid(issuer.public_key()):
                continue
        except (TypeError, ValueError):
            continue
        if crl.next_update_utc is None or crl.next_update_utc < now:
            continue
        if any(ext.critical and ext.oid not in _CRL_KNOWN for ext in crl.extensions):
            continue
        if _delta(crl):
            continue  # a delta CRL alone does not tell; arcmirror uses complete CRLs only
        return crl
    return None


def _delta(crl) -> bool:
    try:
        crl.extensions.get_extension_for_oid(ExtensionOID.DELTA_CRL_INDICATOR)
        return True
    except x509.ExtensionNotFound:
        return False


def _removed(entry) -> bool:
    """An entry whose reason is removeFromCRL no longer counts (RFC 5280 § 5.3.1)."""
    try:
        reason = entry.extensions.get_extension_for_oid(CRLEntryExtensionOID.CRL_REASON).value.reason
    except x509.ExtensionNotFound:
        return False
    return reason == x509.ReasonFlags.remove_from_crl
