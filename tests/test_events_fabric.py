"""Fabric registry messages: a fabric Connection, Zone or Endpoint created, removed or
changed by a composition is announced with the Fabric message for it (args: its Id, the
fabric's Id), one record per change, pushed and over SSE, including on a resume from the
change log; a resource zone whose blocks change is Composition.ResourceZoneMembershipChanged.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from redfish_service import services
from redfish_service.events.records import from_change
from redfish_service.store import Change

from .support.events import SSE, ChangeLog, Receiver, read_until, subscribe
from .test_compose import SYSTEMS, request
from .test_expansion import ADD, ADMIN, BLOCKS, REMOVE, block

pytestmark = pytest.mark.timeout(60)

CXL = "/redfish/v1/Fabrics/CXL"
PCIE = "/redfish/v1/Fabrics/PCIe"
STREAM = {**ADMIN, "Accept": "text/event-stream"}
FABRIC = "Fabric.1.0."


@pytest.fixture
async def receiver():
    r = await Receiver().start()
    yield r
    await r.stop()


def fabric_records(receiver: Receiver) -> list[tuple[str, list[str], str]]:
    return [(r["MessageId"].removeprefix(FABRIC), r["MessageArgs"],
             r["OriginOfCondition"]["@odata.id"]) for r in receiver.records]


async def test_cxl_memory_attach_and_detach_announce_the_fabric_changes(rf, receiver):
    await subscribe(rf, ADMIN, receiver.url, Context="fabric", RegistryPrefixes=["Fabric"])
    log = ChangeLog(rf.server.app[services.STORE])
    resp = await rf.post(ADD.format("host1"), json=block("cxlmem1"), headers=ADMIN)
    assert resp.status == 204, await resp.text()
    attached = len(log.records)
    resp = await rf.post(REMOVE.format("host1"), json=block("cxlmem1"), headers=ADMIN)
    assert resp.status == 204, await resp.text()
    log.close()
    expected = log.ids(lambda o: o.registry == "Fabric")
    await receiver.wait_for(lambda r: r.event_ids()[-1:] == expected[-1:])
    assert receiver.event_ids() == expected  # every fabric change, once, in commit order
    assert {p["Context"] for p in receiver.posts} == {"fabric"}

    connection = f"{CXL}/Connections/host1-cxlmem1"
    got = fabric_records(receiver)
    # the attach: the connection appears, the host's zone gains the device, both
    # endpoints name the zone and the connection
    assert got[:4] == [
        ("ConnectionCreated", ["host1-cxlmem1", "CXL"], connection),
        ("ZoneModified", ["zone-host1", "CXL"], f"{CXL}/Zones/zone-host1"),
        ("EndpointModified", ["host1", "CXL"], f"{CXL}/Endpoints/host1"),
        ("EndpointModified", ["cxlmem1", "CXL"], f"{CXL}/Endpoints/cxlmem1"),
    ]
    assert ("ConnectionRemoved", ["host1-cxlmem1", "CXL"], connection) in got[4:]
    assert ("ZoneModified", ["zone-host1", "CXL"], f"{CXL}/Zones/zone-host1") in got[4:]
    for record in receiver.records:
        assert record["MessageSeverity"] == "OK" and record["EventType"] == "Other"
        assert record["Message"]  # our text, arguments filled in
        assert "%" not in record["Message"]

    # one record per change, and every change of a fabric member is a Fabric message
    for origin, record in log.records:
        if "/redfish/v1/Fabrics/" in origin.uri and any(
                f"/{c}/" in origin.uri for c in ("Zones", "Connections", "Endpoints")):
            assert origin.registry == "Fabric", (origin, record["MessageId"])
    seqs = [o.seq for o, _ in log.records]
    assert len(seqs) == len(set(seqs))
    assert any(o.uri == connection for o, _ in log.records[:attached])


async def test_sse_stream_of_connections_and_resume_after_decompose(rf):
    query = "?$filter=RegistryPrefix eq 'Fabric' and ResourceType eq 'Connection'"
    stream = await rf.get(SSE + query, headers=STREAM)
    assert stream.status == 200, await stream.text()
    log = ChangeLog(rf.server.app[services.STORE])
    resp = await rf.post(SYSTEMS, json=request("sled1", "cxlmem1", "gpu1-1"), headers=ADMIN)
    assert resp.status == 201, await resp.text()
    system = resp.headers["Location"]
    expected = log.ids(lambda o: o.resource_type == "Connection" and o.registry == "Fabric")
    assert len(expected) == 1  # the memory device's connection; the GPU has none
    [(event_id, data)] = await read_until(stream, expected[-1])
    [record] = data["Events"]
    assert record["MessageId"] == "Fabric.1.0.ConnectionCreated"
    assert record["MessageArgs"] == ["sled1-cxlmem1", "CXL"]
    assert record["OriginOfCondition"] == {"@odata.id": f"{CXL}/Connections/sled1-cxlmem1"}
    stream.close()

    # gone while nobody listens: a resume with Last-Event-ID replays the removal
    assert (await rf.delete(system, headers=ADMIN)).status == 204
    log.close()
    removed = log.ids(lambda o: o.resource_type == "Connection" and o.registry == "Fabric")
    assert len(removed) == 2
    stream = await rf.get(SSE + query, headers={**STREAM, "Last-Event-ID": event_id})
    assert stream.status == 200
    [(_, data)] = await read_until(stream, removed[-1])
    assert data["Events"][0]["MessageId"] == "Fabric.1.0.ConnectionRemoved"
    assert data["Events"][0]["MessageArgs"] == ["sled1-cxlmem1", "CXL"]
    stream.close()


async def test_pcie_zone_and_resource_zone_messages(rf, receiver):
    await subscribe(rf, ADMIN, receiver.url, ResourceTypes=["Zone"])
    resp = await rf.post(ADD.format("host1"), json=block("gpu1-1"), headers=ADMIN)
    assert resp.status == 204
    await receiver.wait_for(lambda r: len(r.records) >= 1)
    assert fabric_records(receiver)[0] == (
        "ZoneModified", ["zone-host1", "PCIe"], f"{PCIE}/Zones/zone-host1")
    resp = await rf.post(REMOVE.format("host1"), json=block("gpu1-1"), headers=ADMIN)
    assert resp.status == 204
    await receiver.wait_for(lambda r: len(r.records) >= 2)
    # unregistering host1 takes its block out of its resource zones
    resp = await rf.delete(f"{BLOCKS}/system-host1", headers=ADMIN)
    assert resp.status == 204, await resp.text()
    deadline = time.monotonic() + 5
    while not any(r["MessageId"].startswith("Composition.") for r in receiver.records):
        assert time.monotonic() < deadline, receiver.records
        await asyncio.sleep(0.01)
    membership = [r for r in receiver.records if r["MessageId"].startswith("Composition.")]
    assert {r["MessageId"] for r in membership} == {
        "Composition.1.1.ResourceZoneMembershipChanged"}
    zones = {r["OriginOfCondition"]["@odata.id"] for r in membership}
    assert "/redfish/v1/CompositionService/ResourceZones/pcie1" in zones
    assert all(r["MessageArgs"] == [r["OriginOfCondition"]["@odata.id"].rsplit("/", 1)[1]]
               for r in membership)


def test_a_reloaded_change_log_announces_fabric_changes_the_same_way():
    """A change read back from disk has no documents; the Fabric message comes from the
    URI and the operation, so a resume across a restart gives the same record."""
    for op, key in (("create", "ConnectionCreated"), ("delete", "ConnectionRemoved"),
                    ("update", "ConnectionModified")):
        change = Change(7, f"{CXL}/Connections/host2-cxlmem2", op, None, 0.0,
                        "#Connection.v1_4_0.Connection", ("Links",) if op == "update" else ())
        origin, record = from_change(change)
        assert (origin.registry, origin.message_key) == ("Fabric", key)
        assert record["MessageArgs"] == ["host2-cxlmem2", "CXL"]
    # not a fabric member: a storage connection stays a ResourceEvent
    change = Change(8, "/redfish/v1/Storage/S1/Connections/1", "create", None, 0.0,
                    "#Connection.v1_4_0.Connection")
    assert from_change(change)[0].registry == "ResourceEvent"


async def test_subscriptions_may_select_fabric_messages_and_connections(rf):
    for extra in ({"MessageIds": ["Fabric.1.0.ConnectionCreated", "Fabric.1.0.ZoneRemoved"]},
                  {"ResourceTypes": ["Connection", "Endpoint"]},
                  {"ExcludeRegistryPrefixes": ["Fabric"]}):
        await subscribe(rf, ADMIN, "http://127.0.0.1:9/e", **extra)
    resp = await rf.get("/redfish/v1/Registries/Fabric", headers=ADMIN)
    assert resp.status == 200
    assert (await resp.json())["Registry"] == "Fabric.1.0.3"
