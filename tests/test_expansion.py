"""Growing and shrinking a running host: AddResourceBlock / RemoveResourceBlock."""

from __future__ import annotations

import asyncio

import pytest

from redfish_service import services
from redfish_service.app import create_app
from redfish_service.composition.invariants import violations
from redfish_service.drivers.contract import DeviceNotFound
from redfish_service.drivers.simulated import SimulatedDriver
from redfish_service.resources.composer import Composer
from redfish_service.store import MemoryBackend

from .conftest import ADMIN_PASSWORD, FlakyDriver, basic

BLOCKS = "/redfish/v1/CompositionService/ResourceBlocks"
ADD = "/redfish/v1/Systems/{}/Actions/ComputerSystem.AddResourceBlock"
REMOVE = "/redfish/v1/Systems/{}/Actions/ComputerSystem.RemoveResourceBlock"
ADMIN = basic("admin", ADMIN_PASSWORD)


def block(name: str) -> dict:
    return {"ResourceBlock": {"@odata.id": f"{BLOCKS}/{name}"}}


async def state(client, *uris):
    out = {}
    for uri in uris:
        resp = await client.get(uri, headers=ADMIN)
        out[uri] = (resp.headers.get("ETag"), await resp.json())
    return out


async def error_id(resp) -> str:
    body = await resp.json()
    return body["error"]["@Message.ExtendedInfo"][0]["MessageId"]


async def test_attach_and_detach_a_gpu(rf, driver):
    resp = await rf.post(ADD.format("host1"), json=block("gpu1-1"), headers=ADMIN)
    assert resp.status == 204, await resp.text()
    gpu = await (await rf.get(f"{BLOCKS}/gpu1-1", headers=ADMIN)).json()
    assert gpu["CompositionStatus"]["CompositionState"] == "Composed"
    assert gpu["CompositionStatus"]["NumberOfCompositions"] == 1
    assert gpu["Pool"] == "Active"
    assert gpu["Links"]["ComputerSystems"] == [{"@odata.id": "/redfish/v1/Systems/host1"}]
    system = await (await rf.get("/redfish/v1/Systems/host1", headers=ADMIN)).json()
    assert {"@odata.id": f"{BLOCKS}/gpu1-1"} in system["Links"]["ResourceBlocks"]
    active = await (await rf.get("/redfish/v1/CompositionService/ActivePool",
                                 headers=ADMIN)).json()
    assert active["Members"] == [{"@odata.id": f"{BLOCKS}/gpu1-1"}]
    assert driver.bindings == {"gpu1-1": "host1"}

    resp = await rf.post(REMOVE.format("host1"), json=block("gpu1-1"), headers=ADMIN)
    assert resp.status == 204, await resp.text()
    gpu = await (await rf.get(f"{BLOCKS}/gpu1-1", headers=ADMIN)).json()
    assert gpu["CompositionStatus"]["CompositionState"] == "Unused"
    assert gpu["Pool"] == "Free" and gpu["Links"]["ComputerSystems"] == []
    system = await (await rf.get("/redfish/v1/Systems/host1", headers=ADMIN)).json()
    assert system["Links"]["ResourceBlocks"] == [{"@odata.id": f"{BLOCKS}/system-host1"}]
    assert driver.bindings == {}


async def test_a_host_takes_gpu_nvme_and_cxl_memory(rf, driver):
    for name in ("gpu2-3", "nvme2-1", "cxlmem1", "dpu2-1"):
        resp = await rf.post(ADD.format("host3"), json=block(name), headers=ADMIN)
        assert resp.status == 204, (name, await resp.text())
    assert driver.bindings == {n: "host3" for n in ("gpu2-3", "nvme2-1", "cxlmem1", "dpu2-1")}
    # CXL memory on cxl1 reaches every host, so host1 can have the next one
    resp = await rf.post(ADD.format("host1"), json=block("cxlmem2"), headers=ADMIN)
    assert resp.status == 204


