"""What can be checked of the Apptainer images without Apptainer (it cannot be installed here):
every shell script of the project passes shellcheck, the .def files are well formed (header,
sections, non-root runscript, offline environment), every Python requirement they install is
pinned and resolves on PyPI for the image's platform (CPython 3.10, manylinux x86_64), and
build_containers.sh picks a builder, or fails clearly without one.
"""

from __future__ import annotations

import email.parser
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from packaging import tags
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from support import REPO

CONTAINERS = REPO / "containers"
DEFS = {
    "audio_processing": CONTAINERS / "audio_processing.def",
    "pipeline_utils": CONTAINERS / "pipeline_utils.def",
}
SECTIONS = {"labels", "help", "files", "environment", "post", "runscript", "test"}
APPTAINER_SECTIONS = SECTIONS | {"setup", "pre", "startscript", "arguments"}
SHELL_GLOBS = (
    "hpc/slurm/*.sh",
    "hpc/devcluster/*.sh",
    "scripts/*.sh",
    "containers/*.sh",
    "docker/*.sh",
    "docker/standins/*.sh",
    "hpc/cluster/*.sh",
)
SCRIPTS = sorted({p for g in SHELL_GLOBS for p in REPO.glob(g)})
# The images: Ubuntu 22.04 (glibc 2.35), python3.10, x86_64.
TARGET = {
    "python_version": "3.10",
    "python_full_version": "3.10.12",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
_PLATFORMS = [
    "linux_x86_64",
    *[f"manylinux_2_{minor}_x86_64" for minor in range(5, 36)],
    "manylinux1_x86_64",
    "manylinux2010_x86_64",
    "manylinux2014_x86_64",
]
IMAGE_TAGS = {
    *tags.cpython_tags((3, 10), abis=["cp310", "abi3", "none"], platforms=_PLATFORMS),
    *tags.compatible_tags((3, 10), interpreter="cp310", platforms=_PLATFORMS),
}


# ---------------------------------------------------------------------------- parsing


def parse_def(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(header keys, section bodies) of an Apptainer definition file."""
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in path.read_text().splitlines():
        words = line.split()
        if words and words[0].startswith("%"):  # Apptainer's rule: any such line opens a section
            name = words[0][1:].lower()
            assert name in APPTAINER_SECTIONS, f"{path.name}: unknown section {words[0]}"
            assert name not in sections, f"{path.name}: section %{name} twice"
            current = sections.setdefault(name, [])
        elif current is not None:
            current.append(line)
        elif m := re.match(r"^(\w+):\s*(\S+)\s*$", line):
            header[m[1]] = m[2]
        else:
            assert not line.strip() or line.startswith("#"), (
                f"{path.name}: stray header line {line!r}"
            )
    return header, {k: "\n".join(v) for k, v in sections.items()}


def files_map(section: str) -> dict[str, Path]:
    """%files: image path -> repository path."""
    out = {}
    for line in section.splitlines():
        if line.strip() and not line.strip().startswith("#"):
            src, dst = line.split()
            out[dst] = REPO / src
    return out


def pip_installs(post: str, files: dict[str, Path]) -> dict[str, list[str]]:
    """Requirement strings per venv (the pip that installs them), -r files expanded."""
    venvs: dict[str, list[str]] = {}
    for command in re.sub(r"\\\n\s*", " ", post).splitlines():
        m = re.search(r"(\S+)/bin/pip install (.*)", command)
        if not m:
            continue
        reqs = venvs.setdefault(m[1], [])
        args = iter(shlex.split(m[2]))
        for arg in args:
            if arg == "-r":
                reqs += read_requirements(files[next(args)])
            elif not arg.startswith("-"):
                reqs.append(arg)
    return venvs


def read_requirements(path: Path) -> list[str]:
    reqs = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            reqs += read_requirements(path.parent / line[3:].strip())
        elif line:
            reqs.append(line)
    return reqs


def pinned(req: Requirement) -> str:
    specs = list(req.specifier)
    assert len(specs) == 1 and specs[0].operator == "==", f"{req} is not pinned with =="
    return specs[0].version


PARSED = {name: parse_def(path) for name, path in DEFS.items()}
INSTALLS = {
    name: pip_installs(sections["post"], files_map(sections["files"]))
    for name, (_, sections) in PARSED.items()
}


# ---------------------------------------------------------------------------- shellcheck


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck(script: Path) -> None:
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck is not installed (apt-get install -y shellcheck)")
    # -x follows `source`d files; `# shellcheck source=` paths are relative to the repo root.
    proc = subprocess.run(
        ["shellcheck", "-x", str(script.relative_to(REPO))],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_scripts_of_this_area_are_checked() -> None:
    names = {str(p.relative_to(REPO)) for p in SCRIPTS}
    assert {
        "containers/build_containers.sh",
        "hpc/devcluster/provision.sh",
        "docker/airflow-init.sh",
        "hpc/cluster/configure.sh",
        "hpc/cluster/node.sh",
        "hpc/cluster/static-ffmpeg.sh",
        "docker/install-extra-ca.sh",
        "docker/standins/build.sh",
        "scripts/docker_engine.sh",
    } <= names


# ---------------------------------------------------------------------------- .def files


@pytest.mark.parametrize("name", DEFS)
def test_definition_structure(name: str) -> None:
    header, sections = PARSED[name]
    assert header.get("Bootstrap") == "docker"
    image, _, tag = header["From"].partition(":")
    assert tag and tag != "latest" and re.search(r"\d", tag), (
        f"base image not pinned: {header['From']}"
    )
    assert SECTIONS <= set(sections), f"missing sections: {SECTIONS - set(sections)}"
    for src in files_map(sections["files"]).values():
        assert src.exists(), f"%files source {src.relative_to(REPO)} does not exist"
    # The project's code where the SLURM jobs bind the deployed release's src
    # (hpc/slurm/_runtime.sh).
    assert files_map(sections["files"])["/opt/audio_pipeline/src"] == REPO / "hpc" / "src"
    env = sections["environment"]
    assert "/opt/venv/bin" in env and "PYTHONPATH=/opt/audio_pipeline/src" in env
    assert "PYTHONNOUSERSITE=1" in env
    # Non-root runtime: the runscript refuses uid 0 and runs the venv's python3 on its arguments.
    runscript = sections["runscript"]
    assert 'id -u)" -eq 0' in runscript and 'exec python3 "$@"' in runscript
    assert "python3.10 -m venv /opt/venv" in sections["post"]
    assert "a+rX" in sections["post"], "files must be readable by the (non-root) job user"
    labels = dict(line.split(None, 1) for line in sections["labels"].splitlines() if line.strip())
    assert labels["org.opencontainers.image.title"] == name
    assert labels["org.opencontainers.image.base.name"] == header["From"]
    assert sections["help"].strip() and sections["test"].strip()


def test_audio_image_is_cuda12_offline_and_follows_the_project_pins() -> None:
    header, sections = PARSED["audio_processing"]
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu22\.04", header["From"])
    assert "HF_HUB_OFFLINE=1" in sections["environment"]
    assert "ffmpeg" in sections["post"]
    reqs = {
        Requirement(r).name: pinned(Requirement(r))
        for r in INSTALLS["audio_processing"]["/opt/venv"]
    }
    project = {
        Requirement(r).name: pinned(Requirement(r))
        for r in read_requirements(REPO / "hpc" / "requirements-hpc.txt")
    }
    assert project.items() <= reqs.items(), (
        "the image must install hpc/requirements-hpc.txt as pinned"
    )
    assert reqs["whisperx"] == "3.8.6" and reqs["torch"] == "2.8.0"
    labels = sections["labels"]
    assert (
        f"pipeline.whisperx {reqs['whisperx']}" in labels
        and f"pipeline.torch {reqs['torch']}" in labels
    )


def test_utils_image_has_db_and_globus_tools() -> None:
    header, sections = PARSED["pipeline_utils"]
    assert header["From"].startswith("ubuntu:jammy-")  # Ubuntu 22.04, dated snapshot
    assert "postgresql-client" in sections["post"]
    venv = {
        Requirement(r).name: pinned(Requirement(r)) for r in INSTALLS["pipeline_utils"]["/opt/venv"]
    }
    assert venv["globus-sdk"] == "4.10.0" and venv["psycopg"] == "3.3.9"
    cli = {
        Requirement(r).name: pinned(Requirement(r))
        for r in INSTALLS["pipeline_utils"]["/opt/globus-cli"]
    }
    assert "globus-cli" in cli and "/usr/local/bin/globus" in sections["post"]


@pytest.mark.parametrize("name", DEFS)
def test_every_installed_requirement_is_pinned(name: str) -> None:
    for venv, reqs in INSTALLS[name].items():
        assert reqs, f"{name}: nothing installed into {venv}"
        for r in reqs:
            pinned(Requirement(r))


# ---------------------------------------------------------------------------- PyPI resolution
# The index's JSON API (PEP 691) lists the files; a wheel's METADATA comes from its PEP 658
# .metadata file or, where the index does not serve one, from the wheel's zip directory read
# with HTTP range requests. No wheel is downloaded (an old pip fetches torch's 900 MB wheel
# just to read its metadata).


def _get(url: str, headers: dict[str, str] | None = None) -> bytes:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=60
        ) as r:
            return r.read()
    except urllib.error.HTTPError:
        raise  # the index answered: the caller decides what a 404 means
    except OSError as exc:
        pytest.fail(f"PyPI is unreachable ({exc}); these tests resolve the images' pins there")


class _RemoteFile(io.RawIOBase):
    """A seekable, read-only view of a URL through HTTP range requests (for zipfile)."""

    def __init__(self, url: str, size: int) -> None:
        self.url, self.size, self.pos = url, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: 0, 1: self.pos, 2: self.size}[whence] + offset
        return self.pos

    def readinto(self, buffer) -> int:
        end = min(self.pos + len(buffer), self.size)
        if end <= self.pos:
            return 0
        data = _get(self.url, {"Range": f"bytes={self.pos}-{end - 1}"})
        assert len(data) == end - self.pos, f"{self.url}: the server ignored the range request"
        buffer[: len(data)] = data
        self.pos = end
        return len(data)


def _wheel_metadata(file: dict) -> email.message.Message:
    try:
        raw = _get(file["url"] + ".metadata")
    except urllib.error.HTTPError:
        with zipfile.ZipFile(
            io.BufferedReader(_RemoteFile(file["url"], file["size"]), 1 << 18)
        ) as wheel:
            name = next(
                n for n in wheel.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)
            )
            raw = wheel.read(name)
    return email.parser.BytesParser().parsebytes(raw)


def _check_release(req: Requirement) -> list[Requirement]:
    """The pinned release exists, is not yanked, has a wheel for the image and accepts its
    Python. Returns its dependencies that apply on the image, with the requested extras."""
    version = Version(pinned(req))
    try:
        index = json.loads(
            _get(
                f"https://pypi.org/simple/{canonicalize_name(req.name)}/",
                {"Accept": "application/vnd.pypi.simple.v1+json"},
            )
        )
    except urllib.error.HTTPError as exc:
        pytest.fail(f"{req}: PyPI answers {exc.code}")
    wheels = [
        f
        for f in index["files"]
        if f["filename"].endswith(".whl") and parse_wheel_filename(f["filename"])[1] == version
    ]
    usable = [f for f in wheels if parse_wheel_filename(f["filename"])[3] & IMAGE_TAGS]
    assert usable, f"{req}: no wheel for CPython 3.10 manylinux x86_64 (the image builds no sdists)"
    assert not any(f.get("yanked") for f in usable), f"{req} is yanked"
    requires_python = usable[0].get("requires-python")
    assert not requires_python or Version(TARGET["python_full_version"]) in SpecifierSet(
        requires_python
    ), f"{req} requires Python {requires_python}"
    deps = []
    for dep in map(Requirement, _wheel_metadata(usable[0]).get_all("Requires-Dist") or []):
        if not dep.marker or any(
            dep.marker.evaluate({**TARGET, "extra": e}) for e in req.extras | {""}
        ):
            deps.append(dep)
    return deps


def test_pinned_requirements_resolve_on_pypi_and_agree() -> None:
    """Each venv's pins exist on PyPI with a wheel for CPython 3.10 manylinux x86_64, and no
    pinned package's dependency rules out another pin of the same venv (e.g. whisperx's
    torch~=2.8.0, or globus-cli's exact globus-sdk: why the CLI has its own venv). Exact pins
    pulled in by extras (psycopg[binary] -> psycopg-binary==3.3.9) are checked the same way."""
    groups = {
        f"{name}:{venv}": [Requirement(r) for r in reqs]
        for name, venvs in INSTALLS.items()
        for venv, reqs in venvs.items()
    }
    unique = {str(r): r for reqs in groups.values() for r in reqs}
    with ThreadPoolExecutor(8) as pool:
        deps = dict(zip(unique, pool.map(_check_release, unique.values())))
        by_extras = {
            str(d): d
            for r in unique.values()
            if r.extras
            for d in deps[str(r)]
            if d.marker and "extra" in str(d.marker) and [s.operator for s in d.specifier] == ["=="]
        }
        list(pool.map(_check_release, by_extras.values()))
    for label, reqs in groups.items():
        pins = {canonicalize_name(r.name): pinned(r) for r in reqs}
        for r in reqs:
            for dep in deps[str(r)]:
                other = pins.get(canonicalize_name(dep.name))
                if other is not None:
                    assert dep.specifier.contains(Version(other), prereleases=True), (
                        f"{label}: {r.name} requires {dep}, the image pins {dep.name}=={other}"
                    )


# ---------------------------------------------------------------------------- build script


def _run_build(args: list[str], path: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(CONTAINERS / "build_containers.sh"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": path, "HOME": os.environ.get("HOME", "/root"), **env},
    )


def test_build_script_fails_clearly_without_a_builder(tmp_path: Path) -> None:
    if shutil.which("apptainer", path="/usr/bin:/bin") or shutil.which(
        "singularity", path="/usr/bin:/bin"
    ):
        pytest.skip("a builder is installed here")
    proc = _run_build([], "/usr/bin:/bin", IMAGES_DIR=str(tmp_path))
    assert proc.returncode == 1
    assert "neither apptainer nor singularity" in proc.stderr
    assert _run_build(["nope"], "/usr/bin:/bin").returncode == 2


def test_build_script_builds_each_image_from_the_repo_root(tmp_path: Path) -> None:
    stub = tmp_path / "bin" / "singularity"
    stub.parent.mkdir()
    log = tmp_path / "calls"
    # A fake builder: records its cwd and arguments, writes the output file it is given.
    stub.write_text(
        f'#!/bin/bash\necho "$PWD $*" >> {log}\nout=${{@: -2:1}}; echo image > "$out"\n'
    )
    stub.chmod(0o755)
    images = tmp_path / "images"
    proc = _run_build(
        ["all"],
        f"{stub.parent}:/usr/bin:/bin",
        IMAGES_DIR=str(images),
        BUILD_FLAGS="--fakeroot --force",
    )
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    assert calls == [
        f"{REPO} build --fakeroot --force {images}/{n}.sif.partial containers/{n}.def"
        for n in ("audio_processing", "pipeline_utils")
    ]
    assert sorted(p.name for p in images.iterdir()) == [
        "audio_processing.sif",
        "pipeline_utils.sif",
    ]
    log.unlink()
    assert (
        _run_build(
            ["pipeline_utils"],
            f"{stub.parent}:/usr/bin:/bin",
            IMAGES_DIR=str(images),
            BUILD_FLAGS="--force",
        ).returncode
        == 0
    )
    assert log.read_text().splitlines() == [
        f"{REPO} build --force {images}/pipeline_utils.sif.partial containers/pipeline_utils.def"
    ]
