"""Ports, PCIe devices, CXL memory connections and the host-side view follow the
composition (attach, detach, compose, decompose, restart)."""

from __future__ import annotations

import pytest

from redfish_service import services
from redfish_service.app import create_app
from redfish_service.composition.invariants import violations

from .conftest import FlakyDriver, json_schema_dir
from .test_expansion import ADD, ADMIN, BLOCKS, REMOVE, block

FABRICS = "/redfish/v1/Fabrics"
CXL = f"{FABRICS}/CXL"
CHASSIS = "/redfish/v1/Chassis"
SYSTEMS = "/redfish/v1/Systems"
CXL_CHUNK = f"{CHASSIS}/enclosure-cxl1/MemoryDomains/{{}}/MemoryChunks/1"


async def get(client, uri):
    resp = await client.get(uri, headers=ADMIN)
    assert resp.status == 200, (uri, resp.status, await resp.text())
    return await resp.json()


def ids(links):
    return [link["@odata.id"] for link in links]


async def members(client, uri):
    doc = await get(client, uri)
    assert doc["Members@odata.count"] == len(doc["Members"])
    return ids(doc["Members"])


async def attach(client, host, name):
    resp = await client.post(ADD.format(host), json=block(name), headers=ADMIN)
    assert resp.status == 204, await resp.text()


async def detach(client, host, name):
    resp = await client.post(REMOVE.format(host), json=block(name), headers=ADMIN)
    assert resp.status == 204, await resp.text()


async def test_switch_ports_and_endpoints_link_both_ways(rf):
    cxl_ports = await members(rf, f"{CXL}/Switches/cxl1/Ports")
    assert len(cxl_ports) == 4 + 2 + 4  # hosts, sleds, memory devices
    up = await get(rf, f"{CXL}/Switches/cxl1/Ports/up-host1")
    assert up["PortType"] == "UpstreamPort" and up["PortProtocol"] == "CXL"
    assert up["LinkStatus"] == "LinkUp" and up["LinkState"] == "Enabled"
    assert up["CXL"]["CurrentPortConfigurationState"] == "USP"
    assert ids(up["Links"]["AssociatedEndpoints"]) == [f"{CXL}/Endpoints/host1"]
    down = await get(rf, f"{CXL}/Switches/cxl1/Ports/down-cxlmem2")
    assert down["PortType"] == "DownstreamPort" and down["Width"] == 8
    assert down["CXL"] == {"CurrentPortConfigurationState": "DSP",
                           "ConnectedDeviceType": "Type3SLD", "MaxLogicalDeviceCount": 1}
    endpoint = await get(rf, f"{CXL}/Endpoints/cxlmem2")
    assert ids(endpoint["Links"]["ConnectedPorts"]) == [down["@odata.id"]]
    host = await get(rf, f"{CXL}/Endpoints/host1")
    assert ids(host["Links"]["ConnectedPorts"]) == [up["@odata.id"]]
    pcie_ports = await members(rf, f"{FABRICS}/PCIe/Switches/pcie1/Ports")
    assert len(pcie_ports) == 2 + 1 + 14  # hosts, sled, devices
    gpu_port = await get(rf, f"{FABRICS}/PCIe/Switches/pcie1/Ports/down-gpu1-1")
    assert gpu_port["PortProtocol"] == "PCIe" and "CXL" not in gpu_port
    assert gpu_port["CurrentSpeedGbps"] == 32 * 16
    switch = await get(rf, f"{FABRICS}/PCIe/Switches/pcie1")
    assert switch["Ports"] == {"@odata.id": f"{FABRICS}/PCIe/Switches/pcie1/Ports"}
    # every port's far end names it back (the invariants check the whole tree after this)
    for port_uri in pcie_ports + cxl_ports:
        port = await get(rf, port_uri)
        for endpoint_uri in ids(port["Links"]["AssociatedEndpoints"]):
            far = await get(rf, endpoint_uri)
            assert port_uri in ids(far["Links"]["ConnectedPorts"])


