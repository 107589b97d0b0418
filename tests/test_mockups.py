"""Mockups: loading any DSP2043 mockup, serving it live, ``mockup check``, ``mockup export``.

The DMTF and Swordfish mockups are test data outside the repository:
``REDFISH_MOCKUPS_DIR`` / ``SWORDFISH_MOCKUPS_DIR`` (CI: ``../shared/{redfish,swordfish}/
mockups``, the default when present); tests that need them skip with a message otherwise.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import orjson
import pytest

from redfish_service import services
from redfish_service.app import create_app
from redfish_service.cli import main
from redfish_service.config import Settings
from redfish_service.mockups import check, loader
from redfish_service.mockups.service import service_owned
from redfish_service.store import MemoryBackend

from .conftest import ROOT, csdl_dir, json_schema_dir
from .support.service import ADMIN_PASSWORD, ServiceProcess

AUTH = {"Authorization": "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()}


def _folder(env: str, default: Path) -> Path | None:
    value = os.environ.get(env)
    if value:
        return Path(value)
    return default if default.is_dir() else None


REDFISH_MOCKUPS = _folder("REDFISH_MOCKUPS_DIR", ROOT.parent / "shared" / "redfish" / "mockups")
SWORDFISH_MOCKUPS = _folder("SWORDFISH_MOCKUPS_DIR",
                            ROOT.parent / "shared" / "swordfish" / "mockups")


def _mockups() -> list:
    found = []
    for base in (REDFISH_MOCKUPS, SWORDFISH_MOCKUPS):
        if base is None or not base.is_dir():
            continue
        for d in sorted(base.iterdir()):
            if d.is_dir() and ((d / "index.json").is_file() or (d / "redfish" / "v1").is_dir()):
                found.append(pytest.param(d, id=d.name))
    if not found:
        found.append(pytest.param(None, id="no-mockups", marks=pytest.mark.skip(
            reason="no DSP2043 mockups: set REDFISH_MOCKUPS_DIR (e.g. ../shared/redfish/mockups)"
                   " and SWORDFISH_MOCKUPS_DIR")))
    return found


def mockup(name: str) -> Path:
    if REDFISH_MOCKUPS is None or not (REDFISH_MOCKUPS / name).is_dir():
        pytest.skip(f"mockup {name} not found: set REDFISH_MOCKUPS_DIR "
                    "(e.g. ../shared/redfish/mockups)")
    return REDFISH_MOCKUPS / name


# --------------------------------------------------------------------------------------
# loading: never crashes, reports what it had to fix
# --------------------------------------------------------------------------------------
def _write(path: Path, content: bytes | dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    raw = content if isinstance(content, bytes) else orjson.dumps(content)
    (path / "index.json").write_bytes(raw)


def test_loader_reports_broken_files_and_fixes_ids(tmp_path):
    root = tmp_path / "m"
    _write(root, {"@odata.id": "/redfish/v1/", "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
                  "Systems": {"@odata.id": "/redfish/v1/Systems"},
                  "@Redfish.Copyright": "mockup only"})
    _write(root / "Systems", {"@odata.type": "#ComputerSystemCollection.ComputerSystemCollection",
                              "Members": [{"@odata.id": "/redfish/v1/Systems/1"},
                                          {"@odata.id": "/redfish/v1/Systems/gone"}],
                              "Members@odata.count": 3})
    _write(root / "Systems" / "1", b"\xef\xbb\xbf" + orjson.dumps(
        {"@odata.id": "/redfish/v1/Systems/one", "@odata.type": "#ComputerSystem.v1_0_0."
         "ComputerSystem", "Id": "1", "@odata.etag": "W/\"x\""}))
    _write(root / "Systems" / "2", b"{not json")
    _write(root / "Systems" / "3", b"[1, 2]")
    (root / "$metadata").mkdir()
    (root / "$metadata" / "index.xml").write_text("<xml/>")
    m = loader.load(root)
    assert set(m.documents) == {"/redfish/v1/", "/redfish/v1/Systems", "/redfish/v1/Systems/1"}
    assert "@Redfish.Copyright" not in m.documents["/redfish/v1/"]
    assert m.documents["/redfish/v1/Systems"]["@odata.id"] == "/redfish/v1/Systems"
    assert m.documents["/redfish/v1/Systems/1"]["@odata.id"] == "/redfish/v1/Systems/1"
    assert "@odata.etag" not in m.documents["/redfish/v1/Systems/1"]
    kinds = sorted((p.uri, p.kind) for p in check.check(m))
    assert kinds == [("/redfish/v1/Systems", "count"), ("/redfish/v1/Systems", "id"),
                     ("/redfish/v1/Systems", "link"), ("/redfish/v1/Systems/1", "id"),
                     ("/redfish/v1/Systems/2", "file"), ("/redfish/v1/Systems/3", "file")]


def test_loader_accepts_the_long_layout_and_refuses_non_mockups(tmp_path):
    _write(tmp_path / "long" / "redfish" / "v1", {"@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot"})
    assert list(loader.load(tmp_path / "long").documents) == ["/redfish/v1/"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(loader.NotAMockup):
        loader.load(tmp_path / "empty")
    with pytest.raises(loader.NotAMockup):
        loader.load(tmp_path / "absent")


# --------------------------------------------------------------------------------------
# every published mockup loads and serves (in process: fast)
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("folder", _mockups())
async def test_every_mockup_loads_and_serves(aiohttp_client, tmp_path, folder):
    settings = Settings(state_dir=tmp_path, admin_password=ADMIN_PASSWORD, mockup=folder)
    app = create_app(settings, backend=MemoryBackend())
    client = await aiohttp_client(app)
    m = loader.load(folder)
    store = app[services.STORE]
    failures = []
    for uri in sorted(set(m.documents) | set(store.uris())):
        resp = await client.get(uri, headers=AUTH)
        if service_owned(uri) and uri not in store:
            assert resp.status == 404  # replaced by the service's own
            continue
        if resp.status != 200:
            failures.append(f"GET {uri} -> {resp.status}: {(await resp.text())[:200]}")
            continue
        body = await resp.json()
        # compared with the mockup unless rendered live (weak ETag: a clock, a per-client
        # view of reservations)
        if uri in m.documents and not service_owned(uri) and uri != "/redfish/v1/" \
                and not resp.headers["ETag"].startswith("W/"):
            expected = dict(m.documents[uri])
            served = {k: v for k, v in body.items() if k != "@odata.etag"}
            if isinstance(expected.get("Members"), list):
                # merged collections (Managers, Registries, JsonSchemas) gain the
                # service's own members after the mockup's
                mine = expected.pop("Members")
                if served.pop("Members", [])[:len(mine)] != mine:
                    failures.append(f"GET {uri} lost members of the mockup")
                served.pop("Members@odata.count", None)
                expected.pop("Members@odata.count", None)
            if served != expected:
                failures.append(f"GET {uri} differs from the mockup")
    assert not failures, "\n".join(failures)
    # the service's own parts are layered on, and the root links only what exists
    root = await (await client.get("/redfish/v1/", headers=AUTH)).json()
    for key, value in root.items():
        if isinstance(value, dict) and set(value) == {"@odata.id"}:
            assert value["@odata.id"].rstrip("/") in {u.rstrip("/") for u in store.uris()}, key
    resp = await client.post("/redfish/v1/SessionService/Sessions",
                             json={"UserName": "admin", "Password": ADMIN_PASSWORD})
    assert resp.status == 201


async def test_mockup_documents_follow_the_kinds(aiohttp_client, tmp_path):
    """Writable where a kind says so (a system's AssetTag), read-only otherwise, ETags."""
    settings = Settings(state_dir=tmp_path, admin_password=ADMIN_PASSWORD,
                        mockup=mockup("public-rackmount1"))
    client = await aiohttp_client(create_app(settings, backend=MemoryBackend()))
    system = "/redfish/v1/Systems/437XR1138R2"
    resp = await client.get(system, headers=AUTH)
    etag = resp.headers["ETag"]
    assert "PATCH" in resp.headers["Allow"]
    resp = await client.patch(system, json={"AssetTag": "rack-7"},
                              headers={**AUTH, "If-Match": '"1"'})
    assert resp.status == 412
    resp = await client.patch(system, json={"AssetTag": "rack-7"},
                              headers={**AUTH, "If-Match": etag})
    assert resp.status == 200 and (await resp.json())["AssetTag"] == "rack-7"
    sensor = "/redfish/v1/Chassis/1U/Sensors/CPU1Temp"
    resp = await client.get(sensor, headers=AUTH)
    assert resp.headers["Allow"] == "GET, HEAD"
    resp = await client.patch(sensor, json={"Name": "x"}, headers=AUTH)
    assert resp.status == 405
    resp = await client.get("/redfish/v1/Chassis/1U/Sensors?$top=2", headers=AUTH)
    body = await resp.json()
    assert resp.status == 200 and len(body["Members"]) == 2 and "Members@odata.nextLink" in body
    resp = await client.get("/redfish/v1/Chassis/1U/Sensors/CPU1Temp")
    assert resp.status == 401


# --------------------------------------------------------------------------------------
# mockup check
# --------------------------------------------------------------------------------------
KNOWN_ERRATA = {
    # (mockup, URI, kind): what redfish-spec-notes §7 (and our reading) says is wrong
    ("public-composability", "/redfish/v1/Systems", "count"):
        "Members@odata.count 2 with 5 members",
    ("public-compose-action", "/redfish/v1/CompositionService", "action"):
        "Compose target misspelled /redfish/v1/CompostionService/...",
    ("public-cxl", "/redfish/v1/Fabrics/CXL/Switches/CXL/Ports/D1", "action"):
        "#Port.ResetPPB target is .../Action/Port.Reset",
    ("public-rackmount1", "/redfish/v1/Chassis/1U/PowerSubsystem/PowerSupplies/Bay1/Metrics",
     "link"): "DataSourceUri to sensors that do not exist",
}


@pytest.mark.parametrize("name", sorted({k[0] for k in KNOWN_ERRATA}))
def test_check_reports_known_errata(name, capsys):
    folder = mockup(name)
    rc = main(["mockup", "check", str(folder), "--no-schemas"])
    out = capsys.readouterr().out
    assert rc == 1
    for (mock, uri, kind), reason in KNOWN_ERRATA.items():
        if mock == name:
            assert f"{uri}: {kind}: " in out, f"{reason} not reported:\n{out}"


def test_check_reports_schema_violations(capsys):
    schemas = json_schema_dir()
    if schemas is None:
        pytest.skip("set REDFISH_JSON_SCHEMA_DIR (e.g. ../shared/redfish/json-schema)")
    rc = main(["mockup", "check", str(mockup("public-rackmount1")), "--schemas", str(schemas)])
    out = capsys.readouterr().out
    assert rc == 1
    # Role payloads without RoleId, a ServiceConditions without Id
    assert "/redfish/v1/AccountService/Roles/ReadOnly: schema: /: 'RoleId' is a required" in out
    assert "/redfish/v1/ServiceConditions: schema: /: 'Id' is a required property" in out


def test_check_of_a_clean_mockup_exits_zero(tmp_path, capsys):
    _write(tmp_path, {"@odata.id": "/redfish/v1/", "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
                      "Id": "RootService", "Name": "Root"})
    assert main(["mockup", "check", str(tmp_path), "--no-schemas"]) == 0
    assert main(["mockup", "check", str(tmp_path / "nope"), "--no-schemas"]) == 2


# --------------------------------------------------------------------------------------
# export → serve → export, persistence, over HTTPS in a real process
# --------------------------------------------------------------------------------------
def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("index.*"))}


