"""The OpenAPI schema states the limits this service enforces, not the widest ones the code allows.

The request models carry the widest limits any configuration may set (k up to 1000, batches up
to 10,000); a service runs with its own (`max_k`, `max_batch`, `max_body_bytes`). The schema is
rewritten once, on first request of /openapi.json, so a client generated from it, or a fuzzer,
never sends what this service would refuse.
"""

from __future__ import annotations

from typing import Any

__all__ = ["with_enforced_limits"]


def _set_max(node: dict[str, Any], maximum: int, key: str = "maximum") -> None:
    """Set `key` on a property schema, inside `anyOf` alternatives too (optional fields)."""
    if key in node:
        node[key] = min(node[key], maximum)
    for alternative in node.get("anyOf", ()):
        if key in alternative:
            alternative[key] = min(alternative[key], maximum)


def with_enforced_limits(app, settings) -> None:
    """Make `app.openapi()` return the schema with this service's limits."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        components = schema.get("components", {}).get("schemas", {})
        for name in ("RecommendationRequest", "SlateOptions"):
            prop = components.get(name, {}).get("properties", {}).get("k")
            if prop is not None:
                _set_max(prop, settings.max_k)
        for name, field in (("EventBatch", "events"), ("MyEventBatch", "events"), ("ItemBatch", "items")):
            prop = components.get(name, {}).get("properties", {}).get(field)
            if prop is not None:
                _set_max(prop, settings.max_batch, "maxItems")
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                if not isinstance(operation, dict):
                    continue
                for parameter in operation.get("parameters", ()):
                    if parameter.get("name") == "k" and parameter.get("in") == "query":
                        _set_max(parameter.get("schema", {}), settings.max_k)
                if "requestBody" in operation:
                    operation["requestBody"]["description"] = (
                        f"JSON, at most {settings.max_body_bytes:,} bytes (413 above); malformed JSON is a 400.")
        info = schema.setdefault("info", {})
        info["description"] = (info.get("description", "") + (
            f"\n\nLimits of this service: k up to {settings.max_k}, batches up to {settings.max_batch} "
            f"events or items, bodies up to {settings.max_body_bytes:,} bytes, {settings.max_in_flight} "
            f"requests at once (503 with Retry-After beyond), a request's head and body within "
            f"{settings.request_timeout_s:g} s."))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
