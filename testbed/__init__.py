"""Test bed for arcmirror: real registries and synthetic images on loopback.

* :mod:`.registry` -- ``docker-registry`` (CNCF distribution) subprocesses with
  Basic, TLS or bearer-token auth, plus admin inspection helpers.
* :mod:`.tokenserver` -- a bearer-token server signing RS256 JWTs.
* :mod:`.images` -- deterministic OCI image layouts and Arc-like releases.
* :mod:`.skopeo` -- loading layouts into registries with skopeo.
* :mod:`.faultproxy` -- a fault-injecting HTTP proxy in front of a registry.
* :mod:`.relay` -- a latency relay (and a shared bandwidth cap) in front of a
  registry: the tool under test far from both registries.
* :mod:`.front` and :mod:`.personalities` -- registry products' documented
  behaviour in front of a real registry (the OCI referrers API among it).
* :mod:`.signing` -- placeholder referrers (tag schema) for copy tests.
* :mod:`.pki`, :mod:`.tsa`, :mod:`.notary`, :mod:`.cosign` -- real signatures,
  written from the specifications: an X.509 PKI with a knob for every bad
  certificate, an RFC 3161 time-stamping authority (``openssl ts`` and a Python
  one), Notary Project COSE/JWS envelopes and signature manifests with notation's
  trust folder, and cosign key-pair signatures.

Nothing here uses arcmirror's own code, so tests can judge it independently.
"""
