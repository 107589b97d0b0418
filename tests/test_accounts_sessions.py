"""Accounts, roles, privileges, sessions, lockout and PasswordChangeRequired (DSP0266 13)."""

from __future__ import annotations

import asyncio
import re
import time

from redfish_service import services

from .conftest import basic
from .support.service import ADMIN_PASSWORD
from .test_protocol import (
    ACCOUNT_SERVICE,
    ACCOUNTS,
    ADMIN_ACCOUNT,
    BASE_PREFIX,
    MANAGER,
    NETWORK_PROTOCOL,
    PUBLIC,
    ROLES,
    SERVICE_ROOT,
    SESSION_SERVICE,
    SESSIONS,
    cheap_password_hashing,  # noqa: F401 (autouse fixture)
    check_message,
    error_ids,
    expect_error,
    ext_ids,
    get_json,
    snapshot,
)

USER_PASSWORD = "User-passw0rd"
NEW_PASSWORD = "Changed-passw0rd"


async def login(client, username: str, password: str, uri: str = SESSIONS):
    return await client.post(uri, json={"UserName": username, "Password": password})


async def session_of(client, username: str, password: str = USER_PASSWORD):
    """(token headers, session URI) of a new session."""
    resp = await login(client, username, password)
    assert resp.status == 201, await resp.text()
    return {"X-Auth-Token": resp.headers["X-Auth-Token"]}, resp.headers["Location"]


async def session_uris(client, admin) -> list[str]:
    return [m["@odata.id"] for m in (await get_json(client, SESSIONS, admin))["Members"]]


# -- sessions --------------------------------------------------------------------------------


async def test_login_creates_session(client, admin):
    resp = await login(client, "admin", ADMIN_PASSWORD)
    assert resp.status == 201
    token = resp.headers["X-Auth-Token"]
    assert re.fullmatch(r"[0-9a-f]+", token), token
    assert len(token) * 4 >= 128
    location = resp.headers["Location"]
    assert re.fullmatch(SESSIONS + r"/[^/?#]+", location), location
    body = await resp.json()
    assert body["@odata.id"] == location
    assert body["@odata.type"].startswith("#Session.v1_")
    assert body["Id"] == location.rsplit("/", 1)[1]
    assert body["UserName"] == "admin"
    assert "Password" in body and body["Password"] is None
    assert token not in str(body)
    # The token works and the session is listed.
    got = await get_json(client, location, {"X-Auth-Token": token})
    assert got["UserName"] == "admin"
    assert location in await session_uris(client, admin)


async def test_tokens_are_distinct(client):
    tokens = set()
    for _ in range(3):
        resp = await login(client, "admin", ADMIN_PASSWORD)
        assert resp.status == 201
        tokens.add(resp.headers["X-Auth-Token"])
    assert len(tokens) == 3


async def test_login_via_members(client, admin):
    resp = await login(client, "admin", ADMIN_PASSWORD, SESSIONS + "/Members")
    assert resp.status == 201, await resp.text()
    location = resp.headers["Location"]
    assert location.startswith(SESSIONS + "/")
    assert "/Members/" not in location
    token = {"X-Auth-Token": resp.headers["X-Auth-Token"]}
    assert (await client.get(ACCOUNT_SERVICE, headers=token)).status == 200
    assert location in await session_uris(client, admin)


async def test_logout(client, admin):
    token, uri = await session_of(client, "admin", ADMIN_PASSWORD)
    resp = await client.delete(uri, headers=token)
    assert resp.status in (200, 204)
    resp = await client.get(ACCOUNT_SERVICE, headers=token)
    await expect_error(resp, 401)
    assert "WWW-Authenticate" in resp.headers
    assert uri not in await session_uris(client, admin)
    # Other sessions are unaffected.
    assert (await client.get(ACCOUNT_SERVICE, headers=admin)).status == 200


async def test_wrong_password_gives_no_hint(client, make_user):
    await make_user("hinty", "ReadOnly")
    wrong = await login(client, "hinty", "Wrong-passw0rd")
    unknown = await login(client, "nosuchuser", "Wrong-passw0rd")
    assert wrong.status == unknown.status == 401
    assert "X-Auth-Token" not in wrong.headers
    wrong_body, unknown_body = await wrong.json(), await unknown.json()
    error_ids(wrong_body)
    assert wrong_body == unknown_body
    text = str(wrong_body).lower()
    for word in ("password", "locked", "hinty", "unknown user", "does not exist"):
        assert word not in text, word


async def test_login_body_errors(client):
    resp = await client.post(SESSIONS, json={"UserName": "admin"})
    await expect_error(resp, 400, "PropertyMissing")
    resp = await client.post(SESSIONS, json={"UserName": "admin", "Password": 5})
    await expect_error(resp, 400, "PropertyValueTypeError")
    resp = await client.post(SESSIONS, data=b"{bad", headers={"Content-Type": "application/json"})
    await expect_error(resp, 400, "MalformedJSON")


async def test_basic_auth_without_session(client, admin):
    before = await session_uris(client, admin)
    resp = await client.get(ACCOUNTS, headers=basic("admin", ADMIN_PASSWORD))
    assert resp.status == 200
    resp = await client.patch(ACCOUNT_SERVICE, json={"MinPasswordLength": 9},
                              headers=basic("admin", ADMIN_PASSWORD))
    assert resp.status == 200
    assert await session_uris(client, admin) == before
    resp = await client.get(ACCOUNTS, headers=basic("admin", "wrong-password"))
    await expect_error(resp, 401)
    assert resp.headers["WWW-Authenticate"].lower().startswith("basic")


