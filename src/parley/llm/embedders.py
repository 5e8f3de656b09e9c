"""What every embedder shares (`ModelEmbedder`): checking the texts, splitting them into batches of
bounded size for the model's calls, and turning each batch's answer into unit-length float32 rows
of the model's dimension — learning that dimension from the first answer when the catalog does not
give it. The offline embedder (`parley.llm.offline.embedder`) and the providers' clients
(`parley.llm.embedding_providers`) only make the calls.

numpy is imported with the first embedding, not with the app: a server that never embeds does
not pay for it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from parley.core.errors import ProviderError
from parley.llm.embedding_catalog import EmbeddingEntry
from parley.usage.pricing import tokens_for_chars

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

Purpose = Literal["query", "passage"]
PURPOSES: tuple[Purpose, ...] = ("query", "passage")


class DimensionUnknown(LookupError):
    """The model's dimension is not in its catalog entry and it has not answered yet."""


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    """Embedded texts and what they took.

    Attributes:
        vectors: float32, shape `(len(texts), dimension)`, each row of unit length.
        prompt_tokens: the tokens the model read (its own count, else about four characters a
            token).
    """

    vectors: NDArray[np.float32]
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class RawBatch:
    """One call's answer as the model gave it: a row per text, and the tokens it reported (None
    when it reports none)."""

    vectors: NDArray[np.float32]
    prompt_tokens: int | None


def checked_texts(texts: Sequence[str], purpose: str) -> list[str]:
    """The texts as a list, after checking them and the purpose.

    Raises:
        ValueError: `purpose` is neither `query` nor `passage`; `texts` is one string rather than
            a sequence of them; an item is not a string, or holds a lone surrogate (no model can
            read it; a NUL or any other character is fine).
    """
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be 'query' or 'passage', not {purpose!r}")
    if isinstance(texts, str | bytes):
        raise ValueError("texts must be a sequence of strings, not one string")
    items = list(texts)
    for index, text in enumerate(items):
        if not isinstance(text, str):
            raise ValueError(f"texts[{index}] is a {type(text).__name__}, not a string")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"texts[{index}] is not valid Unicode (a lone surrogate)") from None
    return items


def batches(texts: Sequence[str], *, max_texts: int, max_chars: int) -> Iterator[list[str]]:
    """`texts` in order, in batches of at most `max_texts` texts and, unless one text alone is
    longer, `max_chars` characters."""
    batch: list[str] = []
    size = 0
    for text in texts:
        if batch and (len(batch) >= max_texts or size + len(text) > max_chars):
            yield batch
            batch, size = [], 0
        batch.append(text)
        size += len(text)
    if batch:
        yield batch


def unit_rows(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    """The rows scaled to unit length (a row of zeros stays zeros: it has no direction)."""
    import numpy as np

    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    scaled = vectors / np.where(norms > 0, norms, 1.0)
    return np.ascontiguousarray(scaled, dtype=np.float32)


class ModelEmbedder(ABC):
    """An embedding model of the catalog, ready to embed (it satisfies
    `parley.llm.embeddings.Embedder`).

    Subclasses set the batch bounds and make one call per batch (`_embed_batch`).

    Args:
        entry: the model's catalog entry.
    """

    max_batch_texts: ClassVar[int]
    max_batch_chars: ClassVar[int]

    def __init__(self, entry: EmbeddingEntry) -> None:
        self.entry = entry
        self._dimension = entry.dimension

    @property
    def model_id(self) -> str:
        """The catalog id (`offline:embed`, `openai:text-embedding-3-small`, ...)."""
        return self.entry.id

    @property
    def dimension(self) -> int:
        """The length of the model's vectors.

        Raises:
            DimensionUnknown: neither the catalog entry nor an answer has told it yet.
        """
        if self._dimension is None:
            raise DimensionUnknown(
                f"the dimension of {self.entry.id} is learnt from its first answer (or give "
                "`dimensions` in its models-file entry)"
            )
        return self._dimension

    @property
    def known_dimension(self) -> int | None:
        """The dimension if it is known yet, else None."""
        return self._dimension

    async def embed(self, texts: Sequence[str], *, purpose: Purpose) -> NDArray[np.float32]:
        """float32 array of shape `(len(texts), dimension)`, each row L2-normalised.

        Raises:
            ValueError: bad input (see `checked_texts`); empty strings are fine.
            ProviderError, ProviderUnavailable, ProviderTimeout: the provider failed.
        """
        return (await self.embed_counted(texts, purpose=purpose)).vectors

    async def embed_counted(self, texts: Sequence[str], *, purpose: Purpose) -> EmbeddingResult:
        """`embed`, with the tokens the model read (for usage records).

        Raises:
            ValueError: bad input (see `checked_texts`).
            ProviderError, ProviderUnavailable, ProviderTimeout: the provider failed.
        """
        import numpy as np

        items = checked_texts(texts, purpose)
        if not items:
            return EmbeddingResult(np.zeros((0, self._dimension or 0), dtype=np.float32), 0)
        parts: list[NDArray[np.float32]] = []
        tokens = 0
        for batch in batches(items, max_texts=self.max_batch_texts, max_chars=self.max_batch_chars):
            raw = await self._embed_batch(batch, purpose)
            parts.append(self._finished(raw.vectors, len(batch)))
            if raw.prompt_tokens is not None:
                tokens += raw.prompt_tokens
            else:
                tokens += tokens_for_chars(sum(len(text) for text in batch))
        vectors = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return EmbeddingResult(vectors, tokens)

    def _finished(self, vectors: NDArray[np.float32], count: int) -> NDArray[np.float32]:
        """A batch's rows checked against the model's dimension (learnt here the first time)
        and scaled to unit length."""
        import numpy as np

        if vectors.ndim != 2 or vectors.shape[0] != count or vectors.shape[1] == 0:
            raise ProviderError("The embedding model answered the wrong number of vectors.")
        width = int(vectors.shape[1])
        if self._dimension is None:
            self._dimension = width
        elif width > self._dimension and self.entry.truncates:
            vectors = vectors[:, : self._dimension]
        elif width != self._dimension:
            raise ProviderError(
                f"The embedding model answered vectors of {width} dimensions, not "
                f"{self._dimension}."
            )
        if not np.isfinite(vectors).all():
            raise ProviderError("The embedding model answered vectors that are not numbers.")
        if not np.linalg.norm(vectors, axis=1).all():
            raise ProviderError("The embedding model answered an empty (all-zero) vector.")
        return unit_rows(vectors)

    @abstractmethod
    async def _embed_batch(self, texts: list[str], purpose: Purpose) -> RawBatch:
        """One call of the model for one batch (at most `max_batch_texts` texts)."""

    async def aclose(self) -> None:
        """Wait for a call in progress that holds a resource of the process (the offline
        engine overrides this); the providers' clients hold none of their own."""
        return