@pytest.mark.parametrize(
    ("host", "body", "status", "message"),
    [
        ("host3", block("gpu1-2"), 400, "Composition.1.1.IncompatibleZone"),
        ("host1", block("gpu9-9"), 400, "Composition.1.1.ResourceBlockNotFound"),
        ("host1", block("sled1"), 400, "Composition.1.1.ResourceBlockInvalid"),
        ("host1", block("system-host2"), 400, "Composition.1.1.ResourceBlockInvalid"),
        ("host1", {}, 400, "Base.1.22.ActionParameterMissing"),
        ("host1", {**block("gpu1-2"), "Force": True}, 400, "Base.1.22.ActionParameterUnknown"),
        ("host1", {"ResourceBlock": "gpu1-2"}, 400, "Base.1.22.ActionParameterValueTypeError"),
        ("host1", {**block("gpu1-2"), "ResourceBlockETag": 7}, 400,
         "Base.1.22.ActionParameterValueTypeError"),
        ("host1", {**block("gpu1-2"), "ResourceBlockETag": '"0"'}, 428,
         "Base.1.22.PreconditionFailed"),
        ("host1", {**block("gpu1-2"), "ComputerSystemETag": '"0"'}, 428,
         "Base.1.22.PreconditionFailed"),
    ],
)
async def test_refusals_change_nothing(rf, driver, host, body, status, message):
    watched = (f"{BLOCKS}/gpu1-2", f"/redfish/v1/Systems/{host}",
               "/redfish/v1/CompositionService/FreePool")
    before = await state(rf, *watched)
    resp = await rf.post(ADD.format(host), json=body, headers=ADMIN)
    assert resp.status == status, await resp.text()
    assert await error_id(resp) == message
    assert await state(rf, *watched) == before
    assert driver.bindings == {}


async def test_block_in_use_elsewhere(rf, driver):
    assert (await rf.post(ADD.format("host1"), json=block("gpu1-4"), headers=ADMIN)).status \
        == 204
    before = await state(rf, f"{BLOCKS}/gpu1-4", "/redfish/v1/Systems/host2")
    for host in ("host2", "host1"):
        resp = await rf.post(ADD.format(host), json=block("gpu1-4"), headers=ADMIN)
        assert resp.status == 409
        assert await error_id(resp) == "Composition.1.1.ResourceBlockInUse"
    # removing it from a host it is not attached to is refused too
    resp = await rf.post(REMOVE.format("host2"), json=block("gpu1-4"), headers=ADMIN)
    assert resp.status == 400
    assert await error_id(resp) == "Composition.1.1.ResourceBlockInvalid"
    assert await state(rf, f"{BLOCKS}/gpu1-4", "/redfish/v1/Systems/host2") == before
    assert driver.bindings == {"gpu1-4": "host1"}


async def test_current_etags_are_accepted(rf):
    etags = {uri: etag for uri, (etag, _) in (await state(
        rf, f"{BLOCKS}/nvme1-1", "/redfish/v1/Systems/host2")).items()}
    resp = await rf.post(ADD.format("host2"), headers=ADMIN, json={
        **block("nvme1-1"),
        "ResourceBlockETag": etags[f"{BLOCKS}/nvme1-1"],
        "ComputerSystemETag": etags["/redfish/v1/Systems/host2"],
    })
    assert resp.status == 204, await resp.text()


async def test_driver_failure_rolls_back(rf, driver):
    driver.down.add("gpu1-5")
    before = await state(rf, f"{BLOCKS}/gpu1-5", "/redfish/v1/Systems/host1")
    resp = await rf.post(ADD.format("host1"), json=block("gpu1-5"), headers=ADMIN)
    assert resp.status == 503
    assert resp.headers["Retry-After"]
    assert await error_id(resp) == "Base.1.22.ServiceTemporarilyUnavailable"
    after = await state(rf, f"{BLOCKS}/gpu1-5", "/redfish/v1/Systems/host1")
    for uri in before:  # same content; the block's revision moved through Composing
        assert {k: v for k, v in after[uri][1].items() if k != "@odata.etag"} == \
            {k: v for k, v in before[uri][1].items() if k != "@odata.etag"}
    assert driver.bindings == {}
    driver.down.clear()
    assert (await rf.post(ADD.format("host1"), json=block("gpu1-5"), headers=ADMIN)).status \
        == 204