async def test_basic_password_may_contain_colons(client, make_user):
    headers, uri = await make_user("colon", "ReadOnly", password="Pass:word:123")
    assert (await client.get(uri, headers=headers)).status == 200
    assert (await client.get(uri, headers=basic("colon", "Pass"))).status == 401


async def test_invalid_token_is_401(client):
    for token in ("0" * 64, "not-a-token", "x"):
        resp = await client.get(ACCOUNTS, headers={"X-Auth-Token": token})
        await expect_error(resp, 401)
        assert "WWW-Authenticate" in resp.headers


async def test_malformed_basic_header_is_401(client):
    for value in ("Basic", "Basic !!!", "Basic " + "YWRtaW4=", "Bearer abc"):
        resp = await client.get(ACCOUNTS, headers={"Authorization": value})
        await expect_error(resp, 401)


PROTECTED = [
    ("GET", ACCOUNTS), ("GET", ADMIN_ACCOUNT), ("GET", ACCOUNT_SERVICE), ("GET", SESSIONS),
    ("GET", SESSION_SERVICE), ("GET", MANAGER), ("GET", NETWORK_PROTOCOL), ("GET", ROLES),
    ("GET", "/redfish/v1/Registries"), ("GET", "/redfish/v1/JsonSchemas"),
    ("GET", "/redfish/v1/Systems"), ("GET", "/redfish/v1/NoSuchThing"),
    ("HEAD", ACCOUNTS), ("POST", ACCOUNTS), ("PATCH", ACCOUNT_SERVICE),
    ("PATCH", ADMIN_ACCOUNT), ("DELETE", ADMIN_ACCOUNT), ("PUT", ADMIN_ACCOUNT),
    ("DELETE", SESSIONS), ("PATCH", SERVICE_ROOT), ("POST", SERVICE_ROOT),
    ("DELETE", SERVICE_ROOT),
]


async def test_unauthenticated_is_401(client, admin):
    before = await snapshot(client, ADMIN_ACCOUNT, admin)
    policy = await snapshot(client, ACCOUNT_SERVICE, admin)
    count = (await get_json(client, ACCOUNTS, admin))["Members@odata.count"]
    body = {"UserName": "intruder", "Password": "Intruder-passw0rd", "RoleId": "Administrator",
            "MinPasswordLength": 1}
    for method, uri in PROTECTED:
        resp = await client.request(method, uri, json=body if method in ("POST", "PATCH", "PUT")
                                    else None)
        assert resp.status == 401, (method, uri, resp.status)
        assert resp.headers["WWW-Authenticate"].lower().startswith("basic realm="), (method, uri)
        if method != "HEAD":
            error_ids(await resp.json())
    assert await snapshot(client, ADMIN_ACCOUNT, admin) == before
    assert await snapshot(client, ACCOUNT_SERVICE, admin) == policy
    assert (await get_json(client, ACCOUNTS, admin))["Members@odata.count"] == count
    assert (await client.get(ACCOUNTS, headers=basic("intruder", "Intruder-passw0rd"))).status \
        == 401


async def test_public_uris_need_no_auth(client):
    for uri in PUBLIC:
        resp = await client.get(uri)
        assert resp.status == 200, uri
        resp = await client.get(uri, headers={"X-Auth-Token": "bogus"})
        assert resp.status == 200, uri


# -- session service --------------------------------------------------------------------------


async def test_session_timeout_range(client, admin):
    before = await snapshot(client, SESSION_SERVICE, admin)
    for value in (29, 0, -5, 86401):
        resp = await client.patch(SESSION_SERVICE, json={"SessionTimeout": value}, headers=admin)
        await expect_error(resp, 400, "PropertyValueOutOfRange")
        assert await snapshot(client, SESSION_SERVICE, admin) == before
    resp = await client.patch(SESSION_SERVICE, json={"SessionTimeout": "60"}, headers=admin)
    await expect_error(resp, 400, "PropertyValueTypeError")
    for value in (30, 86400):
        resp = await client.patch(SESSION_SERVICE, json={"SessionTimeout": value}, headers=admin)
        assert resp.status == 200
        assert (await resp.json())["SessionTimeout"] == value


async def test_idle_session_expires(client, admin):
    """White box: the idle clock of a session is moved back past SessionTimeout."""
    resp = await client.patch(SESSION_SERVICE, json={"SessionTimeout": 30}, headers=admin)
    assert resp.status == 200
    token, uri = await session_of(client, "admin", ADMIN_PASSWORD)
    assert (await client.get(ACCOUNT_SERVICE, headers=token)).status == 200
    sessions = client.server.app[services.SESSIONS]
    sessions._last_seen[uri] = time.monotonic() - 31
    resp = await client.get(ACCOUNT_SERVICE, headers=token)
    await expect_error(resp, 401)
    await sessions.reap()
    assert uri not in await session_uris(client, admin)
    # The admin session was active and survives.
    assert (await client.get(ACCOUNT_SERVICE, headers=admin)).status == 200


# -- account CRUD -----------------------------------------------------------------------------


