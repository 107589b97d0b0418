"""Fault injection in the simulated driver and device events applied to the documents.

Faults come from the rack file (``faults:``) or the Manager's OEM action; device events
(failure, surprise removal, link flap) change blocks, contained resources, endpoints and
system health; composition refuses what is not healthy and leaves nothing half-done.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from redfish_service import services
from redfish_service.app import create_app
from redfish_service.cli import _driver
from redfish_service.config import ConfigError
from redfish_service.drivers.contract import (
    BindingDriver,
    DeviceCondition,
    DeviceFailed,
    DeviceNotFound,
    DriverTimeout,
    EventKind,
    Fault,
    InvalidFault,
    InventoryDriver,
    LinkDown,
)
from redfish_service.drivers.simulated import RackSpec, SimulatedDriver, default_rack
from redfish_service.store import MemoryBackend

from .test_expansion import ADD, ADMIN, BLOCKS, REMOVE, block, error_id

MANAGER = "/redfish/v1/Managers/Composer"
INJECT = f"{MANAGER}/Actions/Oem/RedfishComposer.InjectFault"
CLEAR = f"{MANAGER}/Actions/Oem/RedfishComposer.ClearFaults"
SYSTEMS = "/redfish/v1/Systems"
FREE_POOL = "/redfish/v1/CompositionService/FreePool"
TIMEOUT_S = 0.3


@pytest.fixture
def settings(settings):
    """Driver operations are abandoned quickly, so a hung bind costs a fraction of a second."""
    return settings.model_copy(update={"driver_timeout_s": TIMEOUT_S})


async def get(client, uri):
    resp = await client.get(uri, headers=ADMIN)
    assert resp.status == 200, (uri, resp.status)
    return await resp.json()


async def free(client) -> set[str]:
    return {m["@odata.id"].rsplit("/", 1)[1] for m in (await get(client, FREE_POOL))["Members"]}


async def until(check, within: float = 3.0):
    """Poll ``check`` (async, returns a truthy value when done) until it holds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def state_of(doc) -> str:
    return doc["CompositionStatus"]["CompositionState"]


async def block_is(client, name, state, health):
    doc = await get(client, f"{BLOCKS}/{name}")
    return doc if state_of(doc) == state and doc["Status"]["Health"] == health else None


async def inject(client, **body):
    resp = await client.post(INJECT, json=body, headers=ADMIN)
    assert resp.status == 204, await resp.text()


async def clear(client, **body):
    resp = await client.post(CLEAR, json=body, headers=ADMIN)
    assert resp.status == 204, await resp.text()


def compose_body(*names):
    return {"Name": "c1", "Links": {"ResourceBlocks": [{"@odata.id": f"{BLOCKS}/{n}"}
                                                       for n in names]}}


# -- bind faults --------------------------------------------------------------------------


async def test_bind_fails_once_then_binds(rf, driver):
    await inject(rf, Kind="bind_fails", Device="gpu1-3", Times=1)
    resp = await rf.post(ADD.format("host1"), json=block("gpu1-3"), headers=ADMIN)
    assert resp.status == 503 and resp.headers["Retry-After"]
    assert await error_id(resp) == "Base.1.22.ServiceTemporarilyUnavailable"
    doc = await get(rf, f"{BLOCKS}/gpu1-3")
    assert state_of(doc) == "Unused" and doc["Status"]["Health"] == "OK"
    assert "gpu1-3" in await free(rf) and driver.bindings == {}
    assert driver.faults() == []  # used up
    resp = await rf.post(ADD.format("host1"), json=block("gpu1-3"), headers=ADMIN)
    assert resp.status == 204, await resp.text()
    assert driver.bindings == {"gpu1-3": "host1"}


