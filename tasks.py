"""arcmirror: mirror Azure Arc data services images into a private registry.

Run ``invoke --list`` for the tasks and ``invoke --help TASK`` for a task's options.
Settings come from the environment and a .env file (see .env.example); nothing prompts.
Exit codes: 0 all images done, 1 an image failed, 2 a configuration or usage error.
"""

from __future__ import annotations

import functools
import os
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path

from invoke import Collection, Exit
from invoke import task as invoke_task

from arcmirror.cli import EXIT_FAILED, EXIT_USAGE, in_ci, settings_from_options, usage_errors_exit_2

usage_errors_exit_2()

COMMON = {
    "env-file": "the .env file to read (default ./.env; MIRROR_ENV_FILE)",
    "tag": "the source release tag (SOURCE_DOCKER_TAG; unset: the newest release)",
    "target-tag": "the tag to write in the target (TARGET_DOCKER_TAG; default: the release tag)",
    "images": "comma-separated image names instead of the image set (MIRROR_IMAGES)",
    "platforms": "copy only these platforms of multi-platform images, e.g. linux/amd64 (MIRROR_PLATFORMS)",
    "concurrency": "parallel transfers (MIRROR_CONCURRENCY, default 4)",
    "report-dir": "where reports go (MIRROR_REPORT_DIR, default reports)",
    "plan": "the plan file to work from (default REPORT_DIR/plan.json; discovered first when missing)",
    "store": "the local OCI layout store (MIRROR_STORE, default .arcmirror/store)",
    "shard": "I/N: only the I-th of N shares of the plan's images, balanced by bytes (MIRROR_SHARD)",
    "dry-run": "say what would be copied and how many bytes; change nothing, write no report",
    "json": "print a machine-readable summary (JSON) on stdout instead of the text summary",
    "engine": "registry (default) or docker: go through the Docker engine at DOCKER_HOST (MIRROR_ENGINE)",
    "cleanup": "with --engine docker: remove the images this run pulled and tagged from the engine afterwards",
    "repair": "check every blob under a tag already in place and send again what was lost (MIRROR_REPAIR)",
    "discover": "set (default) or catalog: take the images from the source's _catalog (MIRROR_DISCOVER)",
}


def task(*args, **kwargs):
    """Invoke's ``@task``, for a task that a pipeline may cancel (SIGINT, then SIGTERM).

    On a signal the run stops starting images, abandons what is in flight without committing it,
    writes its reports (unfinished images are failed cases saying so), says it was cancelled, and
    the process exits with 130 (SIGINT) or 143 (SIGTERM); see arcmirror/cancel.py.
    """
    def decorate(body):
        @functools.wraps(body)
        def run(c, *a, **kw):
            from arcmirror import cancel

            cancel.install()
            try:
                body(c, *a, **kw)
            except Exit as exc:
                if not cancel.requested():
                    raise
                if exc.message:
                    _say(exc.message)
            except Exception:
                if not cancel.requested():
                    raise
            if cancel.requested():
                _say(f"arcmirror: cancelled by {cancel.signal_name()}, stopped {cancel.elapsed():.1f}s after it; "
                     "what was not done is a failed test case marked cancelled in the reports; run again to finish "
                     "(what was copied is not sent again)")
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(cancel.exit_code())  # threads still waiting on the network are not waited for

        return invoke_task(*args, **kwargs)(run)

    return decorate


def _help(*names: str, **extra: str) -> dict[str, str]:
    return {**{n: COMMON[n] for n in names}, **extra}


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _settings(env_file=None, tag=None, target_tag=None, images=None, platforms=None, concurrency=None,
              report_dir=None, store=None, discover=None, shard=None, engine=None, repair=None,
              require_target=True, check_credentials=True):
    from arcmirror import ci

    settings = settings_from_options(require_target=require_target, check_credentials=check_credentials, options={
        "MIRROR_ENV_FILE": env_file,
        "SOURCE_DOCKER_TAG": tag,
        "TARGET_DOCKER_TAG": target_tag,
        "MIRROR_IMAGES": images,
        "MIRROR_PLATFORMS": platforms,
        "MIRROR_CONCURRENCY": None if concurrency is None else str(concurrency),
        "MIRROR_REPORT_DIR": report_dir,
        "MIRROR_STORE": store,
        "MIRROR_DISCOVER": discover,
        "MIRROR_SHARD": shard,
        "MIRROR_ENGINE": engine,
        "MIRROR_REPAIR": "true" if repair else None,
    })
    ci.announce_secrets(settings)
    for warning in settings.warnings:
        _say(f"warning: {warning}")
    return settings