async def test_create_account(client, admin):
    resp = await client.post(ACCOUNTS, headers=admin, json={
        "UserName": "newbie", "Password": USER_PASSWORD, "RoleId": "Operator",
    })
    assert resp.status == 201, await resp.text()
    location = resp.headers["Location"]
    assert location.startswith(ACCOUNTS + "/")
    body = await resp.json()
    assert body["@odata.id"] == location
    assert body["Password"] is None
    assert USER_PASSWORD not in await resp.text()
    got = await client.get(location, headers=admin)
    assert got.status == 200
    assert got.headers.get("ETag")
    assert resp.headers.get("ETag") == got.headers["ETag"]
    doc = await got.json()
    assert doc["UserName"] == "newbie"
    assert doc["RoleId"] == "Operator"
    assert doc["Password"] is None
    assert doc["AccountTypes"] == ["Redfish"]
    assert doc["Enabled"] is True and doc["Locked"] is False
    assert doc["Links"]["Role"] == {"@odata.id": ROLES + "/Operator"}
    assert doc["Id"] == location.rsplit("/", 1)[1]
    members = (await get_json(client, ACCOUNTS, admin))["Members"]
    assert {"@odata.id": location} in members
    # The new account can log in.
    resp = await client.get(ACCOUNT_SERVICE, headers=basic("newbie", USER_PASSWORD))
    assert resp.status == 200


async def test_create_account_via_members(client, admin):
    resp = await client.post(ACCOUNTS + "/Members", headers=admin, json={
        "UserName": "viamembers", "Password": USER_PASSWORD, "RoleId": "ReadOnly",
    })
    assert resp.status == 201, await resp.text()
    location = resp.headers["Location"]
    assert location.startswith(ACCOUNTS + "/") and "/Members/" not in location
    assert (await get_json(client, location, admin))["UserName"] == "viamembers"


async def test_duplicate_username_is_409(client, admin, make_user):
    await make_user("dup", "ReadOnly")
    before = await get_json(client, ACCOUNTS, admin)
    resp = await client.post(ACCOUNTS, headers=admin, json={
        "UserName": "dup", "Password": USER_PASSWORD, "RoleId": "Operator",
    })
    await expect_error(resp, 409, "ResourceAlreadyExists")
    assert await get_json(client, ACCOUNTS, admin) == before


REFUSED_ACCOUNTS = [
    ({"UserName": "u1", "Password": USER_PASSWORD, "RoleId": "Superuser"}, 400,
     "PropertyValueNotInList"),
    ({"UserName": "u1", "Password": "short", "RoleId": "ReadOnly"}, 400, "StringValueTooShort"),
    ({"UserName": "u1", "Password": "x" * 200, "RoleId": "ReadOnly"}, 400, "StringValueTooLong"),
    ({"UserName": "u1", "RoleId": "ReadOnly"}, 400, "PropertyMissing"),
    ({"Password": USER_PASSWORD, "RoleId": "ReadOnly"}, 400, "PropertyMissing"),
    ({"UserName": "u1", "Password": USER_PASSWORD}, 400, "PropertyMissing"),
    ({"UserName": "u1", "Password": USER_PASSWORD, "RoleId": "ReadOnly", "Bogus": 1}, 400,
     "PropertyUnknown"),
    ({"UserName": "bad name!", "Password": USER_PASSWORD, "RoleId": "ReadOnly"}, 400,
     "PropertyValueFormatError"),
    ({"UserName": 7, "Password": USER_PASSWORD, "RoleId": "ReadOnly"}, 400,
     "PropertyValueTypeError"),
    ({"UserName": "u1", "Password": USER_PASSWORD, "RoleId": "ReadOnly", "Enabled": "yes"}, 400,
     "PropertyValueTypeError"),
    ({"UserName": "u1", "Password": USER_PASSWORD, "RoleId": "ReadOnly", "Locked": True}, 400,
     "PropertyValueIncorrect"),
    ({"UserName": "u1", "Password": USER_PASSWORD, "RoleId": "ReadOnly",
      "AccountTypes": ["SNMP"]}, 400, "PropertyValueNotInList"),
]


async def test_create_account_refused(client, admin):
    before = await get_json(client, ACCOUNTS, admin)
    for body, status, key in REFUSED_ACCOUNTS:
        resp = await client.post(ACCOUNTS, json=body, headers=admin)
        err = await expect_error(resp, status, key)
        assert "Location" not in resp.headers, body
        assert USER_PASSWORD not in str(err)
        assert await get_json(client, ACCOUNTS, admin) == before, body


async def test_password_never_echoed_in_errors(client, admin):
    resp = await client.post(ACCOUNTS, headers=admin, json={
        "UserName": "u2", "Password": "tiny", "RoleId": "ReadOnly",
    })
    text = await resp.text()
    assert resp.status == 400
    assert "tiny" not in text


