"""The Compose action: Preview, PreviewReserve, Apply, CompositionReservations."""

from __future__ import annotations

import asyncio

import pytest

from .conftest import basic
from .test_expansion import ADMIN, BLOCKS, state

SERVICE = "/redfish/v1/CompositionService"
COMPOSE = f"{SERVICE}/Actions/CompositionService.Compose"
RESERVATIONS = f"{SERVICE}/CompositionReservations"
SYSTEMS = "/redfish/v1/Systems"
OTHER_PASSWORD = "Other-passw0rd"
OTHER = basic("other", OTHER_PASSWORD)


def specific(stanza_id, *names):
    return {"StanzaType": "ComposeSystem", "StanzaId": stanza_id, "Request": {
        "Name": stanza_id, "Links": {"ResourceBlocks": [
            {"@odata.id": f"{BLOCKS}/{n}"} for n in names]}}}


def constrained(stanza_id, gpus, zone=None):
    request = {"Name": stanza_id, "Processors": {"Members": [
        {"@Redfish.RequestedCount": gpus, "ProcessorType": "GPU"}]}}
    if zone:
        request["@Redfish.ZoneAffinity"] = zone
    return {"StanzaType": "ComposeSystem", "StanzaId": stanza_id, "Request": request}


def action(kind, *stanzas, **extra):
    body = {"RequestFormat": "Manifest", "RequestType": kind, **extra}
    if stanzas:
        body["Manifest"] = {"Description": "test", "Expand": "None", "Stanzas": list(stanzas)}
    return body


async def post(rf, body, headers=ADMIN):
    resp = await rf.post(COMPOSE, json=body, headers=headers)
    return resp.status, await resp.json()


def ids(body):
    return [m["MessageId"] for m in body["error"]["@Message.ExtendedInfo"]]


def without_etags(snapshot):
    return {uri: {k: v for k, v in doc.items() if k != "@odata.etag"}
            for uri, (_, doc) in snapshot.items()}


async def block_doc(rf, name):
    return await (await rf.get(f"{BLOCKS}/{name}", headers=ADMIN)).json()


async def other_admin(rf):
    resp = await rf.post("/redfish/v1/AccountService/Accounts", headers=ADMIN, json={
        "UserName": "other", "Password": OTHER_PASSWORD, "RoleId": "Administrator"})
    assert resp.status == 201, await resp.text()


WATCHED = (SYSTEMS, f"{BLOCKS}/sled1", f"{BLOCKS}/gpu1-1", f"{BLOCKS}/gpu2-1",
           f"{SERVICE}/FreePool", RESERVATIONS)


async def test_action_is_advertised_with_its_action_info(rf):
    service = await (await rf.get(SERVICE, headers=ADMIN)).json()
    advertised = service["Actions"]["#CompositionService.Compose"]
    assert advertised["target"] == COMPOSE
    info = await (await rf.get(advertised["@Redfish.ActionInfo"], headers=ADMIN)).json()
    params = {p["Name"]: p for p in info["Parameters"]}
    assert params["RequestType"]["Required"] is True
    assert params["RequestType"]["AllowableValues"] == ["Preview", "PreviewReserve", "Apply"]


async def test_preview_shows_outcomes_and_changes_nothing(rf, driver):
    before = await state(rf, *WATCHED)
    status, body = await post(rf, action(
        "Preview", specific("A", "sled1", "gpu1-1"), constrained("B", 2, "pcie2"),
        specific("C", "sled1", "gpu1-2")))
    assert status == 200, body
    assert body["RequestType"] == "Preview" and "ReservationId" not in body
    a, b, c = body["Manifest"]["Stanzas"]
    assert a["Response"]["SystemType"] == "Composed"
    assert [x["@odata.id"].rsplit("/", 1)[1] for x in b["Response"]["Links"]["ResourceBlocks"]] \
        == ["sled2", "gpu2-1", "gpu2-2"]
    # the third stanza wants the sled the first one already takes
    assert c["Response"]["error"]["code"] == "Composition.1.1.ResourceBlockInUse"
    assert await state(rf, *WATCHED) == before
    assert driver.bindings == {}


