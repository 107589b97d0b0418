"""Unregistering a host (DELETE of its ComputerSystem block) and registering it again
(RegisterResourceBlock: POST to the ResourceBlocks collection)."""

from __future__ import annotations

import pytest

from redfish_service.app import create_app

from .test_expansion import ADD, ADMIN, BLOCKS, block, state

HOST = "/redfish/v1/Systems/host1"
OWN = f"{BLOCKS}/system-host1"
ZONES = "/redfish/v1/CompositionService/ResourceZones"
FREE = "/redfish/v1/CompositionService/FreePool"


async def get(rf, uri):
    resp = await rf.get(uri, headers=ADMIN)
    assert resp.status == 200, uri
    return await resp.json()


def ids(links):
    return [x["@odata.id"] for x in links]


async def test_unregister_and_register_again(rf):
    assert "DELETE" in (await rf.get(OWN, headers=ADMIN)).headers["Allow"]
    assert "DELETE" not in (await rf.get(f"{BLOCKS}/gpu1-1", headers=ADMIN)).headers["Allow"]
    resp = await rf.delete(OWN, headers=ADMIN)
    assert resp.status == 204, await resp.text()
    assert (await rf.get(OWN, headers=ADMIN)).status == 404
    host = await get(rf, HOST)
    assert host["Composition"]["UseCases"] == ["ResourceBlockCapable"]
    assert host["Links"]["ResourceBlocks"] == [] and "Actions" not in host
    assert OWN not in ids((await get(rf, f"{ZONES}/pcie1"))["Links"]["ResourceBlocks"])
    assert OWN not in ids((await get(rf, FREE))["Members"])
    resp = await rf.post(ADD.format("host1"), json=block("gpu1-1"), headers=ADMIN)
    assert resp.status == 400  # an unregistered host does not offer the action
    assert (await resp.json())["error"]["code"] == "Base.1.22.ActionNotSupported"

    collection = await get(rf, BLOCKS)
    [capability] = collection["@Redfish.CollectionCapabilities"]["Capabilities"]
    assert capability["UseCase"] == "RegisterResourceBlock"
    assert "POST" in (await rf.get(BLOCKS, headers=ADMIN)).headers["Allow"]
    resp = await rf.post(BLOCKS, headers=ADMIN, json={
        "Name": "host1 again", "ComputerSystems": [{"@odata.id": HOST}],
        "Links": {"Zones": [{"@odata.id": f"{ZONES}/pcie1"}]}})
    assert resp.status == 201, await resp.text()
    assert resp.headers["Location"] == OWN
    doc = await resp.json()
    assert doc["Name"] == "host1 again" and doc["ResourceBlockType"] == ["ComputerSystem"]
    assert ids(doc["Links"]["Zones"]) == [f"{ZONES}/pcie1"]
    host = await get(rf, HOST)
    assert host["Composition"]["UseCases"] == ["ExpandableSystem"]
    assert ids(host["Links"]["ResourceBlocks"]) == [OWN]
    assert OWN in ids((await get(rf, f"{ZONES}/pcie1"))["Links"]["ResourceBlocks"])
    resp = await rf.post(ADD.format("host1"), json=block("gpu1-1"), headers=ADMIN)
    assert resp.status == 204, await resp.text()


async def test_a_host_holding_devices_cannot_be_unregistered(rf):
    resp = await rf.post(ADD.format("host1"), json=block("gpu1-2"), headers=ADMIN)
    assert resp.status == 204
    before = await state(rf, HOST, OWN, f"{ZONES}/pcie1")
    resp = await rf.delete(OWN, headers=ADMIN)
    assert resp.status == 409
    assert await state(rf, HOST, OWN, f"{ZONES}/pcie1") == before


@pytest.mark.parametrize(("body", "status", "message_id"), [
    ({"ComputerSystems": [{"@odata.id": HOST}]}, 409, "ResourceAlreadyExists"),  # registered
    ({"ComputerSystems": [{"@odata.id": "/redfish/v1/Systems/nope"}]}, 400,
     "ResourceMissingAtURI"),
    ({"ComputerSystems": HOST}, 400, "PropertyValueTypeError"),
    ({"Name": "x"}, 400, "PropertyMissing"),
    ({"ComputerSystems": [{"@odata.id": HOST}], "Oem": 1}, 400, "PropertyUnknown"),
    ({"ComputerSystems": [{"@odata.id": HOST}], "Links": {"Zones": "pcie1"}}, 400,
     "PropertyValueTypeError"),
])
async def test_bad_registrations_change_nothing(rf, body, status, message_id):
    before = await state(rf, BLOCKS, HOST, f"{ZONES}/pcie1")
    resp = await rf.post(BLOCKS, json=body, headers=ADMIN)
    assert resp.status == status, await resp.text()
    error = (await resp.json())["error"]
    assert [m["MessageId"].rsplit(".", 1)[1] for m in error["@Message.ExtendedInfo"]] == [
        message_id]
    assert await state(rf, BLOCKS, HOST, f"{ZONES}/pcie1") == before


async def test_registration_zones_are_the_hosts_own(rf):
    assert (await rf.delete(OWN, headers=ADMIN)).status == 204
    resp = await rf.post(BLOCKS, headers=ADMIN, json={
        "ComputerSystems": [{"@odata.id": HOST}],
        "Links": {"Zones": [{"@odata.id": f"{ZONES}/pcie2"}]}})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"].endswith("IncompatibleZone")
    # the pools are views: no POST there
    resp = await rf.post(FREE, headers=ADMIN, json={"ComputerSystems": [{"@odata.id": HOST}]})
    assert resp.status == 405


async def test_unregistration_survives_restart_and_reconciliation(aiohttp_client, settings):
    app = create_app(settings)  # SQLite in the test's state directory
    client = await aiohttp_client(app)
    assert (await client.delete(OWN, headers=ADMIN)).status == 204
    await client.close()
    client = await aiohttp_client(create_app(settings))
    assert (await client.get(OWN, headers=ADMIN)).status == 404
    host = await (await client.get(HOST, headers=ADMIN)).json()
    assert host["Composition"]["UseCases"] == ["ResourceBlockCapable"]
    zone = await (await client.get(f"{ZONES}/pcie1", headers=ADMIN)).json()
    assert OWN not in ids(zone["Links"]["ResourceBlocks"])
    resp = await client.post(BLOCKS, headers=ADMIN,
                             json={"ComputerSystems": [{"@odata.id": HOST}]})
    assert resp.status == 201, await resp.text()
