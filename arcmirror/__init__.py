"""arcmirror: mirror container image releases between OCI registries.

The package is a library; ``tasks.py`` at the repository root is its front door.
Importing it has no side effects and makes no network calls.
"""

__version__ = "0.1.0"
