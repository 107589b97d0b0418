"""The binder in process against the fake API server: the failure paths that need no
hardware (an unmapped node; a missing per-driver permission)."""

from __future__ import annotations

import pytest

from bridge.binder import Binder
from bridge.config import Settings
from bridge.inventory import Block, Pool
from bridge.kevents import Recorder
from bridge.kube import Kube, KubeError
from bridge.observe import Metrics
from bridge.redfish import Redfish
from bridge.reflector import Reflector
from bridge.slices import Identity
from bridge.state import BridgeState
from bridge.testkit.apiserver import FakeKubeAPI

from .support.bridge import DRIVER, bridge_rules

BLOCK = "/redfish/v1/CompositionService/ResourceBlocks/gpu1-1"


def allocated_claim(api: FakeKubeAPI, node: str) -> dict:
    claim = api.create("resourceclaims", {
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {"name": "c1", "namespace": "default"},
        "spec": {"devices": {"requests": [
            {"name": "gpu", "exactly": {"deviceClassName": "gpu"}}]}}})
    claim["status"] = {
        "allocation": {
            "allocationTimestamp": "2026-11-30T10:00:00Z",
            "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": [node]}]}]},
            "devices": {"results": [{
                "request": "gpu", "driver": DRIVER, "pool": "pcie1", "device": "rb-gpu1-1",
                "bindingConditions": [f"{DRIVER}/attached"],
                "bindingFailureConditions": [f"{DRIVER}/attach-failed"]}]}},
        "reservedFor": [{"resource": "pods", "name": "p", "uid": "u-p"}]}
    return api.update("resourceclaims", claim, subresource="status")


def binder_for(api: FakeKubeAPI, token: str) -> tuple[Binder, BridgeState, Kube, Metrics]:
    settings = Settings(driver_name=DRIVER, binding_timeout_s=10**9, attach_timeout_s=10**9)
    kube = Kube.for_url(api.url, token)
    state = BridgeState(settings, Identity(DRIVER, frozenset({"gpu"})),
                        claims=Reflector(kube, "/claims"), slices=Reflector(kube, "/slices"),
                        nodes=Reflector(kube, "/nodes"))
    gpu = Block(uri=BLOCK, id="gpu1-1", type="gpu", state="Unused", reserved=False,
                healthy=True, zones=("pcie1",), systems=())
    state.set_pool(Pool(blocks={BLOCK: gpu}, systems={}, zones={"pcie1": frozenset({BLOCK})}))
    node = api.create("nodes", {"metadata": {"name": "node-x"},
                                "status": {"nodeInfo": {"systemUUID": "no-such-system"}}})
    state.nodes.objects["node-x"] = node
    metrics = Metrics()
    binder = Binder(state, kube, Redfish("https://127.0.0.1:9", "u", "p"), metrics,
                    Recorder(kube, "test"))
    return binder, state, kube, metrics


@pytest.fixture
async def api():
    fake = FakeKubeAPI(tokens={"bridge-token": bridge_rules(),
                               "no-driver-rule": [r for r in bridge_rules()
                                                  if r["resources"] != ["resourceclaims/driver"]]})
    await fake.start()
    yield fake
    await fake.stop()


async def test_an_unmapped_node_is_reported_without_quarantining_the_device(api):
    binder, state, kube, metrics = binder_for(api, "bridge-token")
    claim = allocated_claim(api, "node-x")
    state.claims.objects["default/c1"] = claim
    try:
        await binder.reconcile("default/c1")
    finally:
        await binder.recorder.drain()
        await kube.close()
    [entry] = api.get("resourceclaims", "c1", "default")["status"]["devices"]
    [cond] = entry["conditions"]
    assert (entry["device"], cond["type"], cond["status"], cond["reason"]) == (
        "rb-gpu1-1", f"{DRIVER}/attach-failed", "True", "NodeUnmapped")
    assert "node-x" in cond["message"] and cond["lastTransitionTime"]
    assert state.quarantine == {}  # the device is fine; the node is the problem
    assert metrics.registry.get_sample_value(
        "redfish_dra_attach_failures_total", {"reason": "NodeUnmapped"}) == 1


async def test_a_missing_driver_permission_is_an_error_not_a_silent_drop(api):
    binder, state, kube, _ = binder_for(api, "no-driver-rule")
    state.claims.objects["default/c1"] = allocated_claim(api, "node-x")
    try:
        with pytest.raises(KubeError) as denied:
            await binder.reconcile("default/c1")
    finally:
        await binder.recorder.drain()
        await kube.close()
    assert denied.value.status == 422
    assert any("resourceclaims/driver" in c.get("message", "") for c in denied.value.causes)
    assert not api.get("resourceclaims", "c1", "default")["status"].get("devices")


async def test_a_stale_pool_read_does_not_attach_twice(api, aiohttp_client, settings):
    """The bridge's last pool read shows the GPU free, but an attempt before a restart
    already attached it to the node's system: the optimistic attach is refused (409),
    the binder finds the block is the node's already and reports it attached, counting
    no new attach; the block stays in exactly that one system."""
    from bridge.inventory import read_pool
    from redfish_service.app import create_app
    from redfish_service.store import MemoryBackend

    from .support.service import ADMIN_PASSWORD

    service = await aiohttp_client(create_app(settings, backend=MemoryBackend()))
    rf = Redfish(str(service.make_url("")), "admin", ADMIN_PASSWORD, ssl_ctx=False)
    binder, state, kube, metrics = binder_for(api, "bridge-token")
    binder.rf = rf
    try:
        stale = await read_pool(rf)
        gpu = next(b for b in stale.blocks.values() if b.type == "gpu" and b.free)
        system = next(s for s in stale.systems.values()
                      if s.add_target and set(gpu.zones) & stale.zones_of_system(s))
        state.set_pool(stale)
        await rf.operation("POST", system.add_target, {"ResourceBlock": {"@odata.id": gpu.uri}})
        node = api.create("nodes", {"metadata": {"name": "node-y"},
                                    "status": {"nodeInfo": {"systemUUID": system.uuid}}})
        state.nodes.objects["node-y"] = node
        claim = allocated_claim(api, "node-y")
        claim["status"]["allocation"]["devices"]["results"][0]["device"] = \
            next(d for d, b in state.by_device.items() if b.uri == gpu.uri)
        claim = api.update("resourceclaims", claim, subresource="status")
        state.claims.objects["default/c1"] = claim
        await binder.reconcile("default/c1")
        after = await rf.get(gpu.uri)
    finally:
        await binder.recorder.drain()
        await kube.close()
        await rf.close()
    [entry] = api.get("resourceclaims", "c1", "default")["status"]["devices"]
    assert [(c["type"], c["status"]) for c in entry["conditions"]] == [
        (f"{DRIVER}/attached", "True")]
    assert [s["@odata.id"] for s in after["Links"]["ComputerSystems"]] == [system.uri]
    assert metrics.registry.get_sample_value("redfish_dra_attaches_total") in (None, 0.0)
