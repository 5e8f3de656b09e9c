"""Heavy modules imported once, safely across threads.

The model library (Pydantic AI and the provider SDKs) takes seconds to import, so Parley imports it
after start-up in a worker thread (`import_modules`), and code that needs it calls
`ensure_imported` first. Both take one lock: two threads importing one package with circular
imports inside it at the same moment can see each other's half-initialised modules (an
`ImportError` "partially initialized module"), and the lock rules that out. Once a module is
imported, `ensure_imported` costs a set lookup.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Iterable

logger = logging.getLogger(__name__)
_lock = threading.RLock()
_done: set[str] = set()


def _import(name: str) -> None:
    importlib.import_module(name)
    _done.add(name)


def ensure_imported(*names: str) -> None:
    """Import `names` if that is not done yet, waiting for an import in progress elsewhere."""
    if _done.issuperset(names):
        return
    with _lock:
        for name in names:
            if name not in _done:
                _import(name)


def import_modules(names: Iterable[str]) -> None:
    """Import `names` ahead of use (a warm-up); one that fails is logged and left to fail where
    it is used."""
    with _lock:
        for name in names:
            if name in _done:
                continue
            try:
                _import(name)
            except Exception:
                logger.warning("could not import %s ahead of use", name, exc_info=True)