async def test_patch_role_and_delete_account(client, admin, make_user):
    headers, uri = await make_user("changer", "ReadOnly")
    before, etag = await snapshot(client, uri, admin)
    assert before["RoleId"] == "ReadOnly"
    resp = await client.patch(uri, json={"RoleId": "Operator"}, headers=admin)
    assert resp.status == 200
    doc, new_etag = await snapshot(client, uri, admin)
    assert doc["RoleId"] == "Operator"
    assert doc["Links"]["Role"] == {"@odata.id": ROLES + "/Operator"}
    assert new_etag != etag
    # The new role applies at once: Operator may not manage users either, but the
    # privileges come from the role (check through a request only Login needs).
    assert (await client.get(ACCOUNT_SERVICE, headers=headers)).status == 200
    resp = await client.patch(uri, json={"RoleId": "NoSuchRole"}, headers=admin)
    await expect_error(resp, 400, "PropertyValueNotInList")
    assert (await snapshot(client, uri, admin))[0]["RoleId"] == "Operator"
    count = (await get_json(client, ACCOUNTS, admin))["Members@odata.count"]
    resp = await client.delete(uri, headers=admin)
    assert resp.status in (200, 204)
    assert (await client.get(uri, headers=admin)).status == 404
    after = await get_json(client, ACCOUNTS, admin)
    assert after["Members@odata.count"] == count - 1
    assert {"@odata.id": uri} not in after["Members"]
    resp = await client.get(ACCOUNT_SERVICE, headers=headers)
    assert resp.status == 401


async def test_rename_to_existing_username_is_409(client, admin, make_user):
    await make_user("first", "ReadOnly")
    _, uri = await make_user("second", "ReadOnly")
    before = await snapshot(client, uri, admin)
    resp = await client.patch(uri, json={"UserName": "first"}, headers=admin)
    await expect_error(resp, 409, "ResourceAlreadyExists")
    assert await snapshot(client, uri, admin) == before


async def test_cannot_delete_own_or_last_admin(client, admin):
    before = await snapshot(client, ADMIN_ACCOUNT, admin)
    resp = await client.delete(ADMIN_ACCOUNT, headers=admin)
    assert resp.status in (400, 403, 409)
    error_ids(await resp.json())
    assert await snapshot(client, ADMIN_ACCOUNT, admin) == before


async def test_disabled_account_cannot_log_in(client, admin, make_user):
    headers, uri = await make_user("disabled", "ReadOnly")
    token, _ = await session_of(client, "disabled")
    resp = await client.patch(uri, json={"Enabled": False}, headers=admin)
    assert resp.status == 200
    assert (await client.get(ACCOUNT_SERVICE, headers=headers)).status == 401
    assert (await client.get(ACCOUNT_SERVICE, headers=token)).status == 401
    assert (await login(client, "disabled", USER_PASSWORD)).status == 401


# -- roles ----------------------------------------------------------------------------------

EXPECTED_ROLES = {
    "Administrator": ["Login", "ConfigureManager", "ConfigureUsers", "ConfigureComponents",
                      "ConfigureSelf"],
    "Operator": ["Login", "ConfigureComponents", "ConfigureSelf"],
    "ReadOnly": ["Login", "ConfigureSelf"],
}


async def test_predefined_roles(client, admin):
    collection = await get_json(client, ROLES, admin)
    uris = {m["@odata.id"] for m in collection["Members"]}
    assert uris == {f"{ROLES}/{r}" for r in EXPECTED_ROLES}
    assert collection["Members@odata.count"] == 3
    for role_id, privileges in EXPECTED_ROLES.items():
        role = await get_json(client, f"{ROLES}/{role_id}", admin)
        assert role["Id"] == role_id
        assert role["RoleId"] == role_id
        assert role["IsPredefined"] is True
        assert sorted(role["AssignedPrivileges"]) == sorted(privileges)
        assert len(role["AssignedPrivileges"]) == len(privileges)


async def test_predefined_role_cannot_be_modified(client, admin):
    uri = f"{ROLES}/ReadOnly"
    before = await snapshot(client, uri, admin)
    resp = await client.patch(uri, json={"AssignedPrivileges": ["Login", "ConfigureUsers"]},
                              headers=admin)
    assert resp.status in (400, 403, 405)
    error_ids(await resp.json())
    assert await snapshot(client, uri, admin) == before
    resp = await client.delete(uri, headers=admin)
    assert resp.status in (400, 403, 405)
    assert await snapshot(client, uri, admin) == before


async def test_privilege_map_is_served(client, admin):
    doc = await get_json(client, "/redfish/v1/AccountService/PrivilegeMap", admin)
    entities = {m["Entity"] for m in doc["Mappings"]}
    assert {"ManagerAccount", "AccountService", "SessionService", "Role"} <= entities
    account = next(m for m in doc["Mappings"] if m["Entity"] == "ManagerAccount")
    assert account["PropertyOverrides"][0]["Targets"] == ["Password"]


# -- privileges -----------------------------------------------------------------------------


