"""The AsyncAPI document in the docs is the one built from the event catalog (regenerate it with
`uv run python -m parley.events.asyncapi > docs/asyncapi.json`), and names every event type
with its published schema."""

from __future__ import annotations

import json
from pathlib import Path

from parley.events.asyncapi import asyncapi_document
from parley.events.catalog import EVENT_TYPES, event_schemas

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def test_the_documented_asyncapi_is_current() -> None:
    assert json.loads(DOCUMENT.read_text(encoding="utf-8")) == json.loads(
        json.dumps(asyncapi_document())
    ), "docs/asyncapi.json is stale: uv run python -m parley.events.asyncapi > docs/asyncapi.json"


def test_every_event_type_is_a_message_of_the_channel() -> None:
    document = asyncapi_document("custom.topic")
    assert document["asyncapi"] == "3.0.0"
    assert document["channels"]["events"]["address"] == "custom.topic"
    messages = document["components"]["messages"]
    assert sorted(message["name"] for message in messages.values()) == sorted(
        kind.name for kind in EVENT_TYPES
    )
    schemas = {item.type: item.json_schema for item in event_schemas()}
    for key, message in messages.items():
        assert message["payload"] == schemas[message["name"]]
        reference = {"$ref": f"#/components/messages/{key}"}
        assert document["channels"]["events"]["messages"][key] == reference
