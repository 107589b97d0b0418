"""Unit tests of the pure planning code (planner, batches, constraints): no service, no
I/O, synthetic documents."""

from __future__ import annotations

import pytest

from redfish_service.composition import planner
from redfish_service.composition.batch import View
from redfish_service.protocol.errors import RedfishError

B = "/redfish/v1/CompositionService/ResourceBlocks"
Z = "/redfish/v1/CompositionService/ResourceZones"
S = "/redfish/v1/Systems"


def block(name, kind, zones, state="Unused", reserved=False, systems=()):
    return {
        "@odata.id": f"{B}/{name}", "Id": name, "ResourceBlockType": [kind],
        "Status": {"State": "Enabled", "Health": "OK"},
        "CompositionStatus": {"CompositionState": state, "Reserved": reserved},
        "Pool": "Free",
        "Links": {"Zones": [{"@odata.id": f"{Z}/{z}"} for z in zones],
                  "ComputerSystems": [{"@odata.id": s} for s in systems]},
    }


# zone a: sled-a, gpu-a1, gpu-a2 (48 GiB), drive-a; zone b: sled-b, gpu-b1; host h1 in a
CONTENTS = {
    f"{B}/sled-a": {"Processors": [{"ProcessorType": "CPU", "TotalCores": 16}],
                    "Memory": [{"MemoryType": "DRAM", "CapacityMiB": 1024}]},
    f"{B}/sled-b": {"Processors": [{"ProcessorType": "CPU", "TotalCores": 32}]},
    f"{B}/gpu-a1": {"Processors": [{"ProcessorType": "GPU", "Model": "X"}]},
    f"{B}/gpu-a2": {"Processors": [{"ProcessorType": "GPU", "Model": "X",
                                    "ProcessorMemory": [{"CapacityMiB": 49152}]}]},
    f"{B}/gpu-b1": {"Processors": [{"ProcessorType": "GPU", "Model": "X"}]},
    f"{B}/drive-a": {"Drives": [{"CapacityBytes": 1000}]},
}
HOST = {"@odata.id": f"{S}/h1", "Id": "h1", "SystemType": "Physical",
        "Links": {"ResourceBlocks": [{"@odata.id": f"{B}/system-h1"}]}}


def pool(**changes):
    docs = {
        "sled-a": block("sled-a", "Compute", "a"), "sled-b": block("sled-b", "Compute", "b"),
        "gpu-a1": block("gpu-a1", "Processor", "a"), "gpu-a2": block("gpu-a2", "Processor", "a"),
        "gpu-b1": block("gpu-b1", "Processor", "b"), "drive-a": block("drive-a", "Storage", "a"),
        "system-h1": block("system-h1", "ComputerSystem", "a", "Composed",
                           systems=[f"{S}/h1"]),
    }
    docs.update(changes)
    return {f"{B}/{k}": v for k, v in docs.items()}


def view(blocks=None, systems=None, **kw):
    blocks = blocks or pool()
    zones = [(f"{Z}/{z}", [u for u, d in blocks.items()
                           if {"@odata.id": f"{Z}/{z}"} in d["Links"]["Zones"]])
             for z in ("a", "b")]
    systems = {HOST["@odata.id"]: HOST, **(systems or {})}
    return View(blocks, systems.get, zones=zones,
                contents=lambda u: CONTENTS.get(u, {}), **kw)


def build(uri, compute, blocks, name):
    return {"@odata.id": uri, "Id": uri.rsplit("/", 1)[1], "Name": name,
            "SystemType": "Composed",
            "Links": {"ResourceBlocks": [{"@odata.id": b} for b in blocks]}}


def refs(*names):
    return {"Links": {"ResourceBlocks": [{"@odata.id": f"{B}/{n}"} for n in names]}}


def refused(fn, *args) -> tuple[int, str]:
    with pytest.raises(RedfishError) as e:
        fn(*args)
    return e.value.status, e.value.messages[0]["MessageId"].rsplit(".", 1)[1]


