"""Local Hugging Face models through `transformers`: lazy loading, per-model device placement, an LRU memory pool.

Any catalogue model whose task has a transformers pipeline runs here (`transformers.pipeline(task, model=...)`);
summarization, translation, text2text and extractive QA, whose pipelines transformers 5 removed, run through the
matching `AutoModelFor...` class. Models load on first use into a pool that unloads the least recently used ones
to stay within a RAM budget (and one per GPU). Offline, only models already in the Hugging Face cache can run.
Which pipeline or class serves each task, and running one call of it, is `transformers_tasks.py`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import ExpertError
from ..types import ModelCard
from .pool import MB, ModelPool
from .protocol import ExpertContext, Outputs, held
from .transformers_tasks import PIPELINE_TASKS, TASKS, run_task, runner_kind

# Libraries whose Hub models transformers cannot load; a card tagged with one (and not `transformers`) is skipped.
_FOREIGN_LIBRARIES = frozenset(
    {
        *("diffusers", "espnet", "speechbrain", "fairseq", "nemo", "pyannote-audio", "asteroid", "keras", "tf-keras"),
        *("paddlenlp", "spacy", "flair", "stanza", "fastai", "open_clip", "timm", "tensorflowtts", "coqui", "gguf"),
    }
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_SKIP_DOWNLOAD = ["*.msgpack", "*.h5", "*.onnx", "*.onnx_data", "*.ot", "*.tflite", "*.gguf", "tf_model*", "flax_*"]
_SKIP_DOWNLOAD += ["rust_model*", "onnx/*", "openvino/*", "coreml/*", "*.mlmodel"]
_DEVICE = re.compile(r"^(cpu|auto|cuda(?::\d+)?)$")


def transformers_installed() -> bool:
    """Whether the `transformers` extra (transformers + torch) is installed, without importing either."""
    return all(importlib.util.find_spec(name) is not None for name in ("transformers", "torch"))


def check_device(spec: str) -> str:
    """A device spec, normalised; raises ValueError unless it is `cpu`, `auto`, `cuda` or `cuda:N`."""
    value = spec.strip().lower()
    if not _DEVICE.match(value):
        raise ValueError(f"unknown device {spec!r}: use cpu, cuda, cuda:N or auto")
    return value


def resolve_device(spec: str) -> str:
    """The concrete torch device for a spec: `auto` picks the CUDA GPU with the most free memory, else the CPU."""
    import torch

    value = check_device(spec)
    if value == "cpu":
        return "cpu"
    has_cuda = torch.cuda.is_available()
    if value == "auto":
        if not has_cuda:
            return "cpu"
        free = [torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())]
        return f"cuda:{free.index(max(free))}"
    index = int(value.partition(":")[2] or 0)
    if not has_cuda:
        raise ExpertError(f"device {value} was asked for, but torch {torch.__version__} sees no CUDA GPU")
    if index >= torch.cuda.device_count():
        raise ExpertError(f"device {value} was asked for, but torch sees {torch.cuda.device_count()} GPU(s)")
    return f"cuda:{index}"


def weights_bytes(folder: Path) -> int:
    """Bytes of the weights transformers would load from a model folder (safetensors preferred over .bin)."""
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES]
    safetensors = [p for p in files if p.suffix == ".safetensors"]
    return sum(p.stat().st_size for p in (safetensors or files))


# ---------------------------------------------------------------------------------------------------------------
# The backend


def _offline_env() -> bool:
    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in flags)


def _reachable(url: str, timeout: float = 1.5) -> bool:
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


class TransformersBackend:
    """Runs catalogue models with transformers on this machine, within a memory budget.

    A card can run here when transformers and torch are installed, its task has a runner, its tags name no
    other library, and its weights are in the local HF cache, or the backend is online (then they download
    on first use). Placement: `device` for every model unless `devices` names one.
    """

    name = "transformers"
    local = True

    def __init__(
        self,
        *,
        device: str = "cpu",
        devices: dict[str, str] | None = None,
        ram_bytes: int = 4096 * MB,
        gpu_bytes: int | None = None,
        cache_dir: Path | None = None,
        online: bool | None = None,
        hub_endpoint: str | None = None,
        max_new_tokens: int = 128,
    ) -> None:
        self.device = check_device(device)
        self.devices = {model: check_device(spec) for model, spec in (devices or {}).items()}
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.pool = ModelPool(ram_bytes, gpu_bytes)
        self.max_new_tokens = max_new_tokens
        self._online = online
        self._hub_endpoint = hub_endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._installed: bool | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> TransformersBackend:
        gpu = settings.transformers_gpu_memory_mb
        try:
            return cls(
                device=settings.transformers_device,
                devices=settings.transformers_devices,
                ram_bytes=settings.transformers_memory_mb * MB,
                gpu_bytes=gpu * MB if gpu else None,
                cache_dir=settings.transformers_cache_dir,
                online=settings.transformers_online,
                hub_endpoint=settings.inference_hub_endpoint,
            )
        except ValueError as exc:
            raise ExpertError(f"HUGGINGGPT_TRANSFORMERS_DEVICE(S): {exc}") from None

    @property
    def online(self) -> bool:
        """May models download? False under HF_HUB_OFFLINE=1; else probed once (a TCP connect to the Hub)."""
        if self._online is None:
            self._online = not _offline_env() and _reachable(self._hub_endpoint)
        return self._online

    def supports(self, card: ModelCard) -> bool:
        tags = {t.lower() for t in card.tags}
        return card.task in TASKS and ("transformers" in tags or not tags & _FOREIGN_LIBRARIES)

    def local_folder(self, model_id: str) -> Path | None:
        """The model's folder when its weights are on this machine: a local path, or a snapshot in the HF cache."""
        from huggingface_hub import try_to_load_from_cache

        path = Path(model_id).expanduser()
        if path.is_absolute() and (path / "config.json").is_file():
            return path
        if model_id.count("/") > 1 or model_id.startswith(("/", ".")):
            return None
        config = try_to_load_from_cache(model_id, "config.json", cache_dir=self.cache_dir)
        if not isinstance(config, str):
            return None
        folder = Path(config).parent
        return folder if weights_bytes(folder) > 0 else None

    def why_not(self, card: ModelCard) -> str | None:
        """Why this card cannot run here now, or None when it can."""
        if self._installed is None:
            self._installed = transformers_installed()
        if not self._installed:
            return "transformers is not installed (pip install 'hugginggpt[transformers]')"
        if not self.supports(card):
            return f"transformers has no runner for {card.task} models like {card.id}"
        if self.local_folder(card.id) is None and not self.online:
            return f"{card.id} is not in the local Hugging Face cache and the Hub cannot be reached"
        return None

    def available(self, card: ModelCard) -> bool:
        return self.why_not(card) is None

    def expert(self, card: ModelCard) -> TransformersExpert:
        return TransformersExpert(card, self)

    def device_for(self, model_id: str) -> str:
        return resolve_device(self.devices.get(model_id, self.device))

    def key(self, card: ModelCard, device: str) -> str:
        """The pool key: one loaded copy per model, device and kind of runner."""
        return f"{card.id}@{device}#{runner_kind(card.task)}"

    def is_loaded(self, card: ModelCard) -> bool:
        """Whether the card's model is in the pool now (on any device)."""
        kind = runner_kind(card.task)
        return any(k.startswith(f"{card.id}@") and k.endswith(f"#{kind}") for k in self.pool.loaded())

    def lock(self, card: ModelCard) -> threading.Lock:
        """The lock that serialises calls to one model's runner (a thread lock, taken in the worker thread, so it
        works across event loops)."""
        with self._locks_guard:
            return self._locks.setdefault(f"{card.id}#{runner_kind(card.task)}", threading.Lock())

    def predict(self, card: ModelCard, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        """Run one call (blocking): take the model from the pool, loading it first if needed."""
        device = self.device_for(card.id)
        folder = self.local_folder(card.id)
        estimate = weights_bytes(folder) if folder else 0
        slot = self.pool.acquire(self.key(card, device), device, estimate, lambda: self._load(card, device))
        try:
            return run_task(card.task, slot.runner, args, ctx, self.max_new_tokens)
        finally:
            self.pool.release(slot)

    def _folder(self, card: ModelCard) -> Path:
        folder = self.local_folder(card.id)
        if folder is not None:
            return folder
        if not self.online:
            raise ExpertError(f"{card.id} is not in the local Hugging Face cache and the Hub cannot be reached")
        from huggingface_hub import HfApi, snapshot_download

        try:
            files = [s.rfilename for s in HfApi(endpoint=self._hub_endpoint).model_info(card.id).siblings or []]
            skip = [*_SKIP_DOWNLOAD, *(["*.bin"] if any(f.endswith(".safetensors") for f in files) else [])]
            folder = snapshot_download(
                card.id, cache_dir=self.cache_dir, ignore_patterns=skip, endpoint=self._hub_endpoint
            )
        except Exception as exc:  # HTTP, connection and disk errors of huggingface_hub
            raise ExpertError(f"could not download {card.id} from {self._hub_endpoint}: {exc}") from exc
        return Path(folder)

    def _load(self, card: ModelCard, device: str) -> tuple[Any, Any]:
        folder = str(self._folder(card))
        try:
            import transformers

            transformers.utils.logging.disable_progress_bar()
            kind = runner_kind(card.task)
            if kind == "pipeline":
                pipe = transformers.pipeline(PIPELINE_TASKS[card.task], model=folder, device=device)
                return pipe, pipe.model
            auto = transformers.AutoModelForQuestionAnswering if kind == "qa" else transformers.AutoModelForSeq2SeqLM
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
            model = auto.from_pretrained(folder).to(device).eval()
            return (tokenizer, model), model
        except Exception as exc:  # transformers, safetensors and torch raise many types for unloadable models
            raise ExpertError(f"transformers could not load {card.id} for {card.task}: {exc}") from exc


class TransformersExpert:
    """One catalogue model run by transformers; calls to the same model (on the same device) run one at a time."""

    def __init__(self, card: ModelCard, backend: TransformersBackend) -> None:
        self.card = card.model_copy(update={"backend": "transformers", "available": True})
        self.backend = backend

    async def run(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        abandoned = threading.Event()
        try:
            return await asyncio.to_thread(self._call, args, ctx, abandoned)
        finally:
            abandoned.set()  # the caller stopped waiting: a call still queued for the model leaves (`held`)

    def _call(self, args: dict[str, str], ctx: ExpertContext, abandoned: threading.Event) -> Outputs:
        with held(self.backend.lock(self.card), abandoned):
            return self.backend.predict(self.card, args, ctx)