async def test_privileges(rf):
    for role, expected in (("ReadOnly", 403), ("Operator", 204)):
        user = f"user-{role.lower()}"
        resp = await rf.post("/redfish/v1/AccountService/Accounts", headers=ADMIN,
                             json={"UserName": user, "Password": "Passw0rd-x", "RoleId": role})
        assert resp.status == 201
        headers = basic(user, "Passw0rd-x")
        name = "gpu1-6" if role == "ReadOnly" else "gpu1-7"
        resp = await rf.post(ADD.format("host2"), json=block(name), headers=headers)
        assert resp.status == expected, await resp.text()


async def test_unknown_action_is_404(rf):
    resp = await rf.post("/redfish/v1/Systems/host1/Actions/ComputerSystem.Explode",
                         json={}, headers=ADMIN)
    assert resp.status == 404


async def test_racing_clients_never_share_a_block(rf, driver):
    hosts = ["host1", "host2"] * 8
    results = await asyncio.gather(*(
        rf.post(ADD.format(h), json=block("gpu1-8"), headers=ADMIN) for h in hosts))
    statuses = sorted(r.status for r in results)
    assert statuses.count(204) == 1 and statuses.count(409) == 15, statuses
    winner = hosts[[r.status for r in results].index(204)]
    assert driver.bindings == {"gpu1-8": winner}


async def test_recovery_settles_interrupted_operations(aiohttp_client, settings):
    """A crash between the driver call and the commit leaves a block Composing with its
    intent; recovery finishes the job in the safe direction."""
    driver = FlakyDriver()
    app = create_app(settings, backend=MemoryBackend(), driver=driver)
    client = await aiohttp_client(app)
    store = app[services.STORE]
    assert (await client.post(ADD.format("host1"), json=block("gpu1-1"), headers=ADMIN)).status \
        == 204
    # An attach of gpu1-2 to host2 that bound in the fabric but never committed, and a
    # detach of gpu1-1 that unbound but never committed.
    await driver.bind("gpu1-2", "host2")
    await driver.unbind("gpu1-1", "host1")
    async with store.transaction("test") as tx:
        for name, intent in (
            ("gpu1-2", {"host": "host2", "attach": True, "system": "/redfish/v1/Systems/host2"}),
            ("gpu1-1", {"host": "host1", "attach": False, "system": "/redfish/v1/Systems/host1"}),
        ):
            doc = tx.get(f"{BLOCKS}/{name}")
            doc["CompositionStatus"]["CompositionState"] = "Composing"
            tx.put(f"{BLOCKS}/{name}", doc, {"composing": intent})
    assert len(violations(store.doc, store.members)) >= 2
    await Composer(store, driver).recover()
    assert driver.bindings == {"gpu1-1": "host1"}
    assert store.doc(f"{BLOCKS}/gpu1-2")["CompositionStatus"]["CompositionState"] == "Unused"
    assert store.doc(f"{BLOCKS}/gpu1-1")["CompositionStatus"]["CompositionState"] == "Composed"
    assert violations(store.doc, store.members) == []
    assert not store.get(f"{BLOCKS}/gpu1-2").private


async def test_recovery_replays_bindings_into_an_empty_fabric(aiohttp_client, settings):
    driver = FlakyDriver()
    app = create_app(settings, backend=MemoryBackend(), driver=driver)
    client = await aiohttp_client(app)
    for name, host in (("gpu1-1", "host1"), ("cxlmem3", "host4")):
        assert (await client.post(ADD.format(host), json=block(name), headers=ADMIN)).status \
            == 204
    fresh = FlakyDriver()  # a fabric that restarted and forgot everything
    await Composer(app[services.STORE], fresh).recover()
    assert fresh.bindings == {"gpu1-1": "host1", "cxlmem3": "host4"}


