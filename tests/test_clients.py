"""Real Redfish clients against a real service over loopback HTTPS.

* sushy (OpenStack Ironic's client) with session authentication;
* the DMTF ``redfish`` library (python-redfish-library): session login, a crawl of the
  whole tree, account create/PATCH, logout, and the old token refused afterwards;
* redfishtool (DMTF's command line client) as a subprocess.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import urllib.error
import urllib.request

import pytest
import redfish
import sushy
from sushy import auth as sushy_auth
from sushy import exceptions as sushy_exceptions

from .support.odata import odata_links, resource_path, same_uri
from .support.service import insecure_context
from .support.tools import run_tool, tool_path

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

MAX_DOCUMENTS = 500
TOOL_TIMEOUT = 90


@pytest.fixture(autouse=True)
def _no_ca_bundle(monkeypatch):
    # requests lets these override verify=False (psf/requests#3829).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def raw_status(url: str, headers: dict[str, str]) -> int:
    """Status of a GET sent with exactly these credentials (no client library involved)."""
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, context=insecure_context(), timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def basic_header(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def local_path(location: str) -> str:
    """A Location header (absolute or relative) as a path."""
    if location.startswith(("http://", "https://")):
        return "/" + location.split("/", 3)[3]
    return location


def session_uris(service) -> list[str]:
    status, _, body = service.get("/redfish/v1/SessionService/Sessions")
    assert status == 200, body
    return [m["@odata.id"] for m in body["Members"]]


# --------------------------------------------------------------------------------------
# sushy
# --------------------------------------------------------------------------------------
def test_sushy_session_browse(service):
    _, _, root = service.get("/redfish/v1/")
    auth = sushy_auth.SessionAuth(username="admin", password=service.password)
    conn = sushy.Sushy(service.url + "/redfish/v1/", auth=auth, verify=False,
                       server_side_retries=1, server_side_retries_delay=0.2, read_timeout=30)
    try:
        # root
        assert conn.uuid == root["UUID"]
        assert conn.redfish_version == root["RedfishVersion"]
        assert conn.name == root["Name"]

        # the session sushy logged in with is a real one, listed by the service
        token = auth.get_session_key()
        session_uri = auth.get_session_resource_id()
        assert token, "sushy did not get an X-Auth-Token"
        assert session_uri, "sushy did not get the session's Location"
        session_uri = local_path(session_uri)
        assert session_uri in session_uris(service)
        assert raw_status(service.url + "/redfish/v1/Managers", {"X-Auth-Token": token}) == 200

        # managers
        _, _, managers_raw = service.get(root["Managers"]["@odata.id"])
        managers = conn.get_manager_collection()
        expected_ids = {m["@odata.id"] for m in managers_raw["Members"]}
        assert set(managers.members_identities) == expected_ids and expected_ids
        for manager in managers.get_members():
            _, _, raw = service.get(manager.path)
            assert manager.identity == raw["Id"]
            assert manager.name == raw["Name"]
            assert manager.uuid == raw.get("UUID")
            assert manager.manager_type is not None, raw.get("ManagerType")

        # session service
        _, _, ss_raw = service.get(root["SessionService"]["@odata.id"])
        ss = conn.get_session_service()
        assert ss.service_enabled is True
        assert ss.session_timeout == ss_raw["SessionTimeout"]
        assert session_uri in ss.sessions.members_identities
        own = ss.sessions.get_member(session_uri)
        assert own.username == "admin"

        # accounts: sushy 5.14 has no AccountService model, so browse through its
        # connector (still the session's X-Auth-Token)
        account_service = conn._conn.get(path=root["AccountService"]["@odata.id"]).json()
        accounts = conn._conn.get(path=account_service["Accounts"]["@odata.id"]).json()
        assert accounts["Members@odata.count"] == len(accounts["Members"]) >= 1
        names = []
        for member in accounts["Members"]:
            account = conn._conn.get(path=member["@odata.id"]).json()
            assert same_uri(account["@odata.id"], member["@odata.id"])
            assert account["Password"] is None
            names.append(account["UserName"])
        assert "admin" in names
        roles = conn._conn.get(path=account_service["Roles"]["@odata.id"]).json()
        role_ids = {conn._conn.get(path=m["@odata.id"]).json()["RoleId"]
                    for m in roles["Members"]}
        assert {"Administrator", "Operator", "ReadOnly"} <= role_ids
    finally:
        auth.close()
    # closing sushy's session deleted it on the service, so its token is dead
    assert session_uri not in session_uris(service)
    assert raw_status(service.url + "/redfish/v1/Managers", {"X-Auth-Token": token}) == 401


def test_sushy_rejects_wrong_password(service):
    auth = sushy_auth.SessionAuth(username="admin", password="not-the-password")
    with pytest.raises(sushy_exceptions.AccessError):
        sushy.Sushy(service.url + "/redfish/v1/", auth=auth, verify=False,
                    server_side_retries=1, server_side_retries_delay=0.2, read_timeout=30)


# --------------------------------------------------------------------------------------
# DMTF python-redfish-library
# --------------------------------------------------------------------------------------
def redfish_lib_client(service, username="admin", password=None):
    return redfish.redfish_client(base_url=service.url, username=username,
                                  password=password or service.password,
                                  default_prefix="/redfish/v1/", timeout=30, max_retry=1)


def test_redfish_library_session_crawl_patch_logout(service):
    client = redfish_lib_client(service)
    client.login(auth="session")
    token = client.get_session_key()
    session_uri = client.get_session_location()
    assert token, "no X-Auth-Token after login(auth='session')"
    assert session_uri
    session_uri = local_path(session_uri)
    logged_out = False
    try:
        # -- GET the whole tree by following every @odata.id ----------------------------
        seen: dict[str, dict] = {}
        queue = ["/redfish/v1/"]
        problems = []
        while queue and len(seen) < MAX_DOCUMENTS:
            path = queue.pop(0)
            if path in seen:
                continue
            resp = client.get(path)
            if resp.status != 200 or not isinstance(resp.dict, dict):
                problems.append(f"GET {path} -> {resp.status}: {str(resp.text)[:200]}")
                seen[path] = {}
                continue
            body = resp.dict
            seen[path] = body
            if not same_uri(body.get("@odata.id", ""), path):
                problems.append(f"GET {path} returned @odata.id {body.get('@odata.id')!r}")
            if "@odata.type" not in body:
                problems.append(f"GET {path} has no @odata.type")
            for link in odata_links(body):
                target = resource_path(link)
                if target and target not in seen and target not in queue:
                    queue.append(target)
        assert not queue, f"tree larger than {MAX_DOCUMENTS} documents (or a link loop)"
        assert not problems, "\n".join(problems)
        for expected in ("/redfish/v1/AccountService", "/redfish/v1/SessionService",
                         "/redfish/v1/Managers", "/redfish/v1/AccountService/Accounts/1",
                         "/redfish/v1/AccountService/Roles/ReadOnly", session_uri):
            assert expected in seen, f"{expected} not reachable from /redfish/v1/"

        # -- create a ReadOnly account, then PATCH it -----------------------------------
        accounts_uri = seen["/redfish/v1/AccountService"]["Accounts"]["@odata.id"]
        resp = client.post(accounts_uri, body={"UserName": "libuser",
                                               "Password": "Lib-user-passw0rd",
                                               "RoleId": "ReadOnly"})
        assert resp.status == 201, resp.text
        account_uri = local_path(resp.getheader("Location"))
        assert resp.dict["RoleId"] == "ReadOnly" and resp.dict["Enabled"] is True
        assert raw_status(service.url + account_uri,
                          basic_header("libuser", "Lib-user-passw0rd")) == 200
        before = client.get(account_uri)
        etag_before = before.getheader("ETag")

        resp = client.patch(account_uri, body={"RoleId": "Operator", "Enabled": False})
        assert resp.status in (200, 204), resp.text
        after = client.get(account_uri)
        assert after.status == 200
        assert after.dict["RoleId"] == "Operator"
        assert after.dict["Enabled"] is False
        assert same_uri(after.dict["Links"]["Role"]["@odata.id"],
                        "/redfish/v1/AccountService/Roles/Operator")
        assert after.getheader("ETag") != etag_before
        # a disabled account no longer authenticates
        assert raw_status(service.url + account_uri,
                          basic_header("libuser", "Lib-user-passw0rd")) == 401

        resp = client.delete(account_uri)
        assert resp.status in (200, 204), resp.text
        assert client.get(account_uri).status == 404

        # -- logout ---------------------------------------------------------------------
        client.logout()
        logged_out = True
    finally:
        if not logged_out:
            client.logout()
    assert raw_status(service.url + "/redfish/v1/AccountService",
                      {"X-Auth-Token": token}) == 401
    assert session_uri not in session_uris(service)


def test_redfish_library_wrong_password_is_refused(service):
    client = redfish_lib_client(service, password="not-the-password")
    with pytest.raises(redfish.rest.v1.InvalidCredentialsError):
        client.login(auth="session")


# --------------------------------------------------------------------------------------
# redfishtool
# --------------------------------------------------------------------------------------
def redfishtool(service, *args: str, password: str | None = None, auth: str | None = None):
    cmd = [tool_path("redfishtool"), "-r", f"127.0.0.1:{service.port}", "-S", "Always",
           "-T", "30", "-u", "admin", "-p", password or service.password]
    if auth:
        cmd += ["-A", auth]
    return run_tool([*cmd, *args], timeout=TOOL_TIMEOUT)


def json_output(run, secret: str) -> dict:
    assert run.returncode == 0, run.describe(secret)
    try:
        return json.loads(run.stdout)
    except ValueError:
        raise AssertionError(f"redfishtool printed no JSON\n{run.describe(secret)}") from None


def test_redfishtool_root_accounts_session_service(service):
    _, _, root = service.get("/redfish/v1/")
    out = json_output(redfishtool(service, "root"), service.password)
    assert out["@odata.id"] == "/redfish/v1/"
    assert out["UUID"] == root["UUID"]

    out = json_output(redfishtool(service, "AccountService", "Accounts", "list"),
                      service.password)
    assert out["Members@odata.count"] == 1
    assert [m["UserName"] for m in out["Members"]] == ["admin"]

    _, _, ss = service.get("/redfish/v1/SessionService")
    out = json_output(redfishtool(service, "SessionService"), service.password)
    assert out["@odata.id"] == "/redfish/v1/SessionService"
    assert out["SessionTimeout"] == ss["SessionTimeout"]

    out = json_output(redfishtool(service, "Managers", "list"), service.password)
    assert [m["@odata.id"] for m in out["Members"]] == \
        [m["@odata.id"] for m in service.get("/redfish/v1/Managers")[2]["Members"]]


def test_redfishtool_user_administration(service):
    pw = service.password
    json_output(redfishtool(service, "AccountService", "adduser", "tooluser",
                            "Tool-user-passw0rd", "ReadOnly"), pw)
    listed = json_output(redfishtool(service, "AccountService", "Accounts", "list"), pw)
    match = [m for m in listed["Members"] if m["UserName"] == "tooluser"]
    assert len(match) == 1, listed
    uri = match[0]["@odata.id"]
    status, _, doc = service.get(uri)
    assert status == 200 and doc["RoleId"] == "ReadOnly"

    run = redfishtool(service, "AccountService", "useradmin", "tooluser", "setRoleId", "Operator")
    assert run.returncode == 0, run.describe(pw)
    assert service.get(uri)[2]["RoleId"] == "Operator"

    run = redfishtool(service, "AccountService", "setpassword", "tooluser", "Tool-user-passw0rd2")
    assert run.returncode == 0, run.describe(pw)
    assert raw_status(service.url + uri, basic_header("tooluser", "Tool-user-passw0rd2")) == 200
    assert raw_status(service.url + uri, basic_header("tooluser", "Tool-user-passw0rd")) == 401

    run = redfishtool(service, "AccountService", "deleteuser", "tooluser")
    assert run.returncode == 0, run.describe(pw)
    assert service.get(uri)[0] == 404


def test_redfishtool_session_auth_logs_out(service):
    before = session_uris(service)
    out = json_output(redfishtool(service, "SessionService", "Sessions", "list", auth="Session"),
                      service.password)
    # the tool's own session was listed while it ran ...
    assert out["Members@odata.count"] == len(before) + 1
    # ... and deleted when it finished
    assert session_uris(service) == before


def test_redfishtool_wrong_password_fails(service):
    run = redfishtool(service, "AccountService", "Accounts", "list", password="not-the-password")
    assert run.returncode != 0, run.describe()
    assert "401" in run.stdout + run.stderr, run.describe()


def test_tls_is_really_used(service):
    # the clients above talk https: check the port does not also answer plain http
    req = urllib.request.Request(f"http://127.0.0.1:{service.port}/redfish/v1/")
    with pytest.raises((http.client.HTTPException, ssl.SSLError, OSError)):
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
