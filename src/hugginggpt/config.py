"""Settings: `HUGGINGGPT_*` environment variables, an optional TOML file, and CLI overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .types import Resources


def cache_dir() -> Path:
    """The user cache directory for assembled models, converted experts, catalogue snapshots and prompt states."""
    base = os.environ.get("HUGGINGGPT_CACHE_DIR")
    if base:
        return Path(base).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "hugginggpt"


def _config_file() -> Path | None:
    path = os.environ.get("HUGGINGGPT_CONFIG")
    if path:
        return Path(path).expanduser()
    default = Path("hugginggpt.toml")
    return default if default.is_file() else None


class Settings(BaseSettings):
    """Every knob of the pipeline. Environment: `HUGGINGGPT_<NAME>`; file: `HUGGINGGPT_CONFIG` or ./hugginggpt.toml."""

    model_config = SettingsConfigDict(env_prefix="HUGGINGGPT_", extra="ignore")

    # controller LLM
    llm_base_url: str | None = Field(
        None,
        description="OpenAI-compatible endpoint (OpenAI, Azure, vLLM, Ollama, llama.cpp server), "
        "e.g. http://localhost:11434/v1; unset: the embedded LLM",
    )
    llm_model: str = Field("default", description="model name sent to the endpoint")
    llm_api_key: SecretStr | None = Field(None, description="API key sent to the endpoint as a Bearer token")
    llm_timeout: float = Field(120.0, description="seconds to wait for one LLM reply")
    llm_retries: int = Field(3, description="retries on connection errors, 429 and 5xx")
    llm_model_path: Path | None = Field(
        None,
        description="a GGUF file for the embedded backend (default: the bundled Qwen2.5-Coder-1.5B; CLI --model-path)",
    )
    llm_threads: int | None = Field(None, description="CPU threads for the embedded backend (default: all cores)")
    llm_context: int = Field(8192, ge=1, description="context window of each slot of the embedded backend, in tokens")
    llm_slots: int = Field(
        2,
        ge=1,
        le=16,
        description="calls the embedded backend decodes at once (llama.cpp slots, batched together); memory for the "
        "KV cache grows with slots x context",
    )
    llm_prompt_cache: bool = Field(
        True,
        description="save the KV state of the fixed planning prompt in the user cache, so later processes restore it "
        "instead of processing it again (embedded backend)",
    )

    # stages
    selection: Literal["fit", "llm", "top"] = Field(
        "fit", description="fit: rank by card fit, LLM only for ties among catalogue models; llm: always ask; top"
    )
    top_k: int = Field(5, ge=1, description="candidates per task shown to the selection stage")
    history_tokens: int = Field(1024, ge=0, description="budget for earlier turns in the planning prompt")
    max_concurrency: int = Field(4, ge=1, description="experts running at once")
    task_timeout: float = Field(300.0, gt=0, description="seconds one expert may take")
    stream_plan: bool = Field(True, description="start tasks while the plan is still being written")
    plan_syntax: Literal["json", "code"] = Field(
        "json",
        description="how the controller writes a plan: json (under a JSON schema), or code (a `# step` comment and "
        "an `rN = task(key=...)` call per task, under a grammar: about half the generated tokens, plans a little "
        "less well, docs/evaluation.md; needs a backend that takes a grammar, the embedded model, else json)",
    )
    plan_retrieved_demos: int = Field(
        0,
        ge=0,
        le=8,
        description="planning demos retrieved per request from the shipped bank (by word overlap), on top of the "
        "fixed ones; 0: none (they made the bundled 1.5B model's plans worse, docs/evaluation.md)",
    )

    # where experts run
    executor: Literal["local", "ray"] = Field(
        "local", description="local: in this process; ray: each expert model in Ray actors (the `ray` extra)"
    )
    ray_address: str | None = Field(
        None,
        description="the Ray cluster to join (host:port of its head, ray://host:10001, or auto); unset: a local Ray "
        "instance started for this process",
    )
    ray_pool_size: int = Field(1, ge=1, description="Ray actors per expert model at most (busy ones add another)")
    ray_idle_seconds: float = Field(300.0, gt=0, description="a Ray actor idle this long is released")
    ray_max_restarts: int = Field(3, ge=0, description="times Ray restarts an expert actor that died")
    ray_shared_dir: Path | None = Field(
        None,
        description="a folder every Ray node sees at the same path (NFS, a shared disk): files between the controller "
        "and the actors go through it instead of the object store; unset: the object store",
    )
    ray_resources: dict[str, Resources] = Field(
        default_factory=dict,
        description="per model id, what each of its Ray actors asks for (num_cpus, num_gpus, memory_mb), over its "
        'card\'s, e.g. {"openai/whisper-small": {"num_gpus": 1}}',
    )

    # embedded experts
    expert_threads: int | None = Field(
        None, ge=1, description="CPU threads per embedded expert model (default: the runtime's choice)"
    )

    # files
    output_dir: Path = Field(Path("outputs"), description="where the CLI writes each request's results")
    max_download_bytes: int = Field(50_000_000, description="largest file fetched from a URL argument")
    max_text_bytes: int = Field(20_000, ge=1, description="largest text document (.txt .md .csv .json) read as input")
    allow_private_urls: bool = Field(False, description="let URL arguments reach loopback and private networks")

    # catalogue
    catalog_snapshot: Path | None = Field(
        None,
        description="JSONL of Hub model metadata (default: the cached one; `hugginggpt catalog refresh` writes one)",
    )

    # expert backends for catalogue models: routing, transformers pipelines, HF Inference, model servers
    routing: Literal["local", "remote", "hybrid"] = Field(
        "hybrid", description="local: this machine only; remote: HF Inference only; hybrid: local first, then remote"
    )
    transformers_device: str = Field("cpu", description="where pipelines run: cpu, cuda, cuda:N or auto")
    transformers_devices: dict[str, str] = Field(
        default_factory=dict, description="per-model placement overrides, model id -> device"
    )
    transformers_memory_mb: int = Field(4096, ge=1, description="RAM budget for loaded pipelines (LRU beyond it)")
    transformers_gpu_memory_mb: int | None = Field(
        None, ge=1, description="budget per GPU for loaded pipelines (default: 90% of the card)"
    )
    transformers_cache_dir: Path | None = Field(None, description="Hugging Face cache to use (default: HF_HUB_CACHE)")
    transformers_online: bool | None = Field(
        None, description="may pipelines download models (default: unless HF_HUB_OFFLINE or the Hub is unreachable)"
    )
    inference_endpoint: str | None = Field(
        None, description="HF Inference base URL (default https://router.huggingface.co/hf-inference)"
    )
    inference_hub_endpoint: str | None = Field(
        None, description="Hub API asked which models HF Inference serves (default HF_ENDPOINT or huggingface.co)"
    )
    inference_timeout: float = Field(60.0, gt=0, description="seconds one HF Inference call may take")
    inference_loading_wait: float = Field(20.0, ge=0, description="seconds to wait once for a model that is loading")
    inference_status_ttl: float = Field(300.0, ge=0, description="seconds the list of served models is trusted")
    model_servers: list[str] = Field(
        default_factory=list, description="URLs of `hugginggpt serve-models` processes to use as experts"
    )
    model_server_timeout: float = Field(300.0, gt=0, description="seconds one model-server call may take")

    # server (`hugginggpt serve`)
    db: Path = Field(Path("hugginggpt.db"), description="SQLite file of the server's conversations and runs")
    files_dir: Path | None = Field(None, description="uploads and artifacts of the server (default: <db>-files)")
    api_keys: SecretStr | None = Field(None, description="API keys clients send as Bearer tokens, comma-separated")
    max_runs_per_key: int = Field(4, ge=1, description="runs one API key may have in progress at once")
    max_upload_bytes: int = Field(25_000_000, ge=1, description="largest file one upload may carry")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path is not None:
            if not path.is_file():
                raise FileNotFoundError(f"config file {path} (from HUGGINGGPT_CONFIG) does not exist")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def settings_table() -> str:
    """Every setting as a Markdown table (environment variable, default, what it does), for docs/configuration.md."""
    rows = ["| environment variable | default | what it does |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = (
            "—" if default in (None, [], {}) else f"`{str(default).lower() if isinstance(default, bool) else default}`"
        )
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `HUGGINGGPT_{name.upper()}` | {shown} | {description} |")
    return "\n".join(rows) + "\n"
