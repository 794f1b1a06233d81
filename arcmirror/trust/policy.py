"""The trust policy document (specs/trust-store-trust-policy.md § Trust Policy, OCI, version 1.0), read as
notation-go reads it (``verifier/trustpolicy/oci.go``, ``trustpolicy.go``): validated whole before any
verification, one statement chosen per artifact by its registry scope, a verification level with overrides,
trusted identities matched against the signing certificate's subject.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: § Signature Verification details: the checks, in the order notation-go runs them
CHECKS = ("integrity", "authenticity", "authenticTimestamp", "expiry", "revocation")
ENFORCE, LOG, SKIP = "enforce", "log", "skip"
#: the levels' actions, check by check (§ Signature Verification details, the table)
LEVELS = {
    "strict": dict(integrity=ENFORCE, authenticity=ENFORCE, authenticTimestamp=ENFORCE, expiry=ENFORCE,
                   revocation=ENFORCE),
    "permissive": dict(integrity=ENFORCE, authenticity=ENFORCE, authenticTimestamp=LOG, expiry=LOG, revocation=LOG),
    "audit": dict(integrity=ENFORCE, authenticity=LOG, authenticTimestamp=LOG, expiry=LOG, revocation=LOG),
}
STORE_TYPES = ("ca", "signingAuthority", "tsa")
_NAME = re.compile(r"^[a-zA-Z0-9_.-]+$")
#: notation-go ``validateRegistryScopeFormat``: the domain and repository of a scope
_DOMAIN = re.compile(r"^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
                     r"(?:(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))+)?(?::[0-9]+)?$")
_REPOSITORY = re.compile(r"^[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?"
                         r"(?:(?:/[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?)+)?$")


class PolicyError(ValueError):
    """The trust policy document is not valid; nothing is verified with it."""


@dataclass(frozen=True)
class Statement:
    name: str
    scopes: tuple[str, ...]
    level: str  # strict, permissive, audit, skip
    actions: dict  # check -> enforce/log/skip (the level with its overrides)
    verify_timestamp: str  # always, afterCertExpiry
    stores: tuple[tuple[str, str], ...]  # (type, name)
    identities: tuple  # "*", or parsed x509.subject DNs (dicts)
    identity_texts: tuple[str, ...] = field(default=())

    def stores_of(self, kind: str) -> list[str]:
        return list(dict.fromkeys(name for t, name in self.stores if t == kind))

    def describe(self) -> str:
        overrides = {k: v for k, v in self.actions.items() if self.level in LEVELS and LEVELS[self.level][k] != v}
        return f"policy {self.name!r}, level {self.level}" + \
            (f" (override {', '.join(f'{k}: {v}' for k, v in overrides.items())})" if overrides else "")


@dataclass(frozen=True)
class TrustPolicy:
    statements: tuple[Statement, ...]
    source: str  # the file it came from

    def for_reference(self, reference: str) -> Statement | None:
        """§ Selecting a trust policy: the statement whose scope is exactly ``registry/repository`` of the
        reference, else the one with ``*``; None when neither (the artifact has no applicable policy)."""
        path = reference.rsplit("@", 1)[0]
        exact = next((s for s in self.statements if path in s.scopes), None)
        return exact or next((s for s in self.statements if "*" in s.scopes), None)


def parse_policy(document: object, source: str) -> TrustPolicy:
    """Validate the whole document as notation-go's ``OCIDocument.Validate`` does; PolicyError names what is wrong."""
    if not isinstance(document, dict):
        raise PolicyError(f"{source} is not a JSON object")
    if document.get("version") != "1.0":
        raise PolicyError(f"{source}: version {document.get('version')!r} is not supported (only \"1.0\")")
    raw = document.get("trustPolicies")
    if not isinstance(raw, list) or not raw:
        raise PolicyError(f"{source} has no trustPolicies")
    statements = [_statement(item, source) for item in raw]
    names = [s.name for s in statements]
    if len(set(names)) != len(names):
        raise PolicyError(f"{source}: two trust policy statements are named {next(n for n in names if names.count(n) > 1)!r}")
    scopes = [scope for s in statements for scope in s.scopes]
    repeated = [scope for scope in scopes if scopes.count(scope) > 1]
    if repeated:
        raise PolicyError(f"{source}: registry scope {repeated[0]!r} is present in more than one place")
    return TrustPolicy(tuple(statements), source)


