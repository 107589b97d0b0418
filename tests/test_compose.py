"""Composing new systems from a compute sled and devices: POST /Systems, DELETE."""

from __future__ import annotations

import asyncio

import pytest

from .test_expansion import ADD, ADMIN, BLOCKS, REMOVE, block, error_id, state

SYSTEMS = "/redfish/v1/Systems"


def request(*names, name="c1"):
    return {"Name": name, "Links": {"ResourceBlocks": [
        {"@odata.id": f"{BLOCKS}/{n}"} for n in names]}}


async def test_compose_use_and_decompose(rf, driver):
    resp = await rf.post(SYSTEMS, json=request("sled1", "gpu1-1", "nvme1-2", "cxlmem1"),
                         headers=ADMIN)
    assert resp.status == 201, await resp.text()
    uri = resp.headers["Location"]
    body = await resp.json()
    assert body["@odata.id"] == uri and body["SystemType"] == "Composed"
    assert body["Name"] == "c1"
    assert [b["@odata.id"].rsplit("/", 1)[1] for b in body["Links"]["ResourceBlocks"]] == \
        ["sled1", "gpu1-1", "nvme1-2", "cxlmem1"]
    assert resp.headers["ETag"] == body["@odata.etag"]
    assert driver.bindings == {"gpu1-1": "sled1", "nvme1-2": "sled1", "cxlmem1": "sled1"}
    members = [m["@odata.id"] for m in (await (await rf.get(SYSTEMS, headers=ADMIN)).json())
               ["Members"]]
    assert uri in members
    for name in ("sled1", "gpu1-1"):
        doc = await (await rf.get(f"{BLOCKS}/{name}", headers=ADMIN)).json()
        assert doc["CompositionStatus"]["CompositionState"] == "Composed"
        assert doc["Links"]["ComputerSystems"] == [{"@odata.id": uri}]
    allow = (await rf.get(uri, headers=ADMIN)).headers["Allow"]
    assert "DELETE" in allow
    # a composed system grows and shrinks like a host
    system_id = uri.rsplit("/", 1)[1]
    assert (await rf.post(ADD.format(system_id), json=block("dpu1-1"), headers=ADMIN)).status \
        == 204
    assert driver.bindings["dpu1-1"] == "sled1"
    resp = await rf.post(REMOVE.format(system_id), json=block("sled1"), headers=ADMIN)
    assert resp.status == 400  # not its own compute block
    assert (await rf.post(REMOVE.format(system_id), json=block("dpu1-1"), headers=ADMIN)
            ).status == 204

    resp = await rf.delete(uri, headers=ADMIN)
    assert resp.status == 204
    assert (await rf.get(uri, headers=ADMIN)).status == 404
    assert driver.bindings == {}
    free = await (await rf.get("/redfish/v1/CompositionService/FreePool", headers=ADMIN)).json()
    assert free["Members@odata.count"] == 38


async def test_physical_hosts_cannot_be_deleted(rf):
    resp = await rf.delete(f"{SYSTEMS}/host1", headers=ADMIN)
    assert resp.status == 405
    assert "DELETE" not in resp.headers["Allow"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (request("gpu1-1", "nvme1-1"), 400, "Composition.1.1.ResourceBlockInvalid"),  # no sled
        (request("sled1", "sled2"), 400, "Composition.1.1.ResourceBlockInvalid"),
        (request("sled1", "system-host1"), 400, "Composition.1.1.ResourceBlockInvalid"),
        (request("sled1", "gpu2-1"), 400, "Composition.1.1.IncompatibleZone"),
        (request("sled1", "nope"), 400, "Composition.1.1.ResourceBlockNotFound"),
        ({"Links": {"ResourceBlocks": []}, "Name": "x"}, 400, "Base.1.22.PropertyMissing"),
        ({"Name": "x"}, 400, "Base.1.22.PropertyMissing"),
        ({**request("sled1"), "BiosVersion": "1.0"}, 400, "Base.1.22.PropertyUnknown"),
        ({**request("sled1"), "Name": 5}, 400, "Base.1.22.PropertyValueTypeError"),
    ],
)
async def test_refused_compositions_change_nothing(rf, driver, body, status, message):
    watched = (SYSTEMS, f"{BLOCKS}/sled1", f"{BLOCKS}/gpu1-1",
               "/redfish/v1/CompositionService/FreePool")
    before = await state(rf, *watched)
    resp = await rf.post(SYSTEMS, json=body, headers=ADMIN)
    assert resp.status == status, await resp.text()
    assert await error_id(resp) == message
    assert await state(rf, *watched) == before
    assert driver.bindings == {}