@pytest.mark.slow
def test_export_serve_export_is_identical(tmp_path):
    source = mockup("public-rackmount1")
    first = ServiceProcess(tmp_path / "a", extra_args=["--mockup", str(source)]).start()
    try:
        status, _, _ = first.request("PATCH", "/redfish/v1/Systems/437XR1138R2",
                                     {"AssetTag": "exported"})
        assert status == 200
        # exported while the service runs
        assert main(["mockup", "export", str(tmp_path / "x1"),
                     "--state-dir", str(tmp_path / "a")]) == 0
    finally:
        first.stop()
    # the state directory is the service from now on: a restart keeps the change
    again = ServiceProcess(tmp_path / "a", port=first.port).start()
    try:
        _, _, system = again.get("/redfish/v1/Systems/437XR1138R2")
        assert system["AssetTag"] == "exported"
    finally:
        again.stop()
    x1 = _tree(tmp_path / "x1")
    assert "index.json" in x1 and "Systems/437XR1138R2/index.json" in x1
    assert (tmp_path / "x1" / "$metadata" / "index.xml").is_file()
    for name, raw in x1.items():
        if name.endswith(".xml"):
            continue
        doc = orjson.loads(raw)
        assert "@odata.etag" not in doc, name
        assert raw == orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    assert orjson.loads(x1["Systems/437XR1138R2/index.json"])["AssetTag"] == "exported"
    assert not re.search(rb"scrypt|\$7\$|password_hash", b"".join(x1.values()))
    # on the same port: NetworkProtocol describes the serving service, its port included
    second = ServiceProcess(tmp_path / "b", port=first.port,
                            extra_args=["--mockup", str(tmp_path / "x1")]).start()
    second.stop()
    assert main(["mockup", "export", str(tmp_path / "x2"), "--state-dir", str(tmp_path / "b")]) == 0
    x2 = _tree(tmp_path / "x2")
    assert sorted(x1) == sorted(x2)
    differ = [name for name in x1 if x1[name] != x2[name]]
    assert not differ, f"{len(differ)} documents differ, first: {differ[:5]}"
    # refuses to write over something
    assert main(["mockup", "export", str(tmp_path / "x2"), "--state-dir", str(tmp_path / "b")]) == 2