async def test_devices_are_pcie_devices_in_their_switch_enclosure(rf):
    enclosure = await get(rf, f"{CHASSIS}/enclosure-pcie1")
    assert enclosure["ChassisType"] == "Enclosure"
    switch = await get(rf, ids(enclosure["Links"]["Switches"])[0])
    assert switch["Links"]["Chassis"] == {"@odata.id": enclosure["@odata.id"]}
    devices = await members(rf, enclosure["PCIeDevices"]["@odata.id"])
    assert len(devices) == 14
    gpu = await get(rf, f"{CHASSIS}/enclosure-pcie1/PCIeDevices/gpu1-1")
    assert gpu["Model"] == "H100 PCIe 80GB" and gpu["PCIeInterface"]["LanesInUse"] == 16
    assert ids(gpu["Links"]["Processors"]) == [f"{BLOCKS}/gpu1-1/Processors/GPU0"]
    [function_uri] = await members(rf, gpu["PCIeFunctions"]["@odata.id"])
    function = await get(rf, function_uri)
    assert (function["VendorId"], function["DeviceId"]) == ("0x10de", "0x2331")
    assert function["ClassCode"] == "0x030200"
    assert function["DeviceClass"] == "DisplayController"
    assert function["FunctionType"] == "Physical"
    assert function["Links"]["PCIeDevice"] == {"@odata.id": gpu["@odata.id"]}
    nvme = await get(rf, f"{CHASSIS}/enclosure-pcie1/PCIeDevices/nvme1-1/PCIeFunctions/0")
    assert nvme["DeviceClass"] == "MassStorageController"
    assert ids(nvme["Links"]["Drives"]) == [f"{BLOCKS}/nvme1-1/Drives/Drive0"]
    # a CXL Type-3 device: its function, memory domain and the one chunk it offers
    memory = await get(rf, f"{CHASSIS}/enclosure-cxl1/PCIeDevices/cxlmem1")
    assert memory["CXLDevice"]["DeviceType"] == "Type3"
    function = await get(rf, f"{memory['@odata.id']}/PCIeFunctions/0")
    assert function["FunctionProtocol"] == "CXL" and function["ClassCode"] == "0x050210"
    [domain_uri] = ids(function["Links"]["MemoryDomains"])
    domain = await get(rf, domain_uri)
    assert ids(domain["Links"]["PCIeFunctions"]) == [function["@odata.id"]]
    assert domain["MemorySizeMiB"] == 262144
    assert await members(rf, domain["MemoryChunks"]["@odata.id"]) == [CXL_CHUNK.format("cxlmem1")]
    chunk = await get(rf, CXL_CHUNK.format("cxlmem1"))
    assert chunk["MemoryChunkSizeMiB"] == 262144 and chunk["AddressRangeType"] == "Volatile"
    assert ids(chunk["Links"]["Endpoints"]) == [f"{CXL}/Endpoints/cxlmem1"]
    endpoint = await get(rf, f"{CXL}/Endpoints/cxlmem1")
    assert {"EntityType": "MemoryChunk", "EntityRole": "Target",
            "EntityLink": {"@odata.id": chunk["@odata.id"]}} in endpoint["ConnectedEntities"]