async def test_reserve_then_apply_uses_exactly_the_reserved_blocks(rf, driver):
    status, body = await post(rf, action("PreviewReserve", constrained("gpu-box", 2)))
    assert status == 200, body
    reservation_id = body["ReservationId"]
    reserved = [x["@odata.id"] for x in
                body["Manifest"]["Stanzas"][0]["Response"]["Links"]["ResourceBlocks"]]
    doc = await (await rf.get(f"{RESERVATIONS}/{reservation_id}", headers=ADMIN)).json()
    assert doc["Client"] == "admin" and doc["ReservationTime"]
    assert [x["@odata.id"] for x in doc["ReservedResourceBlocks"]] == reserved
    # the manifest as processed: the constrained request resolved to the blocks chosen
    assert [x["@odata.id"] for x in doc["Manifest"]["Stanzas"][0]["Request"]["Links"]
            ["ResourceBlocks"]] == reserved
    for uri in reserved:
        block = await (await rf.get(uri, headers=ADMIN)).json()
        assert block["CompositionStatus"]["Reserved"] is True
        assert block["CompositionStatus"]["CompositionState"] == "Unused"
    free = await (await rf.get(f"{SERVICE}/FreePool", headers=ADMIN)).json()
    assert not {m["@odata.id"] for m in free["Members"]} & set(reserved)
    assert driver.bindings == {}

    status, body = await post(rf, {"RequestType": "Apply", "ReservationId": reservation_id})
    assert status == 200, body
    system = body["Manifest"]["Stanzas"][0]["Response"]
    assert [x["@odata.id"] for x in system["Links"]["ResourceBlocks"]] == reserved
    assert (await rf.get(system["@odata.id"], headers=ADMIN)).status == 200
    assert (await rf.get(f"{RESERVATIONS}/{reservation_id}", headers=ADMIN)).status == 404
    for uri in reserved:
        block = await (await rf.get(uri, headers=ADMIN)).json()
        assert block["CompositionStatus"] == {**block["CompositionStatus"],
                                              "Reserved": False, "CompositionState": "Composed"}
    assert len(driver.bindings) == 2
    # a reservation is used once
    status, body = await post(rf, {"RequestType": "Apply", "ReservationId": reservation_id})
    assert status == 400 and ids(body) == ["Base.1.22.ActionParameterValueError"]


async def test_reservations_keep_other_clients_out(rf, driver):
    await other_admin(rf)
    status, body = await post(rf, action("PreviewReserve", specific("mine", "sled1", "gpu1-1")))
    assert status == 200, body
    reservation_id = body["ReservationId"]
    # named: the reservation is given
    resp = await rf.post(SYSTEMS, headers=OTHER, json={"Name": "x", "Links": {
        "ResourceBlocks": [{"@odata.id": f"{BLOCKS}/sled1"}]}})
    body = await resp.json()
    assert resp.status == 409
    assert ids(body) == ["Composition.1.1.SpecifiedResourceAlreadyReserved"]
    assert body["error"]["@Message.ExtendedInfo"][0]["MessageArgs"] == ["sled1", reservation_id]
    # constrained: only reserved blocks would do (pcie1's sled is reserved)
    status, body = await post(rf, action("Apply", constrained("x", 1, "pcie1")), OTHER)
    assert status == 409
    assert "Composition.1.1.ConstrainedResourceAlreadyReserved" in ids(body)
    # someone else's reservation cannot be applied, nor seen in the collection
    status, body = await post(rf, {"RequestType": "Apply", "ReservationId": reservation_id},
                              OTHER)
    assert status == 400
    listing = await (await rf.get(RESERVATIONS, headers=OTHER)).json()
    assert listing["Members"] == [] and listing["Members@odata.count"] == 0
    listing = await (await rf.get(RESERVATIONS, headers=ADMIN)).json()
    assert listing["Members@odata.count"] == 1
    # deleting the reservation frees the blocks for everyone
    resp = await rf.delete(f"{RESERVATIONS}/{reservation_id}", headers=ADMIN)
    assert resp.status == 204
    assert (await block_doc(rf, "sled1"))["CompositionStatus"]["Reserved"] is False
    resp = await rf.post(SYSTEMS, headers=OTHER, json={"Name": "x", "Links": {
        "ResourceBlocks": [{"@odata.id": f"{BLOCKS}/sled1"}]}})
    assert resp.status == 201, await resp.text()