def _statement(item: object, source: str) -> Statement:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
        raise PolicyError(f"{source}: a trust policy statement has no name")
    name = item["name"]
    where = f"{source}, statement {name!r}"
    scopes = item.get("registryScopes")
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise PolicyError(f"{where}: registryScopes must be a non-empty list")
    if "*" in scopes and len(scopes) > 1:
        raise PolicyError(f"{where}: the scope '*' cannot be combined with other scopes")
    for scope in scopes:
        if scope != "*":
            domain, _, repository = scope.partition("/")
            if "*" in scope or not repository or not _DOMAIN.match(domain) or not _REPOSITORY.match(repository):
                raise PolicyError(f"{where}: registry scope {scope!r} is not registry/repository (e.g. "
                                  "registry.example.com/arcdata/arc-controller) or '*'")
    verification = item.get("signatureVerification")
    if not isinstance(verification, dict):
        raise PolicyError(f"{where}: signatureVerification is missing")
    level = verification.get("level")
    if level not in (*LEVELS, "skip"):
        raise PolicyError(f"{where}: level {level!r} is not strict, permissive, audit or skip")
    override = verification.get("override") or {}
    if not isinstance(override, dict):
        raise PolicyError(f"{where}: override must be an object")
    if level == "skip" and override:
        raise PolicyError(f"{where}: the level skip cannot be overridden")
    actions = dict(LEVELS.get(level, {}))
    for check, action in override.items():
        if check == "integrity":
            raise PolicyError(f"{where}: integrity cannot be overridden")
        if check not in CHECKS:
            raise PolicyError(f"{where}: {check!r} is not a check that can be overridden")
        if action not in (ENFORCE, LOG, SKIP) or (action == SKIP and check != "revocation"):
            raise PolicyError(f"{where}: {check} can be set to enforce or log" +
                              (" or skip" if check == "revocation" else "") + f", not {action!r}")
        actions[check] = action
    verify_timestamp = verification.get("verifyTimestamp") or "always"
    if verify_timestamp not in ("always", "afterCertExpiry"):
        raise PolicyError(f"{where}: verifyTimestamp {verify_timestamp!r} is not always or afterCertExpiry")
    stores = item.get("trustStores") or []
    identities = item.get("trustedIdentities") or []
    if not isinstance(stores, list) or not isinstance(identities, list):
        raise PolicyError(f"{where}: trustStores and trustedIdentities must be lists")
    if level == "skip":
        if stores or identities:
            raise PolicyError(f"{where}: the level skip takes no trustStores or trustedIdentities")
    elif not stores or not identities:
        raise PolicyError(f"{where}: trustStores and trustedIdentities are needed at level {level}")
    parsed_stores = []
    for entry in stores:
        kind, sep, store = entry.partition(":") if isinstance(entry, str) else ("", "", "")
        if not sep or kind not in STORE_TYPES or not _NAME.match(store):
            raise PolicyError(f"{where}: trust store {entry!r} is not ca:NAME, signingAuthority:NAME or tsa:NAME")
        parsed_stores.append((kind, store))
    return Statement(name, tuple(scopes), level, actions, verify_timestamp, tuple(parsed_stores),
                     _identities(identities, where), tuple(identities))


def _identities(values: list, where: str) -> tuple:
    if "*" in values:
        if len(values) > 1:
            raise PolicyError(f"{where}: the trusted identity '*' cannot be combined with others")
        return ("*",)
    parsed = []
    for value in values:
        if not isinstance(value, str) or ":" not in value:
            raise PolicyError(f"{where}: trusted identity {value!r} is not TYPE:VALUE (x509.subject: C=..., ST=..., O=...)")
        kind, _, text = value.partition(":")
        if kind.strip() != "x509.subject":
            continue  # notation-go accepts and ignores other identity types
        try:
            parsed.append(parse_dn(text))
        except ValueError as exc:
            raise PolicyError(f"{where}: trusted identity {value!r}: {exc}") from None
    for i, first in enumerate(parsed):
        for j, second in enumerate(parsed):
            if i != j and is_subset(first, second):
                raise PolicyError(f"{where}: two trusted identities overlap ({first} and {second})")
    return tuple(parsed)


def parse_dn(text: str) -> dict[str, str]:
    """An RFC 4514 distinguished name as notation-go parses trusted identities (``internal/pkix``, go-ldap's
    ``ParseDN``): ``,`` or ``;`` between attributes, escapes decoded, ``S`` read as ``ST``; no ``+``
    (multi-valued), no ``#`` hex values, no attribute twice; C, ST and O required (§ Trusted Identities)."""
    if "=#" in text:
        raise ValueError("hex-encoded values are not supported")
    found: dict[str, str] = {}
    for part in _split(text):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{part.strip()!r} is not TYPE=value")
        key = "ST" if key == "S" else key
        if key in found:
            raise ValueError(f"{key} appears twice")
        found[key] = _unescape(value.strip())
    for needed in ("C", "ST", "O"):
        if not found.get(needed):
            raise ValueError(f"it has no {needed} (a trusted identity needs C, ST and O)")
    return found


def _split(text: str) -> list[str]:
    parts, current, escaped = [], "", False
    for char in text:
        if escaped:
            current += "\\" + char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",;":
            parts.append(current)
            current = ""
        elif char == "+":
            raise ValueError("multi-valued attributes (+) are not supported")
        else:
            current += char
    if escaped:
        raise ValueError("it ends with a backslash")
    parts.append(current)
    return [p for p in parts if p.strip()] if any(p.strip() for p in parts) else []


def _unescape(value: str) -> str:
    def hexpair(match: re.Match) -> str:
        return bytes.fromhex(match[1]).decode("utf-8", "replace")

    value = re.sub(r"\\([0-9A-Fa-f]{2})", hexpair, value)
    return re.sub(r"\\(.)", r"\1", value)


def is_subset(identity: dict[str, str], subject: dict[str, str]) -> bool:
    """Every attribute of ``identity`` is in ``subject`` with the same value (order-independent, case-sensitive),
    as notation-go's ``IsSubsetDN``."""
    return all(subject.get(key) == value for key, value in identity.items())
