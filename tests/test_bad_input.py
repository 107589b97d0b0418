"""Hostile and malformed input: every refusal is a 4xx Redfish error, never a 500, and
nothing changes."""

from __future__ import annotations

import json
import random

import pytest

from .conftest import basic
from .support.service import ADMIN_PASSWORD
from .test_protocol import (
    ACCOUNT_SERVICE,
    ACCOUNTS,
    ADMIN_ACCOUNT,
    NETWORK_PROTOCOL,
    SESSIONS,
    cheap_password_hashing,  # noqa: F401 (autouse fixture)
    error_ids,
    expect_error,
    get_json,
    raw_request,
    snapshot,
)

JSON_HEADERS = {"Content-Type": "application/json"}
MIB = 1 << 20


@pytest.fixture
async def state(client, admin):
    """A snapshot function of the resources bad requests aim at."""

    async def take():
        out = {}
        for uri in (ACCOUNT_SERVICE, ADMIN_ACCOUNT, NETWORK_PROTOCOL, ACCOUNTS, SESSIONS):
            out[uri] = await snapshot(client, uri, admin)
        return out

    return take


async def expect_raw_error(status_body, status: int, *keys: str) -> list[str]:
    code, headers, payload = status_body
    assert code == status, (code, payload[:300])
    assert headers.get("content-type") == "application/json;charset=utf-8"
    ids = error_ids(json.loads(payload))
    for key in keys:
        assert "Base.1.22." + key in ids, ids
    return ids


# -- bodies ----------------------------------------------------------------------------------

MALFORMED = [b"{", b"{bad json}", b'{"MinPasswordLength": }', b"{'single': 'quotes'}",
             b'{"a": NaN}', b'{"MinPasswordLength": 10,}', b"\xff\xfe{}", b'{"a": "\xff"}',
             b"[" * 5000 + b"]" * 5000]


async def test_malformed_json(client, admin, state):
    before = await state()
    for raw in MALFORMED:
        resp = await client.patch(ACCOUNT_SERVICE, data=raw, headers={**admin, **JSON_HEADERS})
        await expect_error(resp, 400, "MalformedJSON")
        resp = await client.post(ACCOUNTS, data=raw, headers={**admin, **JSON_HEADERS})
        await expect_error(resp, 400, "MalformedJSON")
        resp = await client.post(SESSIONS, data=raw, headers=JSON_HEADERS)
        await expect_error(resp, 400, "MalformedJSON")
    assert await state() == before


NOT_OBJECTS = [b"[]", b'[{"MinPasswordLength": 10}]', b"42", b'"string"', b"null", b"true"]


async def test_non_object_bodies(client, admin, state):
    before = await state()
    for raw in NOT_OBJECTS:
        for method, uri, headers in (("PATCH", ACCOUNT_SERVICE, admin),
                                     ("POST", ACCOUNTS, admin), ("POST", SESSIONS, {})):
            resp = await client.request(method, uri, data=raw,
                                        headers={**headers, **JSON_HEADERS})
            assert resp.status == 400, (method, uri, raw)
            error_ids(await resp.json())
    assert await state() == before


async def test_empty_body(client, admin, state):
    before = await state()
    resp = await client.patch(ACCOUNT_SERVICE, data=b"", headers={**admin, **JSON_HEADERS})
    await expect_error(resp, 400)
    resp = await client.post(ACCOUNTS, data=b"   ", headers={**admin, **JSON_HEADERS})
    await expect_error(resp, 400)
    assert await state() == before


async def test_body_without_json_content_type(client, admin, state):
    before = await state()
    resp = await client.patch(ACCOUNT_SERVICE, data=b'{"MinPasswordLength": 10}',
                              headers={**admin, "Content-Type": "application/octet-stream"})
    await expect_error(resp, 415)
    resp = await client.post(ACCOUNTS, data=b'{"UserName": "x"}',
                             headers={**admin, "Content-Type": "application/x-www-form-urlencoded"})
    await expect_error(resp, 415)
    assert await state() == before


