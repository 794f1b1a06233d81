"""The WAN scenario's network and its latency floor: the tool far from both registries, on loopback.

A CI runner is tens of milliseconds from the source (MCR) and from the private registry, and
every round trip costs. For each run of a ``wan-*`` case (and of the ``big`` scenario's capped
cases), :class:`Relays` puts one :class:`~testbed.relay.LatencyRelay` in front of the source
registry and one in front of that run's fresh target registry (each delays every chunk ``D`` ms in
each direction: a request costs one round trip, ``2 * D``). With a bandwidth cap both relays
share one :class:`~testbed.relay.Link`, the runner's one network link, in one of two kinds
(``--wan-duplex``):

* **full duplex** (``full``, as one Ethernet interface is): the cap each way; *down* (what the
  tool receives: the source's blobs, every answer) and *up* (what it sends: requests, the uploads
  to the target) have a budget each.
* **half duplex** (``half``, the cap this harness always had): one budget that downloads and
  uploads share.

Both relays also count on one :class:`~testbed.relay.Timeline` the bytes delivered per direction
per 50 ms of the timed run (:meth:`Relays.timeline`: a :class:`~benchmarks.measure.LinkTimeline`):
where the link idled. The tool under test is given the relays' hosts instead of the registries'.
The relays count the HTTP requests that pass (:class:`~benchmarks.measure.Requests`); counters and
the timeline are reset just before the timed command, so untimed set-up is never counted.

:class:`LatencyFloor` is what such a run would take at the least. The model:

* Every request costs exactly one round trip, ``2 * D``, and nothing else (no connection set-up,
  no server time, no CPU); all images go in parallel, and so do all blobs of an image; so the
  floor is the longest chain of round trips one image forces, one after the other.
* An image the target already holds at the tag: resolve the source tag and the target tag at
  once (``HEAD``/``GET`` of both manifests), compare the digests: **1** round trip.
* An image to copy: (1) ``GET`` the source manifest by tag (the digest and the blob list come
  with it; checking the target's tag goes alongside); (2) ``GET`` each blob from the source
  (checks of the target's blobs go alongside); (3) stream it into a one-request upload to the
  target (``POST ?digest=``), which must have answered before (4) the ``PUT`` of the manifest
  by tag (the registry checks the blobs are there): **4** round trips. The upload cannot
  answer before the bytes arrived, so the source's round trip and the target's do not overlap.
* So: ``cold`` copies every image (4), ``noop`` none (1), ``incremental`` copies the images
  whose manifest changed (4 when any did: here every config changes, so all 17 do), else 1.
* A cap of ``bandwidth`` bytes per second adds the time the bytes need on the link. Each byte
  moved crosses it twice, down from the source and up to the target, so ``bytes_down =
  bytes_up = bytes_to_move``. Half duplex (one budget): ``(bytes_down + bytes_up) / bandwidth
  = 2 * bytes_to_move / bandwidth``. Full duplex (a budget each way, both busy at once):
  ``max(bytes_down, bytes_up) / bandwidth = bytes_to_move / bandwidth``. Uncapped, there is
  no bandwidth term. (The transfer overlaps the blob round trips by up to one ``D``, so with a
  cap this floor can be up to ``D`` above the true minimum; manifests' bytes and the HTTP
  heads are left out.)

``floor = round_trips * 2 * D + crossings * bytes_to_move / bandwidth``, ``crossings`` 2 for
half duplex, 1 for full duplex (:data:`LINK_CROSSINGS`).

This module uses only the test bed's relay and :mod:`benchmarks.measure`: the scenarios take
its labels, the runner :class:`Relays`, the report :class:`LatencyFloor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from benchmarks.measure import MB, LinkTimeline, Requests, megabytes
from testbed.relay import FULL, HALF, LatencyRelay, Link, Timeline

#: The one-way delays (ms) timed by default (``--wan-delays``).
WAN_DELAYS = (10.0, 25.0)
#: The case kinds the WAN scenario runs, each at every delay.
WAN_KINDS = ("cold", "noop", "incremental")
#: Round trips one image forces one after the other: already there, or to be copied.
CHECK_CHAIN = 1
COPY_CHAIN = 4
#: The kinds of capped link (``--wan-duplex``): one budget shared by both directions, or one each way.
DUPLEX = (HALF, FULL)
#: ``--wan-duplex both`` (the default): a case each, full duplex first.
BOTH_DUPLEX = (FULL, HALF)
#: How often each byte moved is counted against one budget: down from the source and up to the
#: target share it (half duplex), or go side by side on a budget each (full duplex).
LINK_CROSSINGS = {HALF: 2, FULL: 1}
#: The case kinds the WAN scenario runs again through a capped link (``--wan-bandwidth``), at each
#: delay and duplex: the no-op and the incremental case move too few bytes for the cap to matter.
WAN_CAPPED_KINDS = ("cold",)


def cap_text(bandwidth: float | None, duplex: str | None = None) -> str:
    """``"40 MB/s full duplex"``, ``"40 MB/s half duplex"``; ``"none"`` uncapped."""
    if not bandwidth:
        return "none"
    return f"{bandwidth / MB:g} MB/s" + (f" {duplex} duplex" if duplex else "")


def wan_label(kind: str, delay_ms: float, bandwidth: float | None = None, duplex: str | None = None,
              prefix: str = "wan") -> str:
    """The case label of ``kind`` at ``delay_ms``: ``wan-cold@25ms``; through a capped link (bytes per
    second) ``wan-cold@10ms/40MBps-full``; ``prefix`` names the scenario (``big-cold@10ms/40MBps-half``)."""
    label = f"{prefix}-{kind}@{delay_ms:g}ms"
    return f"{label}/{bandwidth / MB:g}MBps-{duplex or HALF}" if bandwidth else label


def parse_duplex(text: str) -> tuple[str, ...]:
    """``--wan-duplex``: ``"half"``, ``"full"`` or ``"both"`` (full, then half) -> the kinds of link."""
    choices = {"half": (HALF,), "full": (FULL,), "both": BOTH_DUPLEX}
    if text not in choices:
        raise ValueError(f"half, full or both (got {text!r})")
    return choices[text]


def check_delays(delays: Iterable[float | str]) -> tuple[float, ...]:
    """The one-way delays (ms) as floats; ValueError unless there are some, distinct, each >= 0."""
    try:
        checked = tuple(float(d) for d in delays)
    except ValueError:
        checked = ()
    if not checked or any(d < 0 for d in checked) or len(set(checked)) < len(checked):
        raise ValueError(f"distinct one-way delays in ms, each >= 0, e.g. 10,25 (got {delays!r})")
    return checked


def parse_delays(text: str) -> tuple[float, ...]:
    """``"10,25"`` -> ``(10.0, 25.0)`` (:func:`check_delays`)."""
    return check_delays([part for part in text.split(",") if part.strip()])


@dataclass(frozen=True)
class LatencyFloor:
    """The least time a WAN case can take (the module's docstring has the model)."""

    round_trips: int
    delay_ms: float
    bytes_to_move: int
    bandwidth: float | None = None  # bytes per second of the link; None: uncapped
    duplex: str = HALF  # the link's kind when capped: HALF (one budget) or FULL (one each way)

    @classmethod
    def of(cls, images_to_copy: int, delay_ms: float, bytes_to_move: int,
           bandwidth: float | None = None, duplex: str = HALF) -> "LatencyFloor":
        """The floor of a case copying ``images_to_copy`` images (the rest only checked)."""
        if duplex not in DUPLEX:
            raise ValueError(f"duplex: one of {', '.join(DUPLEX)} (got {duplex!r})")
        return cls(COPY_CHAIN if images_to_copy else CHECK_CHAIN, delay_ms, bytes_to_move, bandwidth, duplex)

    @property
    def crossings(self) -> int:
        """How often the bytes moved count against one budget: 2 half duplex, 1 full duplex."""
        return LINK_CROSSINGS[self.duplex]

    @property
    def latency(self) -> float:
        return self.round_trips * 2 * self.delay_ms / 1000

    @property
    def transfer(self) -> float:
        return self.crossings * self.bytes_to_move / self.bandwidth if self.bandwidth else 0.0

    @property
    def seconds(self) -> float:
        return self.latency + self.transfer

    def formula(self) -> str:
        """``4 × 2 × 25 ms + 2 × 400.2 MB / 10 MB/s = 80.24 s`` (half duplex: down and up share the
        budget), ``4 × 2 × 25 ms + 400.2 MB / 10 MB/s = 40.22 s`` (full duplex: one budget each way,
        down and up at once); no bandwidth term when nothing moves."""
        text = f"{self.round_trips} × 2 × {self.delay_ms:g} ms"
        if self.bandwidth and self.bytes_to_move:
            times = f"{self.crossings} × " if self.crossings > 1 else ""
            text += f" + {times}{megabytes(self.bytes_to_move)} / {self.bandwidth / MB:g} MB/s"
        return f"{text} = {self.text()} s"

    def text(self) -> str:
        """The seconds, to the millisecond below 1 s ("0.050"), else to 10 ms ("80.24")."""
        return f"{self.seconds:.3f}" if self.seconds < 1 else f"{self.seconds:.2f}"


class Relays:
    """One run's relays: ``D`` ms in front of the source and of the target, one shared
    :class:`~testbed.relay.Link` of ``duplex`` kind when ``bandwidth`` (bytes per second) is given,
    and one :class:`~testbed.relay.Timeline` counting what both deliver each way.

    A context manager (starts and stops both). :attr:`source_host`/:attr:`target_host` are what
    the tool under test is given; :meth:`reset` forgets the counts of any set-up and starts the
    timeline, :meth:`stop_timeline` ends it (the run is over), :meth:`requests` and
    :meth:`timeline` read them.
    """

    def __init__(self, source_host: str, target_host: str, delay_ms: float, bandwidth: float | None = None,
                 duplex: str = HALF):
        self.bandwidth, self.duplex = bandwidth, duplex
        self.link = Link(bandwidth, duplex) if bandwidth else None
        self._timeline = Timeline()
        self.source = LatencyRelay(source_host, delay_ms, link=self.link, timeline=self._timeline)
        self.target = LatencyRelay(target_host, delay_ms, link=self.link, timeline=self._timeline)

    @property
    def source_host(self) -> str:
        return self.source.host

    @property
    def target_host(self) -> str:
        return self.target.host

    def __enter__(self) -> "Relays":
        self.source.start()
        try:
            self.target.start()
        except BaseException:
            self.source.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.target.stop()
        self.source.stop()

    def reset(self) -> None:
        self.source.reset_counters()
        self.target.reset_counters()
        self._timeline.reset()

    def stop_timeline(self) -> None:
        self._timeline.stop()

    def requests(self) -> Requests:
        return Requests(self.source.requests, self.target.requests, self.source.requests_by_method,
                        self.target.requests_by_method, self.source.connections + self.target.connections)

    def timeline(self) -> LinkTimeline:
        """Bytes per direction per slice since :meth:`reset` (to :meth:`stop_timeline`)."""
        seen = self._timeline.snapshot()
        return LinkTimeline(seen["slice_seconds"], seen["seconds"], seen["down"], seen["up"],
                            self.bandwidth, self.duplex if self.bandwidth else None)