async def test_cxl_memory_gets_a_connection_and_host_memory_until_detached(rf):
    host = await get(rf, f"{SYSTEMS}/host1")
    assert host["PCIeDevices"] == [] and host["PCIeDevices@odata.count"] == 0
    assert await members(rf, host["Memory"]["@odata.id"]) == []
    assert await members(rf, f"{CXL}/Connections") == []

    await attach(rf, "host1", "cxlmem1")
    connection_uri = f"{CXL}/Connections/host1-cxlmem1"
    assert await members(rf, f"{CXL}/Connections") == [connection_uri]
    connection = await get(rf, connection_uri)
    assert connection["ConnectionType"] == "Memory"
    [info] = connection["MemoryChunkInfo"]
    assert info["MemoryChunk"] == {"@odata.id": CXL_CHUNK.format("cxlmem1")}
    assert info["AccessCapabilities"] == ["Read", "Write"]
    assert ids(connection["Links"]["InitiatorEndpoints"]) == [f"{CXL}/Endpoints/host1"]
    assert ids(connection["Links"]["TargetEndpoints"]) == [f"{CXL}/Endpoints/cxlmem1"]
    for side in ("host1", "cxlmem1"):
        endpoint = await get(rf, f"{CXL}/Endpoints/{side}")
        assert ids(endpoint["Links"]["Connections"]) == [connection_uri]
    chunk = await get(rf, CXL_CHUNK.format("cxlmem1"))
    assert ids(chunk["Links"]["Endpoints"]) == ids(connection["Links"]["TargetEndpoints"])
    host = await get(rf, f"{SYSTEMS}/host1")
    assert await members(rf, f"{SYSTEMS}/host1/Memory") == [f"{SYSTEMS}/host1/Memory/cxlmem1"]
    memory = await get(rf, f"{SYSTEMS}/host1/Memory/cxlmem1")
    assert memory["CapacityMiB"] == 262144 and memory["MemoryType"] == "DRAM"
    assert memory["MemoryDeviceType"] == "Logical"
    assert ids(memory["Links"]["MemoryMediaSources"]) == [CXL_CHUNK.format("cxlmem1")]
    assert ids(memory["Links"]["Endpoints"]) == [f"{CXL}/Endpoints/host1"]
    assert ids(host["PCIeDevices"]) == [f"{CHASSIS}/enclosure-cxl1/PCIeDevices/cxlmem1"]
    # another host's memory is its own
    await attach(rf, "host3", "cxlmem2")
    assert await members(rf, f"{CXL}/Connections") == [
        connection_uri, f"{CXL}/Connections/host3-cxlmem2"]
    assert await members(rf, f"{SYSTEMS}/host1/Memory") == [f"{SYSTEMS}/host1/Memory/cxlmem1"]

    await detach(rf, "host1", "cxlmem1")
    assert await members(rf, f"{CXL}/Connections") == [f"{CXL}/Connections/host3-cxlmem2"]
    assert (await rf.get(connection_uri, headers=ADMIN)).status == 404
    assert await members(rf, f"{SYSTEMS}/host1/Memory") == []
    assert (await rf.get(f"{SYSTEMS}/host1/Memory/cxlmem1", headers=ADMIN)).status == 404
    for side in ("host1", "cxlmem1"):
        endpoint = await get(rf, f"{CXL}/Endpoints/{side}")
        assert endpoint["Links"]["Connections"] == []
    assert (await get(rf, f"{SYSTEMS}/host1"))["PCIeDevices"] == []


async def test_a_host_shows_its_pcie_devices_while_attached(rf):
    for name in ("gpu1-2", "nvme1-3"):
        await attach(rf, "host2", name)
    host = await get(rf, f"{SYSTEMS}/host2")
    assert ids(host["PCIeDevices"]) == [f"{CHASSIS}/enclosure-pcie1/PCIeDevices/gpu1-2",
                                        f"{CHASSIS}/enclosure-pcie1/PCIeDevices/nvme1-3"]
    assert host["PCIeDevices@odata.count"] == 2
    gpu = await get(rf, ids(host["PCIeDevices"])[0])
    processor = await get(rf, ids(gpu["Links"]["Processors"])[0])
    assert processor["ProcessorType"] == "GPU"
    await detach(rf, "host2", "gpu1-2")
    host = await get(rf, f"{SYSTEMS}/host2")
    assert ids(host["PCIeDevices"]) == [f"{CHASSIS}/enclosure-pcie1/PCIeDevices/nvme1-3"]
    assert host["PCIeDevices@odata.count"] == 1
    await detach(rf, "host2", "nvme1-3")
    assert (await get(rf, f"{SYSTEMS}/host2"))["PCIeDevices"] == []


