"""The composition pool built from the simulated rack: blocks, zones, pools, links."""

from __future__ import annotations

import collections

import pydantic
import pytest

from redfish_service.drivers.simulated import SimulatedDriver, default_rack
from redfish_service.resources import inventory, pool
from redfish_service.store import MemoryBackend, SqliteBackend, Store

BLOCKS = "/redfish/v1/CompositionService/ResourceBlocks"
ZONES = "/redfish/v1/CompositionService/ResourceZones"


async def get(client, uri, headers):
    resp = await client.get(uri, headers=headers)
    assert resp.status == 200, (uri, resp.status, await resp.text())
    return await resp.json()


async def test_default_rack_inventory():
    found = await SimulatedDriver().discover()
    kinds = collections.Counter(d.kind for d in found.devices)
    assert kinds == {"GPU": 16, "NVMe": 8, "CXLMemory": 4, "DPU": 2, "NIC": 2}
    assert [h.id for h in found.hosts] == ["host1", "host2", "host3", "host4"]
    assert {s.id: s.protocol for s in found.switches} == {
        "pcie1": "PCIe", "pcie2": "PCIe", "cxl1": "CXL"}
    assert len({d.serial for d in found.devices}) == 32
    assert len({h.uuid for h in found.hosts}) == 4
    # identities are stable from one discovery to the next
    again = await SimulatedDriver().discover()
    assert [h.uuid for h in again.hosts] == [h.uuid for h in found.hosts]


def test_bad_rack_description_is_refused():
    with pytest.raises(pydantic.ValidationError):
        SimulatedDriver({"hosts": [{"id": "h1"}], "switchez": []})
    with pytest.raises(pydantic.ValidationError):
        SimulatedDriver({"hosts": [{"id": "h1", "cpu_count": 0}]})


async def test_composition_service_is_linked_from_the_root(client, admin):
    root = await get(client, "/redfish/v1/", admin)
    service = await get(client, root["CompositionService"]["@odata.id"], admin)
    for prop in ("ResourceBlocks", "ResourceZones", "FreePool", "ActivePool",
                 "CompositionReservations"):
        assert (await get(client, service[prop]["@odata.id"], admin))["Members@odata.count"] \
            >= 0


async def test_every_block_is_free_and_listed(client, admin):
    blocks = await get(client, BLOCKS, admin)
    assert blocks["Members@odata.count"] == 4 + 2 + 32
    free = await get(client, "/redfish/v1/CompositionService/FreePool", admin)
    assert sorted(m["@odata.id"] for m in free["Members"]) == \
        sorted(m["@odata.id"] for m in blocks["Members"])
    active = await get(client, "/redfish/v1/CompositionService/ActivePool", admin)
    assert active["Members"] == []
    unused = await get(
        client, BLOCKS + "?$filter=CompositionStatus/CompositionState%20eq%20'Unused'", admin)
    assert unused["Members@odata.count"] == 38


async def test_zone_and_block_links_agree_both_ways(client, admin):
    zones = await get(client, ZONES, admin)
    assert {m["@odata.id"].rsplit("/", 1)[1] for m in zones["Members"]} == {"pcie1", "pcie2"}
    in_zone: dict[str, set[str]] = collections.defaultdict(set)
    for member in zones["Members"]:
        zone = await get(client, member["@odata.id"], admin)
        assert zone["ZoneType"] == "ZoneOfResourceBlocks"
        for block in zone["Links"]["ResourceBlocks"]:
            in_zone[block["@odata.id"]].add(zone["@odata.id"])
    blocks = await get(client, BLOCKS + "?$expand=.($levels=1)", admin)
    for block in blocks["Members"]:
        assert {z["@odata.id"] for z in block["Links"]["Zones"]} == in_zone[block["@odata.id"]]
    pcie1 = await get(client, ZONES + "/pcie1", admin)
    ids = {b["@odata.id"].rsplit("/", 1)[1] for b in pcie1["Links"]["ResourceBlocks"]}
    # the hosts and devices behind pcie1, and all CXL memory (cxl1 reaches every host)
    assert {"system-host1", "system-host2", "sled1", "gpu1-1", "nvme1-4", "dpu1-1",
            "cxlmem1", "cxlmem4"} <= ids
    assert not ids & {"system-host3", "gpu2-1", "sled2"}
    assert len(ids) == 2 + 1 + 8 + 4 + 1 + 1 + 4