def test_specific_composition_records_steps_and_states():
    v = view()
    doc = v.compose(f"{S}/c1", {"Name": "c1", **refs("sled-a", "gpu-a1", "drive-a")}, build)
    assert doc["Name"] == "c1"
    batch = v.batch
    assert [(s.attach, s.device_id, s.host_id) for s in batch.steps] == \
        [(True, "gpu-a1", "sled-a"), (True, "drive-a", "sled-a")]
    assert set(batch.before) == {f"{B}/{n}" for n in ("sled-a", "gpu-a1", "drive-a")}
    assert all(d["CompositionStatus"]["CompositionState"] == "Composed"
               for d in batch.after.values())
    assert batch.intents[f"{B}/gpu-a1"] == {"host": "sled-a", "attach": True,
                                             "system": f"{S}/c1"}
    assert list(batch.created) == [f"{S}/c1"]


@pytest.mark.parametrize(("names", "expected"), [
    (("gpu-a1",), (400, "ResourceBlockInvalid")),  # no compute block
    (("sled-a", "sled-b"), (400, "ResourceBlockInvalid")),  # two
    (("sled-a", "gpu-b1"), (400, "IncompatibleZone")),
    (("sled-a", "nope"), (400, "ResourceBlockNotFound")),
    (("sled-a", "system-h1"), (400, "ResourceBlockInvalid")),
])
def test_specific_refusals(names, expected):
    v = view()
    assert refused(v.compose, f"{S}/c", refs(*names), build) == expected
    assert v.batch.empty


def test_one_batch_never_claims_a_block_twice():
    v = view()
    v.compose(f"{S}/c1", refs("sled-a", "gpu-a1"), build)
    assert refused(v.compose, f"{S}/c2", refs("sled-a", "gpu-a2"), build) == \
        (409, "ResourceBlockInUse")
    assert refused(v.attach, f"{S}/h1", f"{B}/gpu-a1") == (409, "ResourceBlockInUse")
    v.attach(f"{S}/h1", f"{B}/gpu-a2")
    assert v.batch.links == {f"{S}/h1": [(f"{B}/gpu-a2", True)]}


def test_a_block_freed_in_a_batch_is_not_taken_again_in_it():
    composed = {f"{S}/c0": build(f"{S}/c0", None, [f"{B}/sled-a", f"{B}/gpu-a1"], "c0")}
    blocks = pool(**{n: block(n, k, "a", "Composed", systems=[f"{S}/c0"])
                     for n, k in (("sled-a", "Compute"), ("gpu-a1", "Processor"))})
    v = view(blocks, composed)
    v.decompose(f"{S}/c0")
    assert [(s.attach, s.device_id) for s in v.batch.steps] == [(False, "gpu-a1")]
    assert refused(v.compose, f"{S}/c1", refs("sled-a"), build) == (409, "ResourceBlockInUse")
    assert v.batch.deleted == [f"{S}/c0"]
    assert refused(v.decompose, f"{S}/h1") == (400, "ResourceBlockInvalid")  # physical
    assert refused(v.decompose, f"{S}/gone") == (404, "ResourceMissingAtURI")


def test_reserved_blocks_are_for_their_reservation_only():
    blocks = pool(**{"gpu-a1": block("gpu-a1", "Processor", "a", reserved=True)})
    v = view(blocks, reserved_by={f"{B}/gpu-a1": "r7"})
    with pytest.raises(RedfishError) as e:
        v.compose(f"{S}/c", refs("sled-a", "gpu-a1"), build)
    assert e.value.messages[0]["MessageArgs"] == ["gpu-a1", "r7"]
    v = view(blocks, reserved_by={f"{B}/gpu-a1": "r7"}, mine=frozenset({f"{B}/gpu-a1"}))
    v.compose(f"{S}/c", refs("sled-a", "gpu-a1"), build)
    assert v.batch.after[f"{B}/gpu-a1"]["CompositionStatus"]["Reserved"] is False


def gpus(count, **props):
    return {"Processors": {"Members": [{"@Redfish.RequestedCount": count,
                                        "ProcessorType": "GPU", **props}]}}


def chosen(v):
    return [u.rsplit("/", 1)[1] for u in v.batch.before]


