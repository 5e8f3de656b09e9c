"""The AsyncAPI 3.0 document of Parley's events: the one channel (`EVENTS_TOPIC`), what each
broker calls it, and one message per event type whose payload is the type's JSON Schema (the
same as `GET /api/events/schemas`). Built from the event catalog, so it cannot drift from what
is published: `python -m parley.events.asyncapi > docs/asyncapi.json` writes the copy in the docs,
and a test checks that copy is current.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from parley.events.catalog import event_schemas

DEFAULT_TOPIC = "parley.events"


def _key(event_type: str) -> str:
    """A component name of an event type (`parley.task.created.v1` -> `task_created_v1`)."""
    return event_type.removeprefix("parley.").replace(".", "_")


def asyncapi_document(topic: str = DEFAULT_TOPIC) -> dict[str, Any]:
    """The document, for the topic `topic`."""
    schemas = event_schemas()
    messages = {
        _key(item.type): {
            "name": item.type,
            "title": item.type,
            "summary": item.description,
            "contentType": "application/cloudevents+json",
            "payload": item.json_schema,
        }
        for item in schemas
    }
    references = {key: {"$ref": f"#/components/messages/{key}"} for key in messages}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Parley events",
            "version": "1",
            "description": (
                "Every change worth telling, as a structured CloudEvents 1.0 event, delivered "
                "at least once (docs/events.md). The names below are those of EVENTS_TOPIC="
                f"{topic}: Redis Streams, the stream `{topic}`; NATS JetStream, the subject "
                f"`{topic}.<type>` in a stream capturing `{topic}.>`, Nats-Msg-Id = the event "
                f"id; RabbitMQ, the topic exchange `{topic}`, routing key = the type; Kafka, the "
                f"topic `{topic}`, key = the subject; Dapr, the topic `{topic}`."
            ),
        },
        "defaultContentType": "application/cloudevents+json",
        "channels": {
            "events": {
                "address": topic,
                "description": "Every Parley event, in order per subject.",
                "messages": references,
                "bindings": {
                    "amqp": {
                        "is": "routingKey",
                        "exchange": {"name": topic, "type": "topic", "durable": True},
                    },
                    "kafka": {"topic": topic},
                },
            }
        },
        "operations": {
            "publishEvents": {
                "action": "send",
                "summary": "The relay publishes committed events from the outbox.",
                "channel": {"$ref": "#/channels/events"},
                "messages": [{"$ref": f"#/channels/events/messages/{key}"} for key in messages],
            },
            "consumeEvents": {
                "action": "receive",
                "summary": (
                    "Parley's consumers (and yours) read the events, each in its own consumer "
                    "group, and must be idempotent on the event id."
                ),
                "channel": {"$ref": "#/channels/events"},
                "messages": [{"$ref": f"#/channels/events/messages/{key}"} for key in messages],
            },
        },
        "components": {"messages": messages},
    }


def main() -> None:
    """Print the document (for the topic given as the first argument, else the default)."""
    topic = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_TOPIC
    sys.stdout.write(json.dumps(asyncapi_document(topic), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