WRONG_TYPES = [
    (ACCOUNT_SERVICE, {"MinPasswordLength": "10"}, "PropertyValueTypeError"),
    (ACCOUNT_SERVICE, {"MinPasswordLength": True}, "PropertyValueTypeError"),
    (ACCOUNT_SERVICE, {"MinPasswordLength": 10.5}, "PropertyValueTypeError"),
    (ACCOUNT_SERVICE, {"MinPasswordLength": None}, "PropertyValueTypeError"),
    (ACCOUNT_SERVICE, {"MinPasswordLength": {}}, "PropertyValueTypeError"),
    (ACCOUNT_SERVICE, {"MinPasswordLength": [8]}, "PropertyValueTypeError"),
    (ACCOUNT_SERVICE, {"MinPasswordLength": 0}, "PropertyValueOutOfRange"),
    (ACCOUNT_SERVICE, {"MinPasswordLength": 10**30}, None),
    (ACCOUNT_SERVICE, {"AccountLockoutCounterResetEnabled": "true"}, "PropertyValueTypeError"),
    (ACCOUNT_SERVICE, {"HTTPBasicAuth": "Sometimes"}, "PropertyValueNotInList"),
    (ACCOUNT_SERVICE, {"HTTPBasicAuth": 1}, "PropertyValueTypeError"),
    (ACCOUNT_SERVICE, {"Status": {"Health": "Critical"}}, "PropertyNotWritable"),
    (ADMIN_ACCOUNT, {"Enabled": "false"}, "PropertyValueTypeError"),
    (ADMIN_ACCOUNT, {"UserName": ""}, "PropertyValueFormatError"),
    (ADMIN_ACCOUNT, {"UserName": "a\u0000b"}, "PropertyValueFormatError"),
    (ADMIN_ACCOUNT, {"UserName": "x" * 300}, "PropertyValueFormatError"),
    (ADMIN_ACCOUNT, {"Password": None}, "PropertyValueTypeError"),
    (ADMIN_ACCOUNT, {"Password": 12345678}, "PropertyValueTypeError"),
    (ADMIN_ACCOUNT, {"Links": {"Role": {"@odata.id": "/x"}}}, "PropertyNotWritable"),
    (ADMIN_ACCOUNT, {"AccountTypes": ["Redfish", "SNMP"]}, "PropertyNotWritable"),
    (NETWORK_PROTOCOL, {"NTP": "pool.ntp.org"}, "PropertyValueTypeError"),
    (NETWORK_PROTOCOL, {"NTP": {"NTPServers": {"0": "a"}}}, "PropertyValueTypeError"),
    (NETWORK_PROTOCOL, {"NTP": {"NTPServers": [["a"]]}}, "PropertyValueTypeError"),
    (NETWORK_PROTOCOL, {"NTP": {"NTPServers": ["x" * 300]}}, "StringValueTooLong"),
    (NETWORK_PROTOCOL, {"NTP": {"Bogus": 1}}, "PropertyUnknown"),
    (NETWORK_PROTOCOL, {"HostName": "evil"}, "PropertyNotWritable"),
    (NETWORK_PROTOCOL, {"Oem": {"Vendor": {}}}, "PropertyUnknown"),
]


async def test_wrong_values_are_refused(client, admin, state):
    before = await state()
    for uri, body, key in WRONG_TYPES:
        resp = await client.patch(uri, json=body, headers=admin)
        keys = (key,) if key else ()
        try:
            err = await expect_error(resp, 400, *keys)
        except AssertionError as e:
            raise AssertionError(f"PATCH {uri} {body}: {e}") from None
        related = [p for m in err["error"]["@Message.ExtendedInfo"]
                   for p in m.get("RelatedProperties", [])]
        top = next(iter(body))
        assert any(p.startswith("/" + top) for p in related), (body, related)
        assert await state() == before, (uri, body)


async def test_unknown_and_read_only_mixed_with_valid(client, admin):
    resp = await client.patch(ACCOUNT_SERVICE, headers=admin,
                              json={"MinPasswordLength": 9, "Id": "x", "Nope": 1,
                                    "MaxPasswordLength": "long"})
    assert resp.status == 200
    body = await resp.json()
    ids = {m["MessageId"].rsplit(".", 1)[1] for m in body["@Message.ExtendedInfo"]}
    assert ids == {"PropertyNotWritable", "PropertyUnknown", "PropertyValueTypeError"}
    stored = await get_json(client, ACCOUNT_SERVICE, admin)
    assert stored["MinPasswordLength"] == 9
    assert stored["Id"] == "AccountService"
    assert stored["MaxPasswordLength"] == 128
    assert "Nope" not in stored


# -- sizes ---------------------------------------------------------------------------------


async def test_oversized_patch_is_413(client, admin, state):
    before = await state()
    big = json.dumps({"MinPasswordLength": 10, "Pad": "x" * (MIB + 10)}).encode()
    resp = await client.patch(ACCOUNT_SERVICE, data=big, headers={**admin, **JSON_HEADERS})
    await expect_error(resp, 413, "PayloadTooLarge")
    assert await state() == before