async def test_reservations_expire(rf):
    resp = await rf.patch(SERVICE, json={"ReservationDuration": "PT0.3S"}, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    status, body = await post(rf, action("PreviewReserve", specific("s", "sled2", "gpu2-3")))
    assert status == 200, body
    uri = f"{RESERVATIONS}/{body['ReservationId']}"
    assert (await block_doc(rf, "gpu2-3"))["CompositionStatus"]["Reserved"] is True
    for _ in range(40):  # the service ends it by itself, within a second of its time
        await asyncio.sleep(0.1)
        if (await rf.get(uri, headers=ADMIN)).status == 404:
            break
    assert (await rf.get(uri, headers=ADMIN)).status == 404
    assert (await block_doc(rf, "gpu2-3"))["CompositionStatus"]["Reserved"] is False
    free = await (await rf.get(f"{SERVICE}/FreePool", headers=ADMIN)).json()
    assert {"@odata.id": f"{BLOCKS}/gpu2-3"} in free["Members"]


async def test_apply_is_all_or_nothing(rf, driver):
    resp = await rf.post(SYSTEMS, headers=ADMIN, json={"Name": "old", "Links": {
        "ResourceBlocks": [{"@odata.id": f"{BLOCKS}/{n}"} for n in ("sled1", "gpu1-1")]}})
    assert resp.status == 201
    old = resp.headers["Location"]
    before = await state(rf, *WATCHED, old)
    bindings = dict(driver.bindings)
    driver.down.add("gpu2-2")  # the last driver step of the manifest fails
    status, body = await post(rf, action(
        "Apply", {"StanzaType": "DecomposeSystem", "StanzaId": "free",
                  "Request": {"@odata.id": old}},
        specific("new", "sled2", "gpu2-1", "gpu2-2")))
    assert status == 503, body  # the link is down: worth retrying later
    # the same documents (their revisions moved: they were Composing for a while)
    assert without_etags(await state(rf, *WATCHED, old)) == without_etags(before)
    assert driver.bindings == bindings
    driver.down.clear()
    # blocks freed by one stanza are not taken by another of the same manifest
    status, body = await post(rf, action(
        "Apply", {"StanzaType": "DecomposeSystem", "StanzaId": "free",
                  "Request": {"@odata.id": old}}, specific("new", "sled1", "gpu1-1")))
    assert status == 409 and ids(body)[:2] == [
        "Composition.1.1.UnableToProcessStanzaRequest", "Composition.1.1.ResourceBlockInUse"]
    status, body = await post(rf, action(
        "Apply", {"StanzaType": "DecomposeSystem", "StanzaId": "free",
                  "Request": {"@odata.id": old}},
        specific("new1", "sled2", "gpu2-1"),
        {"StanzaType": "DecomposeResource", "StanzaId": "none",
         "Request": {"@odata.id": f"{BLOCKS}/gpu2-4"}}))
    assert status == 400, body  # gpu2-4 is in no system
    status, body = await post(rf, action(
        "Apply", {"StanzaType": "DecomposeSystem", "StanzaId": "free",
                  "Request": {"@odata.id": old}}, specific("new1", "sled2", "gpu2-1")))
    assert status == 200, body
    assert (await rf.get(old, headers=ADMIN)).status == 404
    assert driver.bindings == {"gpu2-1": "sled2"}


async def test_decompose_resource_detaches_a_block(rf, driver):
    resp = await rf.post("/redfish/v1/Systems/host1/Actions/ComputerSystem.AddResourceBlock",
                         json={"ResourceBlock": {"@odata.id": f"{BLOCKS}/gpu1-7"}},
                         headers=ADMIN)
    assert resp.status == 204
    status, body = await post(rf, action("Apply", {
        "StanzaType": "DecomposeResource", "StanzaId": "d",
        "Request": {"@odata.id": f"{BLOCKS}/gpu1-7"}}))
    assert status == 200, body
    assert driver.bindings == {}
    host = await (await rf.get("/redfish/v1/Systems/host1", headers=ADMIN)).json()
    assert {"@odata.id": f"{BLOCKS}/gpu1-7"} not in host["Links"]["ResourceBlocks"]


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"Manifest": {"Stanzas": [specific("a", "sled1")]}}, 400,
     "Base.1.22.ActionParameterMissing"),
    (action("Now", specific("a", "sled1")), 400, "Base.1.22.ActionParameterValueNotInList"),
    ({**action("Apply", specific("a", "sled1")), "RequestFormat": "Yaml"}, 400,
     "Base.1.22.ActionParameterValueNotInList"),
    ({**action("Apply", specific("a", "sled1")), "Force": True}, 400,
     "Base.1.22.ActionParameterUnknown"),
    (action("Apply"), 400, "Base.1.22.ActionParameterMissing"),
    ({**action("Apply"), "Manifest": {"Stanzas": []}}, 400, "Composition.1.1.EmptyManifest"),
    ({**action("Apply"), "Manifest": []}, 400, "Base.1.22.ActionParameterValueTypeError"),
    (action("Apply", {"StanzaType": "ComposeSystem", "StanzaId": "a"}), 400,
     "Composition.1.1.EmptyManifest"),
    (action("Apply", {"StanzaType": "Teleport", "Request": {"x": 1}}), 400,
     "Base.1.22.PropertyValueNotInList"),
    (action("Apply", {"StanzaType": "OEM", "OEMStanzaType": "Anything", "StanzaId": "o",
                      "Request": {"x": 1}}), 400, "Composition.1.1.UnableToProcessStanzaRequest"),
    (action("Apply", {"StanzaType": "ComposeResource", "StanzaId": "r", "Request": {
        "Links": {"SupplyingResourceBlocks": [{"@odata.id": f"{BLOCKS}/gpu1-1"},
                                              {"@odata.id": f"{BLOCKS}/gpu2-1"}]}}}), 400,
     "Composition.1.1.IncompatibleZone"),
    (action("Apply", {"StanzaType": "ComposeResource", "StanzaId": "r", "Request": {
        "Links": {"SupplyingResourceBlocks": [{"@odata.id": f"{BLOCKS}/sled1"}]}}}), 400,
     "Composition.1.1.ResourceBlockInvalid"),
    (action("Apply", {"StanzaType": "ComposeResource", "StanzaId": "r", "Request": {
        "Name": "no blocks"}}), 400, "Base.1.22.PropertyMissing"),
    (action("Apply", {"StanzaType": "DecomposeResource", "StanzaId": "r", "Request": {
        "@odata.id": f"{BLOCKS}/gpu1-1"}}), 400, "Composition.1.1.ResourceBlockInvalid"),
    (action("Preview", specific("a", "sled1"), ReservationId="x"), 400,
     "Base.1.22.ActionParameterValueError"),
    (action("Apply", ReservationId=7), 400, "Base.1.22.ActionParameterValueTypeError"),
    (action("Apply", ReservationId="../../Systems"), 400, "Base.1.22.ActionParameterValueError"),
    (action("Apply", {"StanzaType": "ComposeSystem", "Request": {"Name": "a", "Bios": 1,
                                                                 "Links": {}}}),
     400, "Base.1.22.PropertyUnknown"),
    (action("Apply", {"StanzaType": "DecomposeSystem", "Request": {"@odata.id": 5}}), 400,
     "Base.1.22.PropertyValueTypeError"),
    (action("Apply", {"StanzaType": "DecomposeSystem",
                      "Request": {"@odata.id": "/redfish/v1/Systems/host1"}}), 400,
     "Composition.1.1.ResourceBlockInvalid"),
])
async def test_bad_requests_change_nothing(rf, driver, body, status, message):
    before = await state(rf, *WATCHED)
    got, answer = await post(rf, body)
    assert got == status, answer
    assert message in ids(answer)
    assert await state(rf, *WATCHED) == before
    assert driver.bindings == {}