@contextmanager
def _failures_exit_1():
    """A registry or plan error outside any one image (e.g. the tag list cannot be read): say it, exit 1."""
    from arcmirror.config import ConfigError
    from arcmirror.registry.errors import RegistryError

    try:
        yield
    except ConfigError as exc:  # found once the image names were known (MIRROR_DISCOVER=catalog, a plan)
        raise Exit(exc.render(), code=EXIT_USAGE) from None
    except RegistryError as exc:
        raise Exit(f"arcmirror: {exc.message}" + (f"\nwhat to do: {exc.hint}" if exc.hint else ""),
                   code=EXIT_FAILED) from None


def _progress(total: int, total_bytes: int | None = None, quiet: bool = False):
    from arcmirror.copy import Progress
    from arcmirror.progress import make_progress

    if quiet:
        return nullcontext(Progress())
    return make_progress(total, total_bytes=total_bytes, ci=in_ci())


def _to_copy(plan) -> int:
    return sum(max(i.bytes - i.bytes_in_target, 0) for i in plan.ok_images)


def _finish(*runs, as_json: bool = False) -> None:
    """Print each run's summary (or JSON), annotate the pipeline log, and exit 1 if anything failed."""
    import json

    from arcmirror import ci

    for run in runs:
        if as_json:
            print(json.dumps({"step": run.step, "ok": run.ok, "dry_run": run.dry_run,
                              "report": str(run.junit) if run.junit else None, **run.extra}, indent=2))
        else:
            print(run.summary())
        ci.annotate(run.step, run.cases)
        if run.junit is not None:
            failed = sum(not c.ok and not c.skipped for c in run.cases)
            ci.publish_summary(run.step, run.cases, f"{len(run.cases)} images, {failed} failed",
                               run.junit.parent)
    code = max((run.exit_code for run in runs), default=0)
    if code:
        raise Exit(code=code)


def _engine_route(settings, cleanup=False, dry_run=False, deep=False) -> bool:
    """True for --engine docker; refuse the options that route cannot honour (exit 2)."""
    docker = settings.engine == "docker"
    if cleanup and not docker:
        raise Exit("--cleanup applies only with --engine docker", code=EXIT_USAGE)
    if docker and dry_run:
        raise Exit("--dry-run is not available with --engine docker (the engine cannot tell without pulling)",
                   code=EXIT_USAGE)
    if docker and deep:
        raise Exit("--deep is for the registry route; with --engine docker, verify checks config digests "
                   "and layer diff IDs", code=EXIT_USAGE)
    return docker


def _plan(settings, plan):
    from arcmirror.steps import load_plan

    return load_plan(settings, Path(plan) if plan else None, _say)


@task(help=_help("env-file", "tag", "target-tag", "images", "platforms", "concurrency", "report-dir", "discover"))
def discover(c, env_file=None, tag=None, target_tag=None, images=None, platforms=None, concurrency=None,
             report_dir=None, discover=None):
    """Resolve the release: its tag, its images, each image's digest, platforms and blobs, what the target has.

    With SOURCE_DOCKER_TAG unset (or latest-release) the newest release tag of the set's reference
    image is chosen (by version, then date). Writes reports/plan.json (every image pinned to its
    digest: later steps copy exactly that) and reports/discover.xml. Exit 1 when an image is missing.
    Reads SOURCE_DOCKER_*, TARGET_DOCKER_* (to see what the target has), MIRROR_IMAGES,
    MIRROR_IMAGE_SET, MIRROR_DISCOVER, MIRROR_PLATFORMS, MIRROR_REFERRERS, MIRROR_REFERRER_TYPES.
    """
    from arcmirror.steps import plan_summary, run_discover

    settings = _settings(env_file, tag, target_tag, images, platforms, concurrency, report_dir, discover=discover)
    with _failures_exit_1():
        plan, run = run_discover(settings, _say)
    print(plan_summary(plan, settings.plan_path))
    _finish(run)


@task(help=_help("env-file", "tag", "target-tag", "images", "platforms", "concurrency", "report-dir", "shard",
                 "dry-run", "json", "engine", "cleanup", "repair", "discover",
                 plan="copy the digests pinned by this plan file instead of resolving tags now"))
