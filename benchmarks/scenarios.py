"""The benchmark's data: the synthetic releases, the source registries and each scenario's cases.

A synthetic Arc-like release (the 17 image names of ``config/arc-data-services.yaml``,
linux/amd64, one base layer shared by all, two runtime layers shared by halves, one unique layer
per image; about 400 MB of distinct blob bytes at ``--scale 1``) is built once per scenario as an
OCI layout and loaded with skopeo into a CNCF distribution registry on loopback (the source).
A scenario that needs a non-empty target gets a seed: a copy of the source's storage that each
fresh target starts from.

Scenarios (``--scenarios``):

* ``cold``           -- empty target.
* ``cold-multiarch`` -- the same release as linux/amd64 + linux/arm64 indexes (about the same bytes).
* ``noop``           -- the target already holds the release: at 16 and at 64 images (48 small
                        ``arc-extra-NN`` images added) to get the cost of one more image.
* ``incremental``    -- next month's release (new tag, about 20% of the unique layers changed)
                        into a target holding this month's.
* ``memory``         -- one image with a 1 GB layer (times ``--scale``): peak RSS of the process tree.
* ``wan``            -- ``cold``, a no-op (the release into a target holding it) and ``incremental``
                        again, with the tool ``D`` ms from both registries (``--wan-delays``, each
                        delay a case: ``wan-cold@25ms``); with a bandwidth cap (``--wan-bandwidth``)
                        ``cold`` once more at each delay through a capped link, full and/or half
                        duplex (``--wan-duplex``: ``wan-cold@10ms/40MBps-full``); each case carries
                        its latency floor (:mod:`benchmarks.wan`).
* ``big``            -- a release at real size, not in the default set (slow): the 17 images with
                        about 4 GB of distinct blobs at ``--scale 1`` (three unique layers over
                        500 MB), ``cold`` and ``incremental`` on loopback, then both again
                        :data:`BIG_DELAY_MS` from both registries through a capped link (the
                        ``--wan-bandwidth`` cap, else :data:`BIG_BANDWIDTH`; each ``--wan-duplex``):
                        ``big-cold``, ``big-cold@10ms/40MBps-full``... Peak RSS of the whole
                        process tree is polled in every big case.

Seeds (a complete target to start from) are taken once per release and given to each run's
fresh target with the blobs' data files hard-linked (:func:`clone_storage`): at 4 GB a copy per
run would cost more than the run.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import yaml

from benchmarks.measure import MB, log, megabytes
from benchmarks.wan import BOTH_DUPLEX, DUPLEX, WAN_CAPPED_KINDS, WAN_DELAYS, WAN_KINDS, LatencyFloor, wan_label
from testbed.images import build_release, layout_refs
from testbed.registry import Registry
from testbed.skopeo import load_release

ROOT = Path(__file__).resolve().parent.parent
IMAGE_SET = ROOT / "config" / "arc-data-services.yaml"

REPO = "arcdata"
TAG = "v1.41.0_2025-09-09"
NEXT_TAG = "v1.42.0_2025-10-14"

#: Distinct blob bytes of the default release (scale 1) and how they split.
RELEASE_BYTES = 400 * MB
BASE_SHARE, RUNTIME_SHARE = 0.15, 0.10  # the base layer; each of the two runtime layers
MEMORY_LAYER_BYTES = 1000 * MB
CHANGED_SHARE = 0.20
NOOP_SIZES = {"unique_size": 64 * 1024, "base_size": 256 * 1024, "shared_size": 128 * 1024}
NOOP_COUNTS = (16, 64)

#: The big scenario at scale 1: a release at real size. About 4 GB of distinct blobs: the base layer,
#: two runtime layers, three large unique layers, 70 MB for each other image's own layer.
BIG_BASE_BYTES = 400 * MB
BIG_RUNTIME_BYTES = 250 * MB  # each of the two
BIG_LARGE_LAYERS = {"arc-sqlmi": 900 * MB, "arc-postgres-12": 700 * MB, "arc-controller-db": 550 * MB}
BIG_UNIQUE_BYTES = 70 * MB
#: Its capped cases: one way from both registries, and the cap when --wan-bandwidth gives none.
BIG_DELAY_MS = 10.0
BIG_BANDWIDTH = 40 * MB

SCENARIOS = ("cold", "cold-multiarch", "noop", "incremental", "memory", "wan", "big")
#: What runs without ``--scenarios``: every scenario but ``big`` (about an hour at scale 1).
DEFAULT_SCENARIOS = tuple(s for s in SCENARIOS if s != "big")
#: Tools a scenario does not measure, and why (printed in the table).
NOT_MEASURED = {
    "cold-multiarch": {"docker": "docker pulls only the engine's platform (linux/amd64): not comparable"},
    "noop": {"floor": "nothing to send: the floor of a no-op is 0",
             "floor-relay": "nothing to send: the floor of a no-op is 0"},
    "memory": {"skopeo-sync": "same copy code as skopeo copy (measured)",
               "docker": "the work happens in dockerd, not in a client process"},
    "wan": {"floor": "modelled, not measured: see the latency floor of each case",
            "floor-relay": "modelled, not measured: see the latency floor of each case",
            "pull-push": "not in the WAN scenario: arcmirror's own pull and push steps, timed on loopback",
            "docker": "not in the WAN scenario: the engine pulls and re-compresses on push, timed on loopback"},
}
#: The big scenario's loopback cases leave out the tools timed at 400 MB in ``cold`` whose cost at 4 GB
#: is not arcmirror's question; its capped cases measure what the WAN scenario measures.
BIG_NOT_MEASURED = {
    "pull-push": "timed at 400 MB in cold: at 4 GB the local store needs 4 GB more disk and twice the time",
    "docker": "timed at 400 MB in cold: the engine's vfs storage unpacks every layer for every image",
}


def arc_names() -> list[str]:
    return list(yaml.safe_load(IMAGE_SET.read_text())["images"])


def noop_names(count: int) -> list[str]:
    """The first 16 Arc names, then ``arc-extra-NN`` up to ``count``."""
    base = arc_names()[:16]
    return (base + [f"arc-extra-{i:02d}" for i in range(1, count - len(base) + 1)])[:count]


def changed_names(names: Sequence[str], share: float = CHANGED_SHARE) -> list[str]:
    """About ``share`` of ``names``, spread evenly (at least one)."""
    count = max(1, round(share * len(names)))
    return [names[min(len(names) - 1, int((i + 0.5) * len(names) / count))] for i in range(count)]


def big_sizes(scale: float) -> dict:
    """``build_release`` sizes of the big release at ``scale`` (scale 1: about 4 GB distinct)."""
    return {"base_size": max(1024, int(BIG_BASE_BYTES * scale)),
            "shared_size": max(1024, int(BIG_RUNTIME_BYTES * scale)),
            "unique_size": max(1024, int(BIG_UNIQUE_BYTES * scale)),
            "unique_sizes": {name: max(1024, int(size * scale)) for name, size in BIG_LARGE_LAYERS.items()}}


def clone_storage(source: Path, target: Path) -> None:
    """Copy a registry's storage directory to ``target``, hard-linking the blobs' ``data`` files.

    The registry never writes into a blob's data file once it exists (the store is content-addressed;
    an upload of a blob it has is dropped), so a link is as good as a copy and costs nothing at 4 GB;
    everything else (tags' and layers' ``link`` files, which it rewrites) is copied.
    """
    def copy(src: str, dst: str) -> str:
        if os.path.basename(src) == "data" and f"{os.sep}blobs{os.sep}" in src:
            try:
                os.link(src, dst)
                return dst
            except OSError:
                pass  # another file system: copy
        return shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=copy, dirs_exist_ok=True)


def release_sizes(scale: float, images: int, platforms: int = 1) -> dict[str, int]:
    """Layer sizes giving about ``RELEASE_BYTES * scale`` distinct bytes for ``images`` images."""
    total = RELEASE_BYTES * scale
    unique = total * (1 - BASE_SHARE - 2 * RUNTIME_SHARE) / (images * platforms)
    return {"base_size": max(1024, int(total * BASE_SHARE)),
            "shared_size": max(1024, int(total * RUNTIME_SHARE)),
            "unique_size": max(1024, int(unique))}


@dataclass
class Blobs:
    """The blobs one release needs: ``{digest: size}`` of manifests and of everything else."""

    manifests: dict[str, int] = field(default_factory=dict)
    data: dict[str, int] = field(default_factory=dict)  # configs and layers
    owner: dict[str, str] = field(default_factory=dict)  # digest -> an image name whose repository has it

    @property
    def data_bytes(self) -> int:
        return sum(self.data.values())

    def minus(self, other: "Blobs") -> "Blobs":
        return Blobs({d: s for d, s in self.manifests.items() if d not in other.manifests},
                     {d: s for d, s in self.data.items() if d not in other.data}, self.owner)


def release_blobs(layout: Path, refs: dict[str, str]) -> Blobs:
    """Every distinct blob reachable from ``refs`` in the OCI layout."""
    blobs = Blobs()
    digests = layout_refs(layout)

    def walk(name: str, digest: str) -> None:
        path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
        blobs.manifests[digest] = path.stat().st_size
        manifest = json.loads(path.read_bytes())
        for child in manifest.get("manifests", []):
            walk(name, child["digest"])
        for descriptor in [manifest.get("config"), *manifest.get("layers", [])]:
            if descriptor:
                blobs.data[descriptor["digest"]] = descriptor["size"]
                blobs.owner.setdefault(descriptor["digest"], name)

    for name, ref in refs.items():
        walk(name, digests[ref])
    return blobs


@dataclass
class Case:
    """One measured situation: a release in a source, a target state, the tools that run."""

    scenario: str
    label: str
    source: Registry
    names: list[str]
    tag: str
    digests: dict[str, str]  # name -> manifest digest the target must end with
    blobs: Blobs  # what the floor pushes (the release's, or only the new ones)
    seed: Path | None = None  # registry storage to copy into each fresh target
    prep_tag: str | None = None  # what stateful tools copy (untimed) before the timed run
    description: str = ""
    poll_tree: bool = False
    delay_ms: float | None = None  # WAN: the relays' one-way delay in front of both registries
    bandwidth: float | None = None  # WAN: bytes per second of the link both relays share; None: uncapped
    floor: LatencyFloor | None = None  # WAN: the least the case can take (benchmarks.wan)
    wan_kind: str | None = None  # WAN: which case of WAN_KINDS it is
    duplex: str | None = None  # WAN with a cap: "full" (a budget each way) or "half" (one shared)
    loopback: str | None = None  # WAN: the label of the loopback case with the same data, if measured
    not_measured: dict[str, str] = field(default_factory=dict)  # tool -> why this case skips it


class ScenarioData:
    """Builds each scenario's releases into started source registries (once) and makes its cases."""

    def __init__(self, workdir: Path, *, scale: float, noop_counts: tuple[int, int] = NOOP_COUNTS,
                 wan_delays: Sequence[float] = WAN_DELAYS, wan_bandwidth: float | None = None,
                 wan_duplex: Sequence[str] = BOTH_DUPLEX) -> None:
        self.workdir = workdir
        self.scale = scale
        self.noop_counts = noop_counts
        self.wan_delays = tuple(wan_delays)
        self.wan_bandwidth = wan_bandwidth  # bytes per second
        self.wan_duplex = tuple(wan_duplex)  # the kinds of capped link, each a case
        self.registries: list[Registry] = []
        self.sources: dict[str, tuple[Registry, Path, dict]] = {}

    def _registry(self, path: Path) -> Registry:
        registry = Registry(path)
        self.registries.append(registry)
        return registry

    def _source(self, key: str, names: Sequence[str], *, sizes: dict[str, int], multiarch: bool = False
                ) -> tuple[Registry, Path]:
        """A started source registry holding release ``key`` at TAG (built and loaded once)."""
        if key not in self.sources:
            layout = self.workdir / "layouts" / key
            started = time.monotonic()
            refs = build_release(layout, names, TAG, multiarch=names if multiarch else (),
                                 compresslevel=0, **sizes)
            built = time.monotonic()
            source = self._registry(self.workdir / "sources" / key).start()
            load_release(layout, refs, source, REPO, TAG, workers=8)
            log(f"[{key}] built the layout ({len(names)} images, "
                f"{megabytes(release_blobs(layout, refs).data_bytes)}) in {built - started:.1f}s, "
                f"loaded it into the source {source.host} in {time.monotonic() - built:.1f}s")
            self.sources[key] = (source, layout, {TAG: refs})
        source, layout, _ = self.sources[key]
        return source, layout

    def _add_tag(self, key: str, names: Sequence[str], tag: str, *, sizes: dict[str, int],
                 changed: Sequence[str]) -> dict[str, str]:
        source, layout, releases = self.sources[key]
        if tag not in releases:
            releases[tag] = build_release(layout, names, tag, changed=changed, compresslevel=0, **sizes)
            load_release(layout, releases[tag], source, REPO, tag, workers=8)
        return releases[tag]

    def _seed(self, key: str) -> Path:
        """Registry storage holding exactly what source ``key`` holds now (a complete target).

        Cloned from the source's storage (the source is idle), once; each fresh target gets a clone
        (:func:`clone_storage`).
        """
        seed = self.workdir / "seeds" / key / "storage"
        if not seed.exists():
            clone_storage(self.sources[key][0].storage, seed)
        return seed

    def _this_month_seed(self, key: str = "arc") -> Path:
        """A complete target of this month's release (``key`` at TAG), taken before NEXT_TAG is loaded."""
        if NEXT_TAG in self.sources[key][2] and not (self.workdir / "seeds" / key).exists():
            raise RuntimeError("the seed of this month's release must be taken before the next one is loaded")
        return self._seed(key)

    def _digests(self, key: str, tag: str) -> dict[str, str]:
        _, layout, releases = self.sources[key]
        digests = layout_refs(layout)
        return {name: digests[ref] for name, ref in releases[tag].items()}

    def cases(self, scenario: str) -> list[Case]:
        names = arc_names()
        if scenario in ("cold", "cold-multiarch"):
            multi = scenario == "cold-multiarch"
            key = "arc-multiarch" if multi else "arc"
            sizes = release_sizes(self.scale, len(names), 2 if multi else 1)
            source, layout = self._source(key, names, sizes=sizes, multiarch=multi)
            refs = self.sources[key][2][TAG]
            what = "empty target" + (", every image linux/amd64 + linux/arm64" if multi else "")
            return [Case(scenario, scenario, source, names, TAG, self._digests(key, TAG),
                         release_blobs(layout, refs), description=what)]
        if scenario == "noop":
            all_names = noop_names(max(self.noop_counts))
            source, layout = self._source("noop", all_names, sizes=NOOP_SIZES)
            seed = self._seed("noop")
            digests = self._digests("noop", TAG)
            cases = []
            for count in self.noop_counts:
                subset = all_names[:count]
                cases.append(Case(scenario, f"noop-{count}", source, subset, TAG,
                                  {n: digests[n] for n in subset}, Blobs(), seed=seed, prep_tag=TAG,
                                  description="target already holds the release"))
            return cases
        if scenario == "incremental":
            sizes = release_sizes(self.scale, len(names))
            source, layout = self._source("arc", names, sizes=sizes)
            before = self.sources["arc"][2][TAG]
            seed = self._this_month_seed()
            changed = changed_names(names)
            after = self._add_tag("arc", names, NEXT_TAG, sizes=sizes, changed=changed)
            new = release_blobs(layout, after).minus(release_blobs(layout, before))
            return [Case(scenario, scenario, source, names, NEXT_TAG, self._digests("arc", NEXT_TAG), new,
                         seed=seed, prep_tag=TAG,
                         description=f"target holds {TAG}; {NEXT_TAG} changes the unique layer of "
                                     f"{len(changed)} of {len(names)} images ({', '.join(changed)}) "
                                     "and every config")]
        if scenario == "memory":
            name = ["arc-sqlmi"]
            layer = max(1024 * 1024, int(MEMORY_LAYER_BYTES * self.scale))
            sizes = {"unique_size": layer, "base_size": max(1024, int(4 * MB * self.scale)),
                     "shared_size": max(1024, int(2 * MB * self.scale))}
            source, layout = self._source("memory", name, sizes=sizes)
            refs = self.sources["memory"][2][TAG]
            return [Case(scenario, scenario, source, name, TAG, self._digests("memory", TAG),
                         release_blobs(layout, refs), poll_tree=True,
                         description=f"one image with a {megabytes(layer)} layer: peak RSS of the process tree")]
        if scenario == "wan":
            return self._wan_cases()
        if scenario == "big":
            return self._big_cases()
        raise ValueError(f"unknown scenario {scenario!r}")

    @staticmethod
    def _link_text(delay: float, bandwidth: float | None, duplex: str | None) -> str:
        far = f"the tool {delay:g} ms one way from both registries"
        if not bandwidth:
            return f"{far}, bandwidth uncapped"
        rate = f"{bandwidth / MB:g} MB/s"
        if duplex == "full":
            return f"{far}, through a {rate} full-duplex link ({rate} down and {rate} up at once)"
        return f"{far}, through a {rate} half-duplex link (down and up share {rate})"

    def _far(self, case: Case, kind: str, copies: int, delay: float, bandwidth: float | None,
             duplex: str | None, prefix: str) -> Case:
        """``case`` again with the tool ``delay`` ms from both registries, through a link capped at
        ``bandwidth`` (``duplex``) or uncapped."""
        floor = LatencyFloor.of(copies, delay, case.blobs.data_bytes, bandwidth, duplex or DUPLEX[0])
        return replace(case, scenario=prefix, label=wan_label(kind, delay, bandwidth, duplex, prefix),
                       delay_ms=delay, bandwidth=bandwidth, duplex=duplex if bandwidth else None, floor=floor,
                       wan_kind=kind, loopback=case.label if kind in ("cold", "incremental") else None,
                       not_measured=dict(NOT_MEASURED["wan"]),
                       description=f"{case.description}; {self._link_text(delay, bandwidth, duplex)}")

    def _wan_cases(self) -> list[Case]:
        """``cold``, a no-op and ``incremental`` of the Arc release at each of :attr:`wan_delays`, uncapped;
        with :attr:`wan_bandwidth`, :data:`WAN_CAPPED_KINDS` again at each delay through a link capped at
        it, one case per kind of link in :attr:`wan_duplex`.

        The same data as the loopback cases: the no-op's target starts as a copy of this month's
        release (the incremental case's seed), so every case has the same 17 images.
        """
        cold, = self.cases("cold")
        seed = self._this_month_seed()
        incremental, = self.cases("incremental")
        last_month = self._digests("arc", TAG)
        kinds = {
            "cold": (cold, len(cold.names)),
            "noop": (replace(cold, seed=seed, prep_tag=TAG, blobs=Blobs(), description="target holds the release"),
                     0),
            "incremental": (incremental, sum(incremental.digests[n] != last_month[n] for n in incremental.names)),
        }
        cases = []
        for delay in self.wan_delays:
            for kind in WAN_KINDS:
                case, copies = kinds[kind]
                cases.append(self._far(case, kind, copies, delay, None, None, "wan"))
            if self.wan_bandwidth:
                for duplex in self.wan_duplex:
                    for kind in WAN_CAPPED_KINDS:
                        case, copies = kinds[kind]
                        cases.append(self._far(case, kind, copies, delay, self.wan_bandwidth, duplex, "wan"))
        return cases

    def _big_cases(self) -> list[Case]:
        """The big release: ``big-cold`` and ``big-incremental`` on loopback, then both through a capped
        link :data:`BIG_DELAY_MS` from both registries, for each of :attr:`wan_duplex`."""
        names = arc_names()
        sizes = big_sizes(self.scale)
        source, layout = self._source("big", names, sizes=sizes)
        before = self.sources["big"][2][TAG]
        seed = self._this_month_seed("big")
        changed = changed_names(names)
        after = self._add_tag("big", names, NEXT_TAG, sizes=sizes, changed=changed)
        blobs = release_blobs(layout, before)
        largest = sorted(blobs.data.values(), reverse=True)
        over = [b for b in largest if b > 500 * MB * self.scale]
        cold = Case("big", "big-cold", source, names, TAG, self._digests("big", TAG), blobs, poll_tree=True,
                    not_measured=dict(BIG_NOT_MEASURED),
                    description=f"empty target; a release at real size: {len(over)} layers over "
                                f"{megabytes(500 * MB * self.scale)} (the largest {megabytes(largest[0])})")
        new = release_blobs(layout, after).minus(blobs)
        incremental = Case("big", "big-incremental", source, names, NEXT_TAG, self._digests("big", NEXT_TAG), new,
                           seed=seed, prep_tag=TAG, poll_tree=True, not_measured=dict(BIG_NOT_MEASURED),
                           description=f"target holds big {TAG}; {NEXT_TAG} changes the unique layer of "
                                       f"{len(changed)} of {len(names)} images ({', '.join(changed)}) "
                                       "and every config")
        last_month = self._digests("big", TAG)
        copies = {"cold": len(names), "incremental": sum(incremental.digests[n] != last_month[n] for n in names)}
        bandwidth = self.wan_bandwidth or BIG_BANDWIDTH
        cases = [cold, incremental]
        for duplex in self.wan_duplex:
            for kind, case in (("cold", cold), ("incremental", incremental)):
                far = self._far(case, kind, copies[kind], BIG_DELAY_MS, bandwidth, duplex, "big")
                cases.append(replace(far, not_measured={**NOT_MEASURED["wan"], **BIG_NOT_MEASURED}))
        return cases

    def describe(self, case: Case) -> dict:
        """The case as the report's Data table shows it."""
        return {
            "label": case.label, "images": len(case.names), "tag": case.tag,
            "bytes": case.blobs.data_bytes if case.blobs.data else self._release_bytes(case),
            "new_bytes": case.blobs.data_bytes, "description": case.description,
            "largest_blob": max(case.blobs.data.values(), default=0),
            "delay_ms": case.delay_ms, "bandwidth": case.bandwidth, "floor": case.floor, "wan_kind": case.wan_kind,
            "duplex": case.duplex, "loopback": case.loopback, "scenario": case.scenario,
        }

    def _release_bytes(self, case: Case) -> int:
        key = next(k for k, (s, _, _) in self.sources.items() if s is case.source)
        _, layout, releases = self.sources[key]
        refs = {n: r for n, r in releases[case.tag].items() if n in case.names}
        return release_blobs(layout, refs).data_bytes

    def close(self) -> None:
        """Stop the source registries."""
        for registry in self.registries:
            registry.stop()
        self.registries.clear()
