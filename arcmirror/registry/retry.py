"""How often and how long to retry: exponential backoff with equal jitter, and ``Retry-After``.

Hand-written rather than urllib3's ``Retry``: an attempt may need a fresh token, blob uploads stream
bodies that cannot be replayed at that layer, and the final error must say what was tried.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import requests


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int  # MIRROR_RETRIES
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 120.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)  # "equal jitter"


def requested_delay(response: requests.Response) -> float | None:
    """The seconds a ``Retry-After`` header asks for (a number or an HTTP date), if any."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