async def test_a_composed_system_gets_memory_through_its_sled(rf):
    resp = await rf.post(SYSTEMS, headers=ADMIN, json={
        "Name": "c", "Links": {"ResourceBlocks": [
            {"@odata.id": f"{BLOCKS}/{n}"} for n in ("sled2", "gpu2-1", "cxlmem3")]}})
    assert resp.status == 201, await resp.text()
    system_uri = resp.headers["Location"]
    system = await get(rf, system_uri)
    assert {u.rsplit("/", 1)[1] for u in ids(system["PCIeDevices"])} == {"gpu2-1", "cxlmem3"}
    connection = await get(rf, f"{CXL}/Connections/sled2-cxlmem3")
    assert ids(connection["Links"]["InitiatorEndpoints"]) == [f"{CXL}/Endpoints/sled2"]
    # the CXL device as its logical entry, then the sled's own DRAM (not the CXL block's)
    assert await members(rf, system["Memory"]["@odata.id"]) == [
        f"{system_uri}/Memory/cxlmem3", f"{BLOCKS}/sled2/Memory/DRAM0"]
    assert (await rf.delete(system_uri, headers=ADMIN)).status == 204
    assert await members(rf, f"{CXL}/Connections") == []
    assert (await rf.get(f"{system_uri}/Memory/cxlmem3", headers=ADMIN)).status == 404


async def test_the_fabric_view_survives_a_restart(aiohttp_client, settings):
    """With the SQLite store: a restart (reconciliation and recovery) keeps connections,
    host memory and host PCIe devices, and rewrites none of them."""
    client = await aiohttp_client(create_app(settings, driver=FlakyDriver()))
    await attach(client, "host2", "cxlmem2")
    await attach(client, "host1", "gpu1-3")
    watched = [f"{CXL}/Connections/host2-cxlmem2", f"{SYSTEMS}/host2/Memory/cxlmem2",
               f"{SYSTEMS}/host1", f"{SYSTEMS}/host2", f"{CXL}/Endpoints/host2",
               f"{CHASSIS}/enclosure-pcie1/PCIeDevices/gpu1-3",
               f"{FABRICS}/PCIe/Switches/pcie1/Ports/down-gpu1-3"]
    before = {u: (await client.get(u, headers=ADMIN)).headers["ETag"] for u in watched}
    await client.close()

    app = create_app(settings, driver=FlakyDriver())  # a fabric that forgot its bindings
    client = await aiohttp_client(app)
    after = {u: (await client.get(u, headers=ADMIN)).headers.get("ETag") for u in watched}
    assert after == before
    host1 = await get(client, f"{SYSTEMS}/host1")
    assert ids(host1["PCIeDevices"]) == [f"{CHASSIS}/enclosure-pcie1/PCIeDevices/gpu1-3"]
    assert await members(client, f"{CXL}/Connections") == [f"{CXL}/Connections/host2-cxlmem2"]
    store = app[services.STORE]
    assert violations(store.doc, store.members) == []
    await detach(client, "host2", "cxlmem2")
    assert await members(client, f"{CXL}/Connections") == []
    assert await members(client, f"{SYSTEMS}/host2/Memory") == []


async def test_the_invariants_see_a_fabric_that_disagrees(rf):
    await attach(rf, "host4", "cxlmem4")
    store = rf.app[services.STORE]
    async with store.transaction("test") as tx:
        tx.delete(f"{CXL}/Connections/host4-cxlmem4")
        host = tx.get(f"{SYSTEMS}/host4")
        host["PCIeDevices"] = []
        tx.put(f"{SYSTEMS}/host4", host)
    broken = "\n".join(violations(store.doc, store.members))
    assert "cxlmem4 has 0 connections" in broken
    assert f"{SYSTEMS}/host4 shows PCIe devices []" in broken
    assert f"{CXL}/Endpoints/host4 names connection" in broken
    # the next composition commit puts the fabric right again
    await detach(rf, "host4", "cxlmem4")
    assert violations(store.doc, store.members) == []