@pytest.mark.slow
def test_serve_mockup_refuses_a_used_state_dir(tmp_path):
    plain = ServiceProcess(tmp_path / "s").start()
    plain.stop()
    svc = ServiceProcess(tmp_path / "s", extra_args=["--mockup", str(mockup("public-cxl"))])
    with pytest.raises(RuntimeError, match="not seeded from a mockup"):
        svc.start()


# --------------------------------------------------------------------------------------
# real clients and the Service Validator against a served mockup
# --------------------------------------------------------------------------------------
@pytest.fixture
def served_rackmount(tmp_path):
    svc = ServiceProcess(tmp_path / "state",
                         extra_args=["--mockup", str(mockup("public-rackmount1"))]).start()
    yield svc
    svc.stop()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_sushy_and_redfish_library_browse_a_served_mockup(served_rackmount, monkeypatch):
    import redfish
    import sushy
    from sushy import auth as sushy_auth

    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    svc = served_rackmount
    auth = sushy_auth.SessionAuth(username="admin", password=svc.password)
    conn = sushy.Sushy(svc.url + "/redfish/v1/", auth=auth, verify=False,
                       server_side_retries=1, server_side_retries_delay=0.2, read_timeout=30)
    try:
        systems = conn.get_system_collection()
        assert "/redfish/v1/Systems/437XR1138R2" in systems.members_identities
        system = conn.get_system("/redfish/v1/Systems/437XR1138R2")
        assert system.serial_number == "437XR1138R2"
        cpus = system.processors.members_identities
        assert "/redfish/v1/Systems/437XR1138R2/Processors/CPU1" in cpus
        chassis = conn.get_chassis("/redfish/v1/Chassis/1U")
        assert chassis.identity == "1U"
        managers = set(conn.get_manager_collection().members_identities)
        assert {"/redfish/v1/Managers/BMC", "/redfish/v1/Managers/Composer"} <= managers
    finally:
        auth.close()

    client = redfish.redfish_client(base_url=svc.url, username="admin", password=svc.password,
                                    default_prefix="/redfish/v1/", timeout=30, max_retry=1)
    client.login(auth="session")
    try:
        seen, queue, problems = set(), ["/redfish/v1/"], []
        while queue:
            path = queue.pop()
            if path in seen:
                continue
            seen.add(path)
            resp = client.get(path)
            if resp.status != 200:
                problems.append(f"{path}: {resp.status}")
                continue
            # @odata.id only: the EventService's ServerSentEventUri is an endless stream
            for prop, ref in check._links(resp.dict):
                if prop != "@odata.id":
                    continue
                target = loader.link_target(ref)
                if target.startswith("/redfish/v1/") and target not in seen \
                        and not target.startswith(("/redfish/v1/$metadata", "/redfish/v1/odata")):
                    queue.append(target)
        # only the mockup's own dangling links (mockup check lists them) fail
        known = {loader.link_target(p.message.split()[1]) for p in check.structural(
            loader.load(mockup("public-rackmount1"))) if p.kind == "link"}
        assert len(seen) > 250
        assert all(p.split(":")[0] in known for p in problems), problems
    finally:
        client.logout()


