"""The KEP-5007 scheduler / claim-controller simulator and its CEL subset.

Pure tests first (CEL, node selectors, pools, allocator, readiness), then integration tests
against the in-process FakeKubeAPI with a fake driver coroutine writing binding conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import pytest

from bridge.testkit import cel
from bridge.testkit.apiserver import ApiError, FakeKubeAPI
from bridge.testkit.scheduler import (
    FINALIZER,
    POD_CLAIM_NAME_ANNOTATION,
    AllocationError,
    Allocator,
    BindingStatus,
    ClaimController,
    DeviceID,
    SchedulerSimulator,
    binding_deadline,
    claim_binding_status,
    gather_pools,
    iter_candidates,
    node_selector_matches,
    parse_rfc3339,
    pod_fits_node,
)

DRIVER = "composable.example.com"
ATTACHED = f"{DRIVER}/attached"
FAILED = f"{DRIVER}/attach-failed"
RESCHEDULE = f"{DRIVER}/reschedule"
CLASS = "composable-gpu.example.com"
CLASS_CEL = f"device.driver == '{DRIVER}' && device.attributes['{DRIVER}'].type == 'gpu'"
ZONE_LABEL = f"{DRIVER}/zone.zone-a"


# --------------------------------------------------------------------------------------------
# Object builders


def gpu(name: str, *, model: str = "A100", memory: str = "40Gi", binding: bool = True,
        **extra: Any) -> dict:
    device: dict[str, Any] = {
        "name": name,
        "attributes": {"type": {"string": "gpu"}, "model": {"string": model},
                       "index": {"int": int(name.rsplit("-", 1)[-1])}},
        "capacity": {"memory": {"value": memory}},
    }
    if binding:
        device.update(bindsToNode=True, bindingConditions=[ATTACHED],
                      bindingFailureConditions=[FAILED, RESCHEDULE])
    device.update(extra)
    return device


def pool_slice(name: str, pool: str, devices: list[dict], *, driver: str = DRIVER,
               generation: int = 1, count: int = 1, **selection: Any) -> dict:
    if not selection:
        selection = {"nodeSelector": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": ZONE_LABEL, "operator": "In", "values": ["true"]}]}]}}
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
            "metadata": {"name": name},
            "spec": {"driver": driver, "devices": devices, **selection,
                     "pool": {"name": pool, "generation": generation,
                              "resourceSliceCount": count}}}


def node(name: str, zone: bool = True, **labels: str) -> dict:
    all_labels = {"kubernetes.io/hostname": name, **labels}
    if zone:
        all_labels[ZONE_LABEL] = "true"
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": all_labels}}


def device_class(name: str = CLASS, expression: str = CLASS_CEL) -> dict:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": name},
            "spec": {"selectors": [{"cel": {"expression": expression}}]}}


def claim(name: str, *, count: int = 1, selectors: Sequence[str] = (), namespace: str = "ml",
          device_class_name: str = CLASS, **exact: Any) -> dict:
    request = {"deviceClassName": device_class_name, "count": count, **exact}
    if selectors:
        request["selectors"] = [{"cel": {"expression": s}} for s in selectors]
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
            "spec": {"devices": {"requests": [{"name": "gpu", "exactly": request}]}}}


def pod(name: str, claims: dict[str, str] | None = None, *, templates: dict[str, str] | None = None,
        namespace: str = "ml", **spec: Any) -> dict:
    entries = [{"name": k, "resourceClaimName": v} for k, v in (claims or {}).items()]
    entries += [{"name": k, "resourceClaimTemplateName": v} for k, v in (templates or {}).items()]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": "main", "image": "busybox"}],
                     "resourceClaims": entries, **spec}}


def condition(kind: str, value: str = "True", reason: str = "Attached",
              message: str = "done") -> dict:
    return {"type": kind, "status": value, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}


def allocated(claim_obj: dict, devices: list[tuple[str, str]], *, node_name: str = "node-a",
              stamp: str = "2026-01-01T00:00:00Z") -> dict:
    out = copy.deepcopy(claim_obj)
    out["status"] = {"allocation": {
        "allocationTimestamp": stamp,
        "devices": {"results": [
            {"request": "gpu", "driver": DRIVER, "pool": pool_name, "device": dev,
             "bindingConditions": [ATTACHED], "bindingFailureConditions": [FAILED]}
            for pool_name, dev in devices]},
        "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}}}
    return out


def with_device_status(claim_obj: dict, pool_name: str, dev: str, *conditions: dict) -> dict:
    out = copy.deepcopy(claim_obj)
    out["status"].setdefault("devices", []).append(
        {"driver": DRIVER, "pool": pool_name, "device": dev, "conditions": list(conditions)})
    return out


# --------------------------------------------------------------------------------------------
# CEL subset


A100 = gpu("gpu-3", memory="40Gi")
A100["attributes"]["resource.kubernetes.io/pciBusID"] = {"string": "0000:3b:00.0"}
A100["attributes"]["healthy"] = {"bool": True}
A100["attributes"]["driverVersion"] = {"version": "1.2.3"}


@pytest.mark.parametrize(("expression", "expected"), [
    (CLASS_CEL, True),
    (f'device.driver == "{DRIVER}" && device.attributes["{DRIVER}"].type == "gpu"', True),
    (f"device.attributes['{DRIVER}'].type == 'nvme'", False),
    (f"device.attributes['{DRIVER}'].type != 'nvme'", True),
    (f"device.attributes['{DRIVER}'].index == 3", True),
    (f"device.attributes['{DRIVER}'].index >= 3 && device.attributes['{DRIVER}'].index < 4",
     True),
    (f"device.attributes['{DRIVER}'].index > 3", False),
    (f"device.attributes['{DRIVER}'].index <= -1", False),
    (f"device.attributes['{DRIVER}'].healthy", True),
    (f"!device.attributes['{DRIVER}'].healthy", False),
    (f"device.attributes['{DRIVER}'].healthy == true", True),
    (f"device.attributes['{DRIVER}'].model in ['A100', 'H100']", True),
    (f"device.attributes['{DRIVER}'].model in ['H100']", False),
    (f"device.attributes['{DRIVER}']['model'] == 'A100'", True),
    ("device.attributes['resource.kubernetes.io'].pciBusID == '0000:3b:00.0'", True),
    (f"device.capacity['{DRIVER}'].memory.compareTo(quantity('40Gi')) >= 0", True),
    (f"device.capacity['{DRIVER}'].memory.compareTo(quantity('41Gi')) >= 0", False),
    (f"device.capacity['{DRIVER}'].memory.isGreaterThan(quantity('39Gi'))", True),
    (f"device.capacity['{DRIVER}'].memory.isLessThan(quantity('40Gi'))", False),
    # precedence: && binds tighter than ||; parentheses override
    ("device.driver == 'x' && false || true", True),
    ("device.driver == 'x' && (false || true)", False),
    ("!(device.driver == 'x') && 1 < 2", True),
    # CEL heterogeneous equality: different types are unequal, not an error
    (f"device.attributes['{DRIVER}'].index == '3'", False),
    (f"device.attributes['{DRIVER}'].healthy == 1", False),
    (f"device.attributes['{DRIVER}'].driverVersion == '1.2.3'", False),
    # presence tests
    (f"'model' in device.attributes['{DRIVER}']", True),
    (f"has(device.attributes['{DRIVER}'].serial)", False),
    ("'serial' in device.attributes['other.example.com']", False),
    (f"device.attributes['{DRIVER}'].model.startsWith('A1')", True),
])
def test_cel_evaluates(expression: str, expected: bool) -> None:
    assert cel.evaluate(expression, DRIVER, A100) is expected


@pytest.mark.parametrize("expression", [
    f"device.attributes['{DRIVER}'].serial == 'x'",          # missing attribute
    "device.attributes['other.example.com'].type == 'gpu'",  # unknown domain: empty map
    f"device.capacity['{DRIVER}'].power.isGreaterThan(quantity('1'))",
    f"device.attributes['{DRIVER}'].serial == 'x' && true",
    f"device.attributes['{DRIVER}'].model < 3",              # runtime overload mismatch
    f"device.attributes['{DRIVER}'].model",                  # not a bool
])
def test_cel_runtime_errors(expression: str) -> None:
    program = cel.compile_expression(expression)   # fine at compile time
    with pytest.raises(cel.CelEvalError):
        program.evaluate(cel.cel_device(DRIVER, A100))


def test_cel_logical_operators_absorb_errors_like_cel() -> None:
    missing = f"device.attributes['{DRIVER}'].serial == 'x'"
    assert cel.evaluate(f"false && {missing}", DRIVER, A100) is False
    assert cel.evaluate(f"{missing} && false", DRIVER, A100) is False
    assert cel.evaluate(f"{missing} || true", DRIVER, A100) is True
    # The usual class pattern: a device of another driver is simply not matched.
    other = {"name": "nic-0", "attributes": {"speed": {"int": 100}}}
    assert cel.evaluate(CLASS_CEL, "nic.example.com", other) is False


@pytest.mark.parametrize("expression", [
    "device.driver + 'x' == 'y'",                 # arithmetic
    "device.attributes['d'].n - 1 > 0",
    "device.driver == 'a' ? true : false",        # conditional
    "size(device.attributes) > 0",                # unsupported function
    "device.attributes.exists(d, true)",          # macros
    "device.driver.matches('^a')",                # unsupported method
    "devices.driver == 'x'",                      # undeclared variable
    "device.name == 'gpu-0'",                     # no such field on device
    "device['driver'] == 'x'",
    "device.driver == 1",                         # static type mismatch
    "1 < 'a'",
    "1.5 > 1",                                    # double literal
    "1u > 0",                                     # uint literal
    "device.driver == 'x' &&",                    # syntax
    "(device.driver == 'x'",
    "device.driver == 'unterminated",
    "device.driver == r'raw'",
    "{'a': 1}['a'] == 1",                         # map literal
    "device.driver",                              # not a bool
    "quantity('forty') == quantity('1')",         # invalid quantity literal
    "",
    "device.driver == 'x' && 3",
    "has(device.attributes['d'])",                # has() needs a field selection
])
def test_cel_rejects_outside_subset_at_compile_time(expression: str) -> None:
    with pytest.raises(cel.CelError) as info:
        cel.compile_expression(expression)
    assert not isinstance(info.value, cel.CelEvalError)
    assert str(info.value)


@pytest.mark.parametrize(("text", "value"), [
    ("40Gi", 40 * 2**30), ("1Ki", 1024), ("1500m", Fraction(3, 2)), ("1k", 1000),
    ("2M", 2_000_000), ("1e3", 1000), ("0.5Gi", 2**29), ("100", 100), ("5E-3", Fraction(1, 200)),
])
def test_parse_quantity(text: str, value: Fraction | int) -> None:
    assert cel.parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "Gi", "1 Gi", "1GB", "1.2.3", "1iK"])
def test_parse_quantity_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        cel.parse_quantity(text)


def test_cel_device_view_qualifies_names() -> None:
    view = cel.cel_device(DRIVER, A100)
    assert view.attributes[DRIVER]["model"] == "A100"
    assert view.attributes["resource.kubernetes.io"]["pciBusID"] == "0000:3b:00.0"
    assert view.capacity[DRIVER]["memory"] == cel.Quantity.parse("40960Mi")


# --------------------------------------------------------------------------------------------
# Node selection and pools


def test_node_selector_operators() -> None:
    n = node("node-a", rack="r1", gpu="yes")

    def sel(*expressions: dict, fields: list[dict] | None = None) -> dict:
        term: dict[str, Any] = {"matchExpressions": list(expressions)}
        if fields:
            term["matchFields"] = fields
        return {"nodeSelectorTerms": [term]}

    assert node_selector_matches(sel({"key": "rack", "operator": "In", "values": ["r1"]}), n)
    assert not node_selector_matches(sel({"key": "rack", "operator": "In", "values": ["r2"]}),
                                     n)
    assert node_selector_matches(sel({"key": "rack", "operator": "NotIn", "values": ["r2"]}), n)
    assert node_selector_matches(sel({"key": "zone", "operator": "NotIn", "values": ["z"]}), n)
    assert node_selector_matches(sel({"key": "gpu", "operator": "Exists"}), n)
    assert not node_selector_matches(sel({"key": "gpu", "operator": "DoesNotExist"}), n)
    assert node_selector_matches(sel({"key": "x", "operator": "DoesNotExist"}), n)
    by_name = [{"key": "metadata.name", "operator": "In", "values": ["node-a"]}]
    assert node_selector_matches(sel(fields=by_name), n)
    assert not node_selector_matches(sel(fields=by_name), node("node-b"))
    # terms are ORed, an empty term matches nothing, an empty selector matches nothing
    either = {"nodeSelectorTerms": [{}, {"matchFields": by_name}]}
    assert node_selector_matches(either, n)
    assert not node_selector_matches({"nodeSelectorTerms": [{}]}, n)
    assert not node_selector_matches({"nodeSelectorTerms": []}, n)


def test_pod_fits_node() -> None:
    assert pod_fits_node(pod("p", nodeSelector={"rack": "r1"}), node("a", rack="r1"))
    assert not pod_fits_node(pod("p", nodeSelector={"rack": "r1"}), node("a", rack="r2"))
    cordoned = node("a")
    cordoned["spec"] = {"unschedulable": True}
    assert not pod_fits_node(pod("p"), cordoned)


def ids(pools: list, n: dict) -> list[str]:
    return [str(c.id) for c in iter_candidates(pools, n)]


def test_pools_current_generation_complete_and_visible_only() -> None:
    a = node("node-a")
    slices = [
        pool_slice("old", "zone-a", [gpu("gpu-9")], generation=1),
        pool_slice("new", "zone-a", [gpu("gpu-1"), gpu("gpu-0")], generation=2),
        # two-slice pool with only one slice published: incomplete, skipped
        pool_slice("half-1", "zone-b", [gpu("gpu-5")], count=2),
        # node-local pool of another node: invisible from node-a
        pool_slice("local-b", "node-b", [gpu("gpu-7", binding=False)], nodeName="node-b"),
        pool_slice("everywhere", "shared", [gpu("gpu-8")], allNodes=True),
    ]
    pools = gather_pools(slices, a)
    assert ids(pools, a) == [f"{DRIVER}/shared/gpu-8", f"{DRIVER}/zone-a/gpu-0",
                             f"{DRIVER}/zone-a/gpu-1"]
    # a node outside the zone only sees the allNodes pool
    assert ids(gather_pools(slices, node("node-x", zone=False)), a) == [
        f"{DRIVER}/shared/gpu-8"]


def test_pools_without_binding_conditions_come_first() -> None:
    a = node("node-a")
    slices = [pool_slice("pooled", "aaa-zone", [gpu("gpu-0")]),
              pool_slice("local", "zzz-node-a", [gpu("gpu-1", binding=False)],
                         nodeName="node-a")]
    assert ids(gather_pools(slices, a), a) == [f"{DRIVER}/zzz-node-a/gpu-1",
                                                f"{DRIVER}/aaa-zone/gpu-0"]


def test_multi_slice_pool_complete_and_per_device_selection() -> None:
    a = node("node-a")
    devices = [gpu("gpu-0", nodeName="node-b"), gpu("gpu-1", allNodes=True)]
    slices = [pool_slice("s2", "p", [gpu("gpu-2")], count=2, allNodes=True),
              pool_slice("s1", "p", devices, count=2, perDeviceNodeSelection=True)]
    assert ids(gather_pools(slices, a), a) == [f"{DRIVER}/p/gpu-1", f"{DRIVER}/p/gpu-2"]


# --------------------------------------------------------------------------------------------
# Allocator


def allocate(claims: list[dict], slices: list[dict], *, n: dict | None = None,
             unavailable: set[DeviceID] | None = None, classes: list[dict] | None = None,
             policy: str = "abort") -> dict | None:
    n = n or node("node-a")
    class_map = {c["metadata"]["name"]: c for c in (classes or [device_class()])}
    return Allocator(cel_runtime_errors=policy).allocate(  # type: ignore[arg-type]
        claims, n, gather_pools(slices, n), class_map, unavailable or set())


def devices_of(allocation: dict) -> list[str]:
    return [r["device"] for r in allocation["devices"]["results"]]


def test_allocator_first_fit_count_and_unavailable() -> None:
    slices = [pool_slice("s", "zone-a", [gpu(f"gpu-{i}") for i in (3, 0, 2, 1)])]
    taken = {DeviceID(DRIVER, "zone-a", "gpu-0")}
    out = allocate([claim("c", count=2)], slices, unavailable=taken)
    assert out is not None
    allocation = out["c"]
    assert devices_of(allocation) == ["gpu-1", "gpu-2"]
    result = allocation["devices"]["results"][0]
    assert result == {"request": "gpu", "driver": DRIVER, "pool": "zone-a", "device": "gpu-1",
                      "bindingConditions": [ATTACHED],
                      "bindingFailureConditions": [FAILED, RESCHEDULE]}
    assert allocation["nodeSelector"] == {"nodeSelectorTerms": [{"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}]}
    assert allocate([claim("c", count=4)], slices, unavailable=taken) is None


def test_allocator_two_claims_never_share_a_device() -> None:
    slices = [pool_slice("s", "zone-a", [gpu("gpu-0"), gpu("gpu-1")])]
    out = allocate([claim("c1"), claim("c2")], slices)
    assert out is not None
    assert devices_of(out["c1"]) == ["gpu-0"] and devices_of(out["c2"]) == ["gpu-1"]
    assert allocate([claim("c1"), claim("c2"), claim("c3")], slices) is None


def test_allocator_selectors_from_class_and_request() -> None:
    slices = [pool_slice("s", "zone-a", [
        gpu("gpu-0", model="T4", memory="16Gi"), gpu("gpu-1", model="A100", memory="40Gi"),
        {"name": "nvme-2", "attributes": {"type": {"string": "nvme"}}}])]
    big = f"device.capacity['{DRIVER}'].memory.compareTo(quantity('32Gi')) >= 0"
    out = allocate([claim("c", selectors=[big])], slices)
    assert out is not None and devices_of(out["c"]) == ["gpu-1"]
    by_model = f"device.attributes['{DRIVER}'].model == 'H100'"
    assert allocate([claim("c", selectors=[by_model])], slices) is None


def test_allocator_cel_runtime_error_aborts_like_the_real_allocator() -> None:
    slices = [pool_slice("s", "zone-a", [{"name": "dev-0", "attributes": {}}, gpu("gpu-1")])]
    sloppy = device_class(expression=f"device.attributes['{DRIVER}'].type == 'gpu'")
    with pytest.raises(AllocationError, match=rf"class {CLASS}: selector #0: CEL runtime error"):
        allocate([claim("c")], slices, classes=[sloppy])
    out = allocate([claim("c")], slices, classes=[sloppy], policy="nomatch")
    assert out is not None and devices_of(out["c"]) == ["gpu-1"]


def test_allocator_rejects_what_it_cannot_do() -> None:
    slices = [pool_slice("s", "zone-a", [gpu("gpu-0")])]
    with pytest.raises(AllocationError, match="device class missing does not exist"):
        allocate([claim("c", device_class_name="missing")], slices)
    with pytest.raises(AllocationError, match="CEL compile error"):
        allocate([claim("c", selectors=["device.driver + 1"])], slices)
    constrained = claim("c")
    constrained["spec"]["devices"]["constraints"] = [{"matchAttribute": "x/y"}]
    with pytest.raises(AllocationError, match="constraints"):
        allocate([constrained], slices)


def test_allocator_first_available_all_mode_and_taints() -> None:
    slices = [pool_slice("s", "zone-a", [
        gpu("gpu-0", taints=[{"key": "broken", "effect": "NoSchedule"}]), gpu("gpu-1")])]
    # the tainted device is skipped unless tolerated
    out = allocate([claim("c")], slices)
    assert out is not None and devices_of(out["c"]) == ["gpu-1"]
    tolerant = claim("c", tolerations=[{"key": "broken", "operator": "Exists"}])
    out = allocate([tolerant], slices)
    assert out is not None and devices_of(out["c"]) == ["gpu-0"]
    assert out["c"]["devices"]["results"][0]["tolerations"]
    # firstAvailable: the first sub-request cannot be met, the second can
    first = claim("c")
    first["spec"]["devices"]["requests"] = [{"name": "gpu", "firstAvailable": [
        {"name": "big", "deviceClassName": CLASS, "count": 3},
        {"name": "one", "deviceClassName": CLASS, "count": 1}]}]
    out = allocate([first], slices)
    assert out is not None and out["c"]["devices"]["results"][0]["request"] == "gpu/one"
    # All: every matching device, or nothing if one is taken
    everything = claim("c", allocationMode="All", tolerations=[{"operator": "Exists"}])
    out = allocate([everything], slices)
    assert out is not None and devices_of(out["c"]) == ["gpu-0", "gpu-1"]
    assert allocate([everything], slices, unavailable={DeviceID(DRIVER, "zone-a", "gpu-1")}) \
        is None


def test_allocation_node_selector_without_binds_to_node() -> None:
    plain = {"name": "gpu-0", "attributes": {"type": {"string": "gpu"}}}
    zone = [pool_slice("s", "zone-a", [plain])]
    out = allocate([claim("c")], zone)
    assert out is not None
    assert out["c"]["nodeSelector"] == {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": ZONE_LABEL, "operator": "In", "values": ["true"]}]}]}
    assert "bindingConditions" not in out["c"]["devices"]["results"][0]
    out = allocate([claim("c")], [pool_slice("s", "any", [plain], allNodes=True)])
    assert out is not None and "nodeSelector" not in out["c"]
    out = allocate([claim("c")], [pool_slice("s", "node-a", [plain], nodeName="node-a")])
    assert out is not None
    assert out["c"]["nodeSelector"]["nodeSelectorTerms"][0]["matchFields"][0]["values"] == [
        "node-a"]


def test_allocation_copies_class_and_claim_config() -> None:
    klass = device_class()
    klass["spec"]["config"] = [{"opaque": {"driver": DRIVER, "parameters": {"a": 1}}}]
    c = claim("c")
    c["spec"]["devices"]["config"] = [{"requests": ["gpu"],
                                       "opaque": {"driver": DRIVER, "parameters": {"b": 2}}}]
    out = allocate([c], [pool_slice("s", "zone-a", [gpu("gpu-0")])], classes=[klass])
    assert out is not None
    assert [e["source"] for e in out["c"]["devices"]["config"]] == ["FromClass", "FromClaim"]
    assert out["c"]["devices"]["config"][0]["requests"] == ["gpu"]


# --------------------------------------------------------------------------------------------
# PreBind readiness


def test_binding_status_missing_entry_is_pending() -> None:
    c = allocated(claim("c"), [("zone-a", "gpu-0")])
    state = claim_binding_status(c)
    assert state == BindingStatus(False, pending=frozenset({DeviceID(DRIVER, "zone-a",
                                                                     "gpu-0")}))
    assert not claim_binding_status(claim("c")).ready    # not allocated


def test_binding_status_ready_when_all_conditions_true() -> None:
    c = allocated(claim("c"), [("zone-a", "gpu-0")])
    assert claim_binding_status(with_device_status(c, "zone-a", "gpu-0",
                                                   condition(ATTACHED))).ready
    assert not claim_binding_status(with_device_status(
        c, "zone-a", "gpu-0", condition(ATTACHED, "False"))).ready
    # an entry for the same device name in another pool does not count
    assert not claim_binding_status(with_device_status(c, "zone-b", "gpu-0",
                                                       condition(ATTACHED))).ready
    # a result without binding conditions needs no entry
    plain = copy.deepcopy(c)
    for r in plain["status"]["allocation"]["devices"]["results"]:
        r.pop("bindingConditions")
        r.pop("bindingFailureConditions")
    assert claim_binding_status(plain).ready


def test_binding_status_failure_message() -> None:
    c = allocated(claim("c"), [("zone-a", "gpu-0")])
    failed = with_device_status(c, "zone-a", "gpu-0",
                                condition(FAILED, reason="AttachFailed", message="boom"))
    state = claim_binding_status(failed)
    assert not state.ready
    assert state.failure == "claim c binding failed: reason=AttachFailed, message=boom"
    assert state.failed == {DeviceID(DRIVER, "zone-a", "gpu-0")}


def test_binding_status_checks_results_in_order() -> None:
    c = allocated(claim("c"), [("zone-a", "gpu-0"), ("zone-a", "gpu-1")])
    second_failed = with_device_status(c, "zone-a", "gpu-1", condition(FAILED))
    # like the real isClaimReadyForBinding: gpu-0 has no entry yet, so it stops there
    assert claim_binding_status(second_failed).failure is None
    both = with_device_status(second_failed, "zone-a", "gpu-0", condition(ATTACHED))
    assert claim_binding_status(both).failure is not None


def test_binding_deadline() -> None:
    c = allocated(claim("c"), [("zone-a", "gpu-0")], stamp="2026-01-01T00:00:00Z")
    start = 1767225600.0   # 2026-01-01T00:00:00Z
    assert binding_deadline(c, 600) == start + 600
    assert binding_deadline(c, 1, {("uid-c", "2026-01-01T00:00:00Z"): start + 0.75}) == \
        start + 1.75
    assert binding_deadline(claim("c"), 600) is None




# --------------------------------------------------------------------------------------------
# Integration with the fake apiserver


@pytest.fixture
async def api():
    fake = FakeKubeAPI()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def seed(api, *, devices: tuple[str, ...] = ("gpu-0", "gpu-1"),
         claims: tuple[str, ...] = ("c",), nodes: dict[str, bool] | None = None,
         selection: dict | None = None) -> None:
    """Nodes (node-a in zone-a, node-b not), the class, one pooled slice, claims."""
    for name, in_zone in (nodes or {"node-a": True, "node-b": False}).items():
        api.create("nodes", node(name, zone=in_zone))
    api.create("deviceclasses", device_class())
    api.create("resourceslices", pool_slice("zone-a-slice", "zone-a", [gpu(d) for d in devices],
                                            **(selection or {})))
    for name in claims:
        body = claim(name)
        del body["metadata"]["uid"]
        api.create("resourceclaims", body)


class FakeDriver:
    """Plays the bridge: for every allocated device of DRIVER writes ``status.devices``
    with ``attached=True`` ("attach"), ``attach-failed=True`` ("fail"), or nothing
    ("never"), after ``delay_s``. "reschedule" publishes a node-local slice (the vendor
    plugin's view of the hot-plugged device) and then sets the reschedule condition."""

    def __init__(self, api, behaviour: dict[str, str] | None = None, delay_s: float = 0.0):
        self.api = api
        self.behaviour = behaviour or {}
        self.delay_s = delay_s
        self.seen: list[tuple[str, str, str]] = []     # (claim, device, node) per attach
        self._started: dict[tuple[str, str, str], float] = {}

    async def run(self) -> None:
        while True:
            for c in self.api.list("resourceclaims"):
                self._step(c)
            await asyncio.sleep(0.005)

    def _step(self, c: dict) -> None:
        allocation = (c.get("status") or {}).get("allocation")
        if not allocation:
            return
        node_name = allocation["nodeSelector"]["nodeSelectorTerms"][0]["matchFields"][0][
            "values"][0] if "nodeSelector" in allocation else ""
        for result in allocation["devices"]["results"]:
            if result["driver"] != DRIVER or not result.get("bindingConditions"):
                continue
            key = (c["metadata"]["uid"], allocation["allocationTimestamp"], result["device"])
            started = self._started.setdefault(key, time.monotonic())
            done = any(e["device"] == result["device"] and e["pool"] == result["pool"]
                       for e in (c.get("status") or {}).get("devices") or [])
            if done or time.monotonic() - started < self.delay_s:
                continue
            self._write(c, result, node_name)

    def _write(self, c: dict, result: dict, node_name: str) -> None:
        what = self.behaviour.get(result["device"], "attach")
        if what == "never":
            return
        if what == "reschedule":
            local = f"local-{node_name}"
            if self.api.get("resourceslices", local) is None:
                self.api.create("resourceslices", pool_slice(
                    local, node_name, [gpu("gpu-7", binding=False)], nodeName=node_name))
            cond = condition(RESCHEDULE, reason="AttachedAsNodeLocal", message="now local")
        elif what == "fail":
            cond = condition(FAILED, reason="AttachFailed", message="Redfish said no")
        else:
            cond = condition(ATTACHED, message=f"attached to {node_name}")
        body = copy.deepcopy(c)
        body["status"].setdefault("devices", []).append(
            {"driver": DRIVER, "pool": result["pool"], "device": result["device"],
             "conditions": [cond]})
        try:
            self.api.update("resourceclaims", body, subresource="status")
        except ApiError as exc:
            assert exc.status == 409, exc   # a conflict: retried on the next pass
            return
        if what == "attach":
            self.seen.append((c["metadata"]["name"], result["device"], node_name))


class Recorder:
    """Every committed event, in order."""

    def __init__(self, api):
        self.queue = api.subscribe()
        self.events: list[tuple[str, str, dict]] = []

    def drain(self) -> list[tuple[str, str, dict]]:
        while not self.queue.empty():
            event = self.queue.get_nowait()
            self.events.append((event[0], event[1], event[2]))
        return self.events

    def claim_states(self, name: str) -> list[dict]:
        return [obj for _, resource, obj in self.drain()
                if resource == "resourceclaims" and obj["metadata"]["name"] == name]


@contextlib.asynccontextmanager
async def running(*coroutines):
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:   # a crashed helper must fail the test
            if not isinstance(result, asyncio.CancelledError):
                raise AssertionError(f"background task ended with {result!r}")


def create_pod(api, name: str, claims: dict[str, str] | None = None, **kwargs: Any) -> dict:
    return api.create("pods", pod(name, claims if claims is not None else {"gpu": "c"},
                                  **kwargs))


def allocated_ids(c: dict) -> list[str]:
    allocation = (c.get("status") or {}).get("allocation") or {}
    return [r["device"] for r in (allocation.get("devices") or {}).get("results", [])]


def sim(api, **kwargs: Any) -> SchedulerSimulator:
    return SchedulerSimulator(api, **{"poll_s": 0.01, "binding_timeout_s": 2.0, **kwargs})


async def test_happy_path_waits_for_attached_then_binds(api) -> None:
    seed(api)
    created = create_pod(api, "trainer-0")
    recorder = Recorder(api)
    driver = FakeDriver(api, delay_s=0.15)
    scheduler = sim(api)
    async with running(driver.run()):
        result = await asyncio.wait_for(scheduler.schedule("ml", "trainer-0"), 5)
    assert result.node == "node-a"
    assert (result.attempts, result.failures) == (1, [])
    assert api.get("pods", "trainer-0", "ml")["spec"]["nodeName"] == "node-a"
    c = api.get("resourceclaims", "c", "ml")
    assert FINALIZER in c["metadata"]["finalizers"]
    st = c["status"]
    assert st["reservedFor"] == [{"resource": "pods", "name": "trainer-0",
                                  "uid": created["metadata"]["uid"]}]
    assert allocated_ids(c) == ["gpu-0"]
    assert st["allocation"]["nodeSelector"] == {"nodeSelectorTerms": [{"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}]}
    assert st["allocation"]["devices"]["results"][0]["bindingConditions"] == [ATTACHED]
    assert abs(parse_rfc3339(st["allocation"]["allocationTimestamp"]) - time.time()) < 5
    assert driver.seen == [("c", "gpu-0", "node-a")]
    # PreBind waited: attached=True was committed before the pod got its node.
    order = [(r, (o.get("spec") or {}).get("nodeName") if r == "pods" else
              bool((o.get("status") or {}).get("devices"))) for _, r, o in recorder.drain()]
    attached_at = order.index(("resourceclaims", True))
    bound_at = order.index(("pods", "node-a"))
    assert attached_at < bound_at
    assert scheduler.metrics["allocations_success"] == 1
    assert scheduler.metrics["prebind_waits"] == 1


async def test_failure_condition_deallocates_and_retries_another_device(api) -> None:
    seed(api)
    create_pod(api, "p")
    recorder = Recorder(api)
    driver = FakeDriver(api, {"gpu-0": "fail"})
    scheduler = sim(api)
    async with running(driver.run()):
        result = await asyncio.wait_for(scheduler.schedule("ml", "p"), 5)
    assert result.node == "node-a" and result.attempts == 2
    assert result.failures == [
        "claim c binding failed: reason=AttachFailed, message=Redfish said no"]
    c = api.get("resourceclaims", "c", "ml")
    assert allocated_ids(c) == ["gpu-1"]
    # the failed device's status entry went away with its allocation
    assert [e["device"] for e in c["status"]["devices"]] == ["gpu-1"]
    states = [allocated_ids(s) for s in recorder.claim_states("c")]
    first_gpu1 = states.index(["gpu-1"])
    assert [] in states[states.index(["gpu-0"]):first_gpu1]    # deallocated in between
    assert scheduler.metrics["allocations_failure"] == 1
    assert scheduler.metrics["allocations_success"] == 1
    assert scheduler.metrics["deallocations"] == 1


async def test_no_condition_times_out_and_deallocates(api) -> None:
    seed(api)
    create_pod(api, "p")
    recorder = Recorder(api)
    driver = FakeDriver(api, {"gpu-0": "never", "gpu-1": "never"})
    scheduler = sim(api, binding_timeout_s=0.3, max_attempts=2)
    started = time.monotonic()
    async with running(driver.run()):
        result = await asyncio.wait_for(scheduler.schedule("ml", "p"), 5)
    elapsed = time.monotonic() - started
    assert result.node is None and result.attempts == 2
    assert result.failures == ["claim c binding timeout"] * 2
    assert 0.6 <= elapsed < 2.5
    c = api.get("resourceclaims", "c", "ml")
    assert "allocation" not in c["status"] and not c["status"].get("reservedFor")
    assert FINALIZER not in (c["metadata"].get("finalizers") or [])
    assert not api.get("pods", "p", "ml")["spec"].get("nodeName")
    tried = [ids[0] for ids in (allocated_ids(s) for s in recorder.claim_states("c")) if ids]
    assert sorted(set(tried)) == ["gpu-0", "gpu-1"]       # the timed-out device was not retried
    assert scheduler.metrics["allocations_timeout"] == 2


async def test_reschedule_condition_moves_pod_to_node_local_device(api) -> None:
    """Mode A: the driver publishes the hot-plugged device node-locally, then sets the
    reschedule failure condition; the retry prefers the node-local pool (no conditions)."""
    seed(api, devices=("gpu-0",))
    create_pod(api, "p")
    driver = FakeDriver(api, {"gpu-0": "reschedule"})
    scheduler = sim(api)
    async with running(driver.run()):
        result = await asyncio.wait_for(scheduler.schedule("ml", "p"), 5)
    assert result.node == "node-a" and result.attempts == 2
    assert result.failures[0].startswith("claim c binding failed: reason=AttachedAsNodeLocal")
    c = api.get("resourceclaims", "c", "ml")
    assert c["status"]["allocation"]["devices"]["results"] == [
        {"request": "gpu", "driver": DRIVER, "pool": "node-a", "device": "gpu-7"}]
    assert scheduler.metrics["prebind_waits"] == 1


@pytest.mark.parametrize("ending", ["deleted", "succeeded"])
async def test_claim_controller_deallocates_after_pod_ends(api, ending: str) -> None:
    seed(api)
    create_pod(api, "p")
    async with running(FakeDriver(api).run()):
        assert (await asyncio.wait_for(sim(api).schedule("ml", "p"), 5)).node == "node-a"
    controller = ClaimController(api)
    await controller.reconcile_once()
    assert allocated_ids(api.get("resourceclaims", "c", "ml")) == ["gpu-0"]   # still in use
    if ending == "deleted":
        api.delete("pods", "p", "ml")
    else:
        body = api.get("pods", "p", "ml")
        body.setdefault("status", {})["phase"] = "Succeeded"
        api.update("pods", body, subresource="status")
    await controller.reconcile_once()
    c = api.get("resourceclaims", "c", "ml")
    assert not c["status"].get("reservedFor")
    assert "allocation" not in c["status"] and not c["status"].get("devices")
    assert FINALIZER not in (c["metadata"].get("finalizers") or [])
    assert controller.metrics["deallocations"] == 1


async def test_template_claim_is_generated_and_collected(api) -> None:
    seed(api, claims=())
    api.create("resourceclaimtemplates", {
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
        "metadata": {"name": "one-gpu", "namespace": "ml"},
        "spec": {"metadata": {"labels": {"team": "ml"}}, "spec": claim("x")["spec"]}})
    created = create_pod(api, "worker", {}, templates={"gpu": "one-gpu"})
    async with running(FakeDriver(api).run()):
        result = await asyncio.wait_for(sim(api).schedule("ml", "worker"), 5)
    assert result.node == "node-a"
    [generated] = api.list("resourceclaims", "ml")
    name = generated["metadata"]["name"]
    assert name.startswith("worker-gpu-")
    assert generated["metadata"]["annotations"][POD_CLAIM_NAME_ANNOTATION] == "gpu"
    assert generated["metadata"]["labels"] == {"team": "ml"}
    [owner] = generated["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "Pod", created["metadata"]["uid"], True)
    assert api.get("pods", "worker", "ml")["status"]["resourceClaimStatuses"] == [
        {"name": "gpu", "resourceClaimName": name}]
    assert allocated_ids(generated) == ["gpu-0"]
    api.delete("pods", "worker", "ml")
    await ClaimController(api).reconcile_once()
    assert api.get("resourceclaims", name, "ml") is None


async def test_two_pods_racing_for_one_device_never_both_get_it(api) -> None:
    seed(api, devices=("gpu-0",), claims=("c1", "c2"))
    create_pod(api, "p1", {"gpu": "c1"})
    create_pod(api, "p2", {"gpu": "c2"})
    recorder = Recorder(api)
    schedulers = [sim(api), sim(api)]      # two replicas, the worst case
    async with running(FakeDriver(api, delay_s=0.05).run()):
        results = await asyncio.wait_for(asyncio.gather(
            schedulers[0].schedule("ml", "p1"), schedulers[1].schedule("ml", "p2")), 5)
    assert sorted(r.node or "" for r in results) == ["", "node-a"]
    loser = next(r for r in results if r.node is None)
    assert loser.attempts == 1
    assert loser.failures == ["0/2 nodes are available: 2 cannot allocate all claims."]
    holders: dict[str, list[str]] = {}
    for _, resource, obj in recorder.drain():
        if resource == "resourceclaims":
            holders[obj["metadata"]["name"]] = allocated_ids(obj)
            assert sum("gpu-0" in devs for devs in holders.values()) <= 1, holders
    assert sorted(allocated_ids(api.get("resourceclaims", n, "ml")) for n in ("c1", "c2")) == [
        [], ["gpu-0"]]


async def test_shared_claim_second_pod_joins_without_new_allocation(api) -> None:
    seed(api)
    first = create_pod(api, "p1")
    second = create_pod(api, "p2")
    driver = FakeDriver(api)
    scheduler = sim(api)
    async with running(driver.run()):
        assert (await asyncio.wait_for(scheduler.schedule("ml", "p1"), 5)).node == "node-a"
        result = await asyncio.wait_for(scheduler.schedule("ml", "p2"), 5)
    assert result.node == "node-a" and result.failures == []
    c = api.get("resourceclaims", "c", "ml")
    assert [r["uid"] for r in c["status"]["reservedFor"]] == [
        first["metadata"]["uid"], second["metadata"]["uid"]]
    assert allocated_ids(c) == ["gpu-0"] and driver.seen == [("c", "gpu-0", "node-a")]
    # one consumer leaving keeps the allocation; the last one releases it
    controller = ClaimController(api)
    api.delete("pods", "p1", "ml")
    await controller.reconcile_once()
    assert allocated_ids(api.get("resourceclaims", "c", "ml")) == ["gpu-0"]
    api.delete("pods", "p2", "ml")
    await controller.reconcile_once()
    assert allocated_ids(api.get("resourceclaims", "c", "ml")) == []


async def test_pods_spread_over_feasible_nodes(api) -> None:
    seed(api, claims=("c1", "c2"), nodes={"node-a": True, "node-b": True},
         selection={"allNodes": True})
    create_pod(api, "plain", {}, nodeSelector={"kubernetes.io/hostname": "node-a"})
    create_pod(api, "p1", {"gpu": "c1"})
    create_pod(api, "p2", {"gpu": "c2"})
    scheduler = sim(api)
    async with running(FakeDriver(api).run()):
        plain = await asyncio.wait_for(scheduler.schedule("ml", "plain"), 5)
        results = await asyncio.wait_for(asyncio.gather(
            scheduler.schedule("ml", "p1"), scheduler.schedule("ml", "p2")), 5)
    assert plain.node == "node-a"
    # p1: node-b has fewer pods; p2: one each (p1 still being scheduled counts), name wins
    assert [r.node for r in results] == ["node-b", "node-a"]


async def test_pod_deleted_while_waiting_releases_claim(api) -> None:
    seed(api)
    create_pod(api, "p")
    scheduler = sim(api)
    task = asyncio.create_task(scheduler.schedule("ml", "p"))
    for _ in range(200):
        if allocated_ids(api.get("resourceclaims", "c", "ml")):
            break
        await asyncio.sleep(0.005)
    api.delete("pods", "p", "ml")
    result = await asyncio.wait_for(task, 5)
    assert result.node is None and "deleted" in result.failures[-1]
    assert allocated_ids(api.get("resourceclaims", "c", "ml")) == []


async def test_run_loops_schedule_pending_pods_and_reuse_released_devices(api) -> None:
    seed(api, devices=("gpu-0",), claims=("c1", "c2"))
    scheduler = sim(api, backoff_s=0.05, max_backoff_s=0.2)
    controller = ClaimController(api, resync_s=0.1)
    async with running(scheduler.run(), controller.run(), FakeDriver(api).run()):
        create_pod(api, "p1", {"gpu": "c1"})
        create_pod(api, "p2", {"gpu": "c2"})

        async def bound() -> list[str]:
            while True:
                names = sorted(p["metadata"]["name"] for p in api.list("pods", "ml")
                               if p["spec"].get("nodeName"))
                if names:
                    return names
                await asyncio.sleep(0.01)

        [winner] = await asyncio.wait_for(bound(), 5)
        await asyncio.sleep(0.2)        # the other stays pending: the only device is taken
        assert [p["metadata"]["name"] for p in api.list("pods", "ml")
                if p["spec"].get("nodeName")] == [winner]
        api.delete("pods", winner, "ml")
        assert await asyncio.wait_for(bound(), 5) == [{"p1": "p2", "p2": "p1"}[winner]]
    assert scheduler.metrics["unschedulable"] >= 1
