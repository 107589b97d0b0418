"""AccountService, accounts, roles and the privilege map."""

from __future__ import annotations

from typing import Any

from ..protocol.errors import RedfishError
from ..protocol.fields import Bool, Int, Str
from ..protocol.messages import message
from ..security import privileges
from ..security.passwords import hash_password_off_loop
from ..store import Transaction
from . import uris
from .context import Ctx
from .kind import Created, Kind

ACCOUNT_SERVICE_TYPE = "#AccountService.v1_18_1.AccountService"
ACCOUNT_TYPE = "#ManagerAccount.v1_14_1.ManagerAccount"
ROLE_TYPE = "#Role.v1_3_3.Role"
PRIVILEGE_REGISTRY_TYPE = "#PrivilegeRegistry.v1_2_0.PrivilegeRegistry"
USERNAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}"


def account_service_doc(policy) -> dict[str, Any]:
    return {
        "@odata.id": uris.ACCOUNT_SERVICE,
        "@odata.type": ACCOUNT_SERVICE_TYPE,
        "Id": "AccountService",
        "Name": "Account Service",
        "Description": "Local accounts and roles of the composability manager",
        "ServiceEnabled": True,
        "Status": {"State": "Enabled", "Health": "OK"},
        "LocalAccountAuth": "Enabled",
        "HTTPBasicAuth": "Enabled",
        "MinPasswordLength": policy.min_password_length,
        "MaxPasswordLength": policy.max_password_length,
        "AccountLockoutThreshold": policy.lockout_threshold,
        "AccountLockoutDuration": policy.lockout_duration,
        "AccountLockoutCounterResetAfter": policy.lockout_counter_reset_after,
        "AccountLockoutCounterResetEnabled": True,
        "SupportedAccountTypes": ["Redfish"],
        "Accounts": {"@odata.id": uris.ACCOUNTS},
        "Roles": {"@odata.id": uris.ROLES},
        "PrivilegeMap": {"@odata.id": uris.PRIVILEGE_MAP},
    }


def collection_doc(uri: str, entity: str, name: str) -> dict[str, Any]:
    return {
        "@odata.id": uri,
        "@odata.type": f"#{entity}.{entity}",
        "Name": name,
        "Members": [],
        "Members@odata.count": 0,
    }


def role_doc(role_id: str, assigned: list[str]) -> dict[str, Any]:
    return {
        "@odata.id": f"{uris.ROLES}/{role_id}",
        "@odata.type": ROLE_TYPE,
        "Id": role_id,
        "Name": f"{role_id} role",
        "RoleId": role_id,
        "IsPredefined": True,
        "AssignedPrivileges": assigned,
    }


def privilege_map_doc() -> dict[str, Any]:
    return {
        "@odata.id": uris.PRIVILEGE_MAP,
        "@odata.type": PRIVILEGE_REGISTRY_TYPE,
        "Id": "PrivilegeMap",
        "Name": "Privilege map this service enforces",
        "PrivilegesUsed": privileges.PRIVILEGES_USED,
        "OEMPrivilegesUsed": [],
        "Mappings": privileges.registry_mappings(),
    }


def account_doc(account_id: str, username: str, role_id: str, *, enabled: bool = True,
                password_change_required: bool = False) -> dict[str, Any]:
    return {
        "@odata.id": f"{uris.ACCOUNTS}/{account_id}",
        "@odata.type": ACCOUNT_TYPE,
        "Id": account_id,
        "Name": "User Account",
        "UserName": username,
        "Password": None,
        "RoleId": role_id,
        "Enabled": enabled,
        "Locked": False,
        "PasswordChangeRequired": password_change_required,
        "AccountTypes": ["Redfish"],
        "Links": {"Role": {"@odata.id": f"{uris.ROLES}/{role_id}"}},
    }


def check_password(ctx: Ctx, password: str, path: str = "Password") -> None:
    policy = ctx.accounts.policy()
    low = policy.get("MinPasswordLength", 8)
    high = policy.get("MaxPasswordLength", 128)
    if len(password) < low:
        raise RedfishError.of(400, "StringValueTooShort", "******", low, related=[f"/{path}"])
    if len(password) > high:
        raise RedfishError.of(400, "StringValueTooLong", "******", high, related=[f"/{path}"])


