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


def unauthorized(basic_advertised: bool = True) -> RedfishError:
    headers = {"WWW-Authenticate": REALM} if basic_advertised else None
    return RedfishError.of(401, "NoValidSession", headers=headers)


def basic_mode(app: web.Application) -> str:
    """AccountService.HTTPBasicAuth: Enabled, Unadvertised or Disabled."""
    service = app[services.STORE].doc(uris.ACCOUNT_SERVICE) or {}
    return service.get("HTTPBasicAuth", "Enabled")


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
    mode = basic_mode(app)
    advertised = mode == "Enabled"
    token = request.headers.get("X-Auth-Token")
    authorization = request.headers.get("Authorization")
    if token:
        principal = app[services.SESSIONS].lookup(token)
        if principal is None and not is_public(request):
            raise unauthorized(advertised)
    elif authorization:
        creds = _basic(authorization)
        if creds is not None and mode != "Disabled":
            principal = await app[services.ACCOUNTS].authenticate(*creds)
        if principal is None and not is_public(request):
            raise unauthorized(advertised)
    elif not is_public(request):
        raise unauthorized(advertised)
    request["principal"] = principal
    return await handler(request)
