"""arcmirror: mirror Azure Arc data services images into a private registry.

Run ``invoke --list`` for the tasks and ``invoke --help TASK`` for a task's options.
Settings come from the environment and a .env file (see .env.example); nothing prompts.
Exit codes: 0 all images done, 1 an image failed, 2 a configuration or usage error.
"""

from __future__ import annotations

import sys

from invoke import Exit, task

from arcmirror.cli import EXIT_USAGE, in_ci, settings_from_options, usage_errors_exit_2

usage_errors_exit_2()

COMMON_HELP = {
    "env-file": "the .env file to read (default ./.env; MIRROR_ENV_FILE)",
    "tag": "the source release tag (SOURCE_DOCKER_TAG)",
    "target-tag": "the tag to write in the target (TARGET_DOCKER_TAG; default: the source tag)",
    "images": "comma-separated image names instead of the image set (MIRROR_IMAGES)",
    "platforms": "copy only these platforms of multi-platform images, e.g. linux/amd64 (MIRROR_PLATFORMS)",
    "concurrency": "parallel transfers (MIRROR_CONCURRENCY, default 4)",
    "report-dir": "where reports go (MIRROR_REPORT_DIR, default reports)",
}


def _options(env_file=None, tag=None, target_tag=None, images=None, platforms=None, concurrency=None,
             report_dir=None) -> dict[str, str | None]:
    return {
        "MIRROR_ENV_FILE": env_file,
        "SOURCE_DOCKER_TAG": tag,
        "TARGET_DOCKER_TAG": target_tag,
        "MIRROR_IMAGES": images,
        "MIRROR_PLATFORMS": platforms,
        "MIRROR_CONCURRENCY": None if concurrency is None else str(concurrency),
        "MIRROR_REPORT_DIR": report_dir,
    }


@task(help=COMMON_HELP)
def mirror(c, env_file=None, tag=None, target_tag=None, images=None, platforms=None, concurrency=None,
           report_dir=None):
    """Copy every image of the release from the source registry to the target, registry to registry.

    Reads SOURCE_DOCKER_* and TARGET_DOCKER_* (registry, repository, username, password, tag,
    insecure, ca_bundle) and MIRROR_* from the environment or the .env file. Digests are kept;
    blobs already in the target are not sent again. Writes reports/mirror.xml (JUnit, one test
    case per image) and reports/mirror.json. Exit 0: all mirrored; 1: an image failed; 2: bad settings.
    """
    from arcmirror.mirror import run_mirror
    from arcmirror.progress import LineProgress
    from arcmirror.reports import summary

    settings = settings_from_options(_options(env_file, tag, target_tag, images, platforms, concurrency, report_dir))
    print(f"Mirroring {len(settings.images)} images: {settings.source.registry}/{settings.source.repository or '.'}"
          f":{settings.source.tag} -> {settings.target.registry}/{settings.target.repository or '.'}"
          f":{settings.target.tag}", file=sys.stderr)
    run = run_mirror(settings, LineProgress(len(settings.images), heartbeat=30.0 if in_ci() else 10.0))
    print(summary(run.results, run.elapsed, run.junit))
    if not run.ok:
        raise Exit(code=run.exit_code)


@task(help={"report-dir": "where the demo's reports go (default reports/demo)",
            "keep": "keep the demo's registries' files (printed at the end)"})
def demo(c, report_dir="reports/demo", keep=False):
    """Run the embedded demo end to end: two local registries, a synthetic Arc release, a mirror.

    Starts two CNCF distribution registries on loopback (the source anonymous like MCR, the target
    with a login), loads a small synthetic release of the 17 Arc images into the source with skopeo,
    mirrors it, shows the summary and the report, then mirrors again to show a no-op rerun.
    """
    from pathlib import Path

    from arcmirror.demo import run_demo

    code = run_demo(Path(report_dir).resolve(), keep=keep)
    if code:
        raise Exit(code=code)


@task(help={"k": "only tests matching this pytest -k expression", "x": "stop at the first failure"})
def test(c, k=None, x=False):
    """Run the whole test suite (starts its own registries on loopback; needs scripts/bootstrap first)."""
    args = [sys.executable, "-m", "pytest", "-q", "-ra", "tests"]
    if k:
        args += ["-k", k]
    if x:
        args.append("-x")
    import subprocess

    code = subprocess.call(args)
    if code:
        raise Exit(code=code if code != 5 else EXIT_USAGE)
