"""Constrained and mixed composition: POST /Systems describing resources, not blocks."""

from __future__ import annotations

import pytest

from redfish_service.composition import constraints

from .test_expansion import ADMIN, BLOCKS, state

SYSTEMS = "/redfish/v1/Systems"
SERVICE = "/redfish/v1/CompositionService"
GPU_MEMORY = 81920
NVME_BYTES = 3_840_755_982_336


def first_id(body):
    return body["error"]["@Message.ExtendedInfo"][0]["MessageId"]


def gpus(count, **extra):
    return {"Members": [{"@Redfish.RequestedCount": count, "ProcessorType": "GPU", **extra}]}


async def blocks_of(rf, uri):
    doc = await (await rf.get(uri, headers=ADMIN)).json()
    return [b["@odata.id"].rsplit("/", 1)[1] for b in doc["Links"]["ResourceBlocks"]]


async def compose(rf, body):
    resp = await rf.post(SYSTEMS, json={"Name": "c", **body}, headers=ADMIN)
    return resp, await resp.json()


async def test_two_gpus_and_a_drive_in_the_zone_asked_for(rf, driver):
    resp, body = await compose(rf, {
        "@Redfish.ZoneAffinity": "pcie2",
        "Processors": gpus(2),
        "Storage": {"Members": [{"Drives": [{"@Redfish.RequestedCount": 1,
                                             "CapacityBytes": NVME_BYTES}]}]},
    })
    assert resp.status == 201, body
    chosen = await blocks_of(rf, resp.headers["Location"])
    assert chosen == ["sled2", "gpu2-1", "gpu2-2", "nvme2-1"]
    assert driver.bindings == {"gpu2-1": "sled2", "gpu2-2": "sled2", "nvme2-1": "sled2"}
    # the next request gets the next free blocks, never the same ones
    resp, body = await compose(rf, {"Processors": gpus(1)})
    assert resp.status == 201, body
    assert await blocks_of(rf, resp.headers["Location"]) == ["sled1", "gpu1-1"]


async def test_mixed_request_keeps_the_named_blocks(rf, driver):
    resp, body = await compose(rf, {
        "Links": {"ResourceBlocks": [{"@odata.id": f"{BLOCKS}/gpu1-5"}]},
        "Processors": gpus(2),
    })
    assert resp.status == 201, body
    # the named GPU counts towards the two asked for; the sled comes from its zone
    assert await blocks_of(rf, resp.headers["Location"]) == ["gpu1-5", "sled1", "gpu1-1"]


async def test_cpu_and_memory_constraints_pick_the_compute_block(rf):
    resp, body = await compose(rf, {
        "Processors": {"Members": [{"@Redfish.RequestedCount": 1, "ProcessorType": "CPU",
                                    "TotalCores": 16}]},
        "Memory": {"Members": [{"@Redfish.RequestedCount": 2, "MemoryType": "DRAM",
                                "CapacityMiB": 262144}]},
    })
    assert resp.status == 201, body
    # the sled's own DRAM is one of the two; a CXL memory device is the other
    assert await blocks_of(rf, resp.headers["Location"]) == ["sled1", "cxlmem1"]


async def test_overprovisioning_is_needed_for_more_than_asked(rf):
    ask = {"Processors": {"Members": [{"@Redfish.RequestedCount": 1, "ProcessorType": "CPU",
                                       "TotalCores": 8}]}}
    resp, body = await compose(rf, ask)
    assert resp.status == 409 and first_id(body) == "Composition.1.1.NoResourceMatch", body
    ask["Processors"]["Members"][0]["@Redfish.AllowOverprovisioning"] = True
    resp, body = await compose(rf, ask)
    assert resp.status == 201, body  # a 16-core sled for 8 cores asked
    # ...unless the service forbids it
    resp = await rf.patch(SERVICE, json={"AllowOverprovisioning": False}, headers=ADMIN)
    assert resp.status == 200
    resp, body = await compose(rf, ask)
    assert resp.status == 409 and first_id(body) == "Composition.1.1.NoResourceMatch"


async def test_gpu_memory_at_least_with_overprovisioning(rf):
    ask = {"Processors": gpus(1, ProcessorMemory=[{"CapacityMiB": 40960}])}
    resp, body = await compose(rf, ask)
    assert resp.status == 409, body
    ask["@Redfish.AllowOverprovisioning"] = True
    resp, body = await compose(rf, ask)
    assert resp.status == 201, body


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"Processors": gpus(9)}, 409, "Composition.1.1.NoResourceMatch"),
    ({"Processors": gpus(1, Manufacturer="Nobody")}, 409, "Composition.1.1.NoResourceMatch"),
    ({"@Redfish.ZoneAffinity": "nowhere", "Processors": gpus(1)}, 400,
     "Base.1.22.PropertyValueNotInList"),
    ({"Processors": gpus(0)}, 400, "Base.1.22.PropertyValueIncorrect"),
    ({"Processors": {"Members": [{"@Redfish.RequestedCount": "2"}]}}, 400,
     "Base.1.22.PropertyValueIncorrect"),
    ({"Processors": [1]}, 400, "Base.1.22.PropertyValueTypeError"),
    ({"Processors": {"Members": ["GPU"]}}, 400, "Base.1.22.PropertyValueTypeError"),
    ({"Processors": gpus(1, **{"@Redfish.AllowOverprovisioning": "yes"})}, 400,
     "Base.1.22.PropertyValueTypeError"),
    ({"@Redfish.ZoneAffinity": "pcie1", "Processors": gpus(1),
      "Links": {"ResourceBlocks": [{"@odata.id": f"{BLOCKS}/gpu2-1"}]}}, 400,
     "Composition.1.1.IncompatibleZone"),
])
async def test_refused_constrained_requests_change_nothing(rf, driver, body, status, message):
    watched = (SYSTEMS, f"{BLOCKS}/sled1", f"{BLOCKS}/gpu1-1", f"{SERVICE}/FreePool")
    before = await state(rf, *watched)
    resp, answer = await compose(rf, body)
    assert resp.status == status, answer
    assert message in [m["MessageId"] for m in answer["error"]["@Message.ExtendedInfo"]]
    assert await state(rf, *watched) == before
    assert driver.bindings == {}


async def test_no_compute_block_left_is_no_match(rf):
    for _ in range(2):
        resp, body = await compose(rf, {"Processors": gpus(1)})
        assert resp.status == 201, body
    resp, body = await compose(rf, {"Processors": gpus(1)})
    assert resp.status == 409 and first_id(body) == "Composition.1.1.NoResourceMatch"
    assert body["error"]["@Message.ExtendedInfo"][0]["MessageArgs"] == ["Compute"]


def test_matching_rules():
    need = constraints.Need("Drives", "Drive", 1, (("CapacityBytes", 100),), False, "/")
    assert need.matches({"CapacityBytes": 100})
    assert not need.matches({"CapacityBytes": 200})
    assert not need.matches({"CapacityBytes": True})
    over = constraints.Need("Drives", "Drive", 1, (("CapacityBytes", 100),), True, "/")
    assert over.matches({"CapacityBytes": 200}) and not over.matches({"CapacityBytes": 99})
    nested = constraints.Need("Processors", "Processor", 1,
                              (("ProcessorMemory", [{"CapacityMiB": 8}]),), True, "/")
    assert nested.matches({"ProcessorMemory": [{"CapacityMiB": 4}, {"CapacityMiB": 16}]})
    assert not nested.matches({"ProcessorMemory": [{"CapacityMiB": 4}]})
    assert not nested.matches({})
