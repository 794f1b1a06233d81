"""Settings: precedence, validation, masking."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arcmirror.oci.platform import Platform
from arcmirror.oci.reference import registry_problem, repository_problem, tag_problem
from arcmirror.secret import Secret
from arcmirror.settings.load import ConfigError, load_settings

BASE = {"SOURCE_DOCKER_TAG": "v1.41.0_2025-09-09", "TARGET_DOCKER_REGISTRY": "registry.example:5000"}


def test_defaults_follow_the_sample_script(tmp_path):
    s = load_settings(BASE, cwd=tmp_path)
    assert (s.source.registry, s.source.repository) == ("mcr.microsoft.com", "arcdata")
    assert s.target.repository == "arcdata" and s.target.tag == "v1.41.0_2025-09-09"
    assert len(s.images) == 17 and "arc-bootstrapper" in s.images
    assert s.platforms == () and s.concurrency == 16
    assert s.report_dir == tmp_path / "reports"


def test_precedence_option_over_environment_over_env_file(tmp_path):
    (tmp_path / ".env").write_text(
        "TARGET_DOCKER_REGISTRY=from-file:1\nTARGET_DOCKER_TAG=file-tag\nTARGET_DOCKER_REPOSITORY=file/repo\n"
        "SOURCE_DOCKER_TAG=v1.0.0_2025-01-01\n")
    s = load_settings({"TARGET_DOCKER_TAG": "env-tag"}, {"TARGET_DOCKER_REPOSITORY": "opt/repo"}, cwd=tmp_path)
    assert s.target.registry == "from-file:1"
    assert s.target.tag == "env-tag"
    assert s.target.repository == "opt/repo"
    assert s.env_file == tmp_path / ".env"


def test_named_env_file_must_exist_default_may_be_missing(tmp_path):
    load_settings(BASE, cwd=tmp_path)  # no ./.env: fine
    with pytest.raises(ConfigError) as err:
        load_settings({**BASE, "MIRROR_ENV_FILE": "site.env"}, cwd=tmp_path)
    assert "site.env does not exist" in str(err.value)


def test_every_problem_is_listed_once(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings({
            "SOURCE_DOCKER_REGISTRY": "https://mcr.microsoft.com",
            "SOURCE_DOCKER_REPOSITORY": "ArcData",
            "TARGET_DOCKER_INSECURE": "maybe",
            "TARGET_DOCKER_CA_BUNDLE": "/nonexistent/ca.pem",
            "MIRROR_PLATFORMS": "linux",
            "MIRROR_IMAGES": "ok-image,Bad Image",
        }, cwd=tmp_path)
    problems = err.value.problems
    joined = "\n".join(problems)
    for name in ("SOURCE_DOCKER_REGISTRY", "SOURCE_DOCKER_REPOSITORY",
                 "TARGET_DOCKER_REGISTRY is not set", "TARGET_DOCKER_INSECURE", "TARGET_DOCKER_CA_BUNDLE",
                 "MIRROR_PLATFORMS", "'Bad'"):
        assert name in joined
    assert len(problems) == len(set(problems))


def test_ca_bundle_must_hold_a_certificate(tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(ConfigError) as err:
        load_settings({**BASE, "TARGET_DOCKER_CA_BUNDLE": "ca.pem"}, cwd=tmp_path)
    assert "holds no PEM certificate" in str(err.value)


def test_passwords_are_masked_everywhere(tmp_path):
    s = load_settings({**BASE, "TARGET_DOCKER_USERNAME": "u", "TARGET_DOCKER_PASSWORD": "pa55-w0rd"}, cwd=tmp_path)
    for text in (repr(s), str(s), repr(s.target), f"{s.target.password}", str(s.target.password)):
        assert "pa55-w0rd" not in text
    assert s.target.password.reveal() == "pa55-w0rd"
    with pytest.raises(TypeError):
        pickle.dumps(s.target.password)


def test_bad_password_never_in_the_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings({"TARGET_DOCKER_PASSWORD": "pa55-w0rd"}, cwd=tmp_path)
    assert "pa55-w0rd" not in str(err.value)


def test_platform_parsing_and_matching():
    p = Platform.parse("linux/arm64/v8")
    assert str(p) == "linux/arm64"  # containerd's normal form
    assert p.matches({"os": "linux", "architecture": "arm64", "variant": "v8"})
    assert not p.matches({"os": "linux", "architecture": "arm64", "variant": "v7"})
    assert Platform.parse("linux/amd64").matches({"os": "linux", "architecture": "amd64"})
    for bad in ("linux", "a/b/c/d", "linux/", "linux amd64/x"):
        with pytest.raises(ValueError):
            Platform.parse(bad)


@pytest.mark.parametrize("value,ok", [
    ("mcr.microsoft.com", True), ("localhost:5000", True), ("127.0.0.1:5000", True), ("[::1]:5000", True),
    ("registry", True), ("http://x", False), ("x/y", False), ("x:0", False), ("x:99999", False),
    ("-bad.example", False), ("sp ace", False), ("", False),
])
def test_registry_values(value, ok):
    assert (registry_problem(value) is None) == ok


@pytest.mark.parametrize("value,ok", [
    ("arcdata", True), ("a/b/c", True), ("arc-data_x.y", True), ("a__b", True), ("", True),
    ("ArcData", False), ("a//b", False), ("-a", False), ("a-", False), ("a b", False), ("a/", False),
])
def test_repository_values(value, ok):
    assert (repository_problem(value) is None) == ok


@pytest.mark.parametrize("value,ok", [
    ("v1.41.0_2025-09-09", True), ("latest", True), ("_x", True), ("a" * 128, True),
    ("a" * 129, False), (".x", False), ("-x", False), ("v1/2", False), ("a:b", False), ("", False),
])
def test_tag_values(value, ok):
    assert (tag_problem(value) is None) == ok


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(
    st.sampled_from(["SOURCE_DOCKER_REGISTRY", "SOURCE_DOCKER_REPOSITORY", "SOURCE_DOCKER_TAG",
                     "TARGET_DOCKER_REGISTRY", "TARGET_DOCKER_REPOSITORY", "TARGET_DOCKER_TAG",
                     "TARGET_DOCKER_INSECURE", "MIRROR_PLATFORMS", "MIRROR_CONCURRENCY", "MIRROR_IMAGES",
                     "TARGET_DOCKER_USERNAME"]),
    st.text(max_size=40)))
def test_fuzzed_settings_either_load_or_explain(tmp_path_factory, environ):
    """Any input gives valid settings or a ConfigError listing problems; never another exception."""
    cwd = tmp_path_factory.getbasetemp()
    environ = {**environ, "TARGET_DOCKER_PASSWORD": "Zq9-sentinel-secret"}
    try:
        s = load_settings(environ, cwd=cwd)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        assert "Zq9-sentinel-secret" not in exc.render()
    else:
        assert registry_problem(s.target.registry) is None
        assert repository_problem(s.source.repository) is None
        assert tag_problem(s.target.tag) is None


@given(st.text(max_size=60))
def test_fuzzed_reference_checks_never_raise(text):
    for check in (registry_problem, repository_problem, tag_problem):
        result = check(text)
        assert result is None or isinstance(result, str)


def test_secret_equality_and_truth():
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    assert not Secret("") and Secret("x")


def test_every_variable_is_documented_with_the_table_s_default():
    """README.md and .env.example list every variable of the settings table, with its default."""
    import re
    from pathlib import Path

    from arcmirror.settings.variables import VARIABLES

    root = Path(__file__).resolve().parent.parent
    example = (root / ".env.example").read_text()
    readme = (root / "README.md").read_text()
    for variable in VARIABLES:
        name = variable.name
        rows = [line for line in readme.splitlines() if line.startswith("|") and f"`{name}`" in line]
        assert rows, f"{name} missing from README.md's table of settings"
        if variable.default:
            assert f"`{variable.default}`" in rows[0], f"README.md does not give {name}'s default {variable.default}"
        if name == "MIRROR_ENV_FILE":
            continue
        line = re.search(rf"^{name}=(.*)$", example, re.MULTILINE)
        assert line, f"{name} missing from .env.example"
        if variable.default and not name.startswith("TARGET_DOCKER_REGISTRY"):
            assert line[1] == variable.default, f".env.example gives {name}={line[1]}, the default is {variable.default}"


def test_env_example_loads_as_is(tmp_path):
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / ".env.example"
    s = load_settings({"MIRROR_ENV_FILE": str(example)}, cwd=tmp_path)
    assert s.source.registry == "mcr.microsoft.com" and s.target.registry == "registry.example.internal"
