"""zot (project-zot/zot), or any registry that keeps the OCI referrers API as distribution-spec v1.1
says: ``GET /v2/<name>/referrers/<digest>`` with ``artifactType`` filtering, and ``OCI-Subject`` on the
PUT of a manifest with a ``subject`` (zot#1410). The spec's own behaviour; distribution 2.8.2 behind it
has none of it."""

from __future__ import annotations

from .referrers import ReferrersAPI


class Zot(ReferrersAPI):
    name = "zot"
