"""Every document the service serves validates against its published DMTF JSON Schema.

The tree is crawled from ``/redfish/v1/`` by following every ``@odata.id`` (collections
also with ``$expand``), each document is validated against the schema file its
``@odata.type`` names (from REDFISH_JSON_SCHEMA_DIR, ``$ref``s resolved to local files),
and error responses are validated against ``redfish-error.v1_0_2.json``.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import json_schema_dir
from .support.odata import odata_links, resource_path, same_uri
from .support.schemas import SchemaNotFound, Schemas

MAX_DOCUMENTS = 2000
EXPAND = "$expand=.($levels=1)"
ERROR_SCHEMA = "redfish-error.v1_0_2.json"


@pytest.fixture(scope="module")
def schemas() -> Schemas:
    folder = json_schema_dir()
    if folder is None:
        pytest.skip("set REDFISH_JSON_SCHEMA_DIR=/path/to/DSP8010/json-schema "
                    "(e.g. ../shared/redfish/json-schema) to run the JSON Schema tests")
    assert folder.is_dir() and (folder / "odata-v4.json").is_file(), \
        f"REDFISH_JSON_SCHEMA_DIR={folder} is not a DSP8010 json-schema folder"
    return Schemas(folder, Schemas.swordfish_dir_for(folder))


async def crawl(client, headers) -> tuple[dict[str, Any], list[str]]:
    """{request path: body} of every resource reachable from the root, and the problems met.

    A collection is fetched twice: plainly, and with ``$expand`` (its members inline).
    """
    docs: dict[str, Any] = {}
    problems: list[str] = []
    queue = ["/redfish/v1/"]
    queued = set(queue)
    while queue and len(docs) < MAX_DOCUMENTS:
        path = queue.pop(0)
        resp = await client.get(path, headers=headers)
        if resp.status != 200:
            problems.append(f"GET {path} -> {resp.status}: {(await resp.text())[:300]}")
            continue
        body = await resp.json()
        docs[path] = body
        if not same_uri(body.get("@odata.id", ""), path.split("?")[0]):
            problems.append(f"GET {path}: @odata.id is {body.get('@odata.id')!r}")
        if isinstance(body.get("Members"), list) and "?" not in path:
            expanded = f"{path}?{EXPAND}"
            if expanded not in queued:
                queue.insert(0, expanded)
                queued.add(expanded)
        for link in odata_links(body):
            target = resource_path(link)
            if target and target not in queued:
                queue.append(target)
                queued.add(target)
    assert not queue, f"more than {MAX_DOCUMENTS} documents (or a link loop)"
    return docs, problems


def validate_resource(schemas: Schemas, where: str, doc: Any) -> list[str]:
    """Validation problems of one resource (and of the members an expand put inline)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("@odata.type"), str):
        return [f"{where}: no @odata.type"]
    out = []
    try:
        choice = schemas.schema_for_type(doc["@odata.type"])
    except SchemaNotFound as e:
        return [f"{where}: {e}"]
    for err in schemas.errors(doc, choice.path):
        out.append(f"{where} [{choice.path.name}] {err}")
    for i, member in enumerate(doc.get("Members") or []):
        if isinstance(member, dict) and "@odata.type" in member:
            out += validate_resource(schemas, f"{where} Members/{i}", member)
    return out


async def test_every_document_matches_its_json_schema(client, admin, make_user, schemas):
    # something in every collection that can hold something
    await make_user("schema-ro", "ReadOnly")
    await make_user("schema-op", "Operator", Enabled=False)
    docs, problems = await crawl(client, admin)
    checked_types = set()
    failures = list(problems)
    for path, doc in sorted(docs.items()):
        failures += validate_resource(schemas, path, doc)
        checked_types.add(doc.get("@odata.type"))
    assert not failures, (
        f"{len(failures)} schema problem(s) in {len(docs)} documents:\n  " + "\n  ".join(failures)
    )
    # the crawl really saw the tree (so an empty crawl cannot pass)
    for path in ("/redfish/v1/", "/redfish/v1/AccountService",
                 "/redfish/v1/AccountService/Accounts/3", "/redfish/v1/SessionService",
                 f"/redfish/v1/AccountService/Accounts?{EXPAND}",
                 f"/redfish/v1/SessionService/Sessions?{EXPAND}"):
        assert path in docs, f"{path} not reached; reached: {sorted(docs)}"
    assert any(p.startswith("/redfish/v1/SessionService/Sessions/") for p in docs)
    for family in ("#ServiceRoot.", "#ManagerAccount.", "#ManagerAccountCollection.",
                   "#Role.", "#Session.", "#SessionService.", "#Manager."):
        assert any(t.startswith(family) for t in checked_types if t), (family, checked_types)


def error_cases(account_uri: str) -> list[tuple[str, str, str, int, Any, dict[str, str]]]:
    """(what, method, path, expected status, JSON body or raw bytes, headers).

    Headers ``_noauth`` (send no credentials) and ``_as`` (send the ReadOnly user's) are
    instructions to the test, not sent.
    """
    accounts = "/redfish/v1/AccountService/Accounts"
    return [
        ("unknown URI", "GET", "/redfish/v1/NoSuchThing", 404, None, {}),
        ("no credentials", "GET", "/redfish/v1/AccountService", 401, None, {"_noauth": "1"}),
        ("bad login", "POST", "/redfish/v1/SessionService/Sessions", 401,
         {"UserName": "admin", "Password": "wrong-password"}, {"_noauth": "1"}),
        ("method not allowed", "DELETE", "/redfish/v1/", 405, None, {}),
        ("malformed JSON", "POST", accounts, 400, b"{not json", {}),
        ("missing required properties", "POST", accounts, 400, {"UserName": "x"}, {}),
        ("duplicate UserName", "POST", accounts, 409,
         {"UserName": "admin", "Password": "Another-passw0rd", "RoleId": "ReadOnly"}, {}),
        ("unknown property", "PATCH", account_uri, 400, {"NoSuchProperty": 1}, {}),
        ("stale If-Match", "PATCH", account_uri, 412, {"Enabled": True},
         {"If-Match": '"stale-etag-0"'}),
        ("insufficient privilege", "PATCH", "/redfish/v1/AccountService", 403,
         {"AccountLockoutThreshold": 9}, {"_as": "readonly"}),
    ]


async def test_error_bodies_match_redfish_error_schema(client, admin, make_user, schemas):
    error_schema = schemas.redfish_dir / ERROR_SCHEMA
    assert error_schema.is_file(), f"{ERROR_SCHEMA} missing from {schemas.redfish_dir}"
    readonly, _ = await make_user("error-ro", "ReadOnly")
    _, account_uri = await make_user("error-target", "Operator")
    failures = []
    for what, method, path, status, body, extra in error_cases(account_uri):
        headers = dict(extra)
        if headers.pop("_noauth", None) is None:
            headers.update(readonly if headers.pop("_as", None) else admin)
        kwargs: dict[str, Any] = {"headers": headers}
        if isinstance(body, bytes):
            kwargs["data"] = body
            headers["Content-Type"] = "application/json"
        elif body is not None:
            kwargs["json"] = body
        resp = await client.request(method, path, **kwargs)
        text = await resp.text()
        if resp.status != status:
            failures.append(f"{what}: {method} {path} -> {resp.status}, expected {status}: "
                            f"{text[:300]}")
            continue
        if resp.content_type != "application/json":
            failures.append(f"{what}: {method} {path} -> {resp.status} with Content-Type "
                            f"{resp.content_type!r}: {text[:200]}")
            continue
        payload = await resp.json()
        for err in schemas.errors(payload, error_schema):
            failures.append(f"{what}: {method} {path} -> {resp.status}: {err}")
    assert not failures, "error responses that are not Redfish error bodies:\n  " + \
        "\n  ".join(failures)


def test_schema_checks_are_not_vacuous(schemas):
    """The machinery above rejects what it should (so a pass means something)."""
    account = {
        "@odata.id": "/redfish/v1/AccountService/Accounts/1",
        "@odata.type": "#ManagerAccount.v1_14_1.ManagerAccount",
        "Id": "1", "Name": "User Account", "UserName": "admin", "RoleId": "Administrator",
        "Enabled": True, "AccountTypes": ["Redfish"],
    }
    assert validate_resource(schemas, "ok", account) == []
    bad = {**account, "Enabled": "yes", "NotInTheSchema": 1}
    problems = validate_resource(schemas, "bad", bad)
    assert any("/Enabled" in p for p in problems), problems
    assert any("NotInTheSchema" in p for p in problems), problems
    collection = {"@odata.id": "/redfish/v1/AccountService/Accounts",
                  "@odata.type": "#ManagerAccountCollection.ManagerAccountCollection",
                  "Name": "Accounts", "Members": [bad], "Members@odata.count": 1}
    problems = validate_resource(schemas, "coll", collection)
    assert any("Members/0" in p and "/Enabled" in p for p in problems), problems
    assert schemas.errors({"error": {"code": "Base.1.22.1.GeneralError"}},
                          schemas.redfish_dir / ERROR_SCHEMA), "missing 'message' not caught"
    assert validate_resource(schemas, "x", {"@odata.type": "#NoSuch.v1_0_0.NoSuch"})
    # $refs into Resource.json (Status) and odata-v4.json (links) resolve to the local files
    service = {"@odata.id": "/redfish/v1/AccountService", "Id": "AccountService",
               "@odata.type": "#AccountService.v1_18_1.AccountService", "Name": "A",
               "Status": {"State": "NotAState"}, "Accounts": {"@odata.id": 5}}
    problems = validate_resource(schemas, "service", service)
    assert any("/Status/State" in p for p in problems), problems
    assert any("/Accounts" in p for p in problems), problems
