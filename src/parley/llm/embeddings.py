"""Text embeddings, for the knowledge base and `/v1/embeddings`: the `Embedder` interface, and
`Embeddings`, the process's embedding models (built once, in `parley.runtime`), which hands out
the one `EMBEDDING_MODEL` names (`default()`) or any other of the embedding catalog (`get()`).

The models are the embedding catalog's (`parley.llm.embedding_catalog`): `offline:embed`, always
there, and the configured providers' embedding models. Each is built on first use and kept, so
that a dimension learnt from a model's first answer is remembered; the providers' clients share
the relay's connection pool (`ModelProviders.relay_http`), which `ModelProviders` closes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from parley.core.errors import NotFound, ServiceUnavailable
from parley.llm.embedders import ModelEmbedder, Purpose
from parley.llm.embedding_catalog import EmbeddingEntry
from parley.llm.embedding_providers import GeminiEmbedder, OpenAICompatibleEmbedder
from parley.llm.offline.embedder import OfflineEmbedder
from parley.llm.openai_relay import OpenAIRelay
from parley.llm.providers import ModelProviders, ProviderNotConfigured
from parley.llm.schemas import OFFLINE_PROVIDER
from parley.settings import Settings

if TYPE_CHECKING:
    import numpy
    from numpy.typing import NDArray


class Embedder(Protocol):
    """One embedding model, ready to embed."""

    @property
    def model_id(self) -> str:
        """The catalog id, e.g. `offline:embed`."""
        ...

    @property
    def dimension(self) -> int:
        """The length of the model's vectors (a provider's model whose catalog entry does not
        give it raises `parley.llm.embedders.DimensionUnknown` until its first answer)."""
        ...

    async def embed(self, texts: Sequence[str], *, purpose: Purpose) -> NDArray[numpy.float32]:
        """float32 array of shape (len(texts), dimension), each row L2-normalised. Batches the
        provider calls itself (a bounded batch size per call); raises ProviderError /
        ProviderUnavailable / ProviderTimeout (parley.core.errors) on upstream trouble and
        ValueError on bad input (empty strings are allowed and embed to a valid vector)."""
        ...


class UnknownEmbeddingModel(NotFound):
    """No embedding model of the catalog has this id (a chat model's id included)."""

    default_message = "No embedding model has this id."


class Embeddings:
    """Built once per process (in Runtime) from Settings and the catalog.

    Args:
        settings: `EMBEDDING_THREADS` and the providers' retries.
        entries: the embedding catalog, exactly one entry `is_default`
            (`parley.llm.embedding_catalog.load_embedding_catalog`).
        providers: the configured providers' URLs and keys, and the relay's connection pool.

    Raises:
        ValueError: `entries` has not exactly one default.
    """

    def __init__(
        self, settings: Settings, entries: Sequence[EmbeddingEntry], providers: ModelProviders
    ) -> None:
        self.settings = settings
        self.providers = providers
        self._entries = {entry.id: entry for entry in entries}
        defaults = [entry.id for entry in entries if entry.is_default]
        if len(defaults) != 1:
            raise ValueError("the embedding catalog needs exactly one default entry")
        self._default_id = defaults[0]
        self._embedders: dict[str, ModelEmbedder] = {}
        self._closed = False

    def entries(self) -> list[EmbeddingEntry]:
        """Every embedding model of the catalog (the offline embedder last)."""
        return list(self._entries.values())

    def default(self) -> Embedder:
        """The embedding model `EMBEDDING_MODEL` names."""
        return self.embedder(self._default_id)

    def get(self, model_id: str) -> Embedder:
        """The embedding model with this catalog id.

        Raises:
            UnknownEmbeddingModel: a `NotFound`: no embedding model has this id.
        """
        return self.embedder(model_id)

    def embedder(self, model_id: str) -> ModelEmbedder:
        """`get`, as the class that also counts tokens (`embed_counted`) and names its entry.

        Raises:
            UnknownEmbeddingModel: no embedding model has this id.
            ServiceUnavailable: the process is shutting down.
        """
        if self._closed:
            raise ServiceUnavailable("The server is shutting down.")
        embedder = self._embedders.get(model_id)
        if embedder is not None:
            return embedder
        entry = self._entries.get(model_id)
        if entry is None:
            raise UnknownEmbeddingModel(f"No embedding model has the id {model_id!r}.")
        embedder = self._embedders[model_id] = self._build(entry)
        return embedder

    def _build(self, entry: EmbeddingEntry) -> ModelEmbedder:
        if entry.provider == OFFLINE_PROVIDER:
            return OfflineEmbedder(entry, threads=self.settings.embedding_threads)
        config = self.providers.config(entry.provider)
        if config is None:  # planned from the same settings: only a bug gets here
            raise ProviderNotConfigured()
        retries = self.settings.provider_max_retries
        if entry.provider == "gemini":
            return GeminiEmbedder(entry, self.providers.relay_http, config, retries)
        relay = OpenAIRelay(self.providers.relay_http, config, retries, path="/embeddings")
        return OpenAICompatibleEmbedder(entry, relay)

    async def aclose(self) -> None:
        """Refuse new work and wait for the offline engine's batch in progress (the connection
        pool is `ModelProviders`' to close, after this)."""
        self._closed = True
        for embedder in list(self._embedders.values()):
            await embedder.aclose()
