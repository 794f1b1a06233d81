"""Settings as operators and pipelines really give them, each run for real against real registries.

.env files saved by Notepad (BOM) and Windows PowerShell 5 (UTF-16, Windows-1252), single quotes
that keep a '$', Compose-style ${VAR} in double quotes, secrets that end in a line break, multi-line
lists, folders with a stray space, and names longer than the distribution spec allows.
"""

from __future__ import annotations

import pytest
from helpers import invoke, mirror_env, walk

from testbed.registry import Registry

NAMES = "arc-bootstrapper,arc-controller"


def _target_with_password(tmp_path, password: str) -> Registry:
    return Registry(tmp_path / "target", htpasswd={"mirror": password}).start()


def _env(release, target: Registry, **extra) -> dict[str, str]:
    """The environment of a run whose target login and repository come from ``extra`` or the .env file."""
    env = mirror_env(release.registry, target, release, MIRROR_IMAGES=NAMES)
    for name in ("TARGET_DOCKER_USERNAME", "TARGET_DOCKER_PASSWORD", "TARGET_DOCKER_REPOSITORY"):
        env.pop(name, None)
    return {**env, **extra}


def _landed(release, target: Registry, repo: str) -> bool:
    return all(target.manifest_digest(f"{repo}/{name}", release.tag) == release.digests[name]
               for name in NAMES.split(","))


@pytest.mark.parametrize("encoding,bom", [
    ("utf-8", b"\xef\xbb\xbf"),  # Notepad's "UTF-8 with BOM"
    ("utf-16-le", b"\xff\xfe"),  # Windows PowerShell 5: Get-Content .env.example > .env
    ("cp1252", b""),  # Windows PowerShell 5: Set-Content (ANSI)
])
def test_env_files_from_windows_editors_are_read_whole(release, tmp_path, encoding, bom):
    target = _target_with_password(tmp_path, "pässwörd")
    text = ("TARGET_DOCKER_REPOSITORY=site/arc\r\n"  # first line: a BOM must not swallow this name
            "TARGET_DOCKER_USERNAME=mirror\r\n"
            "TARGET_DOCKER_PASSWORD=pässwörd\r\n")
    (tmp_path / ".env").write_bytes(bom + text.encode(encoding))
    try:
        run = invoke(["mirror"], _env(release, target), tmp_path)
        assert run.code == 0, run.output
        assert _landed(release, target, "site/arc")
        assert target.catalog() == sorted(f"site/arc/{n}" for n in NAMES.split(","))
    finally:
        target.stop()


def test_an_env_file_in_no_known_encoding_is_refused_by_name(tmp_path):
    (tmp_path / ".env").write_bytes(b"TARGET_DOCKER_REGISTRY=r.example\nX=\x81\x8d\x8f\x90\x9d\n")
    run = invoke(["mirror"], {}, tmp_path)
    assert run.code == 2
    assert ".env cannot be read: it is neither UTF-8, UTF-16 nor Windows-1252 text; save it as UTF-8" in run.output


def test_quotes_and_dollars_as_docker_compose_reads_them(release, tmp_path):
    password = "x${HOME}y$z"  # literal, as in a shell and in Compose between single quotes
    target = _target_with_password(tmp_path, password)
    try:
        (tmp_path / ".env").write_text(f"TARGET_DOCKER_USERNAME=mirror\nTARGET_DOCKER_PASSWORD='{password}'\n"
                                       'TARGET_DOCKER_REPOSITORY="${SITE:-default}/arc"\n')
        run = invoke(["mirror"], _env(release, target, SITE="plant7"), tmp_path / ".")
        assert run.code == 0, run.output
        assert _landed(release, target, "plant7/arc")  # double quotes: ${VAR:-default} expanded from the environment
        assert password not in run.output

        (tmp_path / ".env").write_text('TARGET_DOCKER_USERNAME=mirror\nTARGET_DOCKER_PASSWORD="$SECRET_FROM_VAULT"\n'
                                       "TARGET_DOCKER_REPOSITORY=$$literal\n")
        run = invoke(["mirror"], _env(release, target, SECRET_FROM_VAULT=password), tmp_path)
        assert run.code == 2  # '$$' is a literal '$': '$literal' is not a repository name
        assert "TARGET_DOCKER_REPOSITORY='$literal'" in run.output

        (tmp_path / ".env").write_text("TARGET_DOCKER_USERNAME=mirror\nTARGET_DOCKER_PASSWORD=x${HOME}y$z\n"
                                       "TARGET_DOCKER_REPOSITORY=unquoted\n")
        run = invoke(["mirror"], _env(release, target), tmp_path)
        assert run.code == 1  # unquoted: expanded, so the login is refused...
        assert "TARGET_DOCKER_PASSWORD holds a '$' that refers to a variable that is not set" in run.output
        assert "$z" not in run.output and "refused the credentials" in run.output  # ...and the warning says why
    finally:
        target.stop()


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_a_secret_that_ends_in_a_line_break_is_sent_without_it(release, new_registry, tmp_path, ending):
    target = new_registry(auth="basic")
    env = _env(release, target, TARGET_DOCKER_USERNAME=target.username + ending,
               TARGET_DOCKER_PASSWORD=target.password + ending)
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 0, run.output
    assert _landed(release, target, "arcdata")


def test_lists_one_per_line_and_folders_with_a_stray_space(release, new_registry, tmp_path):
    target = new_registry()
    env = _env(release, target, MIRROR_IMAGES="\n  arc-bootstrapper\n\tarc-controller,\n",
               MIRROR_REPORT_DIR="out ", MIRROR_PLATFORMS="linux/amd64\nlinux/arm64\n")
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 0, run.output
    assert _landed(release, target, "arcdata")
    assert (tmp_path / "out" / "mirror.xml").is_file() and not (tmp_path / "out ").exists()


def test_names_longer_than_the_spec_allows_are_refused_before_anything_is_copied(release, new_registry, tmp_path):
    target = new_registry()
    long_path = "/".join(["segment-" + "x" * 40] * 5)  # 249 characters
    env = _env(release, target, TARGET_DOCKER_REPOSITORY=long_path, SOURCE_DOCKER_REPOSITORY=long_path[:230])
    run = invoke(["mirror"], env, tmp_path)
    assert run.code == 2, run.output
    assert "TARGET_DOCKER_REPOSITORY=" in run.stderr and "SOURCE_DOCKER_REPOSITORY=" in run.stderr
    assert "the distribution spec allows" in run.stderr and "arc-bootstrapper (" in run.stderr
    assert "shorten TARGET_DOCKER_REPOSITORY to at most" in run.stderr
    assert target.catalog() == []
    # catalog discovery learns the names from the source: the same check, before any copy
    env = _env(release, target, TARGET_DOCKER_REPOSITORY=long_path, MIRROR_DISCOVER="catalog")
    run = invoke(["mirror"], env, tmp_path / "catalog")
    assert run.code == 2, run.output
    assert "full image names longer than the 255 characters" in run.stderr
    assert target.catalog() == []
    blobs, _ = walk(release.registry, "arcdata/arc-controller", release.tag)
    assert blobs  # the source is fine: only the names were refused