def test_constrained_picks_in_zone_order_and_honours_affinity():
    v = view()
    v.compose(f"{S}/c", gpus(2), build)
    assert chosen(v) == ["sled-a", "gpu-a1", "gpu-a2"]
    v = view()
    v.compose(f"{S}/c", {"@Redfish.ZoneAffinity": "b", **gpus(1)}, build)
    assert chosen(v) == ["sled-b", "gpu-b1"]
    v = view()
    assert refused(v.compose, f"{S}/c", gpus(3), build) == (409, "NoResourceMatch")
    assert refused(v.compose, f"{S}/c", {"@Redfish.ZoneAffinity": "z", **gpus(1)}, build) \
        == (400, "PropertyValueNotInList")
    v = view(zone_affinity=False)
    assert refused(v.compose, f"{S}/c", {"@Redfish.ZoneAffinity": "a", **gpus(1)}, build) \
        == (400, "PropertyNotWritable")


def test_overprovisioning_needs_both_the_service_and_the_request():
    ask = gpus(1, ProcessorMemory=[{"CapacityMiB": 40000}])
    assert refused(view().compose, f"{S}/c", ask, build) == (409, "NoResourceMatch")
    over = {**ask, "@Redfish.AllowOverprovisioning": True}
    v = view()
    v.compose(f"{S}/c", over, build)
    assert chosen(v) == ["sled-a", "gpu-a2"]
    assert refused(view(overprovisioning=False).compose, f"{S}/c", over, build) == \
        (409, "NoResourceMatch")
    # the sled's 16 cores for 8 asked: only with overprovisioning
    cpu = {"Processors": {"Members": [{"ProcessorType": "CPU", "TotalCores": 8}]}}
    assert refused(view().compose, f"{S}/c", cpu, build) == (409, "NoResourceMatch")
    v = view()
    v.compose(f"{S}/c", {**cpu, "@Redfish.AllowOverprovisioning": True}, build)
    assert chosen(v) == ["sled-a"]


def test_constrained_reports_reservations_in_the_way():
    blocks = pool(**{n: block(n, "Processor", "a", reserved=True) for n in ("gpu-a1", "gpu-a2")})
    v = view(blocks, reserved_by={f"{B}/gpu-a1": "r1", f"{B}/gpu-a2": "r1"})
    with pytest.raises(RedfishError) as e:
        v.compose(f"{S}/c", {"@Redfish.ZoneAffinity": "a", **gpus(1)}, build)
    assert e.value.messages[0]["MessageId"].endswith("ConstrainedResourceAlreadyReserved")
    assert e.value.messages[0]["MessageArgs"] == ["r1"]


def test_mixed_request_counts_the_named_blocks():
    v = view()
    doc = v.compose(f"{S}/c", {**refs("gpu-a2"), **gpus(2)}, build)
    assert [b["@odata.id"].rsplit("/", 1)[1] for b in doc["Links"]["ResourceBlocks"]] == \
        ["gpu-a2", "sled-a", "gpu-a1"]
    assert sorted(chosen(v)) == ["gpu-a1", "gpu-a2", "sled-a"]


def test_expansion_and_reduction_steps():
    v = view()
    v.attach(f"{S}/h1", f"{B}/drive-a")
    step = v.batch.steps[0]
    assert (step.attach, step.device_id, step.host_id) == (True, "drive-a", "h1")
    assert refused(v.attach, f"{S}/h1", f"{B}/gpu-b1") == (400, "IncompatibleZone")
    assert refused(v.detach, f"{S}/h1", f"{B}/gpu-a1") == (400, "ResourceBlockInvalid")
    assert refused(v.attach, f"{S}/h1", f"{B}/sled-a") == (400, "ResourceBlockInvalid")


def test_released_failed_device_is_unavailable():
    broken = block("gpu-a1", "Processor", "a", "Composed", systems=[f"{S}/h1"])
    broken["Status"]["Health"] = "Critical"
    assert planner.released(broken)["CompositionStatus"]["CompositionState"] == "Unavailable"
    healthy = block("gpu-a2", "Processor", "a", "Composed", systems=[f"{S}/h1"])
    after = planner.released(healthy)
    assert after["CompositionStatus"]["CompositionState"] == "Unused"
    assert after["Pool"] == "Free" and after["Links"]["ComputerSystems"] == []