async def test_devices_live_in_their_blocks(client, admin):
    gpu = await get(client, BLOCKS + "/gpu1-3", admin)
    assert gpu["ResourceBlockType"] == ["Processor"]
    assert gpu["CompositionStatus"]["CompositionState"] == "Unused"
    processor = await get(client, gpu["Processors"][0]["@odata.id"], admin)
    assert processor["ProcessorType"] == "GPU"
    assert processor["ProcessorMemory"] == [{"CapacityMiB": 81920}]
    nvme = await get(client, BLOCKS + "/nvme2-1", admin)
    drive = await get(client, nvme["Drives"][0]["@odata.id"], admin)
    assert drive["Protocol"] == "NVMe" and drive["CapacityBytes"] > 10**12
    cxl = await get(client, BLOCKS + "/cxlmem2", admin)
    assert cxl["ResourceBlockType"] == ["Memory"]
    memory = await get(client, cxl["Memory"][0]["@odata.id"], admin)
    assert memory["CapacityMiB"] == 262144
    sled = await get(client, BLOCKS + "/sled2", admin)
    assert sled["ResourceBlockType"] == ["Compute"]
    assert sled["Processors@odata.count"] == 1 and sled["Memory@odata.count"] == 1


async def test_host_and_its_block_link_each_other(client, admin):
    for n in range(1, 5):
        system = await get(client, f"/redfish/v1/Systems/host{n}", admin)
        [link] = system["Links"]["ResourceBlocks"]
        block = await get(client, link["@odata.id"], admin)
        assert block["ResourceBlockType"] == ["ComputerSystem"]
        assert block["ComputerSystems"] == [{"@odata.id": system["@odata.id"]}]


async def test_blocks_are_read_only_until_composition_lands(client, admin):
    before = await client.get(BLOCKS + "/gpu1-1", headers=admin)
    resp = await client.patch(BLOCKS + "/gpu1-1", json={"Name": "x"}, headers=admin)
    assert resp.status == 405
    assert "PATCH" not in resp.headers["Allow"]
    after = await client.get(BLOCKS + "/gpu1-1", headers=admin)
    assert after.headers["ETag"] == before.headers["ETag"]


async def _reconciled(store, rack):
    found = await SimulatedDriver(rack).discover()
    await inventory.reconcile(store, found)
    await pool.reconcile(store, found)
    return found


async def test_reconcile_keeps_composition_state_and_drops_vanished_devices(tmp_path):
    store = Store(SqliteBackend(tmp_path / "s.sqlite3"))
    await store.open()
    rack = default_rack()
    await _reconciled(store, rack)
    gpu = BLOCKS + "/gpu1-1"
    # what a composition would have written
    async with store.transaction("test") as tx:
        doc = tx.get(gpu)
        doc["CompositionStatus"].update(CompositionState="Composed", NumberOfCompositions=1)
        doc["Pool"] = "Active"
        doc["Links"]["ComputerSystems"] = [{"@odata.id": "/redfish/v1/Systems/host1"}]
        tx.put(gpu, doc)
    # a restart: same store file, same rack, minus the last NVMe drive of pcie1
    await store.close()
    store = Store(SqliteBackend(tmp_path / "s.sqlite3"))
    await store.open()
    rack.devices = [g.model_copy(update={"count": 3}) if g.prefix == "nvme1-" else g
                    for g in rack.devices]
    await _reconciled(store, rack)
    kept = store.doc(gpu)
    assert kept["CompositionStatus"]["CompositionState"] == "Composed"
    assert kept["Links"]["ComputerSystems"] == [{"@odata.id": "/redfish/v1/Systems/host1"}]
    assert store.doc(BLOCKS + "/nvme1-4") is None
    assert store.doc(BLOCKS + "/nvme1-4/Drives/Drive0") is None
    zone = store.doc(ZONES + "/pcie1")
    assert {"@odata.id": BLOCKS + "/nvme1-4"} not in zone["Links"]["ResourceBlocks"]
    free = [m["@odata.id"] for m in store.doc(pool.FREE_POOL)["Members"]]
    active = [m["@odata.id"] for m in store.doc(pool.ACTIVE_POOL)["Members"]]
    assert gpu not in free and active == [gpu]
    assert BLOCKS + "/nvme1-4" not in free
    assert store.members(BLOCKS) == [u for u in store.members(BLOCKS) if store.doc(u)]
    # and a second reconciliation with nothing new changes nothing
    seq = store.seq
    await _reconciled(store, rack)
    assert store.seq == seq
    await store.close()