def mirror(c, env_file=None, tag=None, target_tag=None, images=None, platforms=None, concurrency=None,
           report_dir=None, plan=None, shard=None, dry_run=False, json=False, engine=None, cleanup=False,
           repair=False, discover=None):
    """Copy every image of the release from the source registry to the target, registry to registry.

    Reads SOURCE_DOCKER_* and TARGET_DOCKER_* (registry, repository, username, password, tag,
    insecure, ca_bundle) and MIRROR_* from the environment or the .env file. Digests are kept;
    blobs already in the target are not sent again. Writes reports/mirror.xml (JUnit, one test
    case per image) and reports/mirror.json. Exit 0: all mirrored; 1: an image failed; 2: bad settings.
    """
    from arcmirror.mirror import run_mirror
    from arcmirror.reports import arc_deployment_hint

    settings = _settings(env_file, tag, target_tag, images, platforms, concurrency, report_dir, shard=shard,
                         engine=engine, repair=repair, discover=discover)
    if _engine_route(settings, cleanup, dry_run):
        from arcmirror.engine import run_engine_mirror
        from arcmirror.steps import run_discover

        with _failures_exit_1():
            pinned = _plan(settings, plan) if plan or settings.shard else run_discover(settings, _say)[0]
            run = run_engine_mirror(settings, pinned, cleanup=cleanup, say=_say)
    else:
        with _failures_exit_1():
            pinned = _plan(settings, plan) if plan or settings.shard else None
            count = len(pinned.ok_images) if pinned else 0 if settings.discover == "catalog" else len(settings.images)
            _say(f"{'Dry run: ' if dry_run else ''}Mirroring {count or 'the catalog'} images: {settings.source.registry}/"
                 f"{settings.source.repository or '.'} -> {settings.target.registry}/"
                 f"{settings.target.repository or '.'}")
            with _progress(count, _to_copy(pinned) if pinned else None, quiet=dry_run) as progress:
                run = run_mirror(settings, progress, plan=pinned, say=_say, dry_run=dry_run)
    if run.ok and not dry_run and not json:
        print(arc_deployment_hint(settings.target.registry, settings.target.repository,
                                  run.extra["target_tag"], settings.target.username), file=sys.stderr)
    _finish(run, as_json=json)


@task(help=_help("env-file", "tag", "concurrency", "report-dir", "plan", "store", "shard", "engine", "cleanup"))
def pull(c, env_file=None, tag=None, concurrency=None, report_dir=None, plan=None, store=None, shard=None,
         engine=None, cleanup=False):
    """Copy the planned images, by digest, into the local OCI layout store (resumable; each blob stored once).

    Writes reports/pull.xml. Blobs already in the store are not fetched again.
    Reads SOURCE_DOCKER_*, MIRROR_STORE, MIRROR_CONCURRENCY, MIRROR_SHARD, MIRROR_ENGINE.
    """
    from arcmirror.steps import run_pull

    settings = _settings(env_file, tag, concurrency=concurrency, report_dir=report_dir, store=store, shard=shard,
                         engine=engine, require_target=False)
    docker = _engine_route(settings, cleanup)
    with _failures_exit_1():
        planned = _plan(settings, plan)
        if docker:
            from arcmirror.engine import run_engine_pull

            run = run_engine_pull(settings, planned, cleanup, say=_say)
        else:
            with _progress(len(planned.ok_images), _to_copy(planned)) as progress:
                run = run_pull(settings, planned, progress)
    _finish(run)


@task(name="tag", help=_help("env-file", "tag", "target-tag", "report-dir", "plan", "store", "engine"))
def tag_(c, env_file=None, tag=None, target_tag=None, report_dir=None, plan=None, store=None, engine=None):
    """Record the target reference of every stored image (TARGET_DOCKER_REGISTRY/REPOSITORY/NAME:TAG).

    The names go into the store's index.json (org.opencontainers.image.ref.name). Writes reports/tag.xml.
    Reads TARGET_DOCKER_REGISTRY, TARGET_DOCKER_REPOSITORY, TARGET_DOCKER_TAG, MIRROR_STORE.
    """
    from arcmirror.steps import run_tag

    settings = _settings(env_file, tag, target_tag, report_dir=report_dir, store=store, engine=engine)
    with _failures_exit_1():
        if _engine_route(settings):
            from arcmirror.engine import run_engine_tag

            run = run_engine_tag(settings, _plan(settings, plan), say=_say)
        else:
            run = run_tag(settings, _plan(settings, plan))
    _finish(run)


