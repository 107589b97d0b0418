"""DSP0266 protocol rules of the in-process service: URIs, headers, methods, ETags, PATCH.

The helpers at the top (error checking against the DMTF Base registry, raw HTTP requests,
crawling the tree) are shared with the other API test files.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from redfish_service.security import passwords

ROOT = Path(__file__).resolve().parent.parent
JSON_CT = "application/json;charset=utf-8"
BASE_PREFIX = "Base.1.22."
SERVICE_ROOT = "/redfish/v1/"
ACCOUNT_SERVICE = "/redfish/v1/AccountService"
ACCOUNTS = "/redfish/v1/AccountService/Accounts"
ADMIN_ACCOUNT = "/redfish/v1/AccountService/Accounts/1"
ROLES = "/redfish/v1/AccountService/Roles"
SESSION_SERVICE = "/redfish/v1/SessionService"
SESSIONS = "/redfish/v1/SessionService/Sessions"
MANAGER = "/redfish/v1/Managers/Composer"
NETWORK_PROTOCOL = "/redfish/v1/Managers/Composer/NetworkProtocol"
PUBLIC = ("/redfish", "/redfish/v1", "/redfish/v1/", "/redfish/v1/odata", "/redfish/v1/$metadata")


# -- shared helpers ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch):
    """Keep scrypt but at a small cost factor: every test logs in and creates accounts,
    and the KDF cost is not what these tests are about. Hashes carry their own N, so
    verification still runs the real code path."""
    monkeypatch.setattr(passwords, "_N", 2**8, raising=False)


def _registry_dir() -> Path | None:
    candidates = []
    csdl = os.environ.get("REDFISH_CSDL_DIR")
    if csdl:
        candidates.append(Path(csdl).parent / "registries")
    candidates.append(ROOT.parent / "shared" / "redfish" / "registries")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@cache
def base_registry() -> dict[str, Any] | None:
    d = _registry_dir()
    if d is None:
        return None
    files = sorted(d.glob("Base.1.22.*.json"))
    return json.loads(files[-1].read_text())["Messages"] if files else None


def check_message(msg: dict[str, Any]) -> str:
    """Check one Message object against the DMTF Base registry; return its MessageId."""
    assert isinstance(msg.get("MessageId"), str), msg
    mid = msg["MessageId"]
    assert re.fullmatch(r"[A-Za-z]+\.\d+\.\d+\.[A-Za-z]+", mid), mid
    assert isinstance(msg.get("Message"), str) and msg["Message"], msg
    args = msg.get("MessageArgs", [])
    assert all(isinstance(a, str) for a in args), msg
    assert msg.get("MessageSeverity") in ("OK", "Warning", "Critical"), msg
    for ptr in msg.get("RelatedProperties", []):
        assert ptr.startswith("/") or ptr == "", ptr
    registry = base_registry()
    if registry is not None and mid.startswith("Base."):
        assert mid.startswith(BASE_PREFIX), mid
        key = mid.rsplit(".", 1)[1]
        assert key in registry, f"{mid} is not in the Base registry"
        assert len(args) == registry[key]["NumberOfArgs"], msg
        assert msg["MessageSeverity"] == registry[key]["MessageSeverity"], msg
    return mid


def error_ids(body: Any) -> list[str]:
    """Check a Redfish error body (redfish-error.v1_0_2) and return its MessageIds."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err.get("code"), str) and err["code"], err
    assert isinstance(err.get("message"), str) and err["message"], err
    info = err.get("@Message.ExtendedInfo")
    assert isinstance(info, list) and info, err
    ids = [check_message(m) for m in info]
    if len(ids) == 1:
        assert err["code"] == ids[0]
    return ids


async def expect_error(resp, status: int, *keys: str) -> dict[str, Any]:
    """Assert an error response with ``status`` whose messages include every ``key``."""
    text = await resp.text()
    assert resp.status == status, f"{resp.status} != {status}: {text[:500]}"
    assert resp.headers.get("Content-Type") == JSON_CT
    assert resp.headers.get("OData-Version") == "4.0"
    body = json.loads(text)
    ids = error_ids(body)
    for key in keys:
        assert BASE_PREFIX + key in ids, f"{key} not in {ids}"
    return body


def ext_ids(body: dict[str, Any]) -> list[str]:
    return [check_message(m) for m in body.get("@Message.ExtendedInfo", [])]


