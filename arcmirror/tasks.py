"""arcmirror's tasks: mirror Azure Arc data services images into a private registry.

``arcmirror --list`` (or ``invoke --list`` in a checkout) shows them; ``arcmirror --help TASK`` a
task's options. Settings come from the environment and a .env file in the current folder (see
.env.example); nothing prompts. Exit codes: 0 all images done, 1 an image failed, 2 a configuration
or usage error, 130 / 143 cancelled by SIGINT / SIGTERM (the reports are written).

Each task reads as parse -> run -> report; the shared parts are in arcmirror/cli.py, the runs in
arcmirror/runs/. demo, bench, test and build work in a checkout of arcmirror (they use its test bed,
benchmarks, tests and pyproject.toml).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from invoke import Collection, Exit
from invoke import task as plain_task

from . import cli
from .cli import (
    EXIT_USAGE,
    checkout,
    failures_exit_1,
    finish,
    helps,
    say,
    settings_from_options,
    task,
)

cli.usage_errors_exit_2()

PLAN = "the plan file to work from (default REPORT_DIR/plan.json; discovered first when missing)"
DRY_RUN = "say what would be copied and how many bytes; change nothing, write no report"
JSON = "print a machine-readable summary (JSON) on stdout instead of the text summary"
CLEANUP = "with --engine docker: remove the images this run pulled and tagged from the engine afterwards"


@task(help=helps("env-file", "tag", "target-tag", "images", "platforms", "concurrency", "report-dir", "discover",
                 "cosign-keys"))
def discover(c, env_file=None, tag=None, target_tag=None, images=None, platforms=None, concurrency=None,
             report_dir=None, discover=None, cosign_keys=None):
    """Resolve the release: its tag, its images, each image's digest, platforms and blobs, what the target has.

    With SOURCE_DOCKER_TAG unset (or latest-release) the newest release tag of the set's reference
    image is chosen (by version, then date). Writes reports/plan.json (every image pinned to its
    digest: later steps copy exactly that) and reports/discover.xml. Exit 1 when an image is missing.
    Each image's case says which Notary and cosign signatures it carries and who signed (as claimed).
    Reads SOURCE_DOCKER_*, TARGET_DOCKER_* (to see what the target has), MIRROR_IMAGES,
    MIRROR_IMAGE_SET, MIRROR_DISCOVER, MIRROR_PLATFORMS, MIRROR_REFERRERS, MIRROR_REFERRER_TYPES,
    MIRROR_COSIGN_KEYS.
    """
    from .runs.discover import plan_summary, run_discover

    settings = settings_from_options(env_file=env_file, tag=tag, target_tag=target_tag, images=images,
                                     platforms=platforms, concurrency=concurrency, report_dir=report_dir,
                                     discover=discover, cosign_keys=cosign_keys)
    with failures_exit_1():
        plan, run = run_discover(settings, say)
    print(plan_summary(plan, settings.plan_path))
    finish(run)


@task(help=helps("env-file", "tag", "target-tag", "images", "platforms", "concurrency", "report-dir", "shard",
                 "engine", "repair", "discover", "trust-dir", "cosign-keys", plan="copy the digests pinned by this "
                 "plan file instead of resolving tags now", dry_run=DRY_RUN, json=JSON, cleanup=CLEANUP))
def mirror(c, env_file=None, tag=None, target_tag=None, images=None, platforms=None, concurrency=None,
           report_dir=None, plan=None, shard=None, dry_run=False, json=False, engine=None, cleanup=False,
           repair=False, discover=None, trust_dir=None, cosign_keys=None):
    """Copy every image of the release from the source registry to the target, registry to registry.

    Reads SOURCE_DOCKER_* and TARGET_DOCKER_* (registry, repository, username, password, tag,
    insecure, ca_bundle) and MIRROR_* from the environment or the .env file. Digests are kept;
    blobs already in the target are not sent again. Writes reports/mirror.xml (JUnit, one test
    case per image) and reports/mirror.json. With MIRROR_TRUST_DIR (or MIRROR_COSIGN_KEYS) every image's
    signatures are verified at the source first: an image that fails is not copied.
    Exit 0: all mirrored; 1: an image failed; 2: bad settings.
    """
    from .runs.mirror import arc_deployment_hint

    settings = settings_from_options(env_file=env_file, tag=tag, target_tag=target_tag, images=images,
                                     platforms=platforms, concurrency=concurrency, report_dir=report_dir,
                                     shard=shard, engine=engine, repair=repair, discover=discover,
                                     trust_dir=trust_dir, cosign_keys=cosign_keys)
    route = cli.route(settings, cleanup=cleanup, dry_run=dry_run)
    with failures_exit_1():
        run = route.mirror(settings, cli.plan(settings, plan) if plan or settings.shard else None)
    if run.ok and not dry_run and not json:
        say(arc_deployment_hint(settings.target.registry, settings.target.repository, run.extra["target_tag"],
                                settings.target.username))
    finish(run, as_json=json)


@task(help=helps("env-file", "tag", "concurrency", "report-dir", "store", "shard", "engine", "trust-dir",
                 "cosign-keys", plan=PLAN, cleanup=CLEANUP))
def pull(c, env_file=None, tag=None, concurrency=None, report_dir=None, plan=None, store=None, shard=None,
         engine=None, cleanup=False, trust_dir=None, cosign_keys=None):
    """Copy the planned images, by digest, into the local OCI layout store (resumable; each blob stored once).

    Writes reports/pull.xml. Blobs already in the store are not fetched again.
    With MIRROR_TRUST_DIR (or MIRROR_COSIGN_KEYS) signatures are verified first: an image that fails is not stored.
    Reads SOURCE_DOCKER_*, MIRROR_STORE, MIRROR_CONCURRENCY, MIRROR_SHARD, MIRROR_ENGINE, MIRROR_TRUST_DIR.
    """
    settings = settings_from_options(env_file=env_file, tag=tag, concurrency=concurrency, report_dir=report_dir,
                                     store=store, shard=shard, engine=engine, require_target=False,
                                     trust_dir=trust_dir, cosign_keys=cosign_keys)
    route = cli.route(settings, cleanup=cleanup)
    with failures_exit_1():
        run = route.pull(settings, cli.plan(settings, plan))
    finish(run)


@task(name="tag", help=helps("env-file", "tag", "target-tag", "report-dir", "store", "engine", plan=PLAN))
def tag_(c, env_file=None, tag=None, target_tag=None, report_dir=None, plan=None, store=None, engine=None):
    """Record the target reference of every stored image (TARGET_DOCKER_REGISTRY/REPOSITORY/NAME:TAG).

    The names go into the store's index.json (org.opencontainers.image.ref.name). Writes reports/tag.xml.
    Reads TARGET_DOCKER_REGISTRY, TARGET_DOCKER_REPOSITORY, TARGET_DOCKER_TAG, MIRROR_STORE.
    """
    settings = settings_from_options(env_file=env_file, tag=tag, target_tag=target_tag, report_dir=report_dir,
                                     store=store, engine=engine)
    route = cli.route(settings)
    with failures_exit_1():
        run = route.tag(settings, cli.plan(settings, plan))
    finish(run)


@task(help=helps("env-file", "tag", "target-tag", "concurrency", "report-dir", "store", "shard", "engine",
                 plan=PLAN, dry_run=DRY_RUN, cleanup=CLEANUP))
def push(c, env_file=None, tag=None, target_tag=None, concurrency=None, report_dir=None, plan=None, store=None,
         shard=None, dry_run=False, engine=None, cleanup=False):
    """Push the tagged images from the store to the target registry (skip, mount or stream each blob).

    Writes reports/push.xml and push.json.
    Reads TARGET_DOCKER_*, MIRROR_STORE, MIRROR_CONCURRENCY, MIRROR_SHARD, MIRROR_ENGINE.
    """
    settings = settings_from_options(env_file=env_file, tag=tag, target_tag=target_tag, concurrency=concurrency,
                                     report_dir=report_dir, store=store, shard=shard, engine=engine)
    route = cli.route(settings, cleanup=cleanup, dry_run=dry_run)
    with failures_exit_1():
        run = route.push(settings, cli.plan(settings, plan))
    finish(run)


@task(help=helps("env-file", "tag", "target-tag", "concurrency", "report-dir", "shard", "engine", "trust-dir",
                 "cosign-keys", plan=PLAN, json=JSON, deep="also download every blob from the target and re-hash it"))
def verify(c, env_file=None, tag=None, target_tag=None, concurrency=None, report_dir=None, plan=None, deep=False,
           shard=None, json=False, engine=None, trust_dir=None, cosign_keys=None):
    """Check the target against the plan: each tag resolves to the planned digest, every manifest and blob exists.

    Writes reports/verify.xml (one test case per image; failures say what is missing or different).
    With MIRROR_TRUST_DIR (or MIRROR_COSIGN_KEYS) each image's signatures are verified in the target too.
    Exit 1 when any image fails. Reads TARGET_DOCKER_*, MIRROR_SHARD, MIRROR_ENGINE, MIRROR_TRUST_DIR.
    """
    settings = settings_from_options(env_file=env_file, tag=tag, target_tag=target_tag, concurrency=concurrency,
                                     report_dir=report_dir, shard=shard, engine=engine, trust_dir=trust_dir,
                                     cosign_keys=cosign_keys)
    route = cli.route(settings, deep=deep)
    with failures_exit_1():
        run = route.verify(settings, cli.plan(settings, plan))
    finish(run, as_json=json)


@task(help=helps("env-file", "report-dir"))
def gate(c, env_file=None, report_dir=None):
    """The release gate: pass only when every image of the plan has a passing verification.

    Reads every JUnit report under MIRROR_REPORT_DIR (sub-folders too, e.g. reports gathered from
    parallel jobs). Fails when a verification failed, an expected image has no passing verification,
    or a report is missing or unreadable. Exit 0 pass, 1 fail. Reads MIRROR_REPORT_DIR only.
    """
    from .runs.gate import gate as judge

    settings = settings_from_options(env_file=env_file, report_dir=report_dir, require_target=False,
                                     check_credentials=False)
    result = judge(settings.report_dir)
    print(result.render())
    if not result.ok:
        raise Exit(code=result.exit_code)


@task(name="export", help=helps("env-file", "tag", "concurrency", "report-dir", "store", "trust-dir", "cosign-keys",
                                plan=PLAN,
                                archive="the tar file to write (required)",
                                since="a previous release's plan.json: leave out the blobs its archive carried",
                                with_tool="put arcmirror.pyz beside the archive (the one running, or dist/'s from "
                                          "'invoke build'): one transfer carries both"))
def export_(c, archive=None, since=None, env_file=None, tag=None, concurrency=None, report_dir=None, plan=None,
            store=None, with_tool=False, trust_dir=None, cosign_keys=None):
    """Write the planned images (pulled into the store if needed) as one OCI layout in a tar archive.

    For sites where no machine sees both registries: carry the archive across (with --with-tool,
    arcmirror.pyz beside it), then 'python3 arcmirror.pyz import --archive FILE' there.
    The archive holds a contents manifest with every entry's size and sha256.
    With MIRROR_TRUST_DIR the images are verified at the source as they are pulled.
    Reads SOURCE_DOCKER_*, MIRROR_IMAGES, MIRROR_IMAGE_SET, MIRROR_STORE, MIRROR_TRUST_DIR (no target needed).
    """
    from .runs.airgap import run_export
    from .runs.build import BuildError, carried_tool

    if not archive:
        raise Exit("export needs --archive FILE", code=EXIT_USAGE)
    tool = None
    if with_tool:
        try:
            tool = carried_tool(checkout())
        except BuildError as exc:
            raise Exit(f"{exc.message}\nwhat to do: {exc.hint}", code=EXIT_USAGE) from None
    settings = settings_from_options(env_file=env_file, tag=tag, concurrency=concurrency, report_dir=report_dir,
                                     store=store, require_target=False, trust_dir=trust_dir, cosign_keys=cosign_keys)
    with failures_exit_1():
        planned = cli.plan(settings, plan)
        with cli.progress(len(planned.ok_images), planned.bytes_to_copy) as progress:
            run, result = run_export(settings, planned, Path(archive), Path(since) if since else None, progress)
    if result:
        say(f"Wrote {result.path}: {result.images} images, {result.blobs} files"
            + (f", {result.omitted} blobs left out (carried by the earlier archive)" if since else ""))
        if tool is not None:
            from .runs.build import PYZ, sha256_file

            beside = result.path.parent / PYZ
            if tool.resolve() != beside.resolve():
                shutil.copy2(tool, beside)
            say(f"Wrote {beside} (sha256 {sha256_file(beside)}): on the other side, "
                f"python3 {PYZ} import --archive {result.path.name}")
    finish(run)


@task(name="import", help=helps("env-file", "target-tag", "concurrency", "report-dir", "trust-dir", "cosign-keys",
                                dry_run=DRY_RUN, archive="the tar file written by 'invoke export' (required)",
                                deep="verify by re-hashing every blob in the target"))
def import_(c, archive=None, env_file=None, target_tag=None, concurrency=None, report_dir=None, deep=False,
            dry_run=False, trust_dir=None, cosign_keys=None):
    """On the disconnected side: check an archive's checksums, push its images to the target, verify them.

    A truncated, altered or unsafe archive is refused before anything is pushed. Writes
    reports/import.xml and reports/verify.xml. With MIRROR_TRUST_DIR (this side's own trust folder) every image of
    the archive is verified before any is pushed: an altered archive fails here. Reads TARGET_DOCKER_* and
    MIRROR_TRUST_DIR / MIRROR_COSIGN_KEYS only.
    """
    from .runs.airgap import run_import

    if not archive:
        raise Exit("import needs --archive FILE", code=EXIT_USAGE)
    settings = settings_from_options(env_file=env_file, target_tag=target_tag, concurrency=concurrency,
                                     report_dir=report_dir, trust_dir=trust_dir, cosign_keys=cosign_keys)
    with failures_exit_1():
        with cli.progress(0, quiet=dry_run) as progress:
            runs = run_import(settings, Path(archive), progress, deep=deep, dry_run=dry_run)
    finish(*runs)


@plain_task(help={"report-dir": "where the demo's reports go (default reports/demo)",
                  "keep": "keep the demo's registries' files (printed at the end)"})
def demo(c, report_dir="reports/demo", keep=False):
    """Run the embedded demo end to end: two local registries, a synthetic Arc release, a mirror.

    Starts two CNCF distribution registries on loopback (the source anonymous like MCR, the target
    with a login), loads a small synthetic release of the 17 Arc images into the source with skopeo,
    mirrors it, shows the summary and the report, then mirrors again to show a no-op rerun.
    """
    if checkout() is None:
        raise Exit("the demo runs in a checkout of arcmirror (it uses its test bed, docker-registry and skopeo): "
                   "git clone it, then ./scripts/bootstrap && .venv/bin/invoke demo", code=EXIT_USAGE)
    from .runs.demo import run_demo

    code = run_demo(Path(report_dir).resolve(), keep=keep)
    if code:
        raise Exit(code=code)


@plain_task(auto_shortflags=False, help={"scale": "data size factor (1 = ~400 MB of distinct blobs; a 1 GB layer in the memory case)",
                  "runs": "runs per figure; the median is reported (default 3)",
                  "only": "comma-separated tools: floor,floor-relay,arcmirror,arcmirror-baseline,pull-push,"
                          "skopeo-copy,skopeo-sync,docker",
                  "scenarios": "comma-separated: cold,cold-multiarch,noop,incremental,memory,wan,big (default all "
                               "but big: a 4 GB release, about 22 min a run)",
                  "output": "the Markdown report (default docs/benchmarks.md; '-' for none)",
                  "workdir": "keep layouts, registries and the engine here (default: a temporary folder)",
                  "noop-images": "image counts of the two no-op cases (default 16,64)",
                  "baseline": "another checkout of arcmirror (a git worktree of an older commit), timed as "
                              "arcmirror-baseline on the same data in the same run",
                  "wan-delays": "the wan scenario's one-way delays in ms, a case each (default 10,25)",
                  "wan-bandwidth": "a bandwidth cap in MB/s shared by the wan scenario's relays (default none)",
                  "wan-duplex": "the capped link's kind, a case each: full, half or both (default both)"})
def bench(c, scale=1.0, runs=3, only=None, scenarios=None, output=None, workdir=None, noop_images=None,
          baseline=None, wan_delays=None, wan_bandwidth=None, wan_duplex=None):
    """Time arcmirror against skopeo, docker and the target's floor on a synthetic Arc release.

    Real registries on loopback (and behind latency relays, in the wan scenario), the same data for
    every tool, each run into a fresh target; the medians go to docs/benchmarks.md with the machine's
    description. See benchmarks/README.md.
    """
    root = checkout()
    if root is None:
        raise Exit("the benchmark runs in a checkout of arcmirror (benchmarks/): git clone it, then "
                   "./scripts/bootstrap && .venv/bin/invoke bench", code=EXIT_USAGE)
    sys.path.insert(0, str(root))
    from benchmarks.bench import main

    argv = ["--scale", str(scale), "--runs", str(runs)]
    for flag, value in (("--only", only), ("--scenarios", scenarios), ("--output", output),
                        ("--workdir", workdir), ("--noop-images", noop_images), ("--baseline", baseline),
                        ("--wan-delays", wan_delays), ("--wan-bandwidth", wan_bandwidth),
                        ("--wan-duplex", wan_duplex)):
        if value:
            argv += [flag, str(value)]
    if code := main(argv):
        raise Exit(code=code)


@plain_task(help={"k": "only tests matching this pytest -k expression", "x": "stop at the first failure"})
def test(c, k=None, x=False):
    """Run the whole test suite (starts its own registries on loopback; run scripts/bootstrap first)."""
    import subprocess

    root = checkout()
    if root is None:
        raise Exit("the test suite is in a checkout of arcmirror (tests/): git clone it, then "
                   "./scripts/bootstrap && .venv/bin/invoke test", code=EXIT_USAGE)
    args = [sys.executable, "-m", "pytest", "-q", "-ra", str(root / "tests")]
    if k:
        args += ["-k", k]
    if x:
        args.append("-x")
    code = subprocess.call(args, cwd=root)
    if code:
        raise Exit(code=code if code != 5 else EXIT_USAGE)


@plain_task(help={"dist": "where to write them (default dist/ of the checkout; dist/PLATFORM/ for another platform)",
                  "platform": "the machine arcmirror.pyz and the wheelhouse are for: x86_64 (default) or aarch64"})
def build(c, dist=None, platform=None):
    """Build what carries arcmirror: dist/arcmirror.pyz (one file), the wheel, a wheelhouse, for one platform.

    arcmirror.pyz and the wheelhouse run on Linux x86_64 (glibc 2.17 or newer) with CPython 3.9 to 3.13,
    or, with --platform aarch64, on 64-bit Arm Linux (into dist/aarch64/). The wheel with PyPA's build,
    the wheelhouse with pip download of requirements.txt's wheels for that platform and every one of those
    Pythons (for pip install --no-index --find-links dist/wheelhouse arcmirror), and arcmirror.pyz with
    shiv from that wheelhouse only. Needs the development tools of requirements-dev.txt and pip's package index.
    """
    from .runs.build import DEFAULT_PLATFORM, PLATFORMS, BuildError
    from .runs.build import build as make

    root = checkout()
    if root is None:
        raise Exit("build runs in a checkout of arcmirror (pyproject.toml): git clone it, then "
                   "./scripts/bootstrap && .venv/bin/invoke build", code=EXIT_USAGE)
    platform = platform or DEFAULT_PLATFORM
    if platform not in PLATFORMS:
        raise Exit(f"arcmirror: no build for the platform {platform!r}; --platform is one of: "
                   f"{', '.join(PLATFORMS)}", code=EXIT_USAGE)
    default = root / "dist" if platform == DEFAULT_PLATFORM else root / "dist" / platform
    try:
        built = make(root, Path(dist).resolve() if dist else default, say, platform)
    except BuildError as exc:
        raise Exit(f"arcmirror: {exc.message}\nwhat to do: {exc.hint}", code=cli.EXIT_FAILED) from None
    print(built.describe())


ns = Collection(discover, mirror, pull, tag_, push, verify, gate, export_, import_, demo, bench, test, build)