# Every Service Validator failure against public-rackmount1 comes from the mockup itself;
# each is listed here with its reason, and `mockup check` reports each of them.
RACKMOUNT1_MOCKUP_FAILURES = {
    "/redfish/v1/Chassis/1U/ThermalSubsystem/Heaters/CPU1Heater/Metrics":
        "action target without /Actions/ (mockup check: action)",
    "/redfish/v1/Chassis/1U/PowerSubsystem/PowerSupplies/Bay1":
        "action target without /Actions/ (mockup check: action)",
    "/redfish/v1/Chassis/1U/PowerSubsystem/PowerSupplies/Bay1/Metrics":
        "action target without /Actions/; DataSourceUri to missing sensors (action, link)",
    "/redfish/v1/Chassis/1U/Sensors/*":
        "the missing sensors the Bay1 Metrics DataSourceUri name (mockup check: link)",
    "/redfish/v1/Registries/Base.1.5.0.json":
        "Location Uri of a registry file the mockup does not hold (mockup check: link)",
    "/redfish/v1/ServiceConditions": "no Id (mockup check: schema)",
}


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_service_validator_on_a_served_mockup(served_rackmount, tmp_path):
    from .support.tools import run_tool, tool_path
    from .test_validators import service_validator_counts, service_validator_findings

    schemas = csdl_dir()
    if schemas is None:
        pytest.skip("set REDFISH_CSDL_DIR (e.g. ../shared/redfish/csdl)")
    svc = served_rackmount
    logdir = tmp_path / "validator"
    run = run_tool([tool_path("rf_service_validator"), "--rhost", svc.url, "-u", "admin",
                    "-p", svc.password, "--authtype", "Session", "--skipschema",
                    "--schema_directory", str(schemas), "--logdir", str(logdir),
                    "--timeout", "30"], timeout=300, cwd=tmp_path)
    counts = service_validator_counts(run.stdout)
    failures, _, validated = service_validator_findings(logdir)
    assert counts is not None, run.describe(svc.password)
    assert counts["pass"] > 5000 and len(validated) > 300, counts
    problems = check.structural(loader.load(mockup("public-rackmount1")))
    reported = {p.uri for p in problems} | {"/redfish/v1/ServiceConditions"} | {
        loader.link_target(p.message.split()[1]) for p in problems if p.kind == "link"}
    ours = []
    for line in failures:
        subject = line.split(": ", 1)[0]
        m = re.search(r"Could not access (\S+);", line)
        if m:
            subject = m[1]
        key = re.sub(r"^/redfish/v1/Chassis/1U/Sensors/.*", "/redfish/v1/Chassis/1U/Sensors/*",
                     subject)
        if key not in RACKMOUNT1_MOCKUP_FAILURES or subject not in reported:
            ours.append(line)
    assert not ours, "failures the mockup does not explain:\n  " + "\n  ".join(ours)


