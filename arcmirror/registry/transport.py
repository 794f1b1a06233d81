"""The HTTP adapter of the registry client: urllib3 connections that a cancellation can shut down.

requests and urllib3 give no way to interrupt a read that waits for a stalled server; shutting the
socket down from another thread does. The adapter's connection classes register every connection
they open with :func:`arcmirror.cancel.track` (direct, through a proxy, plain or TLS).
"""

from __future__ import annotations

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .. import cancel


class _Tracked:
    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        cancel.track(self)


class _HTTP(_Tracked, HTTPConnection):
    pass


class _HTTPS(_Tracked, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTP


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPS


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class CancellableAdapter(requests.adapters.HTTPAdapter):
    """``HTTPAdapter`` whose connections :func:`arcmirror.cancel.request` can abort."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager
