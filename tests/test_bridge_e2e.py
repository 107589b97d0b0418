"""The DRA bridge end to end: our Redfish service (simulated rack) and the bridge in
subprocesses, the fake API server and the KEP-5007 scheduler simulator in the test, all
on loopback. Every assertion about hardware is read back from Redfish."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from bridge.testkit.apiserver import FakeKubeAPI
from bridge.testkit.scheduler import ClaimController, SchedulerSimulator

from .support.bridge import (
    DRIVER,
    BridgeProcess,
    allocated,
    block_doc,
    bridge_rules,
    composed_devices,
    device_class,
    device_statuses,
    gpu_class,
    make_pod,
    published_devices,
    seed_cluster,
    start_service,
    until,
    write_rack,
)

pytestmark = pytest.mark.slow
ATTACHED, FAILED = f"{DRIVER}/attached", f"{DRIVER}/attach-failed"


@pytest.fixture
async def api():
    # The bridge's token has exactly the permissions deploy/ grants it.
    fake = FakeKubeAPI(bookmark_interval_s=0.5, tokens={"bridge-token": bridge_rules()})
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def procs():
    """Subprocesses to stop at the end of the test, whatever happens."""
    started: list = []
    yield started
    for p in reversed(started):
        p.stop()


def block_of(device: str) -> str:
    assert device.startswith("rb-")
    return device[3:]


def gpu_devices(api) -> set[str]:
    return {d for d in published_devices(api) if d.startswith("rb-gpu")}


async def start(api, procs, tmp_path, *, rack_args=None, bridges=1, log_level="warning",
                settings=None):
    svc = start_service(tmp_path / "state", write_rack(tmp_path / "rack.yaml",
                                                        **(rack_args or {})),
                        log_level=log_level)
    procs.append(svc)
    nodes = seed_cluster(api, svc)
    out = []
    for n in range(bridges):
        b = BridgeProcess(tmp_path / f"bridge{n}", svc, api.url, identity=f"bridge-{n}",
                          settings=settings or {}).start()
        procs.append(b)
        out.append(b)
    return svc, nodes, out


def claim_of(api, pod: str) -> dict:
    c = api.get("resourceclaims", f"{pod}-claim", "default")
    assert c is not None
    return c


async def test_gpu_claim_attached_before_the_pod_binds_then_released(api, procs, tmp_path):
    svc, nodes, [bridge] = await start(api, procs, tmp_path)
    gpus = await until(lambda: len(gpu_devices(api)) == 16 and gpu_devices(api), 30,
                       "16 GPUs published")
    make_pod(api, "p1", gpu_class())
    sched = SchedulerSimulator(api, poll_s=0.05, binding_timeout_s=30)
    result = await asyncio.wait_for(sched.schedule("default", "p1"), 60)

    assert result.node in nodes and result.attempts == 1, result
    claim = claim_of(api, "p1")
    [(_, device)] = allocated(claim)
    assert device in gpus
    assert device_statuses(claim)[device] == {ATTACHED: "True"}
    assert api.get("pods", "p1", "default")["spec"]["nodeName"] == result.node
    host = nodes[result.node]
    assert composed_devices(svc)[host] == [block_of(device)]  # on Redfish, on that host only
    assert sum(len(v) for v in composed_devices(svc).values()) == 1
    events = [e for e in api.list("events", "default")
              if e["involvedObject"]["name"] == "p1-claim"]
    assert {"Attaching", "Attached"} <= {e["reason"] for e in events}

    # The pod goes away: the claim is deallocated, the bridge detaches and republishes.
    api.delete("pods", "p1", "default")
    await ClaimController(api).reconcile_once()
    assert not allocated(claim_of(api, "p1"))
    await until(lambda: composed_devices(svc)[host] == [], 30, "the GPU detached")
    assert block_doc(svc, block_of(device))["CompositionStatus"]["CompositionState"] == "Unused"
    await until(lambda: device in gpu_devices(api), 30, "the GPU offered again")
    metrics = await asyncio.to_thread(bridge.metrics)
    assert metrics["redfish_dra_attaches_total"] == 1
    assert metrics["redfish_dra_detaches_total"] == 1
    assert metrics["redfish_dra_leader"] == 1


async def test_a_dpu_claim_gets_a_dpu_not_a_nic(api, procs, tmp_path):
    """deploy/'s DPU DeviceClass selects the pool's DPUs (NICs with their own processor),
    and the claim's DPU is attached to the node's system like a GPU."""
    svc, nodes, _ = await start(api, procs, tmp_path)
    dpus = await until(lambda: {d for d in published_devices(api) if d.startswith("rb-dpu")},
                       30, "the DPUs published")
    assert not {d for d in published_devices(api) if d.startswith("rb-nic")}
    make_pod(api, "p1", device_class("dpu"))
    sched = SchedulerSimulator(api, poll_s=0.05, binding_timeout_s=30)
    result = await asyncio.wait_for(sched.schedule("default", "p1"), 60)
    claim = claim_of(api, "p1")
    [(_, device)] = allocated(claim)
    assert device in dpus and device_statuses(claim)[device] == {ATTACHED: "True"}
    assert composed_devices(svc)[nodes[result.node]] == [block_of(device)]


async def test_failed_bind_is_reported_and_the_scheduler_retries_elsewhere(api, procs, tmp_path):
    svc, nodes, [bridge] = await start(api, procs, tmp_path, rack_args={"faults": [
        {"kind": "bind_fails", "error": "DeviceFailed", "times": 1}]})
    await until(lambda: len(gpu_devices(api)) == 16, 30, "16 GPUs published")
    make_pod(api, "p1", gpu_class())
    sched = SchedulerSimulator(api, poll_s=0.05, binding_timeout_s=30)
    result = await asyncio.wait_for(sched.schedule("default", "p1"), 60)

    assert result.attempts == 2 and len(result.failures) == 1, result
    assert "AttachFailed" in result.failures[0]
    claim = claim_of(api, "p1")
    [(_, device)] = allocated(claim)
    assert device_statuses(claim)[device] == {ATTACHED: "True"}
    host = nodes[result.node]
    assert composed_devices(svc)[host] == [block_of(device)]
    assert sum(len(v) for v in composed_devices(svc).values()) == 1  # nothing half attached
    # The device that failed is held out of the slices (quarantine), the others are there.
    published = gpu_devices(api)
    assert len(published) == 15 and device in published
    metrics = await asyncio.to_thread(bridge.metrics)
    assert metrics['redfish_dra_attach_failures_total{reason="AttachFailed"}'] == 1


async def test_bridge_killed_mid_attach_attaches_exactly_once(api, procs, tmp_path):
    svc, nodes, [first] = await start(api, procs, tmp_path, rack_args={"bind_latency_s": 3},
                                      log_level="info")
    await until(lambda: len(gpu_devices(api)) == 16, 30, "16 GPUs published")
    make_pod(api, "p1", gpu_class())
    sched = SchedulerSimulator(api, poll_s=0.05, binding_timeout_s=60)
    scheduling = asyncio.create_task(sched.schedule("default", "p1"))

    def composing():
        got = allocated(claim_of(api, "p1"))
        if not got:
            return None
        doc = block_doc(svc, block_of(got[0][1]))
        return doc["CompositionStatus"]["CompositionState"] == "Composing" and got[0][1]

    device = await until(composing, 30, "the attach in flight")
    first.kill()
    second = BridgeProcess(tmp_path / "bridge1", svc, api.url, identity="bridge-1").start()
    procs.append(second)
    result = await asyncio.wait_for(scheduling, 60)

    claim = claim_of(api, "p1")
    assert allocated(claim)[0][1] == device and result.attempts == 1
    assert device_statuses(claim)[device] == {ATTACHED: "True"}
    assert composed_devices(svc)[nodes[result.node]] == [block_of(device)]
    attaches = [line for line in (svc.state_dir / "service.log").read_text().splitlines()
                if '"logger":"aiohttp.access"' in line and '"method":"POST"' in line
                and "ComputerSystem.AddResourceBlock" in line]
    assert len(attaches) == 1, attaches


async def test_one_leader_acts_and_the_standby_takes_over(api, procs, tmp_path):
    svc, nodes, bridges = await start(api, procs, tmp_path, bridges=2)
    lease_name = DRIVER.replace(".", "-") + "-bridge"

    def holder():
        lease = api.get("leases", lease_name, "redfish-dra")
        return lease and lease["spec"].get("holderIdentity")

    leader_id = await until(holder, 30, "a leader")
    leader = next(b for b in bridges if b.identity == leader_id)
    standby = next(b for b in bridges if b.identity != leader_id)
    await until(lambda: len(gpu_devices(api)) == 16, 30, "16 GPUs published")
    await until(standby.ready, 30, "the standby ready (warm caches)")
    sched = SchedulerSimulator(api, poll_s=0.05, binding_timeout_s=30)
    make_pod(api, "p1", gpu_class())
    assert (await asyncio.wait_for(sched.schedule("default", "p1"), 60)).node
    lm, sm = (await asyncio.to_thread(leader.metrics), await asyncio.to_thread(standby.metrics))
    assert (lm["redfish_dra_leader"], sm["redfish_dra_leader"]) == (1, 0)
    assert (lm["redfish_dra_attaches_total"], sm["redfish_dra_attaches_total"]) == (1, 0)

    killed = time.monotonic()
    leader.kill()
    await until(lambda: holder() == standby.identity, 15, "the standby leading")
    takeover = time.monotonic() - killed
    assert takeover < 2 * 2 + 1, takeover  # within two lease durations (2 s) and a retry
    make_pod(api, "p2", gpu_class())
    result = await asyncio.wait_for(sched.schedule("default", "p2"), 60)
    assert device_statuses(claim_of(api, "p2"))[allocated(claim_of(api, "p2"))[0][1]] == {
        ATTACHED: "True"}
    assert composed_devices(svc)[nodes[result.node]]
    assert (await asyncio.to_thread(standby.metrics))["redfish_dra_attaches_total"] == 1


async def test_fifty_claims_across_four_nodes(api, procs, tmp_path):
    svc, nodes, [bridge] = await start(api, procs, tmp_path, rack_args={
        "gpus_per_switch": 32, "seed": 7,
        "faults": [{"kind": "bind_fails", "error": "DeviceFailed", "probability": 0.1}]})
    all_gpus = await until(lambda: len(gpu_devices(api)) == 64 and gpu_devices(api), 30,
                           "64 GPUs published")
    sched = SchedulerSimulator(api, poll_s=0.05, binding_timeout_s=30, max_attempts=5)
    pods = [f"p{n}" for n in range(50)]
    for pod in pods:
        make_pod(api, pod, gpu_class())
    results = await asyncio.wait_for(
        asyncio.gather(*(sched.schedule("default", p) for p in pods)), 240)

    composed = composed_devices(svc)
    owner: dict[str, str] = {}
    for host, blocks in composed.items():
        for b in blocks:
            assert b not in owner, f"{b} attached to {owner.get(b)} and {host}"
            owner[b] = host
    attached = 0
    for pod, result in zip(pods, results, strict=True):
        claim = claim_of(api, pod)
        if result.node is None:  # gave up after max_attempts failures: nothing kept
            assert not allocated(claim) and len(result.failures) == 5, (pod, result)
            continue
        [(_, device)] = allocated(claim)
        assert device_statuses(claim)[device] == {ATTACHED: "True"}, (pod, claim["status"])
        assert owner[block_of(device)] == nodes[result.node]
        attached += 1
    assert attached == len(owner) and attached >= 45
    assert {nodes[r.node] for r in results if r.node} == set(nodes.values())  # all 4 used

    for pod in pods:
        api.delete("pods", pod, "default")
    await ClaimController(api).reconcile_once()
    await until(lambda: not any(composed_devices(svc).values()), 60, "every GPU detached")
    # Each device whose attach failed is quarantined (the scheduler may pick it once more
    # before the slice drops it); all the others are offered again.
    failed = {m.group(1) for r in results for f in r.failures
              if (m := re.search(r"ResourceBlocks/(\S+) to ", f))}
    assert len(failed) >= sum(len(r.failures) for r in results) / 2
    await until(lambda: gpu_devices(api) == all_gpus - {f"rb-{b}" for b in failed}, 30,
                "every GPU but the failed ones offered again")
    assert (await asyncio.to_thread(bridge.metrics))["redfish_dra_detaches_total"] == attached


async def test_slow_attach_times_out_fails_and_the_late_device_is_reclaimed(api, procs, tmp_path):
    """An attach slower than the bridge's deadline is reported failed before the
    scheduler's timeout; the Redfish operation still finishes later, and the releaser takes
    back the device nobody wants."""
    svc, _, [bridge] = await start(api, procs, tmp_path, rack_args={"bind_latency_s": 3},
                                   settings={"attach_timeout_s": 1.5}, log_level="info")
    await until(lambda: len(gpu_devices(api)) == 16, 30, "16 GPUs published")
    make_pod(api, "p1", gpu_class())
    sched = SchedulerSimulator(api, poll_s=0.05, binding_timeout_s=30, max_attempts=1)
    result = await asyncio.wait_for(sched.schedule("default", "p1"), 60)
    assert result.node is None and "AttachTimeout" in result.failures[0], result
    await until(lambda: bridge.metrics()["redfish_dra_detaches_total"] == 1, 20,
                "the late device detached")
    assert not any(composed_devices(svc).values())
    assert (await asyncio.to_thread(bridge.metrics))[
        'redfish_dra_attach_failures_total{reason="AttachTimeout"}'] == 1


async def test_allocation_gone_mid_attach_leaves_nothing_attached(api, procs, tmp_path):
    svc, _, [bridge] = await start(api, procs, tmp_path, rack_args={"bind_latency_s": 1.5})
    await until(lambda: len(gpu_devices(api)) == 16, 30, "16 GPUs published")
    make_pod(api, "p1", gpu_class())
    sched = SchedulerSimulator(api, poll_s=0.05, binding_timeout_s=30, max_attempts=1)
    scheduling = asyncio.create_task(sched.schedule("default", "p1"))

    def composing():
        got = allocated(claim_of(api, "p1"))
        return got and block_doc(svc, block_of(got[0][1]))["CompositionStatus"][
            "CompositionState"] == "Composing"

    await until(composing, 30, "the attach in flight")
    api.delete("pods", "p1", "default")  # the pod goes away while the device is attaching
    await ClaimController(api).reconcile_once()
    assert (await asyncio.wait_for(scheduling, 30)).node is None
    await until(lambda: bridge.metrics()["redfish_dra_detaches_total"] == 1, 20,
                "the device detached")
    assert not any(composed_devices(svc).values())


async def test_conflicts_and_expired_watches_are_survived(api, procs, tmp_path):
    svc, _, [bridge] = await start(api, procs, tmp_path)
    await until(lambda: len(gpu_devices(api)) == 16, 30, "16 GPUs published")
    # Three status writes in a row answer 409: each is retried from a fresh read.
    api.fail_next("PATCH", r"/resourceclaims/[^/]+/status$", 409, count=3)
    make_pod(api, "p1", gpu_class())
    sched = SchedulerSimulator(api, poll_s=0.05, binding_timeout_s=30)
    result = await asyncio.wait_for(sched.schedule("default", "p1"), 60)
    assert result.attempts == 1
    assert (await asyncio.to_thread(bridge.metrics))["redfish_dra_status_conflicts_total"] == 3
    # The event history is compacted and every watch dropped: the bridge lists again.
    api.compact()
    api.drop_watches(abrupt=True)
    make_pod(api, "p2", gpu_class())
    result = await asyncio.wait_for(sched.schedule("default", "p2"), 60)
    claim = claim_of(api, "p2")
    assert device_statuses(claim)[allocated(claim)[0][1]] == {ATTACHED: "True"}
    assert sum(len(v) for v in composed_devices(svc).values()) == 2