async def test_oversized_post_is_413(client, admin, state):
    before = await state()
    big = json.dumps({"UserName": "big", "Password": "x" * (MIB + 10),
                      "RoleId": "ReadOnly"}).encode()
    resp = await client.post(ACCOUNTS, data=big, headers={**admin, **JSON_HEADERS})
    await expect_error(resp, 413, "PayloadTooLarge")
    resp = await client.post(SESSIONS, data=big, headers=JSON_HEADERS)
    await expect_error(resp, 413, "PayloadTooLarge")
    assert await state() == before


async def test_large_but_allowed_body_is_a_400_not_500(client, admin, state):
    before = await state()
    body = json.dumps({"UserName": "u" * (MIB // 2), "Password": "Long-passw0rd",
                       "RoleId": "ReadOnly"}).encode()
    resp = await client.post(ACCOUNTS, data=body, headers={**admin, **JSON_HEADERS})
    await expect_error(resp, 400)
    assert await state() == before


async def test_long_uri_is_414(client, admin):
    auth = basic("admin", ADMIN_PASSWORD)
    long_path = "/redfish/v1/" + "a" * 2100
    await expect_raw_error(await raw_request(client, "GET", long_path, auth), 414)
    long_query = ACCOUNTS + "?foo=" + "b" * 2100
    await expect_raw_error(await raw_request(client, "GET", long_query, auth), 414)
    resp = await client.get(ACCOUNTS + "?foo=" + "b" * 1900, headers=admin)
    assert resp.status == 200


# -- paths ---------------------------------------------------------------------------------

BAD_PATHS = [
    "/redfish/v1/AccountService/../AccountService",
    "/redfish/v1/../v1/AccountService",
    "/redfish/v1/./AccountService",
    "/redfish/v1/AccountService/%2e%2e/SessionService",
    "/redfish/v1/AccountService%2FAccounts",
    "/redfish/v1/AccountService%2fAccounts%2f1",
    "/redfish/v1//AccountService",
    "/redfish/v1/AccountService%00",
    "/redfish/v1/Account%00Service/Accounts",
]


async def test_bad_paths(client, admin, state):
    before = await state()
    auth = basic("admin", ADMIN_PASSWORD)
    for path in BAD_PATHS:
        for method in ("GET", "DELETE"):
            code, _, payload = await raw_request(client, method, path, auth)
            assert code in (400, 404), (method, path, code)
            error_ids(json.loads(payload))
        code, _, payload = await raw_request(
            client, "PATCH", path, {**auth, **JSON_HEADERS}, b'{"MinPasswordLength": 20}')
        assert code in (400, 404), (path, code)
        error_ids(json.loads(payload))
    assert await state() == before


async def test_dot_segments_do_not_bypass_auth(client):
    for path in ("/redfish/v1/../v1/AccountService/Accounts",
                 "/redfish/v1/odata/../AccountService/Accounts",
                 "/redfish/v1/$metadata/../AccountService"):
        code, _, payload = await raw_request(client, "GET", path)
        assert code in (400, 401, 404), (path, code)
        assert b"UserName" not in payload


async def test_raw_null_byte_in_request_line(client):
    code, _, _ = await raw_request(client, "GET", "/redfish/v1/\x00")
    assert code == 400


async def test_non_ascii_path_is_404(client, admin):
    resp = await client.get("/redfish/v1/Syst\u00e8mes", headers=admin)
    await expect_error(resp, 404)


async def test_unknown_action_is_404(client, admin, state):
    before = await state()
    resp = await client.post(ACCOUNT_SERVICE + "/Actions/AccountService.Explode", json={},
                             headers=admin)
    assert resp.status in (400, 404)
    error_ids(await resp.json())
    assert await state() == before


async def test_bad_query_encoding(client, admin):
    resp = await client.get(ACCOUNTS + "?$filter=%ZZ", headers=admin)
    assert resp.status == 400
    error_ids(await resp.json())


# -- fuzz --------------------------------------------------------------------------------------


def _random_value(rng: random.Random, depth: int = 0):
    choice = rng.randrange(9 if depth < 3 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 1, 7, 30, 2**31, -(2**63), 10**20])
    if choice == 3:
        return rng.choice([0.5, -3.25, 1e300])
    if choice == 4:
        return rng.choice(["", "x", "Enabled", "Administrator", "\u0000", "../..", "\u00e9" * 5,
                           "'; DROP TABLE documents; --", "A" * 500])
    if choice == 5:
        return {}
    if choice == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(6))]
    keys = ["MinPasswordLength", "MaxPasswordLength", "HTTPBasicAuth", "NTP", "NTPServers",
            "AccountLockoutThreshold", "Enabled", "UserName", "RoleId", "Locked", "Id",
            "@odata.id", "Oem", "x"]
    return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


