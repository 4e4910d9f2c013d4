"""tools/images.py's own logic: what an image's build depends on, the builder it picks, what it refuses. The
builds and pushes themselves need root, buildah and a registry: `make images` / `make push` (the e2e tier
pushes to the harness's registry)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from tools import images


@pytest.mark.parametrize("image", images.IMAGES, ids=lambda i: i.name)
def test_each_dockerfile_is_non_root_labelled_and_its_inputs_are_what_it_copies(image: images.Image) -> None:
    text = image.dockerfile.read_text()
    assert re.search(r"^USER 10001:10001$", text, re.M)
    for key, arg in [("version", "VERSION"), ("revision", "REVISION"), ("source", "SOURCE")]:
        assert f'org.opencontainers.image.{key}="${{{arg}}}"' in text and f"ARG {arg}=" in text
    assert "org.opencontainers.image.title=" in text
    # fx's Debian build base and a registry base alike (BUILD_BASE defaults to BASE).
    assert "ARG BUILD_BASE=${BASE}" in text and "FROM ${BUILD_BASE} AS build" in text

    copied = images._copied(image.dockerfile, image.context)
    assert image.dockerfile in copied and all(p.is_file() for p in copied)
    assert not any("__pycache__" in p.parts for p in copied)
    sources = {p.relative_to(images.REPO).parts[:2] for p in copied if p.suffix == ".py"}
    expected = {
        "controller": {("core", "fx"), ("runtime-images", "fx_runtime"), ("controller", "fx_controller")},
        "gateway": {("core", "fx"), ("gateway", "fx_gateway")},
        "runtime-python": {("runtime-images", "fx_runtime")},
    }
    assert sources == expected[image.name]  # COPY --from=build copies no context file


def test_inputs_digest_follows_content_and_arguments_not_where_the_files_are(tmp_path: Path) -> None:
    one, two = tmp_path / "a", tmp_path / "b"
    one.mkdir()
    two.mkdir()
    (one / "Dockerfile").write_text("FROM scratch\n")
    (two / "Dockerfile").write_text("FROM scratch\n")
    digest = images.inputs_digest([one / "Dockerfile"], "args")
    assert images.inputs_digest([two / "Dockerfile"], "args") == digest  # a temp dir's name does not count
    assert images.inputs_digest([one / "Dockerfile"], "other args") != digest
    (two / "Dockerfile").write_text("FROM scratch\nLABEL x=1\n")
    assert images.inputs_digest([two / "Dockerfile"], "args") != digest


def test_buildah_sizes_are_read_in_its_decimal_units() -> None:
    assert images._parse_size("165 MB") == 165_000_000
    assert images._parse_size("1.5 GB") == 1_500_000_000
    assert images._parse_size("512 kB") == 512_000


def test_no_builder_says_how_to_install_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(images.ImageError, match=r"no image builder: install buildah \(.*apt-get install buildah"):
        images.detect_builder()


def test_the_builders_are_preferred_in_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    for name in ("docker", "podman", "buildah"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
        assert images.detect_builder().name == name


@pytest.mark.parametrize(
    ("base", "pulled"),
    [
        ("python:3.11-slim", "docker.io/library/python:3.11-slim"),
        ("bitnami/python:3.11", "docker.io/bitnami/python:3.11"),
        ("registry.example.com/python:3.11", "registry.example.com/python:3.11"),
        ("reg:5000/python:3.11", "reg:5000/python:3.11"),
        ("localhost/fx/debian-python:bookworm", "localhost/fx/debian-python:bookworm"),
    ],
)
def test_a_short_base_name_is_read_as_docker_reads_it(base: str, pulled: str) -> None:
    assert images.qualified(base) == pulled


def test_push_needs_a_registry() -> None:
    with pytest.raises(images.ImageError, match="push needs REGISTRY=host"):
        images.push(images.DEFAULT_REGISTRY, "1.0.0", None, None, True)


def test_docker_refuses_per_push_tls_settings_and_says_where_they_go() -> None:
    docker = images.Builder("docker")
    with pytest.raises(images.ImageError, match=r"/etc/docker/certs\.d/reg\.example:5000/ca\.crt"):
        docker.push("reg.example:5000/fx/gateway:1", Path("ca.pem"), True)


def test_a_refused_push_names_the_registry_and_the_cause(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A builder that fails as buildah does on a registry that answers 401: the message says who and why."""
    fake = tmp_path / "buildah"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$*" in *" push "*) echo "Error: pushing: unauthorized: authentication required" >&2; exit 125;; esac\n'
        'case "$*" in *" images "*) exit 0;; *" inspect "*) exit 1;; esac\n'
        "exit 0\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.raises(images.ImageError) as refused:
        images.push("reg.example:5000/fx", "1.0.0", "python:3.11-slim", None, True)
    assert str(refused.value) == (
        "reg.example:5000 refused reg.example:5000/fx/controller:1.0.0:"
        " Error: pushing: unauthorized: authentication required"
        " (log in first: buildah login (or podman login, docker login) with the registry's host)"
    )


def test_fx_debian_base_without_root_says_what_to_do_instead(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(images, "CACHE", tmp_path)  # no debootstrapped tarball there yet
    monkeypatch.setattr(images.os, "geteuid", lambda: 1000)
    with pytest.raises(images.ImageError, match=r"debootstrap, which needs root: run as root, or --base IMAGE"):
        images.debian_rootfs(images.BASE_PACKAGES)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("good", ["localhost/fx", "10.244.0.1:5000/fx", "registry.example.com/team/fx-images", "h:1"])
def test_registries_in_the_distribution_grammar_are_taken(good: str) -> None:
    assert images.registry_arg(good + "/") == good


@pytest.mark.parametrize(
    ("tool", "argv", "named"),
    [
        ("tools.images", ["build", "--registry", "Registry.example.com/FX"], "--registry"),
        ("tools.images", ["push", "--registry", "registry example.com/fx"], "--registry"),
        ("tools.images", ["build", "--tag", "0.2.0 latest"], "--tag"),
        ("tools.chart", ["package", "--registry", "registry.example.com/fx\nimage: {}"], "--registry"),
        ("tools.bundle", ["--registry", "registry.example.com:port/fx"], "--registry"),
        ("tools.bundle", ["--tag", ".hidden"], "--tag"),
    ],
)
def test_a_bad_registry_or_tag_is_refused_before_anything_is_built(
    tool: str, argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name no registry accepts would fail late (after minutes of building) or end up in the chart's values."""
    main = importlib.import_module(tool).main
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert f"argument {named}:" in capsys.readouterr().err