async def test_new_documents_match_their_json_schemas(rf):
    folder = json_schema_dir()
    if folder is None:
        pytest.skip("set REDFISH_JSON_SCHEMA_DIR to check the documents against the schemas")
    from .support.schemas import Schemas
    from .test_json_schema import validate_resource

    schemas = Schemas(folder, Schemas.swordfish_dir_for(folder))
    await attach(rf, "host1", "cxlmem1")
    await attach(rf, "host1", "gpu1-1")
    uris = [f"{CXL}/Connections", f"{CXL}/Connections/host1-cxlmem1", f"{SYSTEMS}/host1",
            f"{SYSTEMS}/host1/Memory", f"{SYSTEMS}/host1/Memory/cxlmem1",
            f"{CXL}/Endpoints/host1", f"{CXL}/Endpoints/cxlmem1",
            f"{CXL}/Switches/cxl1/Ports/down-cxlmem1", CXL_CHUNK.format("cxlmem1"),
            f"{CHASSIS}/enclosure-pcie1/PCIeDevices/gpu1-1"]
    problems = []
    for uri in uris:
        problems += validate_resource(schemas, uri, await get(rf, uri))
    assert not problems, "\n".join(problems)


async def test_the_hardware_view_follows_the_inventory(tmp_path):
    """Reconciling the same rack again writes nothing; a rack that lost a GPU and its CXL
    switch loses their ports, PCIe devices, memory domains and connections."""
    from redfish_service.drivers.simulated import SimulatedDriver, default_rack
    from redfish_service.resources import fabrics, inventory, pool
    from redfish_service.resources.accounts import collection_doc
    from redfish_service.store import SqliteBackend, Store

    async def reconciled(store, rack):
        found = await SimulatedDriver(rack).discover()
        await inventory.reconcile(store, found)
        await pool.reconcile(store, found)
        await fabrics.reconcile(store, found)

    store = Store(SqliteBackend(tmp_path / "s.sqlite3"))
    await store.open()
    async with store.transaction("test") as tx:  # what the bootstrap creates
        for uri, entity in ((SYSTEMS, "ComputerSystemCollection"),
                            (CHASSIS, "ChassisCollection")):
            tx.create(uri, collection_doc(uri, entity, uri.rsplit("/", 1)[1]))
    await reconciled(store, default_rack())
    # what a composition would have written: cxlmem1 on host1
    async with store.transaction("test") as tx:
        doc = tx.get(f"{BLOCKS}/cxlmem1")
        doc["CompositionStatus"].update(CompositionState="Composed", NumberOfCompositions=1)
        doc["Pool"] = "Active"
        doc["Links"]["ComputerSystems"] = [{"@odata.id": f"{SYSTEMS}/host1"}]
        tx.put(doc["@odata.id"], doc)
        host = tx.get(f"{SYSTEMS}/host1")
        host["Links"]["ResourceBlocks"].append({"@odata.id": f"{BLOCKS}/cxlmem1"})
        tx.put(host["@odata.id"], host)
        pool.refresh_pools(tx, store.members(BLOCKS))
        fabrics.sync_zones(tx, store)
    assert store.members(f"{CXL}/Connections") == [f"{CXL}/Connections/host1-cxlmem1"]
    seq = store.seq
    await reconciled(store, default_rack())
    assert store.seq == seq
    assert violations(store.doc, store.members) == []
    await store.close()

    rack = default_rack()
    rack.devices[0].count = 7  # gpu1-8 is gone
    rack.devices = [g for g in rack.devices if g.switch != "cxl1"]
    rack.switches = [s for s in rack.switches if s.id != "cxl1"]
    store = Store(SqliteBackend(tmp_path / "s.sqlite3"))
    await store.open()
    await reconciled(store, rack)
    assert store.members(FABRICS) == [f"{FABRICS}/PCIe"]
    assert store.doc(f"{CHASSIS}/enclosure-cxl1") is None
    assert f"{CHASSIS}/enclosure-cxl1" not in store.members(CHASSIS)
    assert store.doc(f"{FABRICS}/PCIe/Switches/pcie1/Ports/down-gpu1-8") is None
    assert len(store.members(f"{FABRICS}/PCIe/Switches/pcie1/Ports")) == 16
    assert store.doc(f"{CHASSIS}/enclosure-pcie1/PCIeDevices/gpu1-8") is None
    assert len(store.members(f"{CHASSIS}/enclosure-pcie1/PCIeDevices")) == 13
    host = store.doc(f"{SYSTEMS}/host1")
    assert host["PCIeDevices"] == [] and store.members(f"{SYSTEMS}/host1/Memory") == []
    await store.close()