async def test_readonly_privileges(client, admin, make_user):
    headers, own = await make_user("reader", "ReadOnly")
    # Reads are fine.
    for uri in (ACCOUNT_SERVICE, ACCOUNTS, own, ROLES, SESSION_SERVICE, MANAGER):
        assert (await client.get(uri, headers=headers)).status == 200, uri
    # Not another account.
    resp = await client.get(ADMIN_ACCOUNT, headers=headers)
    assert resp.status in (403, 404)
    if resp.status == 403:
        await expect_error(resp, 403, "InsufficientPrivilege")
    # No account creation.
    before = await get_json(client, ACCOUNTS, admin)
    resp = await client.post(ACCOUNTS, headers=headers, json={
        "UserName": "sneaky", "Password": USER_PASSWORD, "RoleId": "Administrator",
    })
    await expect_error(resp, 403, "InsufficientPrivilege")
    assert await get_json(client, ACCOUNTS, admin) == before
    # No policy changes.
    before_policy = await snapshot(client, ACCOUNT_SERVICE, admin)
    resp = await client.patch(ACCOUNT_SERVICE, json={"MinPasswordLength": 4}, headers=headers)
    await expect_error(resp, 403, "InsufficientPrivilege")
    assert await snapshot(client, ACCOUNT_SERVICE, admin) == before_policy
    # No changes to another account.
    before_admin = await snapshot(client, ADMIN_ACCOUNT, admin)
    resp = await client.patch(ADMIN_ACCOUNT, json={"Password": "Hijacked-passw0rd"},
                              headers=headers)
    assert resp.status in (403, 404)
    resp = await client.delete(ADMIN_ACCOUNT, headers=headers)
    assert resp.status in (403, 404)
    assert await snapshot(client, ADMIN_ACCOUNT, admin) == before_admin
    assert (await client.get(ACCOUNTS, headers=basic("admin", ADMIN_PASSWORD))).status == 200


