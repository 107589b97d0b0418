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
