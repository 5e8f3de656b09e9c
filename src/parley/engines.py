"""Start-up cost, handled in one place: the parts of Parley that need the model library.

Pydantic AI and the providers' SDKs take seconds to import, so nothing the app imports at start-up
imports them. The modules that do (the running turn and its loop, the model steps, the offline
model, the providers' SDKs, the gateway's model calls, the MCP SDK) are reached through the
accessors below. `warm_up` imports them
all in a worker thread once the app is up (see `parley.app`); an accessor called before that
imports what it needs itself, or waits for the warm-up's import in progress rather than racing it:
two threads importing one package with circular imports inside it at the same moment can see each
other's half-initialised modules, and one lock rules that out. Once imported, an accessor costs a
set lookup and a `sys.modules` one.

The domains call these accessors instead of importing the model library themselves. Besides them,
only optional integrations are imported where they are configured (the Redis client in `app.py`
and `core/responses.py`, the OTLP exporter in `core/telemetry.py`), and the command line imports
what each command needs when it runs (`cli.py`, `migrate.py`).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic_ai.models import Model

    from parley.chats.schemas import MessagePublic
    from parley.llm.selection import OpenAICompatibleModel
    from parley.llm.steps import ModelStep
    from parley.turns.context import ModelContext
    from parley.turns.running import RunningTurn

logger = logging.getLogger(__name__)
_lock = threading.RLock()
_done: set[str] = set()

# What the warm-up imports: everything a turn or a /v1 call may need, but the providers' SDKs,
# which `provider_modules` adds for the configured providers.
TURN_MODULES = (
    "parley.turns.running",
    "parley.turns.context",
    "parley.turns.replay",
    "parley.llm.pydantic_step",
    "parley.llm.openai_step",
    "parley.llm.offline.model",
    "parley.gateway.model_calls",
    "pydantic_ai.models.fallback",
)


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


def warm_up(names: Iterable[str]) -> None:
    """Import `names` ahead of use; one that fails is logged and left to fail where it is used."""
    with _lock:
        for name in names:
            if name in _done:
                continue
            try:
                _import(name)
            except Exception:
                logger.warning("could not import %s ahead of use", name, exc_info=True)


def _attribute(module: str, name: str) -> Any:
    ensure_imported(module)
    return getattr(importlib.import_module(module), name)


# -- the accessors -------------------------------------------------------------------------------


def running_turn() -> type[RunningTurn]:
    """The class that runs a turn (its loop, its event log, its saves)."""
    result: type[RunningTurn] = _attribute("parley.turns.running", "RunningTurn")
    return result


def turn_context() -> Callable[..., ModelContext]:
    """`parley.turns.context.build_context`: the model's view of a branch."""
    result: Callable[..., ModelContext] = _attribute("parley.turns.context", "build_context")
    return result


def stored_reply_chunks() -> Callable[[MessagePublic, str], list[str]]:
    """`parley.turns.replay.stored_reply_chunks`: a finished reply as a stream."""
    result: Callable[[MessagePublic, str], list[str]] = _attribute(
        "parley.turns.replay", "stored_reply_chunks"
    )
    return result


def pydantic_ai_step(model: Model) -> ModelStep:
    """The model step of a Pydantic AI model."""
    step: ModelStep = _attribute("parley.llm.pydantic_step", "PydanticAIStep")(model)
    return step


def openai_compatible_step(model: OpenAICompatibleModel) -> ModelStep:
    """The model step of an OpenAI-compatible server, without Pydantic AI's model."""
    step: ModelStep = _attribute("parley.llm.openai_step", "OpenAICompatibleStep")(model)
    return step


def fallback_model(model: Model, fallback: Model) -> Model:
    """Pydantic AI's `FallbackModel`: `fallback` answers when `model` fails."""
    result: Model = _attribute("pydantic_ai.models.fallback", "FallbackModel")(model, fallback)
    return result


def mcp_sessions() -> Any:
    """`parley.mcp.sessions`: the MCP SDK's session manager with Parley's caps, and its view of a
    user (the SDK is imported with the first `/mcp` request)."""
    return module("parley.mcp.sessions")


def module(name: str) -> Any:
    """A module of the model library or of Parley's code over it (a provider's SDK, a
    Pydantic AI model class's module, the offline model, the gateway's model calls)."""
    ensure_imported(name)
    return importlib.import_module(name)