async def test_reconcile_is_idempotent_in_memory():
    store = Store(MemoryBackend())
    await store.open()
    await _reconciled(store, default_rack())
    seq = store.seq
    await _reconciled(store, default_rack())
    assert store.seq == seq


async def test_systems_advertise_specific_and_constrained_composition(client, admin):
    systems = await get(client, "/redfish/v1/Systems", admin)
    capability, constrained = systems["@Redfish.CollectionCapabilities"]["Capabilities"]
    assert capability["UseCase"] == "ComputerSystemComposition"
    assert constrained["UseCase"] == "ComputerSystemConstrainedComposition"
    assert constrained["Links"] == capability["Links"]
    caps = await get(client, constrained["CapabilitiesObject"]["@odata.id"], admin)
    assert caps["Processors@Redfish.OptionalOnCreate"] is True
    assert caps["Storage@Redfish.OptionalOnCreate"] is True
    assert {"@odata.id": caps["@odata.id"]} not in systems["Members"]
    assert capability["Links"]["TargetCollection"] == {"@odata.id": "/redfish/v1/Systems"}
    assert capability["Links"]["RelatedItem"] == [
        {"@odata.id": f"{ZONES}/pcie1"}, {"@odata.id": f"{ZONES}/pcie2"}]
    uri = capability["CapabilitiesObject"]["@odata.id"]
    assert {"@odata.id": uri} not in systems["Members"]
    resp = await client.get(uri, headers=admin)
    assert resp.status == 200
    assert resp.headers["Allow"] == "GET, HEAD"
    caps = await resp.json()
    assert caps["Name@Redfish.RequiredOnCreate"] is True
    assert caps["Links"]["ResourceBlocks@Redfish.RequiredOnCreate"] is True
    assert caps["@Redfish.ResourceBlockLimits"]["MaxCompute"] == 1
    for method in ("PATCH", "DELETE"):
        resp = await client.request(method, uri, json={"AssetTag": "x"}, headers=admin)
        assert resp.status == 405, method


async def test_refreshing_only_the_changed_blocks_gives_the_full_answer():
    """``refresh_pools(..., changed)`` (what a composition commit uses) leaves FreePool
    and ActivePool exactly as recomputing them from every block would, in collection
    order, over random state changes, deletions and new blocks."""
    import random

    rng = random.Random(7)
    store = Store(MemoryBackend())
    await store.open()
    blocks_uri = pool.BLOCKS
    states = ["Unused", "Composed", "ComposedAndAvailable", "Composing", "Failed"]

    def block(i: int) -> dict:
        return {"@odata.id": f"{blocks_uri}/b{i}", "Id": f"b{i}", "CompositionStatus": {
            "CompositionState": rng.choice(states), "Reserved": rng.random() < 0.2}}

    async with store.transaction() as tx:
        for uri in (blocks_uri, pool.FREE_POOL, pool.ACTIVE_POOL):
            tx.create(uri, {"@odata.id": uri, "Members": [], "Members@odata.count": 0},
                      member=False)
        for i in range(60):
            tx.create(f"{blocks_uri}/b{i}", block(i))
        pool.refresh_pools(tx, [f"{blocks_uri}/b{i}" for i in range(60)])
    made = 60
    for _ in range(40):
        async with store.transaction() as tx:
            for uri in rng.sample(tx.peek(blocks_uri)["Members"], 5):
                tx.put(uri["@odata.id"], {**tx.get(uri["@odata.id"]), "CompositionStatus": {
                    "CompositionState": rng.choice(states), "Reserved": rng.random() < 0.2}})
            if rng.random() < 0.3:
                tx.delete(rng.choice(tx.peek(blocks_uri)["Members"])["@odata.id"])
            if rng.random() < 0.3:
                tx.create(f"{blocks_uri}/b{made}", block(made))
                made += 1
            members = [m["@odata.id"] for m in tx.peek(blocks_uri)["Members"]]
            changed = set(tx.staged(blocks_uri))
            pool.refresh_pools(tx, members, changed)
            incremental = {p: tx.peek(p)["Members"] for p in (pool.FREE_POOL, pool.ACTIVE_POOL)}
            pool.refresh_pools(tx, members)
            full = {p: tx.peek(p)["Members"] for p in (pool.FREE_POOL, pool.ACTIVE_POOL)}
            assert incremental == full
    await store.close()
