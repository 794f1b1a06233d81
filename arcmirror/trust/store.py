"""The trust folder (``MIRROR_TRUST_DIR``): notation's own configuration directory, so the files a site has for
``notation verify`` or Ratify work unchanged (specs/trust-store-trust-policy.md § Trust Store, § Trust Policy):

    trustpolicy.oci.json            (or the older trustpolicy.json, read only when the first is absent)
    truststore/x509/ca/<name>/*     certificates of the code signing CAs   (notary.x509)
    truststore/x509/signingAuthority/<name>/*                              (notary.x509.signingAuthority)
    truststore/x509/tsa/<name>/*    roots of the timestamping authorities
    crl/*                           CRLs a disconnected site carried in (arcmirror's addition, see revocation.py)

Read as notation-go reads them (``verifier/truststore/truststore.go``, ``verifier/trustpolicy``): the directory is
``truststore`` (the spec's example tree says ``trust-store``), every regular file of a named store is read
whatever its extension, PEM (every block) or DER (one or more), a sub-directory or a symlink in a store makes the
store unusable (the spec would ignore a sub-directory; notation refuses it, and so do we), every certificate is a
CA or self-signed, a ``tsa`` store holds self-signed roots only.
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from .certs import Certificate, ChainError, describe, load_certificates, self_signed
from .policy import PolicyError, TrustPolicy, parse_policy


class TrustFolderError(ValueError):
    """The trust folder cannot be used; the message names the file and what to fix."""


def _regular(path: Path, what: str) -> None:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise TrustFolderError(f"{what} {path} is not a regular file (symlinks are not supported)")


def load_policy(folder: Path) -> TrustPolicy:
    """``trustpolicy.oci.json`` wins; ``trustpolicy.json`` is read only when it does not exist (§ Trust Policy)."""
    for name in ("trustpolicy.oci.json", "trustpolicy.json"):
        path = folder / name
        if path.exists() or path.is_symlink():
            _regular(path, "the trust policy")
            try:
                document = json.loads(path.read_bytes())
            except (OSError, ValueError) as exc:
                raise TrustFolderError(f"the trust policy {path} cannot be read: {exc}") from None
            try:
                return parse_policy(document, str(path))
            except PolicyError as exc:
                raise TrustFolderError(str(exc)) from None
    raise TrustFolderError(f"the trust folder {folder} has no trustpolicy.oci.json (nor trustpolicy.json)")


@dataclass
class TrustFolder:
    path: Path
    policy: TrustPolicy
    _stores: dict = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path) -> "TrustFolder":
        if not path.is_dir():
            raise TrustFolderError(f"MIRROR_TRUST_DIR={path} is not a folder")
        return cls(path, load_policy(path))

    def certificates(self, kind: str, names: list[str]) -> list[Certificate]:
        """The certificates of the named stores of one type, merged (notation-go ``loadX509TrustStoresWithType``);
        TrustFolderError when one of them cannot be used."""
        found: list[Certificate] = []
        for name in names:
            if (kind, name) not in self._stores:
                try:
                    self._stores[(kind, name)] = _load_store(self.path / "truststore" / "x509" / kind / name, kind)
                except TrustFolderError as exc:
                    self._stores[(kind, name)] = exc
            loaded = self._stores[(kind, name)]
            if isinstance(loaded, TrustFolderError):
                raise loaded
            found += loaded
        return found

    def crls(self) -> list[x509.CertificateRevocationList]:
        """The CRLs the site put in ``crl/`` (PEM or DER), for offline revocation checking."""
        if "crl" not in self._stores:
            loaded = []
            for path in sorted((self.path / "crl").glob("*")) if (self.path / "crl").is_dir() else []:
                if path.is_file() and not path.is_symlink():
                    data = path.read_bytes()
                    try:
                        loaded.append(x509.load_pem_x509_crl(data) if b"-----BEGIN" in data
                                      else x509.load_der_x509_crl(data))
                    except ValueError:
                        raise TrustFolderError(f"{path} is not a CRL (PEM or DER)") from None
            self._stores["crl"] = loaded
        return self._stores["crl"]


def _load_store(directory: Path, kind: str) -> list[Certificate]:
    where = f"the trust store {kind}:{directory.name} ({directory})"
    if not directory.exists():
        raise TrustFolderError(f"{where} does not exist: create it with the certificates to trust")
    if directory.is_symlink() or not directory.is_dir():
        raise TrustFolderError(f"{where} is not a folder (symlinks are not supported)")
    certificates: list[Certificate] = []
    for path in sorted(directory.iterdir()):
        _regular(path, f"{where} holds")
        try:
            found = load_certificates(path.read_bytes())
        except ChainError as exc:
            raise TrustFolderError(f"{path} in {where}: {exc}") from None
        for cert in found:
            constraints = _ca(cert)
            if kind == "tsa" and not self_signed(cert):
                raise TrustFolderError(f"{path}: {describe(cert)} is not a self-signed root; a tsa trust store holds "
                                       "the roots of timestamping authorities only")
            if not constraints and not self_signed(cert):
                raise TrustFolderError(f"{path}: {describe(cert)} is neither a CA nor self-signed")
        certificates += found
    if not certificates:
        raise TrustFolderError(f"{where} holds no certificate")
    return certificates


def _ca(cert: Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def load_cosign_keys(paths: list[Path]) -> list[ec.EllipticCurvePublicKey]:
    """``MIRROR_COSIGN_KEYS``: PEM public keys (``cosign.pub``), or folders of them."""
    keys = []
    for path in paths:
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        for file in files:
            try:
                key = load_pem_public_key(file.read_bytes())
            except (OSError, ValueError) as exc:
                raise TrustFolderError(f"MIRROR_COSIGN_KEYS: {file} is not a PEM public key ({exc})") from None
            keys.append(key)
    if not keys:
        raise TrustFolderError("MIRROR_COSIGN_KEYS names no public key")
    return keys
