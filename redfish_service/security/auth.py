"""Authentication: who is asking (session token or Basic credentials).

Authorization (may they do this to that resource) happens in the dispatcher, once the
target resource and its entity type are known.
"""

from __future__ import annotations

import base64
import binascii

from aiohttp import web

from .. import services
from ..protocol.errors import RedfishError
from ..resources import uris

PUBLIC_GET = frozenset({"/redfish", "/redfish/", uris.ROOT, uris.SERVICE_ROOT, uris.ODATA,
                        uris.METADATA})
LOGIN_URIS = frozenset({uris.SESSIONS, uris.SESSIONS + "/Members"})
REALM = 'Basic realm="redfish-composer", charset="UTF-8"'


def unauthorized() -> RedfishError:
    return RedfishError.of(401, "NoValidSession", headers={"WWW-Authenticate": REALM})


def is_public(request: web.Request) -> bool:
    path = request.path.rstrip("/") or "/"
    if request.method in ("GET", "HEAD") and (path in PUBLIC_GET or request.path in PUBLIC_GET):
        return True
    return request.method == "POST" and path in LOGIN_URIS


def _basic(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


@web.middleware
async def authenticate(request: web.Request, handler) -> web.StreamResponse:
    app = request.app
    principal = None
    token = request.headers.get("X-Auth-Token")
    authorization = request.headers.get("Authorization")
    if token:
        principal = app[services.SESSIONS].lookup(token)
        if principal is None and not is_public(request):
            raise unauthorized()
    elif authorization:
        creds = _basic(authorization)
        basic_enabled = (app[services.STORE].doc(uris.ACCOUNT_SERVICE) or {}).get(
            "HTTPBasicAuth", "Enabled"
        ) != "Disabled"
        if creds is not None and basic_enabled:
            principal = await app[services.ACCOUNTS].authenticate(*creds)
        if principal is None and not is_public(request):
            raise unauthorized()
    elif not is_public(request):
        raise unauthorized()
    request["principal"] = principal
    return await handler(request)