async def test_bind_fails_permanently_is_a_conflict(rf, driver):
    await inject(rf, Kind="bind_fails", Device="nvme1-2", Error="DeviceFailed")
    for _ in range(2):  # no Times: every bind of it fails
        resp = await rf.post(ADD.format("host2"), json=block("nvme1-2"), headers=ADMIN)
        assert resp.status == 409
        assert await error_id(resp) == "Composition.1.1.ResourceBlockInvalid"
    assert state_of(await get(rf, f"{BLOCKS}/nvme1-2")) == "Unused"
    assert driver.bindings == {}
    # a rule for one host leaves the other alone
    await clear(rf)
    await inject(rf, Kind="bind_fails", Host="host2")
    assert (await rf.post(ADD.format("host1"), json=block("nvme1-2"), headers=ADMIN)
            ).status == 204
    assert (await rf.post(ADD.format("host2"), json=block("nvme1-3"), headers=ADMIN)
            ).status == 503
    assert driver.bindings == {"nvme1-2": "host1"}


async def test_bind_hang_is_abandoned_and_undone(rf, driver):
    await inject(rf, Kind="bind_hangs", Device="gpu1-4", Times=1)
    started = asyncio.get_running_loop().time()
    resp = await rf.post(ADD.format("host1"), json=block("gpu1-4"), headers=ADMIN)
    took = asyncio.get_running_loop().time() - started
    assert resp.status == 503 and "Retry-After" in resp.headers
    assert TIMEOUT_S <= took < TIMEOUT_S + 2
    assert state_of(await get(rf, f"{BLOCKS}/gpu1-4")) == "Unused"
    assert "gpu1-4" in await free(rf) and driver.bindings == {}
    resp = await rf.post(ADD.format("host1"), json=block("gpu1-4"), headers=ADMIN)
    assert resp.status == 204 and driver.bindings == {"gpu1-4": "host1"}


async def test_hang_in_a_composition_undoes_the_devices_already_bound(rf, driver):
    await inject(rf, Kind="bind_hangs", Device="gpu1-2")
    resp = await rf.post(SYSTEMS, json=compose_body("sled1", "gpu1-1", "gpu1-2"),
                         headers=ADMIN)
    assert resp.status == 503
    assert driver.bindings == {}
    assert {"sled1", "gpu1-1", "gpu1-2"} <= await free(rf)
    members = (await get(rf, SYSTEMS))["Members"]
    assert not [m for m in members if "composed-" in m["@odata.id"]]


async def test_probability_draws_repeat_with_the_seed():
    async def run(seed: int) -> list[bool]:
        rack = default_rack()
        rack.bind_latency_s = 0
        rack.faults.seed = seed
        driver = SimulatedDriver(rack)
        await driver.inject(Fault(kind="bind_fails", probability=0.5))
        outcomes = []
        for n in range(1, 9):
            for device in (f"gpu1-{n}", f"gpu2-{n}"):
                host = "host1" if device.startswith("gpu1") else "host3"
                try:
                    await driver.bind(device, host)
                    outcomes.append(True)
                except LinkDown:
                    outcomes.append(False)
        return outcomes

    first, again, other = await run(7), await run(7), await run(8)
    assert first == again
    assert True in first and False in first
    assert first != other


async def test_reseeding_through_clear_repeats_a_run(rf, driver):
    async def attempts() -> list[int]:
        await clear(rf, Seed=42)
        await inject(rf, Kind="bind_fails", Probability=0.5)
        out = []
        for name in ("gpu1-5", "gpu1-6", "gpu1-7", "gpu1-8", "nvme1-1", "nvme1-2"):
            resp = await rf.post(ADD.format("host2"), json=block(name), headers=ADMIN)
            out.append(resp.status)
            if resp.status == 204:
                assert (await rf.post(REMOVE.format("host2"), json=block(name),
                                      headers=ADMIN)).status == 204
        return out

    first = await attempts()
    assert set(first) == {204, 503}
    assert await attempts() == first
    await clear(rf)
    assert driver.bindings == {}


# -- device events ------------------------------------------------------------------------


