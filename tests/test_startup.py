"""Start-up stays light: building the app imports neither the model library (Pydantic AI and the
provider SDKs) nor the MCP SDK; they load with the first turn, `/v1` call or `/mcp` request. Each
of them takes a second or more to import, and issue 8 wants a server live within 3 s. Nor does it
import the Redis client or the OTLP exporter unless they are configured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("pydantic_ai", "mcp", "openai", "anthropic", "google.genai")
# Needed only when configured (REDIS_URL, OTEL_EXPORTER_OTLP_ENDPOINT); unset here.
UNCONFIGURED = ("redis", "opentelemetry.exporter.otlp.proto.http")

CHECK = """
import sys
from parley.app import create_app
from parley.settings import Settings
create_app(Settings(_env_file=None, data_dir=sys.argv[1], jwt_secret="x" * 40))
print(",".join(name for name in sys.argv[2:] if name in sys.modules))
"""


def test_building_the_app_imports_no_model_or_mcp_library(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK, str(tmp_path), *HEAVY, *UNCONFIGURED],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert result.stdout.strip() == "", f"imported at start-up: {result.stdout.strip()}"


WARM = """
import asyncio, sys
from parley import migrate
from parley.app import create_app
from parley.settings import Settings

settings = Settings(_env_file=None, data_dir=sys.argv[1], jwt_secret="x" * 40)
migrate.upgrade(settings)

async def main():
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        # A turn arriving while the warm-up thread imports the same package must neither fail
        # on a half-imported module nor import it a second time.
        from parley.llm.service import OFFLINE_ENTRY
        await asyncio.sleep(0.2)  # the warm-up thread is importing now
        app.state.model_providers.model_for(OFFLINE_ENTRY)
        await app.state.warm_up
        print(",".join(name for name in sys.argv[2:] if name in sys.modules))

asyncio.run(main())
"""


def test_the_model_library_is_imported_in_the_background_once_up(tmp_path: Path) -> None:
    """So the first turn does not stall the event loop on an import; one that comes during the
    warm-up waits for it instead of racing it."""
    wanted = ("pydantic_ai", "parley.turns.running", "parley.gateway.model_calls")
    result = subprocess.run(
        [sys.executable, "-c", WARM, str(tmp_path), *wanted],
        capture_output=True,
        text=True,
        check=True,
        timeout=180,
    )
    assert result.stdout.strip().splitlines()[-1] == ",".join(wanted)
