"""Every table, imported in one place so that Alembic and the tests see the whole schema."""

from parley.accounts.models import ApiKey, ExternalIdentity, RefreshToken, User
from parley.chats.models import Chat, Message
from parley.core.db import Base
from parley.events.models import HandledEvent, OutboxEvent
from parley.files.models import StorageUsage, StoredFile
from parley.jobs.models import Job, JobSchedule
from parley.knowledge.models import KnowledgeBase, KnowledgeBaseFile, KnowledgeChunk
from parley.llm.models import CatalogModel
from parley.oauth.models import OAuthClient, OAuthCode, OAuthGrant, OAuthRefreshToken
from parley.tasks.models import Task, TaskTag
from parley.turns.models import IdempotencyRecord
from parley.usage.models import BudgetPeriod, BudgetReservation, UsageRecord

__all__ = [
    "ApiKey",
    "Base",
    "BudgetPeriod",
    "BudgetReservation",
    "CatalogModel",
    "Chat",
    "ExternalIdentity",
    "HandledEvent",
    "IdempotencyRecord",
    "Job",
    "JobSchedule",
    "KnowledgeBase",
    "KnowledgeBaseFile",
    "KnowledgeChunk",
    "Message",
    "OAuthClient",
    "OAuthCode",
    "OAuthGrant",
    "OAuthRefreshToken",
    "OutboxEvent",
    "RefreshToken",
    "StorageUsage",
    "StoredFile",
    "Task",
    "TaskTag",
    "UsageRecord",
    "User",
]
