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


# --------------------------------------------------------------------------------------
# a two-level PCIe fabric: leaf switches below a spine (mockups/pcie-64gpu)
# --------------------------------------------------------------------------------------
async def test_a_two_level_fabric(aiohttp_client, settings):
    import pytest
    from pydantic import ValidationError

    from redfish_service import services
    from redfish_service.app import create_app
    from redfish_service.composition.invariants import violations
    from redfish_service.drivers.simulated import RackSpec, SimulatedDriver
    from redfish_service.mockups.generate import pcie_64gpu
    from redfish_service.store import MemoryBackend

    rack = pcie_64gpu().model_copy(update={"bind_latency_s": 0.0})
    app = create_app(settings, backend=MemoryBackend(), driver=SimulatedDriver(rack))
    rf = await aiohttp_client(app)
    pcie = f"{FABRICS}/PCIe"
    spine, leaf = f"{pcie}/Switches/pcie0", f"{pcie}/Switches/pcie2"
    # the cable: the leaf's upstream port and the spine's downstream port name each other
    down = await get(rf, f"{spine}/Ports/down-pcie2")
    up = await get(rf, f"{leaf}/Ports/up-pcie0")
    assert (down["PortType"], up["PortType"]) == ("DownstreamPort", "UpstreamPort")
    assert down["Links"]["ConnectedSwitches"] == [{"@odata.id": leaf}]
    assert down["Links"]["ConnectedSwitchPorts"] == [{"@odata.id": up["@odata.id"]}]
    assert up["Links"]["ConnectedSwitches"] == [{"@odata.id": spine}]
    assert up["Links"]["ConnectedSwitchPorts"] == [{"@odata.id": down["@odata.id"]}]
    # hosts on the spine, GPUs on the leaves; one resource zone for the whole tree
    names = {e["@odata.id"].rsplit("/", 1)[1]
             for e in (await get(rf, spine))["Links"]["Endpoints"]}
    assert names == {f"host{i}" for i in range(1, 9)}
    zones = await get(rf, "/redfish/v1/CompositionService/ResourceZones")
    assert [m["@odata.id"].rsplit("/", 1)[1] for m in zones["Members"]] == ["pcie0"]
    # a host takes GPUs of two leaves; its fabric zone involves both and the spine
    for gpu in ("gpu2-5", "gpu4-16"):
        resp = await rf.post(ADD.format("host7"), json=block(gpu), headers=ADMIN)
        assert resp.status == 204, await resp.text()
    zone = await get(rf, f"{pcie}/Zones/zone-host7")
    assert [s["@odata.id"].rsplit("/", 1)[1] for s in zone["Links"]["InvolvedSwitches"]] \
        == ["pcie0", "pcie2", "pcie4"]
    assert await zone_members(rf, "PCIe", "host7") == ["host7", "gpu2-5", "gpu4-16"]
    resp = await rf.post(REMOVE.format("host7"), json=block("gpu4-16"), headers=ADMIN)
    assert resp.status == 204
    zone = await get(rf, f"{pcie}/Zones/zone-host7")
    assert [s["@odata.id"].rsplit("/", 1)[1] for s in zone["Links"]["InvolvedSwitches"]] \
        == ["pcie0", "pcie2"]
    store = app[services.STORE]
    assert violations(store.doc, store.members) == []
    # the rack file must hold together: two levels, one protocol, a switch that exists
    spec = pcie_64gpu().model_dump()
    for upstream, problem in (("pcie9", "no other switch"), ("pcie1", "two levels at most")):
        bad = {**spec, "switches": [*spec["switches"][:2],
                                    {**spec["switches"][2], "upstream": upstream}]}
        with pytest.raises(ValidationError, match=problem):
            RackSpec.model_validate(bad)
