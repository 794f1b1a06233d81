"""The Docker engine's JSON progress stream of a pull or a push, read to its end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .. import cancel
from ..oci.errors import HintedError


class EngineError(HintedError):
    """The Docker engine refused or failed an operation; ``message`` carries the engine's own words."""


@dataclass
class StreamSummary:
    """What one pull or push stream said: the last status of each layer, and the final ``aux``."""

    layers: dict[str, str] = field(default_factory=dict)  # layer id -> its last status
    statuses: list[str] = field(default_factory=list)  # statuses without a layer id, in order
    aux: dict | None = None
    messages: int = 0

    def count(self, *prefixes: str) -> int:
        return sum(any(s.startswith(p) for p in prefixes) for s in self.layers.values())


def read_stream(messages: Iterable[Any], on_message: Callable[[dict], None] | None = None) -> StreamSummary:
    """Read an engine JSON progress stream to its end; an ``error`` in it raises :class:`EngineError`.

    The error's text is the engine's (``errorDetail.message``, else ``error``). ``on_message`` sees
    every message (for progress).
    """
    summary = StreamSummary()
    for message in messages:
        cancel.check("this image")  # leaving the stream closes it: the engine then stops that pull or push
        if not isinstance(message, dict):
            continue
        summary.messages += 1
        if on_message:
            on_message(message)
        detail = message.get("errorDetail")
        if message.get("error") or detail:
            text = (detail.get("message") if isinstance(detail, dict) else None) or message.get("error")
            raise EngineError(str(text or "the engine reported an error without a message").strip())
        status = message.get("status")
        if isinstance(status, str):
            if message.get("id") and not status.startswith(("Pulling from", "The push refers to")):
                summary.layers[str(message["id"])] = status
            elif status not in summary.statuses[-1:]:
                summary.statuses.append(status)
        aux = message.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            summary.aux = aux
    return summary
