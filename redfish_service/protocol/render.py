"""The one renderer: every JSON response of the service is built here."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from .errors import RedfishError, error_body

JSON = "application/json;charset=utf-8"
SCHEMA_BASE = "http://redfish.dmtf.org/schemas/v1/"


def schema_file(odata_type: str) -> str | None:
    """``#ManagerAccount.v1_14_1.ManagerAccount`` → ``ManagerAccount.v1_14_1.json``."""
    if not odata_type.startswith("#"):
        return None
    parts = odata_type[1:].split(".")
    if len(parts) == 3:
        return f"{parts[0]}.{parts[1]}.json"
    if len(parts) == 2:
        return f"{parts[0]}.json"
    return None


def describedby(odata_type: str | None) -> str | None:
    name = schema_file(odata_type or "")
    return f"<{SCHEMA_BASE}{name}>; rel=describedby" if name else None


def json_response(
    status: int,
    body: dict[str, Any] | bytes | None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    if body is None:
        return web.Response(status=status, headers=headers)
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return web.Response(status=status, body=data, content_type=None, headers={
        "Content-Type": JSON, **(headers or {})
    })


def error_response(err: RedfishError) -> web.Response:
    return json_response(err.status, error_body(err.messages), err.headers)