async def test_failure_of_a_free_device(rf, driver):
    await inject(rf, Kind="device_failure", Device="gpu1-5")
    doc = await until(lambda: block_is(rf, "gpu1-5", "Unavailable", "Critical"))
    assert doc["Status"] == {"State": "UnavailableOffline", "Health": "Critical"}
    gpu = await get(rf, f"{BLOCKS}/gpu1-5/Processors/GPU0")
    assert gpu["Status"]["Health"] == "Critical"
    endpoint = await get(rf, "/redfish/v1/Fabrics/PCIe/Endpoints/gpu1-5")
    assert endpoint["Status"] == {"State": "UnavailableOffline", "Health": "Critical"}
    assert "gpu1-5" not in await free(rf)
    # neither expansion nor composition may take it
    resp = await rf.post(ADD.format("host1"), json=block("gpu1-5"), headers=ADMIN)
    assert resp.status == 409
    assert await error_id(resp) == "Composition.1.1.ResourceBlockInUse"
    resp = await rf.post(SYSTEMS, json=compose_body("sled1", "gpu1-5"), headers=ADMIN)
    assert resp.status == 409
    assert driver.bindings == {}

    await clear(rf, Device="gpu1-5")
    doc = await until(lambda: block_is(rf, "gpu1-5", "Unused", "OK"))
    assert doc["Status"] == {"State": "Enabled", "Health": "OK"}
    endpoint = await get(rf, "/redfish/v1/Fabrics/PCIe/Endpoints/gpu1-5")
    assert endpoint["Status"]["Health"] == "OK"
    assert "gpu1-5" in await free(rf)
    assert (await rf.post(ADD.format("host1"), json=block("gpu1-5"), headers=ADMIN)
            ).status == 204


async def test_failure_of_a_composed_device_keeps_it_composed(rf, driver):
    assert (await rf.post(ADD.format("host1"), json=block("gpu1-1"), headers=ADMIN)
            ).status == 204
    await inject(rf, Kind="device_failure", Device="gpu1-1")
    doc = await until(lambda: block_is(rf, "gpu1-1", "Composed", "Critical"))
    assert doc["Links"]["ComputerSystems"] == [{"@odata.id": f"{SYSTEMS}/host1"}]
    host = await get(rf, f"{SYSTEMS}/host1")
    assert host["Status"]["Health"] == "Critical"
    assert host["Status"]["HealthRollup"] == "Critical"
    assert (await get(rf, f"{SYSTEMS}/host2"))["Status"] == {"State": "Enabled", "Health": "OK"}
    assert driver.bindings == {"gpu1-1": "host1"}
    # the admin takes it out: it does not go back to the free pool while broken
    assert (await rf.post(REMOVE.format("host1"), json=block("gpu1-1"), headers=ADMIN)
            ).status == 204
    await until(lambda: block_is(rf, "gpu1-1", "Unavailable", "Critical"))
    assert "gpu1-1" not in await free(rf)
    host = await get(rf, f"{SYSTEMS}/host1")
    assert host["Status"] == {"State": "Enabled", "Health": "OK"}
    assert driver.bindings == {}
    await clear(rf)
    await until(lambda: block_is(rf, "gpu1-1", "Unused", "OK"))
    assert "gpu1-1" in await free(rf)


async def test_surprise_removal_of_a_composed_device(rf, driver):
    resp = await rf.post(SYSTEMS, json=compose_body("sled1", "gpu1-2", "nvme1-1"),
                         headers=ADMIN)
    assert resp.status == 201, await resp.text()
    system = resp.headers["Location"]
    await inject(rf, Kind="surprise_removal", Device="gpu1-2")
    doc = await until(lambda: block_is(rf, "gpu1-2", "Composed", "Critical"))
    assert doc["Status"]["State"] == "Absent"
    assert doc["Links"]["ComputerSystems"] == [{"@odata.id": system}]
    composed = await get(rf, system)
    assert {"@odata.id": f"{BLOCKS}/gpu1-2"} in composed["Links"]["ResourceBlocks"]
    assert composed["Status"]["HealthRollup"] == "Critical"
    assert driver.bindings == {"gpu1-2": "sled1", "nvme1-1": "sled1"}  # link kept
    # binding the gone device again is refused by the driver
    with pytest.raises(DeviceNotFound):
        await driver.bind("gpu1-2", "sled1")
    # the admin decomposes; the gone device stays out of the free pool
    assert (await rf.delete(system, headers=ADMIN)).status == 204
    doc = await until(lambda: block_is(rf, "gpu1-2", "Unavailable", "Critical"))
    assert doc["Status"]["State"] == "Absent"
    assert driver.bindings == {}
    assert {"sled1", "nvme1-1"} <= await free(rf) and "gpu1-2" not in await free(rf)
    await clear(rf, Device="gpu1-2")  # plugged back in
    await until(lambda: block_is(rf, "gpu1-2", "Unused", "OK"))