async def test_simulated_driver_contract():
    driver = SimulatedDriver()
    await driver.bind("gpu1-1", "host1")
    await driver.bind("gpu1-1", "host1")  # idempotent
    await driver.unbind("gpu1-1", "host2")  # not bound there: nothing to do
    assert driver.bindings == {"gpu1-1": "host1"}
    await driver.unbind("gpu1-1", "host1")
    await driver.unbind("gpu1-1", "host1")
    assert driver.bindings == {}
    with pytest.raises(DeviceNotFound):
        await driver.bind("nope", "host1")
    with pytest.raises(DeviceNotFound):
        await driver.bind("gpu1-1", "nohost")


@pytest.mark.slow
def test_attached_devices_survive_sigkill(tmp_path):
    from .support.service import ServiceProcess

    svc = ServiceProcess(tmp_path / "state").start()
    try:
        for name, host in (("gpu1-1", "host1"), ("nvme2-2", "host4"), ("cxlmem2", "host2")):
            status, _, body = svc.request("POST", ADD.format(host), block(name))
            assert status == 204, body
        status, _, _ = svc.request("POST", REMOVE.format("host2"), block("cxlmem2"))
        assert status == 204
        svc.kill()
        svc.start()
        for name, host in (("gpu1-1", "host1"), ("nvme2-2", "host4")):
            doc = svc.get(f"{BLOCKS}/{name}")[2]
            assert doc["CompositionStatus"]["CompositionState"] == "Composed"
            assert doc["Links"]["ComputerSystems"] == [{"@odata.id": f"/redfish/v1/Systems/{host}"}]
            system = svc.get(f"/redfish/v1/Systems/{host}")[2]
            assert {"@odata.id": f"{BLOCKS}/{name}"} in system["Links"]["ResourceBlocks"]
        cxl = svc.get(f"{BLOCKS}/cxlmem2")[2]
        assert cxl["CompositionStatus"]["CompositionState"] == "Unused"
        # the restarted fabric knows the bindings again: detaching works
        status, _, body = svc.request("POST", REMOVE.format("host1"), block("gpu1-1"))
        assert status == 204, body
        free = [m["@odata.id"] for m in svc.get("/redfish/v1/CompositionService/FreePool")[2]
                ["Members"]]
        assert f"{BLOCKS}/gpu1-1" in free and f"{BLOCKS}/nvme2-2" not in free
    finally:
        svc.stop()


# -- PATCH of Links.ResourceBlocks -------------------------------------------------------

HOST1 = "/redfish/v1/Systems/host1"
HOST1_BLOCK = {"@odata.id": f"{BLOCKS}/system-host1"}


def refs(*names):
    return [{"@odata.id": f"{BLOCKS}/{n}"} for n in names]


def without_etags(docs):
    return {u: {k: v for k, v in d.items() if k != "@odata.etag"} for u, (_, d) in docs.items()}


async def test_patch_links_replaces_the_attached_set(rf, driver):
    resp = await rf.patch(HOST1, headers=ADMIN, json={
        "Links": {"ResourceBlocks": [HOST1_BLOCK, *refs("gpu1-1", "nvme1-1")]}})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["Links"]["ResourceBlocks"] == [HOST1_BLOCK, *refs("gpu1-1", "nvme1-1")]
    assert resp.headers["ETag"] == body["@odata.etag"]
    assert driver.bindings == {"gpu1-1": "host1", "nvme1-1": "host1"}
    # array rules: {} keeps position 0, null drops position 1, the rest is replaced
    resp = await rf.patch(HOST1, headers=ADMIN, json={
        "Links": {"ResourceBlocks": [{}, None, *refs("gpu1-2")]}})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["Links"]["ResourceBlocks"] == [HOST1_BLOCK, *refs("gpu1-2")]
    assert driver.bindings == {"gpu1-2": "host1"}


