import os

import pytest


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    """Tests see only the settings they set, not the developer's HUGGINGGPT_* environment (the cache dir stays)."""
    for name in list(os.environ):
        if name.startswith("HUGGINGGPT_") and name != "HUGGINGGPT_CACHE_DIR":
            monkeypatch.delenv(name)