async def get_json(client, uri: str, headers=None, status: int = 200) -> dict[str, Any]:
    resp = await client.get(uri, headers=headers)
    text = await resp.text()
    assert resp.status == status, f"GET {uri}: {resp.status} {text[:500]}"
    return json.loads(text)


async def snapshot(client, uri: str, headers) -> tuple[dict[str, Any], str | None]:
    """The body and ETag of a resource, to compare after a refused request."""
    resp = await client.get(uri, headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json(), resp.headers.get("ETag")


def strip_volatile(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "DateTime"}


async def raw_request(client, method: str, target: str, headers: dict[str, str] | None = None,
                      body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send a request byte for byte (no URL normalisation by the client library)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {client.host}:{client.port}",
                 "Connection: close"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if body:
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    hdrs = {}
    for line in header_lines:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, payload


def refs(value: Any) -> list[str]:
    """Every @odata.id reachable in a document (not following fragments)."""
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "@odata.id" and isinstance(v, str):
                found.append(v)
            else:
                found += refs(v)
    elif isinstance(value, list):
        for v in value:
            found += refs(v)
    return found


async def crawl(client, headers, limit: int = 400) -> dict[str, dict[str, Any]]:
    """GET every resource reachable from the service root; returns uri -> body."""
    seen: dict[str, dict[str, Any]] = {}
    todo = [SERVICE_ROOT]
    while todo and len(seen) < limit:
        uri = todo.pop()
        if uri in seen or "#" in uri:
            continue
        seen[uri] = await get_json(client, uri, headers)
        todo += [r for r in refs(seen[uri]) if r not in seen and "#" not in r]
    return seen


def schema_version(odata_type: str) -> str:
    """``#ManagerAccount.v1_14_1.ManagerAccount`` -> ``ManagerAccount.v1_14_1``."""
    parts = odata_type.lstrip("#").split(".")
    return ".".join(parts[:2]) if len(parts) == 3 else parts[0]


def check_common_headers(resp, *, json_body: bool = True) -> None:
    assert resp.headers.get("OData-Version") == "4.0"
    assert resp.headers.get("Cache-Control")
    if json_body:
        assert resp.headers.get("Content-Type") == JSON_CT


# -- URIs and documents ------------------------------------------------------------------


async def test_redfish_version_document(client):
    resp = await client.get("/redfish")
    assert resp.status == 200
    check_common_headers(resp)
    assert await resp.json() == {"v1": "/redfish/v1/"}


async def test_service_root_with_and_without_slash_are_equal(client, admin):
    with_slash = await get_json(client, "/redfish/v1/")
    without = await get_json(client, "/redfish/v1")
    assert without == with_slash
    authed = await get_json(client, "/redfish/v1/", admin)
    assert authed == with_slash
    assert with_slash["@odata.id"] == "/redfish/v1/"
    assert with_slash["@odata.type"].startswith("#ServiceRoot.v1_")
    for key in ("Id", "Name", "RedfishVersion", "UUID", "ProtocolFeaturesSupported"):
        assert key in with_slash
    assert with_slash["Links"]["Sessions"] == {"@odata.id": SESSIONS}
    session_service = await get_json(client, SESSION_SERVICE, admin)
    assert session_service["Sessions"] == with_slash["Links"]["Sessions"]


async def test_odata_service_document(client, admin):
    resp = await client.get("/redfish/v1/odata")
    assert resp.status == 200
    check_common_headers(resp)
    body = await resp.json()
    root = await get_json(client, "/redfish/v1/")
    assert body["@odata.context"] == "/redfish/v1/$metadata"
    value = body["value"]
    assert value[0] == {"name": "Service", "kind": "Singleton", "url": "/redfish/v1/"}
    expected = {
        name: link["@odata.id"] for name, link in root.items()
        if isinstance(link, dict) and set(link) == {"@odata.id"}
    }
    got = {v["name"]: v["url"] for v in value[1:]}
    assert got == expected
    assert {"AccountService", "SessionService", "Managers"} <= set(got)
    for v in value:
        assert v["kind"] == "Singleton"
        resp = await client.get(v["url"], headers=admin)
        assert resp.status == 200, v


async def test_metadata_document(client, admin):
    resp = await client.get("/redfish/v1/$metadata", headers={"Accept": "application/xml"})
    assert resp.status == 200
    assert resp.headers["Content-Type"].split(";")[0] == "application/xml"
    assert resp.headers.get("OData-Version") == "4.0"
    tree = ET.fromstring(await resp.read())
    edmx = "{http://docs.oasis-open.org/odata/ns/edmx}"
    edm = "{http://docs.oasis-open.org/odata/ns/edm}"
    assert tree.tag == edmx + "Edmx"
    assert tree.get("Version") == "4.0"
    containers = tree.findall(f"{edmx}DataServices/{edm}Schema/{edm}EntityContainer")
    assert len(containers) == 1
    assert containers[0].get("Extends", "").startswith("ServiceRoot.v1_")
    includes: dict[str, str] = {}
    for ref in tree.findall(edmx + "Reference"):
        uri = ref.get("Uri", "")
        assert uri.startswith("http://redfish.dmtf.org/schemas/")
        for inc in ref.findall(edmx + "Include"):
            includes[inc.get("Namespace")] = uri
    assert includes.get("RedfishExtensions.v1_0_0", "").endswith("/RedfishExtensions_v1.xml")
    # One reference per namespace of every @odata.type the service serves.
    tree_docs = await crawl(client, admin)
    assert len(tree_docs) > 10
    for uri, doc in tree_docs.items():
        odata_type = doc["@odata.type"]
        namespace = odata_type.lstrip("#").split(".")[0]
        assert namespace in includes, f"{namespace} ({uri}) not referenced in $metadata"
        assert includes[namespace].endswith(f"/{namespace}_v1.xml")
        versioned = schema_version(odata_type)
        assert versioned in includes, f"{versioned} ({uri}) not included in $metadata"


async def test_metadata_and_odata_support_head(client):
    for uri in ("/redfish/v1/$metadata", "/redfish/v1/odata", "/redfish"):
        get = await client.get(uri)
        head = await client.head(uri)
        assert head.status == get.status == 200
        assert await head.read() == b""
        assert head.headers.get("Content-Type") == get.headers.get("Content-Type")
        assert "GET" in head.headers.get("Allow", "")


async def test_public_documents_refuse_writes(client, admin):
    for uri in ("/redfish/v1/$metadata", "/redfish/v1/odata", "/redfish"):
        resp = await client.post(uri, json={}, headers=admin)
        await expect_error(resp, 405)
        assert "GET" in resp.headers["Allow"]
        assert "POST" not in resp.headers["Allow"]


async def test_every_link_resolves_and_ids_match(client, admin):
    docs = await crawl(client, admin)
    for uri, doc in docs.items():
        assert doc["@odata.id"] == uri
        for key in ("@odata.type", "Name"):
            assert key in doc, (uri, key)
        if "Members" in doc:
            assert doc["Members@odata.count"] == len(doc["Members"]), uri
            assert all(set(m) == {"@odata.id"} for m in doc["Members"]), uri
        else:
            assert "Id" in doc, uri
            if uri != SERVICE_ROOT:
                assert doc["Id"] == uri.rsplit("/", 1)[1], uri
        assert "@Redfish.Copyright" not in json.dumps(doc)
        if uri != SERVICE_ROOT:
            assert not uri.endswith("/"), uri


async def test_unknown_resource_is_404(client, admin):
    resp = await client.get("/redfish/v1/NoSuchThing", headers=admin)
    body = await expect_error(resp, 404, "ResourceMissingAtURI")
    assert body["error"]["@Message.ExtendedInfo"][0]["MessageArgs"] == ["/redfish/v1/NoSuchThing"]
    resp = await client.get(ACCOUNTS + "/999", headers=admin)
    await expect_error(resp, 404)


async def test_trailing_slash_is_tolerated(client, admin):
    a = await get_json(client, ACCOUNT_SERVICE, admin)
    b = await get_json(client, ACCOUNT_SERVICE + "/", admin)
    assert a == b


# -- response headers ----------------------------------------------------------------------


async def test_headers_on_every_get(client, admin):
    docs = await crawl(client, admin)
    for uri, doc in docs.items():
        resp = await client.get(uri, headers=admin)
        assert resp.status == 200
        check_common_headers(resp)
        allow = [m.strip() for m in resp.headers["Allow"].split(",")]
        assert "GET" in allow and "HEAD" in allow, uri
        assert resp.headers.get("ETag"), uri
        assert re.fullmatch(r'(W/)?"[^"]*"', resp.headers["ETag"]), resp.headers["ETag"]
        if "@odata.etag" in doc:
            assert doc["@odata.etag"] == resp.headers["ETag"], uri
        link = resp.headers.get("Link", "")
        m = re.fullmatch(r"<([^>]+)>;\s*rel=\"?describedby\"?", link)
        assert m, (uri, link)
        target = m.group(1).rsplit("/", 1)[1]
        assert target == schema_version(doc["@odata.type"]) + ".json", (uri, target)


async def test_allow_matches_capabilities(client, admin):
    expected = {
        SERVICE_ROOT: {"GET", "HEAD"},
        ACCOUNT_SERVICE: {"GET", "HEAD", "PATCH"},
        ACCOUNTS: {"GET", "HEAD", "POST"},
        ADMIN_ACCOUNT: {"GET", "HEAD", "PATCH", "DELETE"},
        ROLES + "/Administrator": {"GET", "HEAD"},
        SESSIONS: {"GET", "HEAD", "POST"},
        SESSION_SERVICE: {"GET", "HEAD", "PATCH"},
        NETWORK_PROTOCOL: {"GET", "HEAD", "PATCH"},
        ROLES: {"GET", "HEAD"},
        MANAGER: {"GET", "HEAD"},
    }
    sessions = await get_json(client, SESSIONS, admin)
    expected[sessions["Members"][0]["@odata.id"]] = {"GET", "HEAD", "DELETE"}
    for uri, methods in expected.items():
        resp = await client.get(uri, headers=admin)
        assert resp.status == 200
        got = {m.strip() for m in resp.headers["Allow"].split(",")}
        assert got == methods, (uri, got)


async def test_head_has_get_headers_and_no_body(client, admin):
    for uri in (SERVICE_ROOT, ACCOUNTS, ADMIN_ACCOUNT, SESSIONS, ACCOUNT_SERVICE):
        get = await client.get(uri, headers=admin)
        head = await client.head(uri, headers=admin)
        assert head.status == get.status == 200
        assert await head.read() == b""
        for h in ("Content-Type", "OData-Version", "Cache-Control", "Allow", "ETag", "Link"):
            assert head.headers.get(h) == get.headers.get(h), (uri, h)


async def test_head_of_missing_resource_is_404_without_body(client, admin):
    resp = await client.head("/redfish/v1/Nope", headers=admin)
    assert resp.status == 404
    assert await resp.read() == b""


async def test_error_responses_carry_common_headers(client, admin):
    resp = await client.get("/redfish/v1/Nope", headers=admin)
    assert resp.status == 404
    check_common_headers(resp)
    resp = await client.get(ACCOUNTS)
    assert resp.status == 401
    check_common_headers(resp)


async def test_etag_on_account_get_is_strong_and_stable(client, admin):
    a = await client.get(ADMIN_ACCOUNT, headers=admin)
    b = await client.get(ADMIN_ACCOUNT, headers=admin)
    assert a.headers["ETag"] == b.headers["ETag"]
    assert await a.read() == await b.read()


async def test_etag_changes_when_representation_changes(client, admin):
    """A live-rendered resource (Manager.DateTime) must not keep one ETag for two bodies."""
    first = await client.get(MANAGER, headers=admin)
    body1 = await first.read()
    await asyncio.sleep(1.05)
    second = await client.get(MANAGER, headers=admin)
    body2 = await second.read()
    assert first.status == second.status == 200
    etag1, etag2 = first.headers.get("ETag"), second.headers.get("ETag")
    if body1 != body2 and not (etag1 or "").startswith("W/"):
        # RFC 7232 2.1: a strong validator changes whenever the representation does.
        assert etag1 != etag2, "same strong ETag for two different representations"


# -- methods -----------------------------------------------------------------------------


async def test_put_is_not_allowed(client, admin):
    before = await snapshot(client, ACCOUNT_SERVICE, admin)
    resp = await client.put(ACCOUNT_SERVICE, json={"MinPasswordLength": 9}, headers=admin)
    await expect_error(resp, 405, "OperationNotAllowed")
    assert {m.strip() for m in resp.headers["Allow"].split(",")} == {"GET", "HEAD", "PATCH"}
    assert await snapshot(client, ACCOUNT_SERVICE, admin) == before


async def test_post_on_singleton_is_405(client, admin):
    before = await snapshot(client, ACCOUNT_SERVICE, admin)
    resp = await client.post(ACCOUNT_SERVICE, json={"Name": "x"}, headers=admin)
    await expect_error(resp, 405)
    assert "POST" not in resp.headers["Allow"]
    assert "GET" in resp.headers["Allow"]
    assert await snapshot(client, ACCOUNT_SERVICE, admin) == before


async def test_post_on_non_insertable_collection_is_405(client, admin):
    before = await snapshot(client, ROLES, admin)
    resp = await client.post(ROLES, json={"RoleId": "Custom", "AssignedPrivileges": ["Login"]},
                             headers=admin)
    await expect_error(resp, 405)
    assert "POST" not in resp.headers["Allow"]
    assert await snapshot(client, ROLES, admin) == before
    session = (await get_json(client, SESSIONS, admin))["Members"][0]["@odata.id"]
    resp = await client.patch(session, json={"UserName": "x"}, headers=admin)
    await expect_error(resp, 405)


async def test_writes_on_service_root_are_405(client, admin):
    before = await snapshot(client, SERVICE_ROOT, admin)
    for method in ("DELETE", "PATCH", "POST"):
        resp = await client.request(method, SERVICE_ROOT, json={"Name": "x"}, headers=admin)
        await expect_error(resp, 405)
        assert {m.strip() for m in resp.headers["Allow"].split(",")} == {"GET", "HEAD"}
    assert await snapshot(client, SERVICE_ROOT, admin) == before


async def test_patch_on_collection_is_405(client, admin):
    before = await snapshot(client, ACCOUNTS, admin)
    resp = await client.patch(ACCOUNTS, json={"Name": "x"}, headers=admin)
    await expect_error(resp, 405)
    assert {m.strip() for m in resp.headers["Allow"].split(",")} == {"GET", "HEAD", "POST"}
    assert await snapshot(client, ACCOUNTS, admin) == before


async def test_delete_on_collection_is_405(client, admin):
    resp = await client.delete(ACCOUNTS, headers=admin)
    await expect_error(resp, 405)
    assert "DELETE" not in resp.headers["Allow"]
    assert (await get_json(client, ACCOUNTS, admin))["Members@odata.count"] == 1


async def test_unknown_method(client, admin):
    resp = await client.request("FAKEMETHODFORTEST", SERVICE_ROOT, headers=admin)
    assert resp.status in (405, 501)
    error_ids(await resp.json())
    if resp.status == 405:
        assert "GET" in resp.headers["Allow"]


async def test_get_ignores_request_body(client, admin):
    resp = await client.request("GET", ACCOUNT_SERVICE, data=b"{not json",
                                headers={**admin, "Content-Type": "application/json"})
    assert resp.status == 200
    assert (await resp.json())["@odata.id"] == ACCOUNT_SERVICE


# -- request headers ---------------------------------------------------------------------


async def test_odata_version(client, admin):
    resp = await client.get(SERVICE_ROOT, headers={"OData-Version": "4.0"})
    assert resp.status == 200
    resp = await client.get(SERVICE_ROOT, headers={"OData-Version": "4.1"})
    await expect_error(resp, 412)
    before = await snapshot(client, ACCOUNT_SERVICE, admin)
    resp = await client.patch(ACCOUNT_SERVICE, json={"MinPasswordLength": 10},
                              headers={**admin, "OData-Version": "4.1"})
    await expect_error(resp, 412)
    assert await snapshot(client, ACCOUNT_SERVICE, admin) == before


ACCEPT_VARIANTS = (
    None, "application/json", "application/json;charset=utf-8",
    "application/json; charset=utf-8", "application/*", "*/*", "*/*;charset=utf-8",
    "text/html, application/json;q=0.9",
)


async def test_accept_variants(client, admin):
    for accept in ACCEPT_VARIANTS:
        headers = dict(admin)
        if accept is not None:
            headers["Accept"] = accept
        for uri in (SERVICE_ROOT, ACCOUNTS):
            resp = await client.get(uri, headers=headers)
            assert resp.status == 200, (accept, uri)
            assert resp.headers["Content-Type"] == JSON_CT
            assert (await resp.json())["@odata.id"] == uri


async def test_accept_unsatisfiable_is_406(client, admin):
    resp = await client.get(SERVICE_ROOT, headers={"Accept": "text/html"})
    await expect_error(resp, 406)
    resp = await client.get(ACCOUNTS, headers={**admin, "Accept": "text/html"})
    await expect_error(resp, 406)


async def test_metadata_accepts_xml(client):
    for accept in ("application/xml", "application/xml;charset=utf-8", "*/*", "application/*"):
        resp = await client.get("/redfish/v1/$metadata", headers={"Accept": accept})
        assert resp.status == 200, accept


async def test_content_type_text_plain_is_415(client, admin):
    before = await snapshot(client, ACCOUNT_SERVICE, admin)
    resp = await client.patch(ACCOUNT_SERVICE, data=b'{"MinPasswordLength": 10}',
                              headers={**admin, "Content-Type": "text/plain"})
    await expect_error(resp, 415)
    assert await snapshot(client, ACCOUNT_SERVICE, admin) == before
    resp = await client.post(SESSIONS, data=b'{"UserName": "admin", "Password": "x"}',
                             headers={"Content-Type": "text/plain"})
    await expect_error(resp, 415)


async def test_content_type_json_variants_accepted(client, admin):
    for n, ctype in enumerate(("application/json", "application/json;charset=utf-8",
                               "application/json; charset=UTF-8"), start=10):
        resp = await client.patch(ACCOUNT_SERVICE, data=b'{"MinPasswordLength": %d}' % n,
                                  headers={**admin, "Content-Type": ctype})
        assert resp.status == 200, (ctype, await resp.text())
        assert (await resp.json())["MinPasswordLength"] == n


# -- ETags -----------------------------------------------------------------------------


async def test_if_match_on_patch(client, admin, make_user):
    _, uri = await make_user("etaguser", "ReadOnly")
    body, etag = await snapshot(client, uri, admin)
    assert etag
    # Wrong ETag: refused, nothing changes.
    resp = await client.patch(uri, json={"RoleId": "Operator"},
                              headers={**admin, "If-Match": etag[:-1] + 'foobar"'})
    await expect_error(resp, 412, "PreconditionFailed")
    assert await snapshot(client, uri, admin) == (body, etag)
    # Current ETag: applied, and the ETag changes.
    resp = await client.patch(uri, json={"RoleId": "Operator"}, headers={**admin, "If-Match": etag})
    assert resp.status == 200, await resp.text()
    after, new_etag = await snapshot(client, uri, admin)
    assert after["RoleId"] == "Operator"
    assert new_etag != etag
    assert resp.headers.get("ETag") == new_etag
    # The old one is stale now.
    resp = await client.patch(uri, json={"RoleId": "ReadOnly"}, headers={**admin, "If-Match": etag})
    await expect_error(resp, 412, "PreconditionFailed")
    assert (await snapshot(client, uri, admin))[0]["RoleId"] == "Operator"
    # '*' matches any.
    resp = await client.patch(uri, json={"RoleId": "ReadOnly"}, headers={**admin, "If-Match": "*"})
    assert resp.status == 200
    assert (await snapshot(client, uri, admin))[0]["RoleId"] == "ReadOnly"
    # A list holding the current ETag matches.
    _, cur = await snapshot(client, uri, admin)
    resp = await client.patch(uri, json={"Enabled": False},
                              headers={**admin, "If-Match": f'"nope", {cur}'})
    assert resp.status == 200


async def test_if_match_on_delete(client, admin, make_user):
    _, uri = await make_user("deluser", "ReadOnly")
    body, etag = await snapshot(client, uri, admin)
    resp = await client.delete(uri, headers={**admin, "If-Match": '"12345678"'})
    await expect_error(resp, 412, "PreconditionFailed")
    assert await snapshot(client, uri, admin) == (body, etag)
    members = (await get_json(client, ACCOUNTS, admin))["Members"]
    assert {"@odata.id": uri} in members
    resp = await client.delete(uri, headers={**admin, "If-Match": etag})
    assert resp.status in (200, 204)
    resp = await client.get(uri, headers=admin)
    assert resp.status == 404


async def test_if_match_star_on_delete(client, admin, make_user):
    _, uri = await make_user("deluser2", "ReadOnly")
    resp = await client.delete(uri, headers={**admin, "If-Match": "*"})
    assert resp.status in (200, 204)
    assert (await client.get(uri, headers=admin)).status == 404


async def test_if_none_match(client, admin):
    resp = await client.get(ADMIN_ACCOUNT, headers=admin)
    etag = resp.headers["ETag"]
    resp = await client.get(ADMIN_ACCOUNT, headers={**admin, "If-None-Match": etag})
    assert resp.status == 304
    assert await resp.read() == b""
    assert resp.headers.get("ETag") == etag
    resp = await client.get(ADMIN_ACCOUNT, headers={**admin, "If-None-Match": '"other"'})
    assert resp.status == 200
    assert (await resp.json())["UserName"] == "admin"


async def test_if_none_match_star_and_weak_comparison(client, admin):
    """RFC 7232 3.2: If-None-Match uses the weak comparison, and '*' matches any current
    representation."""
    resp = await client.get(ADMIN_ACCOUNT, headers=admin)
    etag = resp.headers["ETag"]
    assert not etag.startswith("W/")
    resp = await client.get(ADMIN_ACCOUNT, headers={**admin, "If-None-Match": "W/" + etag})
    assert resp.status == 304
    resp = await client.get(ADMIN_ACCOUNT, headers={**admin, "If-None-Match": f'"x", {etag}'})
    assert resp.status == 304
    resp = await client.get(ADMIN_ACCOUNT, headers={**admin, "If-None-Match": "*"})
    assert resp.status == 304


async def test_authentication_before_if_none_match(client, admin):
    resp = await client.get(ADMIN_ACCOUNT, headers=admin)
    etag = resp.headers["ETag"]
    resp = await client.get(ADMIN_ACCOUNT, headers={"If-None-Match": etag})
    assert resp.status == 401
    assert "WWW-Authenticate" in resp.headers


# -- PATCH rules -------------------------------------------------------------------------


async def test_patch_partial_success(client, admin, make_user):
    _, uri = await make_user("partial", "ReadOnly")
    before, _ = await snapshot(client, uri, admin)
    resp = await client.patch(uri, json={"RoleId": "Operator", "Id": "77", "Bogus": 1},
                              headers=admin)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["RoleId"] == "Operator"
    assert body["Id"] == before["Id"]
    assert "Bogus" not in body
    info = body["@Message.ExtendedInfo"]
    by_id = {check_message(m): m for m in info}
    assert BASE_PREFIX + "PropertyNotWritable" in by_id
    assert by_id[BASE_PREFIX + "PropertyNotWritable"]["MessageArgs"] == ["Id"]
    assert by_id[BASE_PREFIX + "PropertyNotWritable"]["RelatedProperties"] == ["/Id"]
    assert BASE_PREFIX + "PropertyUnknown" in by_id
    assert by_id[BASE_PREFIX + "PropertyUnknown"]["MessageArgs"] == ["Bogus"]
    stored, _ = await snapshot(client, uri, admin)
    assert stored["RoleId"] == "Operator"
    assert stored["Links"]["Role"] == {"@odata.id": ROLES + "/Operator"}
    assert "@Message.ExtendedInfo" not in stored


async def test_patch_all_refused_is_400(client, admin, make_user):
    _, uri = await make_user("refused", "ReadOnly")
    before = await snapshot(client, uri, admin)
    resp = await client.patch(uri, json={"Id": "9", "Bogus": True}, headers=admin)
    body = await expect_error(resp, 400, "PropertyNotWritable", "PropertyUnknown")
    assert body["error"]["code"] == BASE_PREFIX + "GeneralError"
    assert await snapshot(client, uri, admin) == before


async def test_patch_only_read_only_property_is_400(client, admin):
    before = await snapshot(client, ACCOUNT_SERVICE, admin)
    resp = await client.patch(ACCOUNT_SERVICE, json={"ServiceEnabled": False}, headers=admin)
    await expect_error(resp, 400, "PropertyNotWritable")
    assert await snapshot(client, ACCOUNT_SERVICE, admin) == before


async def test_patch_empty_object_is_empty_json(client, admin):
    before = await snapshot(client, ACCOUNT_SERVICE, admin)
    resp = await client.patch(ACCOUNT_SERVICE, json={}, headers=admin)
    await expect_error(resp, 400, "EmptyJSON")
    assert await snapshot(client, ACCOUNT_SERVICE, admin) == before


async def test_patch_only_odata_id_is_no_operation(client, admin):
    before = await snapshot(client, ACCOUNT_SERVICE, admin)
    resp = await client.patch(ACCOUNT_SERVICE, json={"@odata.id": ACCOUNT_SERVICE}, headers=admin)
    await expect_error(resp, 400, "NoOperation")
    assert await snapshot(client, ACCOUNT_SERVICE, admin) == before


async def test_patch_returns_full_representation(client, admin):
    resp = await client.patch(ACCOUNT_SERVICE, json={"MinPasswordLength": 12}, headers=admin)
    assert resp.status == 200
    body = await resp.json()
    stored, etag = await snapshot(client, ACCOUNT_SERVICE, admin)
    assert body == stored
    assert stored["MinPasswordLength"] == 12
    assert resp.headers.get("ETag") == etag


async def test_patch_same_value_keeps_etag(client, admin):
    _, etag = await snapshot(client, ACCOUNT_SERVICE, admin)
    current = (await get_json(client, ACCOUNT_SERVICE, admin))["MinPasswordLength"]
    resp = await client.patch(ACCOUNT_SERVICE, json={"MinPasswordLength": current}, headers=admin)
    assert resp.status == 200
    assert (await snapshot(client, ACCOUNT_SERVICE, admin))[1] == etag


async def test_patch_semantic_conflict_applies_nothing(client, admin):
    before = await snapshot(client, ACCOUNT_SERVICE, admin)
    resp = await client.patch(ACCOUNT_SERVICE,
                              json={"MinPasswordLength": 50, "MaxPasswordLength": 20},
                              headers=admin)
    await expect_error(resp, 400, "PropertyValueConflict")
    assert await snapshot(client, ACCOUNT_SERVICE, admin) == before


# -- array PATCH on ManagerNetworkProtocol NTP.NTPServers ----------------------------------------


async def _ntp(client, admin) -> list[str]:
    return (await get_json(client, NETWORK_PROTOCOL, admin))["NTP"]["NTPServers"]


async def _patch_ntp(client, admin, servers):
    return await client.patch(NETWORK_PROTOCOL, json={"NTP": {"NTPServers": servers}},
                              headers=admin)


async def test_ntp_array_patch_semantics(client, admin):
    assert await _ntp(client, admin) == []
    resp = await _patch_ntp(client, admin, ["a.example", "b.example", "c.example"])
    assert resp.status == 200
    assert (await resp.json())["NTP"]["NTPServers"] == ["a.example", "b.example", "c.example"]
    assert await _ntp(client, admin) == ["a.example", "b.example", "c.example"]
    # null removes, {} keeps, a value replaces.
    resp = await _patch_ntp(client, admin, [None, {}, "d.example"])
    assert resp.status == 200
    assert await _ntp(client, admin) == ["b.example", "d.example"]
    # {} keeps and a new element at the end is added.
    resp = await _patch_ntp(client, admin, [{}, {}, "e.example"])
    assert resp.status == 200
    assert await _ntp(client, admin) == ["b.example", "d.example", "e.example"]
    # A shorter array truncates.
    resp = await _patch_ntp(client, admin, ["x.example"])
    assert resp.status == 200
    assert await _ntp(client, admin) == ["x.example"]
    # An empty array clears.
    resp = await _patch_ntp(client, admin, [])
    assert resp.status == 200
    assert await _ntp(client, admin) == []


async def test_ntp_array_too_long_is_refused(client, admin):
    await _patch_ntp(client, admin, ["a", "b"])
    before = await snapshot(client, NETWORK_PROTOCOL, admin)
    resp = await _patch_ntp(client, admin, ["1", "2", "3", "4", "5"])
    await expect_error(resp, 400, "ArraySizeTooLong")
    assert await snapshot(client, NETWORK_PROTOCOL, admin) == before
    resp = await _patch_ntp(client, admin, ["1", "2", "3", "4"])
    assert resp.status == 200
    assert await _ntp(client, admin) == ["1", "2", "3", "4"]


async def test_ntp_array_wrong_item_type_is_refused(client, admin):
    await _patch_ntp(client, admin, ["a"])
    before = await snapshot(client, NETWORK_PROTOCOL, admin)
    resp = await _patch_ntp(client, admin, ["ok.example", 5])
    await expect_error(resp, 400, "PropertyValueTypeError")
    assert await snapshot(client, NETWORK_PROTOCOL, admin) == before
    resp = await _patch_ntp(client, admin, "not-a-list")
    await expect_error(resp, 400, "PropertyValueTypeError")
    assert await snapshot(client, NETWORK_PROTOCOL, admin) == before


async def test_ntp_read_only_sibling_is_refused_but_servers_applied(client, admin):
    resp = await client.patch(NETWORK_PROTOCOL,
                              json={"NTP": {"NTPServers": ["a"], "ProtocolEnabled": True}},
                              headers=admin)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["NTP"]["NTPServers"] == ["a"]
    assert body["NTP"]["ProtocolEnabled"] is False
    info = {check_message(m): m for m in body["@Message.ExtendedInfo"]}
    assert info[BASE_PREFIX + "PropertyNotWritable"]["MessageArgs"] == ["NTP/ProtocolEnabled"]
    assert await _ntp(client, admin) == ["a"]