async def test_surprise_removal_of_a_free_device(rf, driver):
    await inject(rf, Kind="surprise_removal", Device="cxlmem2")
    doc = await until(lambda: block_is(rf, "cxlmem2", "Unavailable", "Critical"))
    assert doc["Status"]["State"] == "Absent"
    endpoint = await get(rf, "/redfish/v1/Fabrics/CXL/Endpoints/cxlmem2")
    assert endpoint["Status"]["State"] == "Absent"
    resp = await rf.post(ADD.format("host4"), json=block("cxlmem2"), headers=ADMIN)
    assert resp.status == 409
    # it is still in the inventory (a gone device's block is not deleted behind a client)
    assert (await rf.get(f"{BLOCKS}/cxlmem2", headers=ADMIN)).status == 200
    await clear(rf)
    await until(lambda: block_is(rf, "cxlmem2", "Unused", "OK"))


async def test_link_flap_comes_back_by_itself(rf, driver):
    await inject(rf, Kind="link_flap", Device="nvme1-3", DurationSeconds=0.4)
    doc = await until(lambda: block_is(rf, "nvme1-3", "Unavailable", "Warning"), within=0.3)
    assert doc["Status"]["State"] == "UnavailableOffline"
    resp = await rf.post(ADD.format("host1"), json=block("nvme1-3"), headers=ADMIN)
    assert resp.status == 409
    await until(lambda: block_is(rf, "nvme1-3", "Unused", "OK"))
    assert (await rf.post(ADD.format("host1"), json=block("nvme1-3"), headers=ADMIN)
            ).status == 204
    assert driver.bindings == {"nvme1-3": "host1"}


async def test_link_flap_of_a_composed_device_is_a_warning(rf, driver):
    assert (await rf.post(ADD.format("host3"), json=block("dpu2-1"), headers=ADMIN)
            ).status == 204
    await inject(rf, Kind="link_flap", Device="dpu2-1", DurationSeconds=60)
    await until(lambda: block_is(rf, "dpu2-1", "Composed", "Warning"))
    host = await get(rf, f"{SYSTEMS}/host3")
    assert host["Status"]["HealthRollup"] == "Warning"
    # a failure on top is worse; the link coming back leaves the failure
    await inject(rf, Kind="device_failure", Device="dpu2-1")
    await until(lambda: block_is(rf, "dpu2-1", "Composed", "Critical"))
    await clear(rf, Device="dpu2-1")
    await until(lambda: block_is(rf, "dpu2-1", "Composed", "OK"))
    host = await get(rf, f"{SYSTEMS}/host3")
    assert host["Status"] == {"State": "Enabled", "Health": "OK"}
    assert driver.bindings == {"dpu2-1": "host3"}


async def test_driver_events_and_refusals():
    rack = default_rack()
    rack.bind_latency_s = 0
    driver = SimulatedDriver(rack)
    events = driver.events()
    await driver.bind("gpu1-1", "host1")
    await driver.inject(Fault(kind="link_flap", device="gpu1-2", duration_s=0.05))
    with pytest.raises(LinkDown):
        await driver.bind("gpu1-2", "host1")
    await driver.inject(Fault(kind="device_failure", device="gpu1-1"))
    with pytest.raises(DeviceFailed):
        await driver.bind("gpu1-1", "host1")  # even where already bound
    await driver.inject(Fault(kind="device_failure", device="gpu1-1"))  # no news: no event
    await driver.unbind("gpu1-1", "host1")  # always possible
    await driver.inject(Fault(kind="surprise_removal", device="gpu1-3"))
    with pytest.raises(DeviceNotFound):
        await driver.bind("gpu1-3", "host1")
    got = [await asyncio.wait_for(anext(events), 1) for _ in range(4)]
    assert [(e.kind, e.device_id) for e in got] == [
        (EventKind.LINK_DOWN, "gpu1-2"), (EventKind.DEVICE_FAILED, "gpu1-1"),
        (EventKind.DEVICE_REMOVED, "gpu1-3"), (EventKind.LINK_UP, "gpu1-2")]
    assert got[1].condition == DeviceCondition(failed=True)
    assert got[3].condition.nominal
    assert await driver.conditions() == {"gpu1-1": DeviceCondition(failed=True),
                                         "gpu1-3": DeviceCondition(present=False)}
    await driver.clear()
    assert await driver.conditions() == {}
    cleared = {(e.kind, e.device_id) for e in
               [await asyncio.wait_for(anext(events), 1) for _ in range(2)]}
    assert cleared == {(EventKind.DEVICE_RESTORED, "gpu1-1"),
                       (EventKind.DEVICE_INSERTED, "gpu1-3")}
    await events.aclose()
    with pytest.raises(DeviceNotFound):
        await driver.inject(Fault(kind="device_failure", device="nope"))


