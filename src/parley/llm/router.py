"""The model catalog over HTTP (CONTRACT.md section 5):

- `GET /api/models` — the enabled entries, in catalog order, paged; admins may pass
  `include_disabled=true` (anyone else: 403).
- `PATCH /api/admin/models/{model_id}` — an admin changes an entry (404 for an unknown id, 409 for
  a change that would leave no usable default). Catalog ids contain `:` and may contain `/`
  (`openai:meta-llama/llama-3-70b`); the path takes them as they are or URL-encoded.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from parley.accounts.dependencies import AdminUser, CurrentUser
from parley.core.dependencies import PageDep
from parley.core.errors import Conflict, Forbidden, InvalidToken, NotAuthenticated, NotFound
from parley.core.responses import Envelope, Page, error_responses, ok
from parley.core.validation import StorableText
from parley.llm.dependencies import CatalogServiceDep
from parley.llm.schemas import ModelPublic, ModelUpdate

models_router = APIRouter(prefix="/api/models", tags=["models"])
admin_models_router = APIRouter(prefix="/api/admin/models", tags=["admin"])


@models_router.get(
    "",
    summary="List models",
    responses=error_responses(NotAuthenticated, InvalidToken, Forbidden),
)
async def list_models(
    user: CurrentUser,
    catalog: CatalogServiceDep,
    page: PageDep,
    include_disabled: Annotated[
        bool, Query(description="Admins only: list disabled models too.")
    ] = False,
) -> Envelope[Page[ModelPublic]]:
    """The models a chat may use; `is_default` marks the one used when a chat names none."""
    entries, next_cursor = await catalog.list_models(
        user, include_disabled=include_disabled, cursor=page.cursor, limit=page.limit
    )
    return ok(Page(items=[ModelPublic.from_entry(e) for e in entries], next_cursor=next_cursor))


@admin_models_router.patch(
    "/{model_id:path}",
    summary="Update a model",
    responses=error_responses(NotAuthenticated, InvalidToken, Forbidden, NotFound, Conflict),
)
async def update_model(
    model_id: Annotated[
        StorableText,
        Path(
            min_length=3,
            max_length=200,
            description="The catalog id, `<provider>:<model>`.",
            examples=["offline:parley"],
        ),
    ],
    body: ModelUpdate,
    admin: AdminUser,
    catalog: CatalogServiceDep,
) -> Envelope[ModelPublic]:
    """Enable or disable a model, rename it, set its prices, or make it the default (which moves
    the default atomically). Changes survive restarts: start-up seeding leaves what an admin set."""
    entry = await catalog.update_model(model_id, body.model_dump(exclude_unset=True))
    return ok(ModelPublic.from_entry(entry))
