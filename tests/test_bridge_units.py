"""The bridge's pure parts: configuration, slices, claim status entries, the work queue,
and reading a real service's pool through the bridge's own Redfish client."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from bridge.claims import Unit, condition, status_entry, units, with_conditions
from bridge.config import ConfigError, load_settings
from bridge.inventory import Block, Pool, PoolChanged, read_pool, update_pool
from bridge.redfish import Redfish, RedfishError, ssl_context
from bridge.slices import (
    Identity,
    build_slices,
    device_name,
    dns_label,
    group_blocks,
    pool_content,
    read_quarantine,
)
from bridge.workqueue import WorkQueue

DRIVER = "composable.example.com"
IDENT = Identity(DRIVER, frozenset({"gpu", "nvme", "cxl-memory"}))


# -- configuration ---------------------------------------------------------------------------
def test_settings_defaults_and_validation(tmp_path, monkeypatch):
    s = load_settings(None, {"driver_name": "gpu.example.org"})
    assert s.lease_name == "gpu-example-org-bridge"
    assert Identity(s.driver_name, frozenset()).attached == "gpu.example.org/attached"
    with pytest.raises(ConfigError, match="driver_name"):
        load_settings(None, {"driver_name": "Not_A_Domain"})
    with pytest.raises(ConfigError, match="device_types"):
        load_settings(None, {"device_types": ["gpu", "toaster"]})
    with pytest.raises(ConfigError, match="renew_deadline_s"):
        load_settings(None, {"lease_duration_s": 5, "renew_deadline_s": 6})
    monkeypatch.setenv("REDFISH_DRA_BRIDGE_DEVICE_TYPES", "gpu, nvme")
    assert load_settings(None, {}).device_types == ["gpu", "nvme"]


def test_password_comes_from_the_secret_file_and_is_never_shown(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("s3cret-Passw0rd\n")
    s = load_settings(None, {"redfish_password_file": str(secret)})
    assert s.password() == "s3cret-Passw0rd"
    assert "s3cret" not in repr(load_settings(None, {"redfish_password": "s3cret-x"}))
    with pytest.raises(ConfigError, match="no Redfish password"):
        load_settings(None, {}).password()


# -- slices ----------------------------------------------------------------------------------
def block(n: int, zones=("z1",), *, state="Unused", kind="gpu", healthy=True) -> Block:
    uri = f"/redfish/v1/CompositionService/ResourceBlocks/GPU_{n}"
    return Block(uri=uri, id=f"GPU_{n}", type=kind, state=state, reserved=False,
                 healthy=healthy, zones=tuple(zones), systems=(),
                 attributes={"type": kind, "model": "H100", "resourceBlock": uri},
                 capacity={"memory": "81920Mi"})


def pool_of(*blocks: Block) -> Pool:
    return Pool(blocks={b.uri: b for b in blocks}, systems={}, zones={})


def test_device_names_are_dns_labels():
    assert device_name(block(1)) == "rb-gpu-1"
    long = dns_label("x" * 100)
    assert len(long) == 63 and long != dns_label("x" * 99)


def test_only_free_healthy_managed_blocks_are_offered_and_held_ones_stay():
    free, busy, sick, nic = block(1), block(2, state="Composed"), block(3, healthy=False), \
        block(4, kind="nic")
    held = block(5, state="Composed")
    groups = group_blocks(IDENT, pool_of(free, busy, sick, nic, held), {held.uri}, set())
    assert sorted(b.id for b in groups[("z1",)]) == ["GPU_1", "GPU_5"]
    # quarantined devices are held out
    groups = group_blocks(IDENT, pool_of(free), set(), {"rb-gpu-1"})
    assert groups == {("z1",): []}


def test_a_block_in_two_zones_gets_a_pool_of_its_own():
    groups = group_blocks(IDENT, pool_of(block(1, ("z2", "z1")), block(2, ("z1",))), set(),
                          set())
    assert set(groups) == {("z1",), ("z1", "z2")}


def test_pools_split_at_128_devices_with_one_generation():
    blocks = [block(n) for n in range(300)]
    content = pool_content(IDENT, "z1", blocks)
    slices = build_slices(IDENT, "z1", content, 7, {})
    assert [len(s["spec"]["devices"]) for s in slices] == [128, 128, 44]
    for s in slices:
        spec = s["spec"]
        assert spec["pool"] == {"name": "z1", "generation": 7, "resourceSliceCount": 3}
        assert spec["nodeSelector"] == {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": f"pool.{DRIVER}/z1", "operator": "In", "values": ["true"]}]}]}
        device = spec["devices"][0]
        assert device["bindsToNode"] is True
        assert device["bindingConditions"] == [f"{DRIVER}/attached"]
        assert device["bindingFailureConditions"] == [f"{DRIVER}/attach-failed"]
        assert device["attributes"]["type"] == {"string": "gpu"}
        assert device["capacity"]["memory"] == {"value": "81920Mi"}
    names = [d["name"] for s in slices for d in s["spec"]["devices"]]
    assert len(names) == len(set(names)) == 300


def test_quarantine_is_written_on_slices_and_read_back():
    slices = build_slices(IDENT, "z1", pool_content(IDENT, "z1", [block(1)]), 1,
                          {"rb-gpu-2": 1234.5})
    assert read_quarantine(IDENT, slices) == {"rb-gpu-2": 1234.5}
    slices[0]["metadata"]["annotations"][IDENT.quarantine_key] = "not json"
    assert read_quarantine(IDENT, slices) == {}


# -- claims ----------------------------------------------------------------------------------
def claim(devices=None) -> dict:
    return {
        "metadata": {"name": "c", "namespace": "ns", "uid": "u-1", "resourceVersion": "5",
                     "generation": 1},
        "status": {
            "allocation": {
                "allocationTimestamp": "2026-11-30T10:00:00Z",
                "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}]},
                "devices": {"results": [
                    {"request": "gpu", "driver": DRIVER, "pool": "z1", "device": "rb-gpu-1"},
                    {"request": "nic", "driver": "other.example.com", "pool": "p",
                     "device": "d"}]}},
            "devices": devices or []}}


def test_units_are_our_results_with_node_and_epoch():
    [unit] = units(claim(), DRIVER)
    assert (unit.node, unit.pool, unit.device, unit.epoch) == (
        "node-a", "z1", "rb-gpu-1", "2026-11-30T10:00:00Z")
    again = Unit(**{**unit.__dict__})
    assert again.attachment_id == unit.attachment_id
    moved = Unit(**{**unit.__dict__, "epoch": "2026-11-30T11:00:00Z"})
    assert moved.attachment_id != unit.attachment_id


def test_status_writes_keep_foreign_entries_verbatim_and_merge_ours():
    foreign = {"driver": "other.example.com", "pool": "p", "device": "d",
               "conditions": [{"type": "x", "status": "True", "reason": "R",
                               "lastTransitionTime": "2026-01-01T00:00:00Z"}],
               "data": {"keep": ["me", 1]}}
    c = claim([foreign])
    [unit] = units(c, DRIVER)
    devices = with_conditions(c, DRIVER, unit, [
        {"type": f"{DRIVER}/attached", "status": "True", "reason": "Attached",
         "message": "ok"}], {"node": "node-a"})
    assert devices[0] == foreign
    c["status"]["devices"] = devices
    entry = status_entry(c, DRIVER, unit)
    assert condition(entry, f"{DRIVER}/attached") == "True"
    assert entry["conditions"][0]["observedGeneration"] == 1
    first = entry["conditions"][0]["lastTransitionTime"]
    entry["conditions"][0]["lastTransitionTime"] = "2026-11-30T10:00:05Z"
    same = with_conditions(c, DRIVER, unit, [
        {"type": f"{DRIVER}/attached", "status": "True", "reason": "Attached",
         "message": "still"}], {})
    assert same[1]["conditions"][0]["lastTransitionTime"] == "2026-11-30T10:00:05Z"
    assert first.endswith("Z")


# -- work queue ------------------------------------------------------------------------------
async def test_work_queue_dedups_serialises_and_retries():
    seen: list[str] = []
    running: set[str] = set()
    fail_once = {"b"}

    async def handle(key: str) -> None:
        assert key not in running, "one key handled twice at once"
        running.add(key)
        seen.append(key)
        await asyncio.sleep(0.01)
        running.discard(key)
        if key in fail_once:
            fail_once.discard(key)
            raise RuntimeError("transient")

    q = WorkQueue(handle, workers=4, base_delay_s=0.05)
    task = asyncio.create_task(q.run())
    for _ in range(5):
        q.add("a")
    q.add("b")
    await asyncio.sleep(0.005)
    q.add("a")  # added while "a" runs: handled once more afterwards
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert seen.count("a") == 2
    assert seen.count("b") == 2  # failed, retried after the backoff


# -- the pool of a real service, read through the bridge's client ---------------------------
@pytest.mark.slow
async def test_read_pool_of_the_simulated_rack(service):
    rf = Redfish(service.url, "admin", service.password,
                 ssl_ctx=ssl_context(True, service.cert))
    async with rf:
        functions: dict = {}
        pool = await read_pool(rf, functions)
        assert functions and all("/PCIeFunctions/" in u for u in functions)
        # read once: a second read of the pool reads no PCIe function again
        asked: list[str] = []
        get = rf.get

        async def counting(path: str, *args, **kwargs):
            asked.append(path)
            return await get(path, *args, **kwargs)

        rf.get = counting
        await read_pool(rf, functions)
        rf.get = get
        assert asked and not [u for u in asked if "/PCIeFunctions/" in u]
        kinds: dict[str | None, int] = {}
        for b in pool.blocks.values():
            kinds[b.type] = kinds.get(b.type, 0) + 1
        assert kinds["gpu"] == 16 and kinds["nvme"] == 8 and kinds["cxl-memory"] == 4
        # a DPU is a NIC with its own processor: the DPU DeviceClass has something to match
        assert kinds["dpu"] == 2 and kinds["nic"] == 2
        dpu = pool.blocks["/redfish/v1/CompositionService/ResourceBlocks/dpu1-1"]
        assert (dpu.attributes["vendor"], dpu.attributes["model"]) == (
            "NVIDIA", "BlueField-3 B3220")
        gpu = pool.blocks["/redfish/v1/CompositionService/ResourceBlocks/gpu1-1"]
        assert gpu.attributes["vendor"] == "NVIDIA" and gpu.capacity["memory"] == "81920Mi"
        # the PCI ids come from the PCIe function the GPU's Processor links to
        assert (gpu.attributes["pcieVendorId"], gpu.attributes["pcieDeviceId"]) == (
            "0x10de", "0x2331")
        nvme = pool.blocks["/redfish/v1/CompositionService/ResourceBlocks/nvme1-1"]
        assert nvme.attributes["pcieVendorId"] == "0x144d"
        assert gpu.free and gpu.zones == ("pcie1",)
        cxl = pool.blocks["/redfish/v1/CompositionService/ResourceBlocks/cxlmem1"]
        assert set(cxl.zones) == {"pcie1", "pcie2"}
        host1 = pool.systems["/redfish/v1/Systems/host1"]
        assert host1.add_target and pool.system_by_uuid(host1.uuid.upper()) == host1
        assert pool.zones_of_system(host1) == {"pcie1"}
        # attach and detach through the standard actions
        body = {"ResourceBlock": {"@odata.id": gpu.uri}}
        await rf.operation("POST", host1.add_target, body)
        doc = await rf.get(gpu.uri)
        assert doc["CompositionStatus"]["CompositionState"] == "Composed"
        # reading again only what changed gives what a whole read gives
        updated = await update_pool(rf, pool, {gpu.uri, host1.uri}, functions)
        fresh = await read_pool(rf, functions)
        for uri in (gpu.uri,):
            a, b = updated.blocks[uri], fresh.blocks[uri]
            assert (a, a.attributes, a.capacity) == (b, b.attributes, b.capacity)
            assert a.systems == (host1.uri,) and not a.free
        assert updated.systems[host1.uri] == fresh.systems[host1.uri]
        assert updated.blocks == fresh.blocks and updated.zones == fresh.zones
        with pytest.raises(PoolChanged):  # not in the pool read last: read it whole
            await update_pool(rf, pool, {"/redfish/v1/Systems/composed-new"}, functions)
        with pytest.raises(RedfishError) as refused:
            await rf.operation("POST", "/redfish/v1/Systems/host3/Actions/"
                               "ComputerSystem.AddResourceBlock", body)
        assert refused.value.status in (400, 409) and refused.value.message_id
        await rf.operation("POST", host1.remove_target, body)
        doc = await rf.get(gpu.uri)
        assert doc["CompositionStatus"]["CompositionState"] == "Unused"
        # a CXL device reachable from both zones, attached to host1, does not put host1
        # (and its node) in pcie2: its zones are its own block's
        cxl_body = {"ResourceBlock": {"@odata.id": cxl.uri}}
        await rf.operation("POST", host1.add_target, cxl_body)
        again = await read_pool(rf, functions)
        assert cxl.uri in again.systems[host1.uri].blocks
        assert again.zones_of_system(again.systems[host1.uri]) == {"pcie1"}
        await rf.operation("POST", host1.remove_target, cxl_body)


@pytest.mark.parametrize(("args", "code", "says"), [
    (["--driver-name", "Not_A_Domain"], 2, "driver_name must be a lower-case DNS subdomain"),
    (["--kubeconfig", "/nonexistent/kubeconfig"], 1, "bridge cannot start"),
])
def test_cli_refuses_bad_setups_in_one_line(tmp_path, args, code, says):
    secret = tmp_path / "password"
    secret.write_text("pw")
    proc = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "--redfish-password-file", str(secret),
         "--http-port", "0", *args], capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("REDFISH_DRA_BRIDGE_")})
    assert proc.returncode == code, proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr


def test_manager_events_name_what_to_read_again():
    """The manager's events say which blocks and systems to read again; a change of a
    collection or a zone, or lost events, mean the whole pool; the rest is not the pool."""
    from bridge.config import Settings
    from bridge.controller import Bridge

    bridge = Bridge(Settings(driver_name="composable.example.com"), kube=None, redfish=None)
    bridge._stale = set()

    def event(*origins: str, message: str = "ResourceEvent.1.4.ResourceChanged") -> dict:
        return {"Events": [{"MessageId": message, "OriginOfCondition": {"@odata.id": o}}
                           for o in origins]}

    blocks = "/redfish/v1/CompositionService/ResourceBlocks"
    bridge._note(event(f"{blocks}/gpu1-1", f"{blocks}/nvme1-2/Drives/Drive0",
                       "/redfish/v1/Systems/host1", "/redfish/v1/Systems/host2/Memory/cxl1",
                       "/redfish/v1/CompositionService/FreePool",
                       "/redfish/v1/Fabrics/PCIe/Zones/zone-host1"))
    assert bridge._stale == {f"{blocks}/gpu1-1", f"{blocks}/nvme1-2",
                             "/redfish/v1/Systems/host1", "/redfish/v1/Systems/host2"}
    for whole in (event("/redfish/v1/Systems"), event(blocks),
                  event("/redfish/v1/CompositionService/ResourceZones/pcie1"),
                  event(f"{blocks}/gpu1-1", message="Base.1.22.EventBufferExceeded"),
                  {"Events": [{"MessageId": "x"}]}):
        bridge._stale = set()
        bridge._note(whole)
        assert bridge._stale is None, whole
    bridge._note(event(f"{blocks}/gpu1-1"))  # after a whole read is due, it stays due
    assert bridge._stale is None