async def test_patch_links_is_all_or_nothing(rf, driver):
    watched = (HOST1, f"{BLOCKS}/gpu1-3", "/redfish/v1/CompositionService/FreePool")
    before = without_etags(await state(rf, *watched))
    resp = await rf.patch(HOST1, headers=ADMIN, json={
        "Links": {"ResourceBlocks": [HOST1_BLOCK, *refs("gpu1-3", "gpu2-1")]}})
    assert resp.status == 400
    assert await error_id(resp) == "Composition.1.1.IncompatibleZone"
    assert without_etags(await state(rf, *watched)) == before
    assert driver.bindings == {}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"Links": {"ResourceBlocks": refs("gpu1-1")}}, 400,
         "Composition.1.1.ResourceBlockInvalid"),  # would drop the host's own block
        ({"Links": {"ResourceBlocks": "gpu1-1"}}, 400, "Base.1.22.PropertyValueTypeError"),
        ({"Links": {"ResourceBlocks": [HOST1_BLOCK, "gpu1-1"]}}, 400,
         "Base.1.22.PropertyValueTypeError"),
        ({"Links": {"ResourceBlocks": [HOST1_BLOCK, *refs("gpu1-1")]}, "BogusProp": 1}, 400,
         "Base.1.22.PropertyUnknown"),
    ],
)
async def test_patch_links_refusals_change_nothing(rf, driver, body, status, message):
    before = await state(rf, HOST1, f"{BLOCKS}/gpu1-1")
    resp = await rf.patch(HOST1, headers=ADMIN, json=body)
    assert resp.status == status, await resp.text()
    assert await error_id(resp) == message
    assert await state(rf, HOST1, f"{BLOCKS}/gpu1-1") == before
    assert driver.bindings == {}


async def test_patch_links_honours_if_match(rf, driver):
    etag = (await rf.get(HOST1, headers=ADMIN)).headers["ETag"]
    body = {"Links": {"ResourceBlocks": [HOST1_BLOCK, *refs("gpu1-6")]}}
    resp = await rf.patch(HOST1, json=body, headers={**ADMIN, "If-Match": '"1"'})
    assert resp.status == 412
    assert driver.bindings == {}
    resp = await rf.patch(HOST1, json={**body, "AssetTag": "rack1-u12"},
                          headers={**ADMIN, "If-Match": etag})
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    assert doc["AssetTag"] == "rack1-u12"
    assert doc["Links"]["ResourceBlocks"] == [HOST1_BLOCK, *refs("gpu1-6")]
    assert driver.bindings == {"gpu1-6": "host1"}


async def test_recovery_undoes_bindings_no_document_records(aiohttp_client, settings):
    """An attach cut short before its intent was written leaves the device bound with no
    document saying so; at start the service unbinds it (the documents are the truth)."""
    driver = SimulatedDriver()
    await driver.bind("gpu1-4", "host2")  # the fabric holds it; the documents do not
    client = await aiohttp_client(create_app(settings, backend=MemoryBackend(), driver=driver))
    assert driver.bindings == {}
    doc = await (await client.get(f"{BLOCKS}/gpu1-4", headers=ADMIN)).json()
    assert doc["CompositionStatus"]["CompositionState"] == "Unused"


async def test_compositions_work_with_info_logging(rf, caplog):
    """INFO is the service's default level: the composer's log line must not break the
    operation it reports (it once used a LogRecord attribute name as an extra key)."""
    caplog.set_level("INFO", logger="redfish_service")
    resp = await rf.post(ADD.format("host1"), json=block("gpu1-2"), headers=ADMIN)
    assert resp.status == 204, await resp.text()
    resp = await rf.post("/redfish/v1/Systems", headers=ADMIN, json={
        "Name": "logged", "Links": {"ResourceBlocks": [{"@odata.id": f"{BLOCKS}/sled1"}]}})
    assert resp.status == 201, await resp.text()
    changed = [r for r in caplog.records if r.getMessage() == "composition changed"]
    assert len(changed) == 2 and changed[1].systems_created == [resp.headers["Location"]]
