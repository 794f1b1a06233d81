"""Registry personalities: one product's documented behaviour each, for :class:`testbed.front.RegistryFront`.

Every quirk carries its source (the product's code, an issue of the product or of a mature copier) in
its module. These are reproductions of documented behaviour in front of a real CNCF distribution
registry, not the products themselves.
"""

from __future__ import annotations

from .acr import ACR
from .artifactory import Artifactory
from .dockerhub import DockerHub
from .ecr import ECR
from .gitea import Gitea
from .gitlab import GitLab
from .google import ArtifactRegistry
from .harbor import Harbor
from .nexus import Nexus
from .quay import Quay
from .referrers import ReferrersAPI
from .zot import Zot

__all__ = ["ACR", "ArtifactRegistry", "Artifactory", "DockerHub", "ECR", "GitLab", "Gitea", "Harbor", "Nexus",
           "Quay", "ReferrersAPI", "Zot"]