async def test_hung_bind_undoes_itself_when_cancelled():
    driver = SimulatedDriver()
    await driver.inject(Fault(kind="bind_hangs", device="gpu1-1", times=1,
                                     duration_s=0.05))
    with pytest.raises(DriverTimeout):
        await driver.bind("gpu1-1", "host1")  # the driver's own limit, if nobody waits less
    await driver.inject(Fault(kind="bind_hangs", device="gpu1-1", times=1))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(driver.bind("gpu1-1", "host1"), 0.05)
    assert driver.bindings == {}
    await driver.bind("gpu1-1", "host1")  # port lock released, rules used up
    assert driver.bindings == {"gpu1-1": "host1"}


# -- the admin action ---------------------------------------------------------------------


async def test_manager_advertises_the_fault_actions(rf):
    manager = await get(rf, MANAGER)
    oem = manager["Actions"]["Oem"]
    assert oem["#RedfishComposer.InjectFault"]["target"] == INJECT
    assert oem["#RedfishComposer.ClearFaults"]["target"] == CLEAR
    info = await get(rf, oem["#RedfishComposer.InjectFault"]["@Redfish.ActionInfo"])
    assert info["@odata.type"].startswith("#ActionInfo.")
    params = {p["Name"]: p for p in info["Parameters"]}
    assert params["Kind"]["Required"] is True
    assert params["Kind"]["AllowableValues"] == [
        "bind_fails", "bind_hangs", "link_flap", "surprise_removal", "device_failure"]
    assert params["Device"]["Required"] is False
    assert (await get(rf, oem["#RedfishComposer.ClearFaults"]["@Redfish.ActionInfo"])
            )["Parameters"]


@pytest.mark.parametrize(("body", "message"), [
    ({}, "ActionParameterMissing"),
    ({"Device": "gpu1-1"}, "ActionParameterMissing"),
    ({"Kind": "device_failure"}, "ActionParameterMissing"),
    ({"Kind": "bind_fails", "Colour": "red"}, "ActionParameterUnknown"),
    ({"Kind": "explode", "Device": "gpu1-1"}, "ActionParameterValueNotInList"),
    ({"Kind": "bind_fails", "Device": "gpu9-9"}, "ActionParameterValueNotInList"),
    ({"Kind": "bind_fails", "Host": "host9"}, "ActionParameterValueNotInList"),
    ({"Kind": "bind_fails", "Error": "Oops"}, "ActionParameterValueNotInList"),
    ({"Kind": 3}, "ActionParameterValueTypeError"),
    ({"Kind": "bind_fails", "Times": "1"}, "ActionParameterValueTypeError"),
    ({"Kind": "bind_fails", "Times": 1.5}, "ActionParameterValueTypeError"),
    ({"Kind": "bind_fails", "Probability": True}, "ActionParameterValueTypeError"),
    ({"Kind": "bind_fails", "Device": ["gpu1-1"]}, "ActionParameterValueTypeError"),
    ({"Kind": "bind_fails", "Times": 0}, "ActionParameterValueError"),
    ({"Kind": "bind_fails", "Probability": 1.5}, "ActionParameterValueError"),
    ({"Kind": "bind_fails", "Probability": 0}, "ActionParameterValueError"),
    ({"Kind": "bind_hangs", "DurationSeconds": -1}, "ActionParameterValueError"),
    ({"Kind": "link_flap", "Device": "gpu1-1", "Times": 2}, "ActionParameterValueError"),
    ({"Kind": "bind_hangs", "Error": "DeviceFailed"}, "ActionParameterValueError"),
    ({"Kind": "device_failure", "Device": "gpu1-1", "DurationSeconds": 1},
     "ActionParameterValueError"),
])
async def test_bad_fault_requests_change_nothing(rf, driver, body, message):
    before = await rf.get(MANAGER, headers=ADMIN)
    resp = await rf.post(INJECT, json=body, headers=ADMIN)
    assert resp.status == 400, await resp.text()
    assert await error_id(resp) == f"Base.1.22.{message}"
    assert driver.faults() == [] and await driver.conditions() == {}
    after = await rf.get(MANAGER, headers=ADMIN)
    assert after.headers["ETag"] == before.headers["ETag"]
    assert (await rf.post(ADD.format("host1"), json=block("gpu1-1"), headers=ADMIN)
            ).status == 204