@task(help=_help("env-file", "tag", "target-tag", "concurrency", "report-dir", "plan", "store", "shard", "dry-run",
                 "engine", "cleanup"))
def push(c, env_file=None, tag=None, target_tag=None, concurrency=None, report_dir=None, plan=None, store=None,
         shard=None, dry_run=False, engine=None, cleanup=False):
    """Push the tagged images from the store to the target registry (skip, mount or stream each blob).

    Writes reports/push.xml and push.json.
    Reads TARGET_DOCKER_*, MIRROR_STORE, MIRROR_CONCURRENCY, MIRROR_SHARD, MIRROR_ENGINE.
    """
    from arcmirror.steps import run_push

    settings = _settings(env_file, tag, target_tag, concurrency=concurrency, report_dir=report_dir, store=store,
                         shard=shard, engine=engine)
    docker = _engine_route(settings, cleanup, dry_run)
    with _failures_exit_1():
        planned = _plan(settings, plan)
        if docker:
            from arcmirror.engine import run_engine_push

            run = run_engine_push(settings, planned, cleanup, say=_say)
        else:
            with _progress(len(planned.ok_images), _to_copy(planned), quiet=dry_run) as progress:
                run = run_push(settings, planned, progress, dry_run=dry_run)
    _finish(run)


@task(help=_help("env-file", "tag", "target-tag", "concurrency", "report-dir", "plan", "shard", "json", "engine",
                 deep="also download every blob from the target and re-hash it"))
def verify(c, env_file=None, tag=None, target_tag=None, concurrency=None, report_dir=None, plan=None, deep=False,
           shard=None, json=False, engine=None):
    """Check the target against the plan: each tag resolves to the planned digest, every manifest and blob exists.

    Writes reports/verify.xml (one test case per image; failures say what is missing or different).
    Exit 1 when any image fails. Reads TARGET_DOCKER_*, MIRROR_SHARD, MIRROR_ENGINE.
    """
    from arcmirror.verify import run_verify

    settings = _settings(env_file, tag, target_tag, concurrency=concurrency, report_dir=report_dir, shard=shard,
                         engine=engine)
    with _failures_exit_1():
        if _engine_route(settings, deep=deep):
            from arcmirror.engine import run_engine_verify

            run = run_engine_verify(settings, _plan(settings, plan), say=_say)
        else:
            run = run_verify(settings, _plan(settings, plan), deep=deep)
    _finish(run, as_json=json)


@task(help=_help("env-file", "report-dir"))
def gate(c, env_file=None, report_dir=None):
    """The release gate: pass only when every image of the plan has a passing verification.

    Reads every JUnit report under MIRROR_REPORT_DIR (sub-folders too, e.g. reports gathered from
    parallel jobs). Fails when a verification failed, an expected image has no passing verification,
    or a report is missing or unreadable. Exit 0 pass, 1 fail. Reads MIRROR_REPORT_DIR only.
    """
    from arcmirror.gate import gate as judge

    settings = _settings(env_file, report_dir=report_dir, require_target=False, check_credentials=False)
    result = judge(settings.report_dir)
    print(result.render())
    if not result.ok:
        raise Exit(code=result.exit_code)


@task(name="export", help=_help("env-file", "tag", "concurrency", "report-dir", "plan", "store",
                                archive="the tar file to write (required)",
                                since="a previous release's plan.json: leave out the blobs its archive carried"))
def export_(c, archive=None, since=None, env_file=None, tag=None, concurrency=None, report_dir=None, plan=None,
            store=None):
    """Write the planned images (pulled into the store if needed) as one OCI layout in a tar archive.

    For sites where no machine sees both registries: carry the archive across, then 'invoke import'.
    The archive holds a contents manifest with every entry's size and sha256.
    Reads SOURCE_DOCKER_*, MIRROR_IMAGES, MIRROR_IMAGE_SET, MIRROR_STORE (no target needed).
    """
    from arcmirror.steps import run_export

    if not archive:
        raise Exit("export needs --archive FILE", code=EXIT_USAGE)
    settings = _settings(env_file, tag, concurrency=concurrency, report_dir=report_dir, store=store,
                         require_target=False)
    with _failures_exit_1():
        planned = _plan(settings, plan)
        with _progress(len(planned.ok_images), _to_copy(planned)) as progress:
            run, result = run_export(settings, planned, Path(archive), Path(since) if since else None, progress)
    if result:
        _say(f"Wrote {result.path}: {result.images} images, {result.blobs} files"
             + (f", {result.omitted} blobs left out (carried by the earlier archive)" if since else ""))
    _finish(run)


