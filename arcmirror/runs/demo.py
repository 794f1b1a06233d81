"""The embedded demo: two local registries, a synthetic Arc-like release, one mirror run.

Uses the test bed (real CNCF distribution registries, images loaded with skopeo) so the demo shows
exactly what a user would see against their own registries.
"""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from testbed.images import build_release
from testbed.registry import Registry
from testbed.skopeo import load_release

from ..settings.imageset import load_image_set
from ..settings.load import load_settings
from ..settings.variables import DEFAULT_IMAGE_SET
from .mirror import arc_deployment_hint, run_mirror
from .progress import LineProgress

DEMO_TAG = "v1.41.0_2025-09-09"


def run_demo(report_dir: Path, out: TextIO = sys.stdout, keep: bool = False) -> int:
    """Run the demo; returns the mirror's exit code."""
    names = load_image_set(DEFAULT_IMAGE_SET).images
    work = Path(tempfile.mkdtemp(prefix="arcmirror-demo-"))
    password = secrets.token_urlsafe(18)
    say = lambda text: print(text, file=out, flush=True)  # noqa: E731
    try:
        say(f"1. Building a synthetic Arc release: {len(names)} images, tag {DEMO_TAG} "
            "(shared base layer, shared runtime layers, one unique layer each; arc-sqlmi multi-platform)")
        refs = build_release(work / "layout", names, DEMO_TAG, multiarch=("arc-sqlmi",),
                             unique_size=512 * 1024, base_size=2 * 1024 * 1024, shared_size=1024 * 1024)
        with Registry(work / "source") as source, \
                Registry(work / "target", htpasswd={"arc-mirror": password}) as target:
            say(f"2. Started two CNCF distribution registries: source {source.host} (anonymous, like MCR), "
                f"target {target.host} (Basic auth)")
            load_release(work / "layout", refs, source, "arcdata", DEMO_TAG)
            say(f"3. Loaded the release into the source with skopeo: {source.host}/arcdata/<image>:{DEMO_TAG}")
            environ = {
                "SOURCE_DOCKER_REGISTRY": source.host, "SOURCE_DOCKER_INSECURE": "true",
                "SOURCE_DOCKER_REPOSITORY": "arcdata", "SOURCE_DOCKER_TAG": DEMO_TAG,
                "TARGET_DOCKER_REGISTRY": target.host, "TARGET_DOCKER_INSECURE": "true",
                "TARGET_DOCKER_REPOSITORY": "private/arcdata",
                "TARGET_DOCKER_USERNAME": "arc-mirror", "TARGET_DOCKER_PASSWORD": password,
                "MIRROR_REPORT_DIR": str(report_dir),
            }
            settings = load_settings(environ, cwd=work)
            say(f"4. invoke mirror: {source.host}/arcdata -> {target.host}/private/arcdata")
            run = run_mirror(settings, LineProgress(len(names), stream=out))
            say(run.summary())
            say("5. Running it again: nothing is sent when the target already has the release")
            again = run_mirror(settings, LineProgress(len(names), stream=out))
            say(again.summary())
            say(arc_deployment_hint(target.host, "private/arcdata", DEMO_TAG, "arc-mirror"))
            say(f"\nDone. The JUnit report (one test case per image) is {run.junit}; "
                f"the JSON record is {run.junit.with_suffix('.json')}.")
            return run.exit_code or again.exit_code
    finally:
        if keep:
            say(f"(demo files kept in {work})")
        else:
            shutil.rmtree(work, ignore_errors=True)