async def test_compose_needs_configure_manager(rf):
    resp = await rf.post("/redfish/v1/AccountService/Accounts", headers=ADMIN, json={
        "UserName": "op", "Password": OTHER_PASSWORD, "RoleId": "Operator"})
    assert resp.status == 201
    status, body = await post(rf, action("Preview", specific("a", "sled1", "gpu1-1")),
                              basic("op", OTHER_PASSWORD))
    assert status == 403, body
    resp = await rf.patch(SERVICE, json={"ReservationDuration": "PT1M"},
                          headers=basic("op", OTHER_PASSWORD))
    assert resp.status == 403


@pytest.mark.parametrize("value", ["10 minutes", "P", "PT", "", 5, "P1DT"])
async def test_reservation_duration_must_be_an_iso_duration(rf, value):
    resp = await rf.patch(SERVICE, json={"ReservationDuration": value}, headers=ADMIN)
    assert resp.status == 400, await resp.text()
    service = await (await rf.get(SERVICE, headers=ADMIN)).json()
    assert service["ReservationDuration"] == "PT10M"


def check_invariants(rf):
    from redfish_service import services
    from redfish_service.composition.invariants import violations

    store = rf.server.app[services.STORE]
    broken = violations(store.doc, store.members)
    assert not broken, broken