@task(name="import", help=_help("env-file", "target-tag", "concurrency", "report-dir", "dry-run",
                                archive="the tar file written by 'invoke export' (required)",
                                deep="verify by re-hashing every blob in the target"))
def import_(c, archive=None, env_file=None, target_tag=None, concurrency=None, report_dir=None, deep=False,
            dry_run=False):
    """On the disconnected side: check an archive's checksums, push its images to the target, verify them.

    A truncated, altered or unsafe archive is refused before anything is pushed. Writes
    reports/import.xml and reports/verify.xml. Reads TARGET_DOCKER_* only.
    """
    from arcmirror.steps import run_import

    if not archive:
        raise Exit("import needs --archive FILE", code=EXIT_USAGE)
    settings = _settings(env_file, target_tag=target_tag, concurrency=concurrency, report_dir=report_dir)
    with _failures_exit_1():
        with _progress(0, quiet=dry_run) as progress:
            runs = run_import(settings, Path(archive), progress, deep=deep, dry_run=dry_run)
    _finish(*runs)


@invoke_task(help={"report-dir": "where the demo's reports go (default reports/demo)",
            "keep": "keep the demo's registries' files (printed at the end)"})
def demo(c, report_dir="reports/demo", keep=False):
    """Run the embedded demo end to end: two local registries, a synthetic Arc release, a mirror.

    Starts two CNCF distribution registries on loopback (the source anonymous like MCR, the target
    with a login), loads a small synthetic release of the 17 Arc images into the source with skopeo,
    mirrors it, shows the summary and the report, then mirrors again to show a no-op rerun.
    """
    from arcmirror.demo import run_demo

    code = run_demo(Path(report_dir).resolve(), keep=keep)
    if code:
        raise Exit(code=code)


@invoke_task(help={"scale": "data size factor (1 = ~400 MB of distinct blobs; a 1 GB layer in the memory case)",
            "runs": "runs per figure; the median is reported (default 3)",
            "only": "comma-separated tools: floor,floor-relay,arcmirror,pull-push,skopeo-copy,skopeo-sync,docker",
            "scenarios": "comma-separated: cold,cold-multiarch,noop,incremental,memory",
            "output": "the Markdown report (default docs/benchmarks.md; '-' for none)",
            "workdir": "keep layouts, registries and the engine here (default: a temporary folder)",
            "noop-images": "image counts of the two no-op cases (default 16,64)"})
def bench(c, scale=1.0, runs=3, only=None, scenarios=None, output=None, workdir=None, noop_images=None):
    """Time arcmirror against skopeo, docker and the target's floor on a synthetic Arc release.

    Real registries on loopback, the same data for every tool, each run into a fresh target; the
    medians go to docs/benchmarks.md with the machine's description. See benchmarks/README.md.
    """
    from benchmarks.bench import main

    argv = ["--scale", str(scale), "--runs", str(runs)]
    for flag, value in (("--only", only), ("--scenarios", scenarios), ("--output", output),
                        ("--workdir", workdir), ("--noop-images", noop_images)):
        if value:
            argv += [flag, value]
    if code := main(argv):
        raise Exit(code=code)


@invoke_task(help={"k": "only tests matching this pytest -k expression", "x": "stop at the first failure"})
def test(c, k=None, x=False):
    """Run the whole test suite (starts its own registries on loopback; run scripts/bootstrap first)."""
    import subprocess

    args = [sys.executable, "-m", "pytest", "-q", "-ra", "tests"]
    if k:
        args += ["-k", k]
    if x:
        args.append("-x")
    code = subprocess.call(args)
    if code:
        raise Exit(code=code if code != 5 else EXIT_USAGE)


ns = Collection(discover, mirror, pull, tag_, push, verify, gate, export_, import_, demo, bench, test)
