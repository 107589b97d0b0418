"""DSP0266 rules true of every request and response, as aiohttp middlewares.

``errors`` (outermost) turns every failure into a Redfish error body and adds the headers
every response carries; ``request_rules`` checks the URI and the request headers
(OData-Version, Accept, Content-Type) before anything else looks at the request.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

from aiohttp import web

from .errors import RedfishError
from .render import error_response

log = logging.getLogger("redfish_service.http")

MAX_URI_LENGTH = 2048
COMMON_HEADERS = {
    "OData-Version": "4.0",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
_STATUS_KEYS = {
    404: ("ResourceMissingAtURI", True),
    405: ("OperationNotAllowed", False),
    413: ("PayloadTooLarge", False),
}
_BAD_SEGMENT = re.compile(r"(^|/)\.\.?(/|$)")


def _add_common(response: web.StreamResponse, request: web.Request) -> None:
    for k, v in COMMON_HEADERS.items():
        response.headers.setdefault(k, v)
    if request.secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")


@web.middleware
async def errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except RedfishError as e:
        response = error_response(e)
    except web.HTTPException as e:
        key, takes_uri = _STATUS_KEYS.get(e.status, ("GeneralError", False))
        if e.status < 400:
            raise
        err = RedfishError.of(e.status, key, *((request.path,) if takes_uri else ()))
        if e.status == 405 and "Allow" in e.headers:
            err.headers["Allow"] = e.headers["Allow"]
        response = error_response(err)
    except Exception:
        log.exception("unhandled error", extra={"method": request.method, "path": request.path})
        response = error_response(RedfishError.of(500, "InternalError"))
    _add_common(response, request)
    return response


def _media_ok(accept: str, offered: tuple[str, ...]) -> bool:
    for item in accept.split(","):
        media = item.split(";")[0].strip().lower()
        params = [p.strip().lower() for p in item.split(";")[1:]]
        if "q=0" in params or "q=0.0" in params:
            continue
        if media in ("*/*", "") or media in offered:
            return True
        if media.endswith("/*") and any(o.startswith(media[:-1]) for o in offered):
            return True
    return False


def offered_media(path: str) -> tuple[str, ...]:
    if path.endswith("/$metadata"):
        return ("application/xml",)
    if path.endswith(".yaml"):
        return ("application/yaml",)
    if path.rstrip("/") == "/redfish/v1/EventService/SSE":
        return ("text/event-stream",)
    return ("application/json",)


@web.middleware
async def request_rules(request: web.Request, handler) -> web.StreamResponse:
    raw = request.raw_path.split("?", 1)[0]
    if len(request.raw_path) > MAX_URI_LENGTH:
        raise RedfishError.of(414, "InvalidURI", raw[:64] + "...")
    decoded = unquote(raw)
    if "%2f" in raw.lower() or _BAD_SEGMENT.search(decoded) or "//" in decoded or "\x00" in decoded:
        raise RedfishError.of(400, "InvalidURI", raw[:256])

    version = request.headers.get("OData-Version")
    if version is not None and version.strip() != "4.0":
        raise RedfishError.of(412, "HeaderInvalid", "OData-Version")

    accept = request.headers.get("Accept")
    if accept and request.method in ("GET", "HEAD"):
        offered = offered_media(request.path)
        if not _media_ok(accept, offered):
            raise RedfishError.of(406, "HeaderInvalid", "Accept")

    if request.method in ("POST", "PATCH", "PUT") and request.can_read_body:
        ctype = request.headers.get("Content-Type", "")
        media = ctype.split(";")[0].strip().lower()
        if media != "application/json":
            raise RedfishError.of(415, "HeaderInvalid", "Content-Type")
    return await handler(request)