async def test_fuzzed_patch_bodies_never_500(client, admin):
    rng = random.Random(20261123)
    targets = [ACCOUNT_SERVICE, NETWORK_PROTOCOL, ADMIN_ACCOUNT + "x", SESSIONS]
    for _ in range(150):
        uri = rng.choice(targets)
        body = _random_value(rng)
        if isinstance(body, dict) and "Password" in body:
            del body["Password"]
        before = await snapshot(client, uri, admin) if uri != ADMIN_ACCOUNT + "x" else None
        resp = await client.patch(uri, json=body, headers=admin)
        assert resp.status < 500, (uri, body, await resp.text())
        if resp.status >= 400:
            error_ids(await resp.json())
            if before is not None:
                assert await snapshot(client, uri, admin) == before, (uri, body)
        else:
            assert resp.status == 200
            doc = await resp.json()
            assert doc["@odata.id"] == uri
    # The service is still healthy and the admin can still log in.
    assert (await client.get(ACCOUNTS, headers=basic("admin", ADMIN_PASSWORD))).status in (
        200, 401)
    assert (await client.get(ACCOUNTS, headers=admin)).status == 200


async def test_fuzzed_account_posts_never_500(client, admin):
    rng = random.Random(7)
    fields = ["UserName", "Password", "RoleId", "Enabled", "Locked", "AccountTypes", "Id", "x"]
    for _ in range(60):
        body = {k: _random_value(rng, 2) for k in rng.sample(fields, rng.randrange(1, 5))}
        if isinstance(body.get("Password"), str) and len(body["Password"]) >= 8:
            body["Password"] = 8  # keep scrypt out of the loop
        resp = await client.post(ACCOUNTS, json=body, headers=admin)
        assert resp.status in (400, 409), (body, resp.status, await resp.text())
        error_ids(await resp.json())
    assert (await get_json(client, ACCOUNTS, admin))["Members@odata.count"] == 1


# -- nesting and secrets ----------------------------------------------------------------------


async def test_deeply_nested_json_value(client, admin, state):
    """Nesting orjson accepts (< 1024 levels) must still give a 4xx, never a 500."""
    before = await state()
    for depth in (200, 1000, 1020):
        body = b'{"MinPasswordLength": ' + b"[" * depth + b"]" * depth + b"}"
        resp = await client.patch(ACCOUNT_SERVICE, data=body, headers={**admin, **JSON_HEADERS})
        assert resp.status == 400, (depth, resp.status)
        error_ids(await resp.json())
    assert await state() == before


async def test_deeply_nested_filter(client, admin):
    auth = basic("admin", ADMIN_PASSWORD)
    for n in (300, 450, 900):
        path = ACCOUNTS + "?$filter=" + "(" * n + "UserName%20eq%20'admin'" + ")" * n
        code, _, payload = await raw_request(client, "GET", path, auth)
        assert code in (200, 400), (n, code)
        body = json.loads(payload)
        if code == 400:
            error_ids(body)
        else:
            assert body["Members"] == [{"@odata.id": ADMIN_ACCOUNT}]


async def test_password_of_wrong_type_is_not_echoed(client, admin, state):
    before = await state()
    secret = "Secret-Value-8472"
    for value in ([secret], {"p": secret}):
        resp = await client.patch(ADMIN_ACCOUNT, json={"Password": value}, headers=admin)
        text = await resp.text()
        assert resp.status == 400
        error_ids(json.loads(text))
        assert secret not in text, "a password value was echoed in an error message"
        resp = await client.post(ACCOUNTS, headers=admin, json={
            "UserName": "echo", "Password": value, "RoleId": "ReadOnly"})
        text = await resp.text()
        assert resp.status == 400
        assert secret not in text, "a password value was echoed in an error message"
        resp = await client.post(SESSIONS, json={"UserName": "admin", "Password": value})
        text = await resp.text()
        assert resp.status == 400
        assert secret not in text, "a password value was echoed in an error message"
    assert await state() == before