def check_role(ctx: Ctx, role_id: str) -> None:
    if ctx.store.doc(f"{uris.ROLES}/{role_id}") is None:
        raise RedfishError.of(400, "PropertyValueNotInList", role_id, "RoleId",
                              related=["/RoleId"])


def check_unique(tx: Transaction, ctx: Ctx, username: str, own_uri: str | None) -> None:
    for uri in ctx.store.members(uris.ACCOUNTS):
        doc = tx.get(uri)
        if uri != own_uri and doc and doc.get("UserName") == username:
            raise RedfishError.of(409, "ResourceAlreadyExists", "ManagerAccount", "UserName",
                                  username, related=["/UserName"])


def _other_admins(ctx: Ctx, uri: str) -> list[str]:
    """Enabled administrator accounts other than ``uri``."""
    out = []
    for other in ctx.store.members(uris.ACCOUNTS):
        doc = ctx.store.doc(other) or {}
        if other != uri and doc.get("RoleId") == "Administrator" and doc.get("Enabled", True):
            out.append(other)
    return out


class AccountServiceKind(Kind):
    entity = "AccountService"
    writable = {
        "MinPasswordLength": Int(minimum=1, maximum=256),
        "MaxPasswordLength": Int(minimum=1, maximum=1024),
        "AccountLockoutThreshold": Int(minimum=0, maximum=1000),
        "AccountLockoutDuration": Int(minimum=0, maximum=86400 * 30),
        "AccountLockoutCounterResetAfter": Int(minimum=0, maximum=86400 * 30),
        "AccountLockoutCounterResetEnabled": Bool(),
        "HTTPBasicAuth": Str(enum=["Enabled", "Unadvertised", "Disabled"]),
    }

    async def check_patch(self, ctx, tx, uri, old, new):
        if new["MinPasswordLength"] > new["MaxPasswordLength"]:
            raise RedfishError.of(400, "PropertyValueConflict", "MinPasswordLength",
                                  "MaxPasswordLength")
        duration = new["AccountLockoutDuration"]
        if duration and duration < new["AccountLockoutCounterResetAfter"]:
            raise RedfishError.of(400, "PropertyValueConflict", "AccountLockoutDuration",
                                  "AccountLockoutCounterResetAfter")
        return []


class AccountCollectionKind(Kind):
    entity = "ManagerAccountCollection"
    insertable = True

    async def create(self, ctx: Ctx, collection_uri: str, body: Any) -> Created:
        if not isinstance(body, dict):
            raise RedfishError.of(400, "MalformedJSON")
        known = {"UserName", "Password", "RoleId", "Enabled", "PasswordChangeRequired",
                 "AccountTypes", "Name", "Description", "Locked"}
        errors = [message("PropertyUnknown", k, related=[f"/{k}"])
                  for k in body if k not in known and not k.startswith("@")]
        errors += [message("PropertyMissing", k, related=[f"/{k}"])
                   for k in ("UserName", "Password", "RoleId") if k not in body]
        if errors:
            raise RedfishError(400, errors)
        checks = {
            "UserName": Str(pattern=USERNAME_PATTERN),
            "Password": Str(write_only=True),
            "RoleId": Str(),
            "Enabled": Bool(),
            "PasswordChangeRequired": Bool(),
            "Locked": Bool(),
        }
        for key, spec in checks.items():
            if key in body:
                _, errs = spec.check(key, body[key], None)
                if errs:
                    raise RedfishError(400, errs)
        if body.get("Locked") is True:
            raise RedfishError.of(400, "PropertyValueIncorrect", "Locked", "true")
        if "AccountTypes" in body and body["AccountTypes"] != ["Redfish"]:
            raise RedfishError.of(400, "PropertyValueNotInList", str(body["AccountTypes"]),
                                  "AccountTypes", related=["/AccountTypes"])
        check_role(ctx, body["RoleId"])
        check_password(ctx, body["Password"])
        password_hash = await hash_password_off_loop(body["Password"])
        async with ctx.store.transaction(ctx.actor) as tx:
            check_unique(tx, ctx, body["UserName"], None)
            taken = {u.rsplit("/", 1)[1] for u in ctx.store.members(collection_uri)}
            n = 1
            while str(n) in taken:
                n += 1
            doc = account_doc(
                str(n), body["UserName"], body["RoleId"],
                enabled=body.get("Enabled", True),
                password_change_required=body.get("PasswordChangeRequired", False),
            )
            tx.create(doc["@odata.id"], doc, {"password": password_hash})
        return Created(doc["@odata.id"])