def test_serve_refuses_a_folder_that_is_not_a_mockup(tmp_path, capsys):
    rc = main(["serve", "--mockup", str(tmp_path / "nope"), "--state-dir", str(tmp_path / "s")])
    assert rc == 2
    assert "--mockup" in capsys.readouterr().err


async def test_decomposing_a_system_of_a_served_mockup(aiohttp_client, tmp_path):
    """public-composability has no FreePool/ActivePool: DELETE of a composed system frees its
    blocks without inventing pools (composing against it: test_mockups_composition.py)."""
    settings = Settings(state_dir=tmp_path, admin_password=ADMIN_PASSWORD,
                        mockup=mockup("public-composability"))
    client = await aiohttp_client(create_app(settings, backend=MemoryBackend()))
    resp = await client.delete("/redfish/v1/Systems/ComposedSystem", headers=AUTH)
    assert resp.status == 204, await resp.text()
    block = await (await client.get("/redfish/v1/CompositionService/ResourceBlocks/"
                                    "ComputeBlock1", headers=AUTH)).json()
    assert block["CompositionStatus"]["CompositionState"] == "Unused"
    assert (await client.get("/redfish/v1/Systems/ComposedSystem", headers=AUTH)).status == 404
    assert (await client.get("/redfish/v1/CompositionService/FreePool", headers=AUTH)).status \
        == 404