@pytest.mark.parametrize(("body", "message"), [
    ({"Device": "gpu9-9"}, "ActionParameterValueNotInList"),
    ({"Device": 1}, "ActionParameterValueTypeError"),
    ({"Seed": "x"}, "ActionParameterValueTypeError"),
    ({"Everything": True}, "ActionParameterUnknown"),
])
async def test_bad_clear_requests_change_nothing(rf, driver, body, message):
    await inject(rf, Kind="bind_fails", Device="gpu1-1")
    resp = await rf.post(CLEAR, json=body, headers=ADMIN)
    assert resp.status == 400
    assert await error_id(resp) == f"Base.1.22.{message}"
    assert len(driver.faults()) == 1


async def test_malformed_bodies_are_refused(rf, driver):
    for raw in (b"[1]", b"{nope"):
        resp = await rf.post(INJECT, data=raw, headers={**ADMIN,
                                                        "Content-Type": "application/json"})
        assert resp.status == 400
        assert await error_id(resp) == "Base.1.22.MalformedJSON"
    assert driver.faults() == []


@pytest.mark.parametrize("role", ["Operator", "ReadOnly"])
async def test_only_managers_inject_faults(rf, driver, role):
    password = "User-passw0rd"
    resp = await rf.post("/redfish/v1/AccountService/Accounts", headers=ADMIN,
                         json={"UserName": "someone", "Password": password, "RoleId": role})
    assert resp.status == 201
    from .conftest import basic

    user = basic("someone", password)
    for uri, body in ((INJECT, {"Kind": "device_failure", "Device": "gpu1-1"}), (CLEAR, {})):
        resp = await rf.post(uri, json=body, headers=user)
        assert resp.status == 403
        assert await error_id(resp) == "Base.1.22.InsufficientPrivilege"
    assert await driver.conditions() == {}
    assert state_of(await get(rf, f"{BLOCKS}/gpu1-1")) == "Unused"


class PlainDriver(InventoryDriver, BindingDriver):
    """A driver without events or fault injection (most real ones)."""

    def __init__(self) -> None:
        self._inner = SimulatedDriver()

    async def discover(self):
        return await self._inner.discover()

    async def bind(self, device_id, host_id):
        await self._inner.bind(device_id, host_id)

    async def unbind(self, device_id, host_id):
        await self._inner.unbind(device_id, host_id)


async def test_drivers_without_fault_injection_refuse_the_action(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings, backend=MemoryBackend(),
                                             driver=PlainDriver()))
    manager = await get(client, MANAGER)
    assert "Oem" not in manager.get("Actions", {})
    resp = await client.post(INJECT, json={"Kind": "bind_fails"}, headers=ADMIN)
    assert resp.status == 400
    assert await error_id(resp) == "Base.1.22.ActionNotSupported"
    assert (await client.get(f"{MANAGER}/InjectFaultActionInfo", headers=ADMIN)).status == 404
    resp = await client.post(ADD.format("host1"), json=block("gpu1-1"), headers=ADMIN)
    assert resp.status == 204


