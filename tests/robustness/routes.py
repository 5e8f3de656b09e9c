"""The app's own route table and OpenAPI schema, as the robustness tests walk them: every HTTP route
the app serves (REST, streams, `/v1`, health, the web page, `/mcp`), and a valid sample of every
request body, so that a route added tomorrow is covered (or fails the test that does not know it)
without anyone editing a list of paths.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

# Path parameters that name one of a user's own rows.
RESOURCE_PARAMS = frozenset({"task_id", "chat_id", "message_id", "key_id"})
_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")


@dataclass(frozen=True)
class RouteKey:
    """One method on one path, as the route table spells the path (`/api/tasks/{task_id}`)."""

    method: str
    path: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def params(self) -> tuple[str, ...]:
        """The path's parameters, in order."""
        return tuple(_PARAM.findall(self.path))

    def url(self, values: dict[str, str]) -> str:
        """The path with its parameters filled in."""
        return _PARAM.sub(lambda match: values[match.group(1)], self.path)


def route_table(app: FastAPI) -> list[RouteKey]:
    """Every (method, path) the app answers, HEAD twins of GET routes left out."""
    keys: set[RouteKey] = set()
    for context in iter_route_contexts(app.routes):
        path = context.path
        methods = context.methods or set()
        if path is None:
            continue
        route = context.original_route
        if not isinstance(route, APIRoute) and path == "/openapi.json":
            continue  # the framework's own schema (the docs pages are Parley's routes)
        for method in methods:
            if method == "HEAD":
                continue
            keys.add(RouteKey(method, path))
    return sorted(keys, key=lambda key: (key.path, key.method))


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """`(method, path, operation)` for every operation of an OpenAPI schema."""
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield method.upper(), path, operation


def json_body_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON request body's schema of an operation, if it takes one."""
    content = operation.get("requestBody", {}).get("content", {})
    body = content.get("application/json")
    return None if body is None else dict(body["schema"])


class SampleBuilder:
    """Builds a small valid instance of a JSON schema (refs resolved against the OpenAPI schema):
    required fields only, unless `full`, where every property gets a value too."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.components = schema.get("components", {}).get("schemas", {})

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """The node, following `$ref`s."""
        while "$ref" in node:
            node = {
                **self.components[node["$ref"].rsplit("/", 1)[-1]],
                **{key: value for key, value in node.items() if key != "$ref"},
            }
        return node

    def sample(self, node: dict[str, Any], *, full: bool = False, name: str = "") -> Any:
        """A valid value of `node`."""
        node = self.resolve(node)
        if node.get("examples"):
            return copy.deepcopy(node["examples"][0])
        if "const" in node:
            return node["const"]
        if "enum" in node:
            return node["enum"][0]
        for combinator in ("anyOf", "oneOf"):
            if combinator in node:
                branches = [b for b in node[combinator] if self.resolve(b).get("type") != "null"]
                return self.sample(branches[0] if branches else node[combinator][0], full=full)
        if "allOf" in node:
            merged: dict[str, Any] = {}
            for branch in node["allOf"]:
                merged.update(self.resolve(branch))
            return self.sample(merged, full=full, name=name)
        kind = node.get("type")
        if kind == "object" or "properties" in node:
            properties = node.get("properties", {})
            required = set(node.get("required", []))
            return {
                key: self.sample(value, full=full, name=key)
                for key, value in properties.items()
                if key in required or (full and not key.endswith("_id"))
            }
        if kind == "array":
            count = max(1, int(node.get("minItems", 1)))
            return [self.sample(node.get("items", {}), full=full, name=name) for _ in range(count)]
        if kind == "string":
            return self._string(node, name)
        if kind == "integer":
            return max(int(node.get("minimum", 1)), 1)
        if kind == "number":
            return max(float(node.get("minimum", 1.0)), 1.0)
        if kind == "boolean":
            return False
        return "x"

    def properties_at(self, node: dict[str, Any], path: tuple[Any, ...]) -> set[str]:
        """The property names the schema declares for the object at `path` of an instance."""
        node = self._object_branch(node)
        for step in path:
            if isinstance(step, int):
                node = self._object_branch(node.get("items", {}))
            else:
                node = self._object_branch(node.get("properties", {}).get(step, {}))
        return set(node.get("properties", {}))

    def _object_branch(self, node: dict[str, Any]) -> dict[str, Any]:
        """The node, or its first branch that is an object or array (through anyOf/oneOf)."""
        node = self.resolve(node)
        for combinator in ("anyOf", "oneOf"):
            for branch in node.get(combinator, []):
                resolved = self.resolve(branch)
                if resolved.get("type") in ("object", "array") or "properties" in resolved:
                    return resolved
        return node

    @staticmethod
    def _string(node: dict[str, Any], name: str) -> str:
        fmt = node.get("format")
        if fmt == "email" or name == "email":
            return f"sample-{uuid.uuid4().hex[:10]}@example.com"
        if fmt == "date-time":
            return "2031-01-02T03:04:05Z"
        if fmt == "uuid":
            return str(uuid.uuid4())
        if "password" in name or fmt == "password":
            return "a sample password"
        if "pattern" in node and node["pattern"] == "^password$":
            return "password"
        return "sample text"[: max(int(node.get("maxLength", 11)), 1)]


def object_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The paths of every JSON object inside `value` (the root included)."""
    if isinstance(value, dict):
        yield path
        for key, item in value.items():
            yield from object_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from object_paths(item, (*path, index))


def string_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The paths of every string inside `value`."""
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from string_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from string_paths(item, (*path, index))


def get_at(value: Any, path: tuple[Any, ...]) -> Any:
    """The item of `value` at `path`."""
    for step in path:
        value = value[step]
    return value


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A deep copy of `value` with the item at `path` set to `new`."""
    result = copy.deepcopy(value)
    if not path:
        return new
    parent = get_at(result, path[:-1])
    parent[path[-1]] = new
    return result