async def test_compose_resource_makes_an_expansion_block_used_as_one(rf, driver):
    inside = ["gpu1-3", "gpu1-4", "nvme1-2"]
    status, body = await post(rf, action("Apply", {
        "StanzaType": "ComposeResource", "StanzaId": "x", "Request": {
            "Name": "two GPUs and a drive", "Links": {"SupplyingResourceBlocks": [
                {"@odata.id": f"{BLOCKS}/{n}"} for n in inside]}}}))
    assert status == 200, body
    made = body["Manifest"]["Stanzas"][0]["Response"]
    uri = made["@odata.id"]
    assert made["ResourceBlockType"] == ["Expansion"] and made["Name"] == "two GPUs and a drive"
    assert made["CompositionStatus"]["CompositionState"] == "Unused"
    assert made["Processors@odata.count"] == 2 and made["Drives@odata.count"] == 1
    assert [z["@odata.id"] for z in made["Links"]["Zones"]] == [f"{SERVICE}/ResourceZones/pcie1"]
    free = [m["@odata.id"] for m in (await (await rf.get(f"{SERVICE}/FreePool",
                                                         headers=ADMIN)).json())["Members"]]
    assert uri in free and not {f"{BLOCKS}/{n}" for n in inside} & set(free)
    for name in inside:
        doc = await block_doc(rf, name)
        assert doc["CompositionStatus"]["CompositionState"] == "Composed"
        assert doc["Links"]["ConsumingResourceBlocks"] == [{"@odata.id": uri}]
    assert driver.bindings == {}
    check_invariants(rf)

    # a host takes it as one block: all its devices are bound to the host
    add = "/redfish/v1/Systems/host1/Actions/ComputerSystem.AddResourceBlock"
    resp = await rf.post(add, json={"ResourceBlock": {"@odata.id": uri}}, headers=ADMIN)
    assert resp.status == 204, await resp.text()
    assert driver.bindings == {n: "host1" for n in inside}
    host = await (await rf.get("/redfish/v1/Systems/host1", headers=ADMIN)).json()
    assert len(host["PCIeDevices"]) == 3
    check_invariants(rf)
    resp = await rf.post(add.replace("Add", "Remove"), json={"ResourceBlock": {"@odata.id": uri}},
                         headers=ADMIN)
    assert resp.status == 204
    assert driver.bindings == {}
    check_invariants(rf)

    # a constrained request can be met by it (two GPUs in one block)
    resp = await rf.post(SYSTEMS, headers=ADMIN, json={
        "Name": "c", "Links": {"ResourceBlocks": [{"@odata.id": uri}]},
        "Processors": {"Members": [{"@Redfish.RequestedCount": 2, "ProcessorType": "GPU"}]}})
    assert resp.status == 201, await resp.text()
    assert driver.bindings == {n: "sled1" for n in inside}
    check_invariants(rf)
    assert (await rf.delete(resp.headers["Location"], headers=ADMIN)).status == 204
    assert driver.bindings == {}

    # dissolved: the devices are free again and the block is gone
    status, body = await post(rf, action("Apply", {
        "StanzaType": "DecomposeResource", "StanzaId": "d", "Request": {"@odata.id": uri}}))
    assert status == 200, body
    assert (await rf.get(uri, headers=ADMIN)).status == 404
    zone = await (await rf.get(f"{SERVICE}/ResourceZones/pcie1", headers=ADMIN)).json()
    assert {"@odata.id": uri} not in zone["Links"]["ResourceBlocks"]
    for name in inside:
        doc = await block_doc(rf, name)
        assert doc["CompositionStatus"]["CompositionState"] == "Unused"
        assert "ConsumingResourceBlocks" not in doc["Links"]


async def test_an_attached_expansion_block_survives_restart(aiohttp_client, settings):
    from redfish_service.app import create_app
    from redfish_service.drivers.simulated import SimulatedDriver

    client = await aiohttp_client(create_app(settings, driver=SimulatedDriver()))
    status, body = await post(client, action("Apply", {
        "StanzaType": "ComposeResource", "StanzaId": "x", "Request": {"Links": {
            "SupplyingResourceBlocks": [{"@odata.id": f"{BLOCKS}/gpu2-7"},
                                        {"@odata.id": f"{BLOCKS}/gpu2-8"}]}}}))
    assert status == 200, body
    uri = body["Manifest"]["Stanzas"][0]["Response"]["@odata.id"]
    resp = await client.post("/redfish/v1/Systems/host3/Actions/ComputerSystem.AddResourceBlock",
                             json={"ResourceBlock": {"@odata.id": uri}}, headers=ADMIN)
    assert resp.status == 204
    await client.close()
    fabric = SimulatedDriver()  # an empty fabric: the service binds what the documents say
    client = await aiohttp_client(create_app(settings, driver=fabric))
    assert fabric.bindings == {"gpu2-7": "host3", "gpu2-8": "host3"}
    check_invariants(client)
