"""SessionService, the Sessions collection (login) and sessions (logout)."""

from __future__ import annotations

from typing import Any

from ..protocol.errors import RedfishError
from ..protocol.fields import Int, Str
from ..protocol.messages import message
from ..security.auth import basic_mode, unauthorized
from . import uris
from .kind import Created, Kind

SESSION_SERVICE_TYPE = "#SessionService.v1_2_0.SessionService"


def session_service_doc(timeout: int) -> dict[str, Any]:
    return {
        "@odata.id": uris.SESSION_SERVICE,
        "@odata.type": SESSION_SERVICE_TYPE,
        "Id": "SessionService",
        "Name": "Session Service",
        "Description": "Redfish sessions of the composability manager",
        "ServiceEnabled": True,
        "Status": {"State": "Enabled", "Health": "OK"},
        "SessionTimeout": timeout,
        "Sessions": {"@odata.id": uris.SESSIONS},
    }


class SessionServiceKind(Kind):
    entity = "SessionService"
    writable = {"SessionTimeout": Int(minimum=30, maximum=86400)}


class SessionCollectionKind(Kind):
    entity = "SessionCollection"
    insertable = True

    async def create(self, ctx, collection_uri, body) -> Created:
        if not isinstance(body, dict):
            raise RedfishError.of(400, "MalformedJSON")
        errors = [message("PropertyMissing", k, related=[f"/{k}"])
                  for k in ("UserName", "Password") if k not in body]
        errors += [message("PropertyUnknown", k, related=[f"/{k}"]) for k in body
                   if k not in ("UserName", "Password", "Context") and not k.startswith("@")]
        for key, spec in (("UserName", Str()), ("Password", Str(write_only=True)),
                          ("Context", Str(max_length=256))):
            if key in body:
                errors += spec.check(key, body[key], None)[1]
        if errors:
            raise RedfishError(400, errors)
        principal = await ctx.accounts.authenticate(body["UserName"], body["Password"])
        if principal is None:
            raise unauthorized(basic_mode(ctx.app) == "Enabled")
        uri, token = await ctx.sessions.create(principal, ctx.remote, body.get("Context"))
        headers = {"X-Auth-Token": token}
        created = Created(uri, headers=headers)
        if principal.password_change_required:
            doc = dict(ctx.store.doc(uri) or {})
            doc["@Message.ExtendedInfo"] = [
                message("PasswordChangeRequired", principal.account_uri)
            ]
            created.body = doc
        return created


class SessionKind(Kind):
    entity = "Session"
    deletable = True


KINDS = [SessionServiceKind(), SessionCollectionKind(), SessionKind()]
