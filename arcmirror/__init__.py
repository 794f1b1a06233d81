"""arcmirror: mirror container image releases between OCI registries.

Its front door is :mod:`arcmirror.tasks`: the ``arcmirror`` command (``python -m arcmirror``, the
single-file ``arcmirror.pyz``) and, in a checkout, ``invoke`` through the top-level ``tasks.py``.
Importing the package has no side effects and makes no network calls.
"""

__version__ = "0.2.0"
