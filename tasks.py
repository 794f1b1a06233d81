"""Invoke's entry point in a checkout (``invoke --list``, ``invoke mirror``): the tasks are
:mod:`arcmirror.tasks`, the same ones the installed ``arcmirror`` command and ``arcmirror.pyz`` offer."""

from arcmirror.tasks import ns  # noqa: F401
