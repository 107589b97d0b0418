"""The PCIe and CXL fabrics follow the composition."""

from __future__ import annotations

from .test_expansion import ADD, ADMIN, REMOVE, block

FABRICS = "/redfish/v1/Fabrics"


async def get(client, uri):
    resp = await client.get(uri, headers=ADMIN)
    assert resp.status == 200, (uri, resp.status)
    return await resp.json()


async def zone_members(client, fabric, initiator):
    zone = await get(client, f"{FABRICS}/{fabric}/Zones/zone-{initiator}")
    return [e["@odata.id"].rsplit("/", 1)[1] for e in zone["Links"]["Endpoints"]]


async def test_fabric_tree(rf):
    root = await get(rf, "/redfish/v1/")
    assert root["Fabrics"] == {"@odata.id": FABRICS}
    fabrics = await get(rf, FABRICS)
    assert [m["@odata.id"] for m in fabrics["Members"]] == [f"{FABRICS}/CXL", f"{FABRICS}/PCIe"]
    pcie = await get(rf, f"{FABRICS}/PCIe")
    assert pcie["FabricType"] == "PCIe"
    switches = await get(rf, pcie["Switches"]["@odata.id"])
    assert switches["Members@odata.count"] == 2
    endpoints = await get(rf, pcie["Endpoints"]["@odata.id"])
    assert endpoints["Members@odata.count"] == 4 + 2 + 28  # hosts, sleds, PCIe devices
    cxl_endpoints = await get(rf, f"{FABRICS}/CXL/Endpoints")
    assert cxl_endpoints["Members@odata.count"] == 4 + 2 + 4
    gpu = await get(rf, f"{FABRICS}/PCIe/Endpoints/gpu1-1")
    [entity] = gpu["ConnectedEntities"]
    assert entity["EntityRole"] == "Target" and entity["EntityType"] == "Processor"
    assert entity["EntityPciId"] == {"VendorId": "0x10de", "DeviceId": "0x2331"}
    processor = await get(rf, entity["EntityLink"]["@odata.id"])
    assert processor["ProcessorType"] == "GPU"
    host = await get(rf, f"{FABRICS}/PCIe/Endpoints/host3")
    assert host["ConnectedEntities"][0]["EntityLink"] == {"@odata.id": "/redfish/v1/Systems/host3"}
    pcie1 = await get(rf, f"{FABRICS}/PCIe/Switches/pcie1")
    names = {e["@odata.id"].rsplit("/", 1)[1] for e in pcie1["Links"]["Endpoints"]}
    assert {"host1", "host2", "sled1", "gpu1-8", "nic1-1"} <= names and "host3" not in names


async def test_zones_follow_attach_and_detach(rf):
    assert await zone_members(rf, "PCIe", "host2") == ["host2"]
    for name in ("gpu1-2", "cxlmem4"):
        assert (await rf.post(ADD.format("host2"), json=block(name), headers=ADMIN)).status \
            == 204
    assert await zone_members(rf, "PCIe", "host2") == ["host2", "gpu1-2"]
    assert await zone_members(rf, "CXL", "host2") == ["host2", "cxlmem4"]
    gpu = await get(rf, f"{FABRICS}/PCIe/Endpoints/gpu1-2")
    assert gpu["Links"]["Zones"] == [{"@odata.id": f"{FABRICS}/PCIe/Zones/zone-host2"}]
    zone = await get(rf, f"{FABRICS}/PCIe/Zones/zone-host2")
    assert zone["Links"]["InvolvedSwitches"] == [{"@odata.id": f"{FABRICS}/PCIe/Switches/pcie1"}]
    assert (await rf.post(REMOVE.format("host2"), json=block("gpu1-2"), headers=ADMIN)).status \
        == 204
    assert await zone_members(rf, "PCIe", "host2") == ["host2"]
    gpu = await get(rf, f"{FABRICS}/PCIe/Endpoints/gpu1-2")
    assert gpu["Links"]["Zones"] == []


async def test_a_composed_system_gets_its_sleds_zones(rf):
    resp = await rf.post("/redfish/v1/Systems", headers=ADMIN, json={
        "Name": "c", "Links": {"ResourceBlocks": [
            {"@odata.id": f"/redfish/v1/CompositionService/ResourceBlocks/{n}"}
            for n in ("sled2", "gpu2-8", "cxlmem2")]}})
    assert resp.status == 201, await resp.text()
    assert await zone_members(rf, "PCIe", "sled2") == ["sled2", "gpu2-8"]
    assert await zone_members(rf, "CXL", "sled2") == ["sled2", "cxlmem2"]
    assert (await rf.delete(resp.headers["Location"], headers=ADMIN)).status == 204
    assert await zone_members(rf, "CXL", "sled2") == ["sled2"]