# -- the rack file ------------------------------------------------------------------------


def rack_with(*rules, seed=0) -> dict:
    rack = default_rack().model_dump()
    rack["faults"] = {"seed": seed, "rules": list(rules)}
    return rack


@pytest.mark.parametrize(("rules", "mention"), [
    ([{"kind": "bind_fails", "colour": "red"}], "colour"),
    ([{"kind": "meltdown"}], "kind"),
    ([{"kind": "bind_fails", "device": "gpu9-9"}], "no device gpu9-9"),
    ([{"kind": "bind_fails", "host": "host9"}], "no host host9"),
    ([{"kind": "device_failure"}], "needs a device"),
    ([{"kind": "bind_fails", "probability": 2}], "probability"),
    ([{"kind": "bind_fails", "times": 0}], "times"),
    ([{"kind": "link_flap", "device": "gpu1-1", "times": 1}], "does not apply"),
])
def test_bad_fault_rules_are_refused(rules, mention):
    with pytest.raises(ValidationError) as e:
        RackSpec.model_validate(rack_with(*rules))
    assert mention in str(e.value)


def test_bad_fault_rule_in_a_rack_file_is_one_line(tmp_path: Path, settings):
    rack = tmp_path / "rack.yaml"
    rack.write_text("hosts: [{id: h1}]\nfaults:\n  rules:\n    - {kind: device_failure}\n")
    with pytest.raises(ConfigError) as e:
        _driver(settings.model_copy(update={"rack": rack}))
    line = str(e.value)
    assert "\n" not in line and "faults.rules.0" in line and "needs a device" in line


def test_fault_descriptions_hold_together():
    with pytest.raises(InvalidFault) as e:
        Fault(kind="surprise_removal")
    assert e.value.field == "device" and e.value.missing
    with pytest.raises(InvalidFault) as e:
        Fault(kind="bind_fails", duration_s=1)
    assert e.value.field == "duration_s" and not e.value.missing


async def test_rack_file_faults_apply_from_the_start(aiohttp_client, settings):
    rack = rack_with({"kind": "device_failure", "device": "gpu2-2"},
                     {"kind": "bind_fails", "device": "gpu2-3", "times": 1})
    driver = SimulatedDriver(rack)
    client = await aiohttp_client(create_app(settings, backend=MemoryBackend(), driver=driver))
    # settled before the service answers its first request
    assert await block_is(client, "gpu2-2", "Unavailable", "Critical")
    assert "gpu2-2" not in await free(client)
    assert (await client.post(ADD.format("host3"), json=block("gpu2-3"), headers=ADMIN)
            ).status == 503
    assert (await client.post(ADD.format("host3"), json=block("gpu2-3"), headers=ADMIN)
            ).status == 204


async def test_restart_with_a_healthy_fabric_frees_unavailable_blocks(aiohttp_client, settings):
    """Conditions live in the fabric: after a restart the documents follow the driver."""
    driver = SimulatedDriver()
    client = await aiohttp_client(create_app(settings, driver=driver))
    assert (await client.post(ADD.format("host1"), json=block("gpu1-1"), headers=ADMIN)
            ).status == 204
    await inject(client, Kind="device_failure", Device="gpu1-1")
    await inject(client, Kind="device_failure", Device="gpu1-2")
    await until(lambda: block_is(client, "gpu1-2", "Unavailable", "Critical"))
    await until(lambda: block_is(client, "gpu1-1", "Composed", "Critical"))
    await client.close()

    app = create_app(settings, driver=SimulatedDriver())  # same state dir, healthy fabric
    client = await aiohttp_client(app)
    assert await block_is(client, "gpu1-2", "Unused", "OK")
    assert await block_is(client, "gpu1-1", "Composed", "OK")
    assert "gpu1-2" in await free(client)
    assert (await get(client, f"{SYSTEMS}/host1"))["Status"]["Health"] == "OK"
    store = app[services.STORE]
    from redfish_service.composition.invariants import violations

    assert violations(store.doc, store.members) == []
