import os

import pytest


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    """Tests see only the settings they set, not the developer's HUGGINGGPT_* environment (the cache dir stays)."""
    for name in list(os.environ):
        if name.startswith("HUGGINGGPT_") and name != "HUGGINGGPT_CACHE_DIR":
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch):
    """Tests never reach the Hugging Face Hub: backends see it as offline unless a test points them at a local
    server speaking its API (and says so with the `online_hub` fixture)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def online_hub(monkeypatch):
    """Lift the offline mode for a test whose Hub is a local server (huggingface_hub read it at import)."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(ok, reason): a real part; skip where missing, fail when CI is set")


def pytest_runtest_setup(item: pytest.Item) -> None:
    from parts import need

    for mark in item.iter_markers("needs"):
        need(bool(mark.args[0]), mark.kwargs.get("reason") or mark.args[1])