async def test_blocks_in_use_cannot_be_composed_again(rf, driver):
    assert (await rf.post(ADD.format("host1"), json=block("gpu1-2"), headers=ADMIN)).status \
        == 204
    resp = await rf.post(SYSTEMS, json=request("sled1", "gpu1-2"), headers=ADMIN)
    assert resp.status == 409
    assert await error_id(resp) == "Composition.1.1.ResourceBlockInUse"
    assert (await rf.post(SYSTEMS, json=request("sled1"), headers=ADMIN)).status == 201
    resp = await rf.post(SYSTEMS, json=request("sled1", "gpu1-3"), headers=ADMIN)
    assert resp.status == 409  # the sled is taken now


async def test_driver_failure_undoes_the_bindings_already_made(rf, driver):
    driver.down.add("nvme1-3")
    watched = (SYSTEMS, f"{BLOCKS}/sled1", f"{BLOCKS}/gpu1-4", f"{BLOCKS}/nvme1-3")
    before = await state(rf, *watched)
    resp = await rf.post(SYSTEMS, json=request("sled1", "gpu1-4", "nvme1-3"), headers=ADMIN)
    assert resp.status == 503
    assert driver.bindings == {}
    after = await state(rf, *watched)
    assert {u: {k: v for k, v in d.items() if k != "@odata.etag"} for u, (_, d) in after.items()} \
        == {u: {k: v for k, v in d.items() if k != "@odata.etag"} for u, (_, d) in before.items()}


async def test_racing_compositions_share_nothing(rf, driver):
    results = await asyncio.gather(*(
        rf.post(SYSTEMS, json=request(sled, "gpu1-5", "cxlmem3", name=f"r{i}"), headers=ADMIN)
        for i, sled in enumerate(["sled1", "sled1", "sled2", "sled2"] * 3)))
    created = [r for r in results if r.status == 201]
    assert len(created) == 1, [r.status for r in results]
    assert all(r.status in (400, 409) for r in results if r.status != 201)


async def test_readonly_cannot_compose_or_delete(rf):
    resp = await rf.post("/redfish/v1/AccountService/Accounts", headers=ADMIN,
                         json={"UserName": "ro", "Password": "Passw0rd-x", "RoleId": "ReadOnly"})
    assert resp.status == 201
    from .conftest import basic

    ro = basic("ro", "Passw0rd-x")
    assert (await rf.post(SYSTEMS, json=request("sled2"), headers=ro)).status == 403
    uri = (await rf.post(SYSTEMS, json=request("sled2"), headers=ADMIN)).headers["Location"]
    assert (await rf.delete(uri, headers=ro)).status == 403
    assert (await rf.get(uri, headers=ADMIN)).status == 200


async def test_decompose_honours_if_match(rf, driver):
    resp = await rf.post(SYSTEMS, json=request("sled2", "gpu2-2"), headers=ADMIN)
    uri = resp.headers["Location"]
    assert (await rf.delete(uri, headers={**ADMIN, "If-Match": '"1"'})).status == 412
    assert driver.bindings == {"gpu2-2": "sled2"}
    etag = (await rf.get(uri, headers=ADMIN)).headers["ETag"]
    assert (await rf.delete(uri, headers={**ADMIN, "If-Match": etag})).status == 204
    assert driver.bindings == {}
