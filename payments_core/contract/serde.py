"""Serialization of contract events on the wire.

JSON (orjson) first. Producers and consumers take a ``Serde``, so swapping in Avro or Protobuf
later touches this module only.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson


class Serde(Protocol):
    content_type: str

    def dumps(self, record: dict[str, Any]) -> bytes: ...

    def loads(self, payload: bytes) -> dict[str, Any]: ...


class JsonSerde:
    content_type = "application/json"

    def dumps(self, record: dict[str, Any]) -> bytes:
        # datetimes as RFC 3339 with 'Z'; Decimal never appears (money is integer minor units).
        return orjson.dumps(record, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)

    def loads(self, payload: bytes) -> dict[str, Any]:
        value = orjson.loads(payload)
        if not isinstance(value, dict):
            raise ValueError("event must be a JSON object")
        return value


DEFAULT_SERDE: Serde = JsonSerde()