async def test_readonly_changes_own_password(client, admin, make_user):
    headers, own = await make_user("selfie", "ReadOnly")
    resp = await client.patch(own, json={"Password": NEW_PASSWORD}, headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["Password"] is None
    assert (await client.get(own, headers=headers)).status == 401
    assert (await client.get(own, headers=basic("selfie", NEW_PASSWORD))).status == 200


async def test_own_password_must_meet_policy(client, admin, make_user):
    headers, own = await make_user("weak", "ReadOnly")
    before = await snapshot(client, own, admin)
    resp = await client.patch(own, json={"Password": "short"}, headers=headers)
    body = await expect_error(resp, 400, "StringValueTooShort")
    assert "short" not in str(body["error"]["@Message.ExtendedInfo"][0]["MessageArgs"])
    assert await snapshot(client, own, admin) == before
    assert (await client.get(own, headers=headers)).status == 200


async def test_user_logs_out_own_session(client, admin, make_user):
    await make_user("leaver", "ReadOnly")
    token, uri = await session_of(client, "leaver")
    assert (await get_json(client, uri, token))["UserName"] == "leaver"
    resp = await client.delete(uri, headers=token)
    assert resp.status in (200, 204)
    assert (await client.get(ACCOUNT_SERVICE, headers=token)).status == 401
    assert uri not in await session_uris(client, admin)


async def test_readonly_cannot_escalate_own_role(client, admin, make_user):
    headers, own = await make_user("climber", "ReadOnly")
    before = await snapshot(client, own, admin)
    for body in ({"RoleId": "Administrator"},
                 {"Password": NEW_PASSWORD, "RoleId": "Administrator"},
                 {"Locked": False, "Enabled": True}):
        resp = await client.patch(own, json=body, headers=headers)
        await expect_error(resp, 403, "InsufficientPrivilege")
        assert await snapshot(client, own, admin) == before
    assert (await client.get(own, headers=headers)).status == 200


async def test_operator_cannot_configure_manager(client, admin, make_user):
    headers, _ = await make_user("oper", "Operator")
    before = await snapshot(client, SESSION_SERVICE, admin)
    resp = await client.patch(SESSION_SERVICE, json={"SessionTimeout": 600}, headers=headers)
    await expect_error(resp, 403, "InsufficientPrivilege")
    assert await snapshot(client, SESSION_SERVICE, admin) == before
    before = await snapshot(client, NETWORK_PROTOCOL, admin)
    resp = await client.patch(NETWORK_PROTOCOL, json={"NTP": {"NTPServers": ["x"]}},
                              headers=headers)
    await expect_error(resp, 403, "InsufficientPrivilege")
    assert await snapshot(client, NETWORK_PROTOCOL, admin) == before


async def test_sessions_are_private(client, admin, make_user):
    await make_user("owner", "ReadOnly")
    await make_user("other", "ReadOnly")
    owner_token, owner_session = await session_of(client, "owner")
    other_token, other_session = await session_of(client, "other")
    assert (await client.get(owner_session, headers=owner_token)).status == 200
    resp = await client.get(owner_session, headers=other_token)
    assert resp.status in (403, 404)
    resp = await client.delete(owner_session, headers=other_token)
    assert resp.status in (403, 404)
    assert (await client.get(ACCOUNT_SERVICE, headers=owner_token)).status == 200
    # An administrator may end anyone's session.
    resp = await client.delete(owner_session, headers=admin)
    assert resp.status in (200, 204)
    assert (await client.get(ACCOUNT_SERVICE, headers=owner_token)).status == 401
    assert (await client.get(ACCOUNT_SERVICE, headers=other_token)).status == 200
    assert other_session in await session_uris(client, admin)


# -- PasswordChangeRequired ------------------------------------------------------------------


async def test_password_change_required_flow(client, admin, make_user):
    _, own = await make_user("fresh", "Operator", PasswordChangeRequired=True)
    resp = await login(client, "fresh", USER_PASSWORD)
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    info = [m for m in body["@Message.ExtendedInfo"]
            if check_message(m) == BASE_PREFIX + "PasswordChangeRequired"]
    assert info and info[0]["MessageArgs"] == [own]
    token = {"X-Auth-Token": resp.headers["X-Auth-Token"]}
    session_uri = resp.headers["Location"]
    # Everything else is refused with PasswordChangeRequired.
    for uri in (ACCOUNT_SERVICE, ACCOUNTS, MANAGER, SESSION_SERVICE):
        resp = await client.get(uri, headers=token)
        await expect_error(resp, 403, "PasswordChangeRequired")
    # The own account and the service root are readable.
    doc = await get_json(client, own, token)
    assert doc["PasswordChangeRequired"] is True
    assert (await client.get(SERVICE_ROOT, headers=token)).status == 200
    # Other changes to the own account are refused.
    resp = await client.patch(own, json={"UserName": "renamed"}, headers=token)
    assert resp.status == 403
    # Changing the password clears the flag.
    resp = await client.patch(own, json={"Password": NEW_PASSWORD}, headers=token)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["PasswordChangeRequired"] is False
    assert (await get_json(client, own, admin))["PasswordChangeRequired"] is False
    # The same session now works everywhere the role allows.
    for uri in (ACCOUNT_SERVICE, ACCOUNTS, MANAGER, session_uri):
        assert (await client.get(uri, headers=token)).status == 200, uri
    resp = await login(client, "fresh", NEW_PASSWORD)
    assert resp.status == 201
    assert BASE_PREFIX + "PasswordChangeRequired" not in ext_ids(await resp.json())


async def test_password_change_required_with_basic_auth(client, admin, make_user):
    headers, own = await make_user("fresh2", "ReadOnly", PasswordChangeRequired=True)
    resp = await client.get(ACCOUNTS, headers=headers)
    await expect_error(resp, 403, "PasswordChangeRequired")
    assert (await client.get(own, headers=headers)).status == 200
    resp = await client.patch(own, json={"Password": NEW_PASSWORD}, headers=headers)
    assert resp.status == 200
    assert (await client.get(ACCOUNTS, headers=basic("fresh2", NEW_PASSWORD))).status == 200


async def test_password_change_required_set_later_restricts_live_session(
    client, admin, make_user
):
    _, own = await make_user("later", "Operator")
    token, _ = await session_of(client, "later")
    assert (await client.get(ACCOUNTS, headers=token)).status == 200
    resp = await client.patch(own, json={"PasswordChangeRequired": True}, headers=admin)
    assert resp.status == 200
    resp = await client.get(ACCOUNTS, headers=token)
    await expect_error(resp, 403, "PasswordChangeRequired")
    assert (await client.get(own, headers=token)).status == 200


# -- lockout ---------------------------------------------------------------------------------


async def _fail(client, username: str, times: int) -> None:
    for _ in range(times):
        resp = await client.get(ACCOUNT_SERVICE, headers=basic(username, "Wrong-passw0rd"))
        assert resp.status == 401


async def test_lockout_and_automatic_unlock(client, admin, make_user):
    headers, uri = await make_user("locky", "ReadOnly")
    await _fail(client, "locky", 3)
    resp = await client.get(ACCOUNT_SERVICE, headers=headers)
    assert resp.status == 401
    wrong = await client.get(ACCOUNT_SERVICE, headers=basic("locky", "Wrong-passw0rd"))
    assert await resp.json() == await wrong.json()  # no "locked" hint
    assert (await login(client, "locky", USER_PASSWORD)).status == 401
    assert (await get_json(client, uri, admin))["Locked"] is True
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        resp = await client.get(ACCOUNT_SERVICE, headers=headers)
        if resp.status == 200:
            break
    assert resp.status == 200
    assert (await get_json(client, uri, admin))["Locked"] is False


async def test_lockout_after_failed_session_logins(client, admin, make_user):
    _, uri = await make_user("locky2", "ReadOnly")
    for _ in range(3):
        assert (await login(client, "locky2", "Wrong-passw0rd")).status == 401
    assert (await login(client, "locky2", USER_PASSWORD)).status == 401
    assert (await get_json(client, uri, admin))["Locked"] is True


async def test_fewer_failures_do_not_lock(client, admin, make_user):
    headers, uri = await make_user("nearly", "ReadOnly")
    await _fail(client, "nearly", 2)
    assert (await client.get(ACCOUNT_SERVICE, headers=headers)).status == 200
    assert (await get_json(client, uri, admin))["Locked"] is False
    # A success resets the counter: two more failures still do not lock.
    await _fail(client, "nearly", 2)
    assert (await client.get(ACCOUNT_SERVICE, headers=headers)).status == 200


async def test_failure_counter_resets_after_interval(client, admin, make_user):
    headers, uri = await make_user("slowfail", "ReadOnly")
    await _fail(client, "slowfail", 2)
    await asyncio.sleep(2.2)  # AccountLockoutCounterResetAfter is 2 s
    await _fail(client, "slowfail", 1)
    assert (await get_json(client, uri, admin))["Locked"] is False
    assert (await client.get(ACCOUNT_SERVICE, headers=headers)).status == 200


async def test_counter_reset_disabled_locks_until_admin_reset(client, admin, make_user):
    """AccountService schema: with AccountLockoutCounterResetEnabled false "only a successful
    login resets the threshold counter and ... the account shall be locked out indefinitely
    and only an administrator-issued reset clears the threshold counter"."""
    resp = await client.patch(ACCOUNT_SERVICE, json={"AccountLockoutCounterResetEnabled": False},
                              headers=admin)
    assert resp.status == 200
    headers, uri = await make_user("stubborn", "ReadOnly")
    await _fail(client, "stubborn", 2)
    await asyncio.sleep(2.2)  # longer than AccountLockoutCounterResetAfter: no reset now
    await _fail(client, "stubborn", 1)
    assert (await get_json(client, uri, admin))["Locked"] is True
    await asyncio.sleep(2.2)  # longer than AccountLockoutDuration: still locked
    assert (await client.get(ACCOUNT_SERVICE, headers=headers)).status == 401
    assert (await get_json(client, uri, admin))["Locked"] is True
    resp = await client.patch(uri, json={"Locked": False}, headers=admin)
    assert resp.status == 200
    assert (await client.get(ACCOUNT_SERVICE, headers=headers)).status == 200


async def test_admin_unlocks(client, admin, make_user):
    headers, uri = await make_user("locky3", "ReadOnly")
    await _fail(client, "locky3", 3)
    assert (await client.get(ACCOUNT_SERVICE, headers=headers)).status == 401
    resp = await client.patch(uri, json={"Locked": False}, headers=admin)
    assert resp.status == 200
    assert (await resp.json())["Locked"] is False
    assert (await client.get(ACCOUNT_SERVICE, headers=headers)).status == 200


async def test_admin_cannot_lock(client, admin, make_user):
    _, uri = await make_user("nolock", "ReadOnly")
    before = await snapshot(client, uri, admin)
    resp = await client.patch(uri, json={"Locked": True}, headers=admin)
    await expect_error(resp, 400)
    assert await snapshot(client, uri, admin) == before


async def test_lockout_of_one_account_leaves_others(client, admin, make_user):
    other, _ = await make_user("bystander", "ReadOnly")
    await make_user("victim", "ReadOnly")
    await _fail(client, "victim", 3)
    assert (await client.get(ACCOUNT_SERVICE, headers=other)).status == 200


async def test_lockout_policy_conflict(client, admin):
    before = await snapshot(client, ACCOUNT_SERVICE, admin)
    resp = await client.patch(ACCOUNT_SERVICE, json={"AccountLockoutDuration": 1,
                                                     "AccountLockoutCounterResetAfter": 100},
                              headers=admin)
    await expect_error(resp, 400, "PropertyValueConflict")
    assert await snapshot(client, ACCOUNT_SERVICE, admin) == before


# -- sessions end with their account's credentials ----------------------------------------------


async def test_own_password_change_ends_other_sessions(client, admin, make_user):
    _, own = await make_user("multi", "ReadOnly")
    a, a_uri = await session_of(client, "multi")
    b, b_uri = await session_of(client, "multi")
    resp = await client.patch(own, json={"Password": NEW_PASSWORD}, headers=a)
    assert resp.status == 200
    assert (await client.get(own, headers=a)).status == 200
    assert (await client.get(own, headers=b)).status == 401
    listed = await session_uris(client, admin)
    assert a_uri in listed and b_uri not in listed


async def test_admin_password_change_ends_all_sessions_of_account(client, admin, make_user):
    _, uri = await make_user("victim2", "ReadOnly")
    a, a_uri = await session_of(client, "victim2")
    b, b_uri = await session_of(client, "victim2")
    resp = await client.patch(uri, json={"Password": NEW_PASSWORD}, headers=admin)
    assert resp.status == 200
    assert (await client.get(uri, headers=a)).status == 401
    assert (await client.get(uri, headers=b)).status == 401
    listed = await session_uris(client, admin)
    assert a_uri not in listed and b_uri not in listed
    assert (await client.get(ACCOUNT_SERVICE, headers=admin)).status == 200


async def test_deleting_account_ends_its_sessions(client, admin, make_user):
    _, uri = await make_user("doomed", "Operator")
    token, session_uri = await session_of(client, "doomed")
    other, _ = await session_of(client, "admin", ADMIN_PASSWORD)
    resp = await client.delete(uri, headers=admin)
    assert resp.status in (200, 204)
    assert (await client.get(ACCOUNT_SERVICE, headers=token)).status == 401
    assert session_uri not in await session_uris(client, admin)
    assert (await client.get(ACCOUNT_SERVICE, headers=other)).status == 200
    # A new account with the same name does not inherit the old sessions.
    await make_user("doomed", "Operator")
    assert (await client.get(ACCOUNT_SERVICE, headers=token)).status == 401


async def test_session_limit(aiohttp_client, settings):
    from redfish_service.app import create_app
    from redfish_service.store import MemoryBackend

    limited = settings.model_copy(update={"max_sessions": 2})
    client = await aiohttp_client(create_app(limited, backend=MemoryBackend()))
    for _ in range(2):
        assert (await login(client, "admin", ADMIN_PASSWORD)).status == 201
    resp = await login(client, "admin", ADMIN_PASSWORD)
    assert resp.status == 503
    assert BASE_PREFIX + "SessionLimitExceeded" in error_ids(await resp.json())
    assert "X-Auth-Token" not in resp.headers


# -- AccountService policy -----------------------------------------------------------------


async def test_http_basic_auth_disabled(client, admin):
    resp = await client.patch(ACCOUNT_SERVICE, json={"HTTPBasicAuth": "Disabled"}, headers=admin)
    assert resp.status == 200
    resp = await client.get(ACCOUNTS, headers=basic("admin", ADMIN_PASSWORD))
    await expect_error(resp, 401)
    # A disabled scheme is not offered in the challenge (RFC 7235 4.1).
    assert "basic" not in resp.headers.get("WWW-Authenticate", "").lower()
    # Sessions still work.
    token, _ = await session_of(client, "admin", ADMIN_PASSWORD)
    assert (await client.get(ACCOUNTS, headers=token)).status == 200


async def test_http_basic_auth_unadvertised(client, admin):
    resp = await client.patch(ACCOUNT_SERVICE, json={"HTTPBasicAuth": "Unadvertised"},
                              headers=admin)
    assert resp.status == 200
    assert (await client.get(ACCOUNTS, headers=basic("admin", ADMIN_PASSWORD))).status == 200
    resp = await client.get(ACCOUNTS)
    await expect_error(resp, 401)
    # AccountService schema: "The service shall not include `Basic` in the value of the
    # `WWW-Authenticate` HTTP response header and may omit the header entirely".
    assert "basic" not in resp.headers.get("WWW-Authenticate", "").lower()


async def test_password_policy_applies_to_new_accounts(client, admin):
    resp = await client.patch(ACCOUNT_SERVICE, json={"MinPasswordLength": 16}, headers=admin)
    assert resp.status == 200
    resp = await client.post(ACCOUNTS, headers=admin, json={
        "UserName": "policy", "Password": "Fifteen-chars-1", "RoleId": "ReadOnly",
    })
    body = await expect_error(resp, 400, "StringValueTooShort")
    assert body["error"]["@Message.ExtendedInfo"][0]["MessageArgs"][1] == "16"
    resp = await client.post(ACCOUNTS, headers=admin, json={
        "UserName": "policy", "Password": "Sixteen-chars-12", "RoleId": "ReadOnly",
    })
    assert resp.status == 201


async def test_lockout_threshold_zero_never_locks(client, admin, make_user):
    resp = await client.patch(ACCOUNT_SERVICE, json={"AccountLockoutThreshold": 0},
                              headers=admin)
    assert resp.status == 200
    headers, uri = await make_user("unlockable", "ReadOnly")
    await _fail(client, "unlockable", 5)
    assert (await client.get(ACCOUNT_SERVICE, headers=headers)).status == 200
    assert (await get_json(client, uri, admin))["Locked"] is False


async def test_rename_account(client, admin, make_user):
    _, uri = await make_user("oldname", "ReadOnly")
    token, _ = await session_of(client, "oldname")
    resp = await client.patch(uri, json={"UserName": "newname"}, headers=admin)
    assert resp.status == 200
    assert (await resp.json())["UserName"] == "newname"
    assert (await client.get(uri, headers=basic("newname", USER_PASSWORD))).status == 200
    assert (await client.get(uri, headers=basic("oldname", USER_PASSWORD))).status == 401
    assert (await client.get(uri, headers=token)).status == 200


async def test_session_context_and_representation(client, admin):
    resp = await client.post(SESSIONS, json={"UserName": "admin", "Password": ADMIN_PASSWORD,
                                             "Context": "bridge-1"})
    assert resp.status == 201
    token = {"X-Auth-Token": resp.headers["X-Auth-Token"]}
    got = await client.get(resp.headers["Location"], headers=token)
    assert got.status == 200
    assert got.headers.get("ETag")
    body = await got.json()
    assert body["Context"] == "bridge-1"
    assert body["Password"] is None
    assert body["SessionType"] == "Redfish"
    assert resp.headers["X-Auth-Token"] not in await got.text()
    resp = await client.post(SESSIONS, json={"UserName": "admin", "Password": ADMIN_PASSWORD,
                                             "Context": "x" * 300})
    await expect_error(resp, 400, "StringValueTooLong")


async def test_concurrent_creates_of_one_username(client, admin):
    body = {"UserName": "racer", "Password": USER_PASSWORD, "RoleId": "ReadOnly"}
    resps = await asyncio.gather(*(client.post(ACCOUNTS, json=body, headers=admin)
                                   for _ in range(4)))
    statuses = sorted(r.status for r in resps)
    assert statuses == [201, 409, 409, 409]
    names = [m["UserName"] for m in (await get_json(client, ACCOUNTS + "?$expand=.", admin))
             ["Members"]]
    assert names.count("racer") == 1


async def test_collection_etag_changes_with_members(client, admin, make_user):
    _, etag = await snapshot(client, ACCOUNTS, admin)
    _, uri = await make_user("member", "ReadOnly")
    _, etag2 = await snapshot(client, ACCOUNTS, admin)
    assert etag2 != etag
    assert (await client.delete(uri, headers=admin)).status in (200, 204)
    _, etag3 = await snapshot(client, ACCOUNTS, admin)
    assert etag3 not in (etag, etag2)


async def test_last_administrator_cannot_disable_itself(client, admin):
    """The service refuses to delete the last administrator; disabling it is the same
    lock-out and must be refused too."""
    before = await snapshot(client, ADMIN_ACCOUNT, admin)
    resp = await client.patch(ADMIN_ACCOUNT, json={"Enabled": False}, headers=admin)
    assert resp.status in (400, 403, 409), resp.status
    error_ids(await resp.json())
    assert await snapshot(client, ADMIN_ACCOUNT, admin) == before
    assert (await client.get(ACCOUNTS, headers=admin)).status == 200