class AccountKind(Kind):
    entity = "ManagerAccount"
    deletable = True
    writable = {
        "UserName": Str(pattern=USERNAME_PATTERN),
        "Password": Str(write_only=True),
        "RoleId": Str(),
        "Enabled": Bool(),
        "Locked": Bool(),
        "PasswordChangeRequired": Bool(),
    }

    async def check_patch(self, ctx, tx, uri, old, new):
        if new.get("Locked") and not old.get("Locked"):
            raise RedfishError.of(400, "PropertyValueIncorrect", "Locked", "true")
        if new.get("Password") is not None:
            check_password(ctx, new["Password"])
        if new["RoleId"] != old["RoleId"]:
            check_role(ctx, new["RoleId"])
        if new["UserName"] != old["UserName"]:
            check_unique(tx, ctx, new["UserName"], uri)
        was_admin = old.get("RoleId") == "Administrator" and old.get("Enabled", True)
        still_admin = new.get("RoleId") == "Administrator" and new.get("Enabled", True)
        if was_admin and not still_admin and not _other_admins(ctx, uri):
            # Disabling or demoting the last administrator would lock everyone out.
            raise RedfishError.of(409, "ResourceInUse")
        self_change = ctx.principal is not None and ctx.principal.account_uri == uri
        if self_change and new["RoleId"] != old["RoleId"]:
            # An account cannot raise (or drop) its own role.
            raise RedfishError.of(403, "InsufficientPrivilege")
        return []

    async def after_patch(self, ctx, tx, uri, old, new):
        private = tx.private(uri) or {}
        password_changed = new.get("Password") is not None
        if password_changed:
            private["password"] = await hash_password_off_loop(new["Password"])
            new["Password"] = None
            if ctx.principal is not None and ctx.principal.account_uri == uri:
                new["PasswordChangeRequired"] = False
        if old.get("Locked") and not new.get("Locked"):
            private.pop("locked_at", None)
        new["Links"] = {"Role": {"@odata.id": f"{uris.ROLES}/{new['RoleId']}"}}
        tx.put(uri, new, private)
        if password_changed or (old.get("Enabled", True) and not new.get("Enabled", True)):
            # A new password or a disabled account ends the account's other sessions.
            current = ctx.principal.session_uri if ctx.principal else None
            for session in ctx.store.members(uris.SESSIONS):
                entry = ctx.store.get(session)
                if entry and entry.private and entry.private.get("account") == uri \
                        and session != current:
                    tx.delete(session)

    async def delete(self, ctx, tx, uri):
        if ctx.principal is not None and ctx.principal.account_uri == uri:
            raise RedfishError.of(409, "ResourceInUse")
        if (ctx.store.doc(uri) or {}).get("RoleId") == "Administrator" \
                and not _other_admins(ctx, uri):
            raise RedfishError.of(409, "ResourceCannotBeDeleted")
        tx.delete(uri)
        for session in ctx.store.members(uris.SESSIONS):
            entry = ctx.store.get(session)
            if entry and entry.private and entry.private.get("account") == uri:
                tx.delete(session)


class RoleKind(Kind):
    entity = "Role"


class PrivilegeRegistryKind(Kind):
    entity = "PrivilegeRegistry"


KINDS = [AccountServiceKind(), AccountCollectionKind(), AccountKind(), RoleKind(),
         PrivilegeRegistryKind()]
