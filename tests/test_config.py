import pytest
from pydantic import ValidationError

from hugginggpt.config import Settings, cache_dir


def test_environment_variables_configure_the_llm(monkeypatch):
    monkeypatch.setenv("HUGGINGGPT_LLM_BASE_URL", "http://localhost:11434/v1")
    monkeypatch.setenv("HUGGINGGPT_LLM_MODEL", "qwen2.5:7b")
    monkeypatch.setenv("HUGGINGGPT_LLM_API_KEY", "sk-secret")
    monkeypatch.setenv("HUGGINGGPT_TOP_K", "3")
    settings = Settings()
    assert settings.llm_base_url == "http://localhost:11434/v1" and settings.llm_model == "qwen2.5:7b"
    assert settings.llm_api_key.get_secret_value() == "sk-secret" and "sk-secret" not in repr(settings)
    assert settings.top_k == 3


def test_config_file_is_read_and_env_wins(tmp_path, monkeypatch):
    config = tmp_path / "hugginggpt.toml"
    config.write_text('selection = "top"\ntask_timeout = 12.5\nllm_model = "from-file"\n')
    monkeypatch.setenv("HUGGINGGPT_CONFIG", str(config))
    monkeypatch.setenv("HUGGINGGPT_LLM_MODEL", "from-env")
    settings = Settings()
    assert settings.selection == "top" and settings.task_timeout == 12.5 and settings.llm_model == "from-env"
    assert Settings(llm_model="from-cli").llm_model == "from-cli"


def test_missing_config_file_and_bad_values_are_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HUGGINGGPT_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        Settings()
    monkeypatch.delenv("HUGGINGGPT_CONFIG")
    with pytest.raises(ValidationError):
        Settings(selection="random")
    with pytest.raises(ValidationError):
        Settings(max_concurrency=0)


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HUGGINGGPT_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("HUGGINGGPT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "hugginggpt"


def test_the_settings_table_in_the_docs_is_the_one_generated_from_settings():
    from pathlib import Path

    from hugginggpt.config import Settings, settings_table

    docs = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    assert settings_table() in docs, "docs/configuration.md is stale: run python scripts/settings_table.py"
    for name in Settings.model_fields:
        assert f"`HUGGINGGPT_{name.upper()}`" in settings_table()
