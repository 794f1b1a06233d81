"""Test bed for arcmirror: real registries and synthetic images on loopback.

* :mod:`.registry` -- ``docker-registry`` (CNCF distribution) subprocesses with
  Basic, TLS or bearer-token auth, plus admin inspection helpers.
* :mod:`.tokenserver` -- a bearer-token server signing RS256 JWTs.
* :mod:`.images` -- deterministic OCI image layouts and Arc-like releases.
* :mod:`.skopeo` -- loading layouts into registries with skopeo.
* :mod:`.faultproxy` -- a fault-injecting HTTP proxy in front of a registry.
* :mod:`.relay` -- a latency relay (and a shared bandwidth cap) in front of a
  registry: the tool under test far from both registries.

Nothing here uses arcmirror's own code, so tests can judge it independently.
"""
