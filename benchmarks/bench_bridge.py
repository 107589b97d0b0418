"""The DRA bridge end to end at scale (issue 4), on loopback.

1,000 Pods, each with its own ResourceClaim for one GPU, over 100 simulated nodes (100
hosts behind 10 PCIe switches, 110 GPUs a switch, zero simulated bind latency):

* our Redfish service (simulated rack) and the bridge (``python -m bridge.cli``) run as
  subprocesses; the fake Kubernetes API server and the KEP-5007 scheduler simulator run
  in this process's event loop (the harness, not the system under test);
* the scheduler simulator schedules all the Pods concurrently (attempts started one per
  event-loop turn; see ``schedule_all`` and ``SchedulerView`` for why); per claim, the time from
  the commit of its allocation to the commit of ``<driver>/attached=True`` is taken from
  the fake API server's committed events (stamped with ``time.monotonic()`` inside the
  commit, so a slow consumer does not skew them);
* CPU seconds of the bridge, of the service and of this process during the measured
  phase (``/proc/<pid>/stat``), and the bridge's own Prometheus figures;
* baseline, same run: a second fresh service on the same rack, alone, doing the same
  attaches for a plain Redfish client (``bridge.redfish.Redfish``, one
  ``ComputerSystem.AddResourceBlock`` POST per attach, with the bridge's concurrency).

Targets (issue 4): p99 allocation -> attached under 2 s; the bridge never the bottleneck
compared with the Redfish service (bridge CPU < service CPU).

    python benchmarks/bench_bridge.py [--claims 1000] [--nodes 100] [--gpus-per-switch 110]
        [--rate PODS_PER_S] [--out FILE] [--keep] [--profile DIR] [--service-log-level info]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the test harness (tests.support) lives in the repo

from bridge.config import Settings as BridgeSettings  # noqa: E402
from bridge.redfish import Redfish, ssl_context  # noqa: E402
from bridge.testkit.apiserver import FakeKubeAPI  # noqa: E402
from bridge.testkit.k8s_selectors import Selection  # noqa: E402
from bridge.testkit.scheduler import SchedulerSimulator  # noqa: E402
from redfish_service.drivers.simulated import GPU, RackSpec  # noqa: E402
from tests.support.bridge import (  # noqa: E402
    DRIVER,
    BridgeProcess,
    bridge_rules,
    gpu_class,
    make_pod,
    published_devices,
    redfish_systems,
    seed_cluster,
    start_service,
)
from tests.support.service import ServiceProcess  # noqa: E402

HOSTS_PER_SWITCH = 10
BLOCKS = "/redfish/v1/CompositionService/ResourceBlocks"
ATTACHED, FAILED = f"{DRIVER}/attached", f"{DRIVER}/attach-failed"
# the bridge's binder gate, work-queue workers and connection pool (its default setting)
BRIDGE_CONCURRENCY = BridgeSettings.model_fields["attach_concurrency"].default
TARGET_P99_S = 2.0
CHILDREN: list[Any] = []  # every ServiceProcess / BridgeProcess started, stopped on any exit


# -- small helpers --------------------------------------------------------------------------

def cpu_s(pid: int | str) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_cpu_s() -> float:
    """CPU seconds the whole machine spent busy (all CPUs, /proc/stat) so far."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def rack(nodes: int, gpus_per_switch: int) -> dict[str, Any]:
    """``nodes`` hosts, ten behind each PCIe switch, ``gpus_per_switch`` GPUs a switch."""
    switches = math.ceil(nodes / HOSTS_PER_SWITCH)
    hosts = [f"host{i}" for i in range(1, nodes + 1)]
    spec = RackSpec.model_validate({
        "name": "bench-bridge", "bind_latency_s": 0,
        "hosts": [{"id": h} for h in hosts],
        "switches": [{"id": f"pcie{s}", "protocol": "PCIe",
                      "hosts": hosts[(s - 1) * HOSTS_PER_SWITCH:s * HOSTS_PER_SWITCH]}
                     for s in range(1, switches + 1)],
        "devices": [{"switch": f"pcie{s}", "prefix": f"gpu{s}-", "count": gpus_per_switch,
                     "model": GPU.model_dump()} for s in range(1, switches + 1)],
        "faults": {"seed": 0, "rules": []},
    })
    return spec.model_dump(mode="json")


def write_rack(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


async def start_timed(state: Path, rack_file: Path,
                      log_level: str) -> tuple[ServiceProcess, float]:
    """A fresh service on ``rack_file``; seconds until its service root answered."""
    started = time.monotonic()
    svc = await asyncio.to_thread(start_service, state, rack_file, log_level=log_level)
    return svc, time.monotonic() - started


async def until(check: Callable[[], Any], within_s: float, what: str,
                interval: float = 0.2) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {within_s:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


async def settle(pid: int, *, quiet_share: float = 0.05, window_s: float = 0.5,
                 within_s: float = 20.0) -> float:
    """Wait until process ``pid`` uses less than ``quiet_share`` of a core over a window."""
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        before = cpu_s(pid)
        await asyncio.sleep(window_s)
        if cpu_s(pid) - before < quiet_share * window_s:
            break
    return time.monotonic() - started


class SchedulerView:
    """The fake API server's Python API as the scheduler simulator sees it, with ``list``
    handing out the stored objects instead of deep copies (the simulator only reads what
    it lists, as kube-scheduler reads its informer caches; ``get``, which the simulator
    mutates before ``update``, still copies). Without this, each allocation deep-copies
    every pod and claim two or three times, and the harness, not the bridge, sets the
    pace: minutes of CPU for 1,000 pods. ``get`` copies through orjson, several times
    cheaper than ``copy.deepcopy`` for the same JSON: the PreBind wait re-reads every
    waiting claim and pod each ``poll_s``, and with deep copies that polling alone took
    half of the harness's CPU."""

    def __init__(self, api: FakeKubeAPI) -> None:
        self._api = api

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        rt = self._api.registry.by_name(resource)
        return self._api.store.items(rt, Selection(rt, namespace=namespace if rt.namespaced
                                                   else None))

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict | None:
        rt = self._api.registry.by_name(resource)
        obj = self._api.store.get(rt, name, (namespace or "default") if rt.namespaced else None)
        return orjson.loads(orjson.dumps(obj)) if obj is not None else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


async def schedule_all(sched: SchedulerSimulator, pods: list[str],
                       rate: float = 0.0) -> list[Any]:
    """Every pod scheduled concurrently, their attempts started one per event-loop turn.
    A simulator attempt (filter, allocate, write the allocation) runs without awaiting;
    1,000 tasks created at once would run all their attempts inside one loop iteration,
    during which the in-process API server answers nobody (the bridge's watches and
    status writes would wait for the last allocation). One a turn, the API server serves
    requests between allocations, as kube-scheduler runs one scheduling cycle at a time
    while the binding cycles (the PreBind waits) proceed in parallel. With ``rate``, pod
    i starts no earlier than i / rate seconds after the first (paced arrivals)."""
    tasks = []
    started = time.monotonic()
    for i, pod in enumerate(pods):
        tasks.append(asyncio.create_task(sched.schedule("default", pod)))
        await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic())
                            if rate else 0)
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


# -- what the harness observes --------------------------------------------------------------

class Timeline:
    """Commit times of the claims' allocations and of their attached / attach-failed
    conditions. The fake API server's store puts every committed change on a subscriber
    queue synchronously inside the commit; the queue's ``put_nowait`` is wrapped so the
    stamp is the commit time, whatever the consumer's lag (which is measured too)."""

    def __init__(self, api: FakeKubeAPI) -> None:
        self.queue = api.subscribe()
        put = self.queue.put_nowait

        def stamped(item: Any) -> None:
            put((time.monotonic(), item))

        self.queue.put_nowait = stamped  # type: ignore[method-assign]
        self.allocated: dict[tuple[str, str, str], float] = {}
        self.attached: dict[tuple[str, str, str], float] = {}
        self.failed: dict[tuple[str, str, str], float] = {}
        self.events = 0
        self.rewrites = 0
        self.max_backlog = 0
        self.max_lag_s = 0.0

    def record(self, stamp: float, etype: str, resource: str, obj: dict[str, Any]) -> None:
        if resource != "resourceclaims" or etype == "DELETED":
            return
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        results = ((status.get("allocation") or {}).get("devices") or {}).get("results") or []
        for r in results:
            self.allocated.setdefault((name, r["pool"], r["device"]), stamp)
        for entry in status.get("devices") or []:
            if entry.get("driver") != DRIVER:
                continue
            key = (name, entry["pool"], entry["device"])
            for c in entry.get("conditions") or []:
                if c.get("status") == "True" and c.get("type") == ATTACHED:
                    if key in self.attached:
                        self.rewrites += 1  # the claim written again once attached
                    self.attached.setdefault(key, stamp)
                elif c.get("status") == "True" and c.get("type") == FAILED:
                    self.failed.setdefault(key, stamp)

    async def run(self) -> None:
        while True:
            stamp, (etype, resource, obj) = await self.queue.get()
            self.events += 1
            self.max_backlog = max(self.max_backlog, self.queue.qsize() + 1)
            self.max_lag_s = max(self.max_lag_s, time.monotonic() - stamp)
            self.record(stamp, etype, resource, obj)

    def latencies(self) -> list[float]:
        return [self.attached[k] - t for k, t in self.allocated.items() if k in self.attached]


class LoopLag:
    """How late this process's event loop (fake API server + scheduler) wakes up."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.samples: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval_s)
            self.samples.append(max(0.0, loop.time() - start - self.interval_s))

    def summary(self) -> dict[str, float]:
        return {"p50_ms": pct(self.samples, 0.5) * 1e3, "p99_ms": pct(self.samples, 0.99) * 1e3,
                "max_ms": max(self.samples, default=0.0) * 1e3,
                "late_over_50ms_s": sum(s for s in self.samples if s > 0.05)}


class Profiler:
    """py-spy recording processes during the measured phase (``--profile``)."""

    def __init__(self, out: Path | None) -> None:
        self.out = out
        self.procs: list[subprocess.Popen] = []

    def start(self, targets: dict[str, int]) -> None:
        if self.out is None:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        for name, pid in targets.items():
            for fmt, ext in (("raw", "txt"), ("flamegraph", "svg")):
                self.procs.append(subprocess.Popen(
                    ["py-spy", "record", "--pid", str(pid), "--rate", "100", "--format", fmt,
                     "--output", str(self.out / f"{name}.{ext}")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.clear()


_KUBE_PATH = re.compile(
    r"^/(?:api/v1|apis/[^/]+/[^/]+)(?:/namespaces/[^/]+)?/([^/]+)(?:/([^/]+))?(?:/([^/]+))?$")
_REDFISH_IDS = re.compile(
    r"/(ResourceBlocks|Systems|Tasks|TaskMonitors|Sessions|Members)/(?!Actions)[^/]+")


def kube_requests(requests: list[tuple[str, str, str | None]]) -> dict[str, int]:
    """The bridge's requests to the fake API server by verb and resource."""
    out: dict[str, int] = {}
    for method, path_qs, _ in requests:
        path, _, query = path_qs.partition("?")
        m = _KUBE_PATH.match(path)
        if m is None:
            kind = f"{method} {path}"
        else:
            plural, name, sub = m.groups()
            verb = "WATCH" if "watch=true" in query else method
            kind = f"{verb} {plural}" + (f"/{sub}" if sub else "") + (
                "" if name else " (collection)")
        out[kind] = out.get(kind, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def redfish_requests(log: Path, start: int, end: int) -> dict[str, dict[str, float]]:
    """Requests the service served between byte offsets ``start`` and ``end`` of its log
    (its access log, at ``--service-log-level info``): count and service time by kind."""
    out: dict[str, dict[str, float]] = {}
    with open(log, "rb") as f:
        f.seek(start)
        chunk = f.read(max(0, end - start))
    for line in chunk.splitlines():
        if b'"aiohttp.access"' not in line:
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        kind = f"{rec['method']} " + _REDFISH_IDS.sub(r"/\1/{id}", rec["path"])
        entry = out.setdefault(kind, {"count": 0, "ms": 0.0})
        entry["count"] += 1
        entry["ms"] += float(rec.get("ms") or 0)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["ms"]))


def log_size(svc: ServiceProcess) -> int:
    return svc.log_path.stat().st_size if svc.log_path and svc.log_path.exists() else 0


# -- the two phases ---------------------------------------------------------------------------

async def bridge_phase(args: argparse.Namespace, work: Path, rack_file: Path,
                       procs: list, out: dict[str, Any]) -> None:
    svc, first_start = await start_timed(work / "service", rack_file, args.service_log_level)
    procs.append(svc)
    out["service_first_start_s"] = first_start
    api = FakeKubeAPI(tokens={"bridge-token": bridge_rules()})
    await api.start()
    try:
        await _bridge_phase(args, work, svc, api, procs, out)
    finally:
        await api.stop()


async def _bridge_phase(args: argparse.Namespace, work: Path, svc: ServiceProcess,
                        api: FakeKubeAPI, procs: list, out: dict[str, Any]) -> None:
    nodes = await asyncio.to_thread(seed_cluster, api, svc)
    assert len(nodes) == args.nodes, nodes
    settings = {"resync_interval_s": 30, "detach_grace_s": 30, "quarantine_s": 600,
                "log_level": "warning", "lease_duration_s": 15, "renew_deadline_s": 10,
                "retry_period_s": 2, "binding_timeout_s": args.binding_timeout,
                "attach_timeout_s": 300}
    started = time.monotonic()
    bridge = BridgeProcess(work / "bridge", svc, api.url, settings=settings).start()
    procs.append(bridge)
    total_gpus = out["gpus"]

    def all_published() -> bool:
        if bridge.proc is not None and bridge.proc.poll() is not None:
            raise RuntimeError(f"the bridge exited: {bridge.log[-2000:]}")
        return sum(d.startswith("rb-gpu") for d in published_devices(api)) == total_gpus

    await until(all_published, 120, f"{total_gpus} GPUs published")
    await until(bridge.ready, 30, "the bridge ready")
    out["bridge_ready_and_published_s"] = time.monotonic() - started

    timeline = Timeline(api)
    lag = LoopLag()
    helpers = [asyncio.create_task(timeline.run()), asyncio.create_task(lag.run())]
    try:
        pods = [f"bench-{n:04d}" for n in range(args.claims)]
        for pod in pods:
            make_pod(api, pod, gpu_class())
        assert bridge.proc is not None and svc.proc is not None
        out["settle_s"] = await settle(bridge.proc.pid)  # the bridge has seen the claims
        lag.samples.clear()
        sched = SchedulerSimulator(SchedulerView(api), poll_s=args.poll,
                                   binding_timeout_s=args.binding_timeout, max_attempts=3)
        pids = {"bridge": bridge.proc.pid, "service": svc.proc.pid, "harness": os.getpid()}
        profiler = Profiler(args.profile)
        profiler.start(pids)
        cpu0 = {k: cpu_s(p) for k, p in pids.items()}
        kube0, log0 = len(api.requests), log_size(svc)
        busy0, t0 = busy_cpu_s(), time.monotonic()
        try:
            results = await asyncio.wait_for(
                schedule_all(sched, pods, args.rate),
                args.binding_timeout * 3 + 60 + (args.claims / args.rate if args.rate else 0))
        finally:
            measured_s = time.monotonic() - t0
            cpu = {k: cpu_s(p) - cpu0[k] for k, p in pids.items()}
            cpu["other_processes"] = max(0.0, busy_cpu_s() - busy0 - sum(cpu.values()))
            kube1, log1 = len(api.requests), log_size(svc)
            profiler.stop()
        await until(lambda: timeline.queue.empty(), 30, "the event consumer to catch up", 0.05)
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)

    lat = timeline.latencies()
    first_alloc = min(timeline.allocated.values(), default=t0)
    last_attached = max(timeline.attached.values(), default=t0)
    bound = [r for r in results if r.node is not None]
    metrics = await asyncio.to_thread(bridge.metrics)
    composed = await asyncio.to_thread(_composed_gpus, svc)
    owners: dict[str, int] = {}
    for blocks in composed.values():
        for b in blocks:
            owners[b] = owners.get(b, 0) + 1
    out["bridge_run"] = {
        "claims": args.claims,
        "pods_bound": len(bound),
        "pods_unscheduled": len(results) - len(bound),
        "schedule_attempts": sum(r.attempts for r in results),
        "allocations": len(timeline.allocated),
        "attached": len(timeline.attached),
        "attach_failed": len(timeline.failed),
        "latency_s": {"p50": pct(lat, 0.5), "p90": pct(lat, 0.9), "p99": pct(lat, 0.99),
                      "max": max(lat, default=float("nan")), "min": min(lat, default=float("nan"))},
        "first_allocation_to_last_attached_s": last_attached - first_alloc,
        "allocation_burst_s": max(timeline.allocated.values(), default=t0) - first_alloc,
        "measured_phase_s": measured_s,
        "cpu_s": cpu,
        "bridge_over_service_cpu": cpu["bridge"] / cpu["service"] if cpu["service"] else None,
        "attaches_per_bridge_cpu_s": len(timeline.attached) / cpu["bridge"]
        if cpu["bridge"] else None,
        "harness_loop_lag": lag.summary(),
        "claim_writes_after_attached": timeline.rewrites,
        "event_consumer": {"events": timeline.events, "max_backlog": timeline.max_backlog,
                           "max_lag_s": timeline.max_lag_s},
        "redfish_composed_gpus": sum(len(b) for b in composed.values()),
        "redfish_blocks_on_two_systems": sum(1 for n in owners.values() if n > 1),
        "scheduler": dict(sched.metrics),
        "bridge_kube_requests": kube_requests(api.requests[kube0:kube1]),
        "bridge_redfish_requests": redfish_requests(svc.log_path, log0, log1)
        if args.service_log_level == "info" and svc.log_path else None,
        "bridge_metrics": _bridge_figures(metrics),
    }
    bridge.stop()
    svc.stop()


def _composed_gpus(svc: ServiceProcess) -> dict[str, list[str]]:
    out = {}
    for sid, doc in redfish_systems(svc).items():
        out[sid] = [link["@odata.id"].rsplit("/", 1)[1]
                    for link in (doc.get("Links") or {}).get("ResourceBlocks") or []
                    if link["@odata.id"].rsplit("/", 1)[1].startswith("gpu")]
    return out


def _bridge_figures(m: dict[str, float]) -> dict[str, Any]:
    def total(prefix: str) -> float:
        return sum(v for k, v in m.items() if k == prefix or k.startswith(prefix + "{"))

    lat_n = m.get("redfish_dra_attach_latency_seconds_count", 0)
    dur_n = m.get("redfish_dra_attach_duration_seconds_count", 0)
    return {
        "attaches_total": m.get("redfish_dra_attaches_total"),
        "attach_failures_total": total("redfish_dra_attach_failures_total"),
        "attach_failures_by_reason": {k: v for k, v in m.items()
                                      if k.startswith("redfish_dra_attach_failures_total{")},
        "status_conflicts_total": m.get("redfish_dra_status_conflicts_total"),
        "detaches_total": m.get("redfish_dra_detaches_total"),
        "attach_latency_count": lat_n,
        "attach_latency_sum_s": m.get("redfish_dra_attach_latency_seconds_sum"),
        "attach_latency_mean_s": (m.get("redfish_dra_attach_latency_seconds_sum", 0) / lat_n
                                  if lat_n else None),
        "attach_latency_buckets": {k.split('le="')[1].rstrip('"}'): v for k, v in m.items()
                                   if k.startswith("redfish_dra_attach_latency_seconds_bucket")},
        "attach_duration_count": dur_n,
        "attach_duration_mean_s": (m.get("redfish_dra_attach_duration_seconds_sum", 0) / dur_n
                                   if dur_n else None),
        "slice_devices": m.get("redfish_dra_slice_devices"),
        "queue_depth": m.get("redfish_dra_queue_depth"),
    }


async def floor_phase(args: argparse.Namespace, work: Path, rack_file: Path, procs: list,
                      out: dict[str, Any]) -> None:
    """The service alone: the same attaches as plain AddResourceBlock POSTs."""
    svc, first_start = await start_timed(work / "service-floor", rack_file,
                                         args.service_log_level)
    procs.append(svc)
    out["floor_service_first_start_s"] = first_start
    per_host = math.ceil(args.claims / args.nodes)
    # Host i takes per_host GPUs of its own switch; round-robin over hosts, so concurrent
    # requests go to different systems, as the bridge's do (it serializes per system).
    queues = []
    for i in range(1, args.nodes + 1):
        s = (i - 1) // HOSTS_PER_SWITCH + 1
        slot = (i - 1) % HOSTS_PER_SWITCH
        queues.append([(f"host{i}", f"gpu{s}-{slot * per_host + k + 1}")
                       for k in range(per_host)])
    pairs = [q[k] for k in range(per_host) for q in queues][:args.claims]
    rf = Redfish(svc.url, "admin", svc.password, ssl_ctx=ssl_context(True, svc.cert),
                 timeout_s=60)
    try:
        gate = asyncio.Semaphore(BRIDGE_CONCURRENCY)

        async def warm() -> None:
            async with gate:
                await rf.get("/redfish/v1/Systems/host1")

        await asyncio.gather(*(warm() for _ in range(BRIDGE_CONCURRENCY * 2)))
        latencies: list[float] = []
        done_at: list[float] = []

        async def attach(host: str, block: str) -> None:
            async with gate:
                t = time.monotonic()
                await rf.operation(
                    "POST", f"/redfish/v1/Systems/{host}/Actions/ComputerSystem.AddResourceBlock",
                    {"ResourceBlock": {"@odata.id": f"{BLOCKS}/{block}"}})
                done_at.append(time.monotonic())
                latencies.append(done_at[-1] - t)

        assert svc.proc is not None
        profiler = Profiler(args.profile and args.profile / "floor")
        profiler.start({"service": svc.proc.pid})
        cpu0, self0, busy0 = cpu_s(svc.proc.pid), cpu_s(os.getpid()), busy_cpu_s()
        log0 = log_size(svc)
        t0 = time.monotonic()
        try:
            await asyncio.gather(*(attach(h, b) for h, b in pairs))
        finally:
            elapsed = time.monotonic() - t0
            log1 = log_size(svc)
            profiler.stop()
        cpu, own = cpu_s(svc.proc.pid) - cpu0, cpu_s(os.getpid()) - self0
        others = max(0.0, busy_cpu_s() - busy0 - cpu - own)
        since_start = [d - t0 for d in done_at]
    finally:
        await rf.close()
    composed = await asyncio.to_thread(_composed_gpus, svc)
    out["floor"] = {
        "attaches": len(latencies), "concurrency": BRIDGE_CONCURRENCY, "total_s": elapsed,
        "attaches_per_s": len(latencies) / elapsed,
        "post_latency_s": {"p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99),
                           "max": max(latencies, default=float("nan"))},
        "done_since_start_s": {"p50": pct(since_start, 0.5), "p99": pct(since_start, 0.99)},
        "service_cpu_s": cpu, "client_cpu_s": own, "other_processes_cpu_s": others,
        "redfish_composed_gpus": sum(len(b) for b in composed.values()),
        "redfish_requests": redfish_requests(svc.log_path, log0, log1)
        if args.service_log_level == "info" and svc.log_path else None,
    }
    svc.stop()


# -- report -----------------------------------------------------------------------------------

def report(out: dict[str, Any]) -> None:
    b, f = out["bridge_run"], out.get("floor")
    lat, cpu, m = b["latency_s"], b["cpu_s"], b["bridge_metrics"]
    ratio = b["bridge_over_service_cpu"]
    out["targets_met"] = {
        "p99_under_2s": b["attached"] == b["claims"] and lat["p99"] < TARGET_P99_S,
        "bridge_cpu_below_service_cpu": ratio is not None and ratio < 1,
    }
    met = out["targets_met"]

    def yes(ok: bool) -> str:
        return "yes" if ok else "NO"

    print(f"\nbench_bridge: {b['claims']} claims (one GPU each), {out['nodes']} nodes, "
          f"{out['gpus']} GPUs ({out['switches']} switches x {out['gpus_per_switch']}), bind "
          f"latency 0, {out['cpus']} CPUs, pods started "
          + (f"{out['rate']:g}/s" if out["rate"] else "all at once"))
    print(f"service first start ({out['gpus'] + out['nodes']} blocks): "
          f"{out['service_first_start_s']:.2f} s (bridge run), "
          f"{out.get('floor_service_first_start_s', float('nan')):.2f} s (floor run); "
          "bridge ready with every GPU published after "
          f"{out['bridge_ready_and_published_s']:.1f} s")
    rows = [
        ("attached / claims", f"{b['attached']} / {b['claims']}", "all",
         yes(b["attached"] == b["claims"])),
        ("attach-failed conditions / pods not bound", f"{b['attach_failed']} / "
         f"{b['pods_unscheduled']}", "", ""),
        ("allocation -> attached=True p50", f"{lat['p50'] * 1e3:.0f} ms", "", ""),
        ("allocation -> attached=True p99", f"{lat['p99'] * 1e3:.0f} ms",
         f"< {TARGET_P99_S:.0f} s", yes(met["p99_under_2s"])),
        ("allocation -> attached=True max", f"{lat['max'] * 1e3:.0f} ms", "", ""),
        ("first allocation -> last attached", f"{b['first_allocation_to_last_attached_s']:.2f} s",
         "", ""),
        ("  of which allocating (scheduler)", f"{b['allocation_burst_s']:.2f} s", "", ""),
        ("bridge CPU", f"{cpu['bridge']:.2f} s", "", ""),
        ("service CPU (share of a core)", f"{cpu['service']:.2f} s "
         f"({cpu['service'] / b['measured_phase_s']:.0%})", "", ""),
        ("bridge CPU / service CPU", f"{ratio:.2f}" if ratio is not None else "n/a", "< 1",
         yes(met["bridge_cpu_below_service_cpu"])),
        ("attaches per bridge CPU second",
         f"{b['attaches_per_bridge_cpu_s']:.0f}" if b["attaches_per_bridge_cpu_s"] else "n/a",
         "", ""),
        ("harness CPU (fake API + scheduler sim)", f"{cpu['harness']:.2f} s", "", ""),
        ("other processes' CPU (machine noise)", f"{cpu['other_processes']:.2f} s", "", ""),
        ("harness loop lag p99 / max",
         f"{b['harness_loop_lag']['p99_ms']:.0f} / {b['harness_loop_lag']['max_ms']:.0f} ms",
         "", ""),
    ]
    if f:
        rows += [
            ("floor: service alone, total", f"{f['total_s']:.2f} s ({f['attaches_per_s']:.0f}/s)",
             "", ""),
            ("floor: POST p50 / p99", f"{f['post_latency_s']['p50'] * 1e3:.0f} / "
             f"{f['post_latency_s']['p99'] * 1e3:.0f} ms", "", ""),
            ("floor: start -> attached p50 / p99 (all at once)",
             f"{f['done_since_start_s']['p50'] * 1e3:.0f} / "
             f"{f['done_since_start_s']['p99'] * 1e3:.0f} ms", "", ""),
            ("floor: service CPU (share of a core)",
             f"{f['service_cpu_s']:.2f} s ({f['service_cpu_s'] / f['total_s']:.0%})", "", ""),
            ("floor: other processes' CPU", f"{f['other_processes_cpu_s']:.2f} s", "", ""),
            ("end-to-end time / floor time",
             f"{b['first_allocation_to_last_attached_s'] / f['total_s']:.1f}x", "", ""),
            ("service CPU with bridge / floor", f"{cpu['service'] / f['service_cpu_s']:.1f}x",
             "", ""),
        ]
    rows += [
        ("bridge metrics: attaches / failures / 409s",
         f"{m['attaches_total']:.0f} / {m['attach_failures_total']:.0f} / "
         f"{m['status_conflicts_total']:.0f}", "", ""),
        ("bridge metrics: latency sum / count",
         f"{m['attach_latency_sum_s']:.1f} s / {m['attach_latency_count']:.0f}"
         + (f" (mean {m['attach_latency_mean_s'] * 1e3:.0f} ms)"
            if m["attach_latency_mean_s"] is not None else ""), "", ""),
        ("bridge metrics: Redfish attach mean",
         f"{m['attach_duration_mean_s'] * 1e3:.1f} ms" if m["attach_duration_mean_s"]
         is not None else "n/a", "", ""),
    ]
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    head = ("figure", "value", "target", "met")
    w = [max(w[i], len(head[i])) for i in range(4)]
    print("| " + " | ".join(h.ljust(w[i]) for i, h in enumerate(head)) + " |")
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |")
    print(f"Redfish afterwards: {b['redfish_composed_gpus']} GPUs composed, "
          f"{b['redfish_blocks_on_two_systems']} on two systems; claim status writes after "
          f"attached=True: {b['claim_writes_after_attached']}; wall time {out['wall_s']:.0f} s")
    print("bridge -> API server during the measured phase: " + ", ".join(
        f"{k} {v}" for k, v in b["bridge_kube_requests"].items()))
    for title, reqs in (("bridge -> service", b.get("bridge_redfish_requests")),
                        ("floor client -> service", f and f.get("redfish_requests"))):
        if reqs:
            print(f"{title} (count, service time): " + "; ".join(
                f"{k} {v['count']:.0f}, {v['ms'] / 1e3:.1f} s" for k, v in reqs.items()))


# -- main -------------------------------------------------------------------------------------

def stop_children(*, kill: bool = False) -> None:
    for p in reversed(CHILDREN):
        with contextlib.suppress(Exception):
            p.kill() if kill else p.stop()


async def run(args: argparse.Namespace, work: Path, out: dict[str, Any]) -> None:
    try:
        rack_file = write_rack(work / "rack.yaml", rack(args.nodes, args.gpus_per_switch))
        await bridge_phase(args, work, rack_file, CHILDREN, out)
        if not args.no_floor:
            await floor_phase(args, work, rack_file, CHILDREN, out)
    finally:
        stop_children()


async def amain(args: argparse.Namespace) -> int:
    switches = math.ceil(args.nodes / HOSTS_PER_SWITCH)
    out: dict[str, Any] = {
        "cpus": os.cpu_count(), "nodes": args.nodes, "switches": switches,
        "gpus_per_switch": args.gpus_per_switch, "gpus": switches * args.gpus_per_switch,
        "rate": args.rate,
        "targets": {"p99_s": TARGET_P99_S, "bridge_over_service_cpu": 1.0},
    }
    if HOSTS_PER_SWITCH * math.ceil(args.claims / args.nodes) > args.gpus_per_switch:
        raise SystemExit(f"bench_bridge: {args.claims} claims over {args.nodes} nodes need "
                         f"{HOSTS_PER_SWITCH * math.ceil(args.claims / args.nodes)} GPUs a "
                         f"switch ({HOSTS_PER_SWITCH} nodes each); --gpus-per-switch is "
                         f"{args.gpus_per_switch}")
    work = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    ok = False
    started = time.monotonic()
    limit = asyncio.timeout(args.limit)
    try:
        async with limit:
            await run(args, work, out)
        ok = True
    except TimeoutError:
        if not limit.expired():
            raise
        print(f"bench_bridge: the run exceeded {args.limit:.0f} s; stopped", file=sys.stderr)
        return 2
    finally:
        out["wall_s"] = time.monotonic() - started
        if args.keep or not ok:
            print(f"bench_bridge: logs and state kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    report(out)
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
    return 0 if all(out["targets_met"].values()) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--claims", type=int, default=1000, help="pods, one GPU claim each")
    ap.add_argument("--nodes", type=int, default=100, help="nodes (hosts), 10 per switch")
    ap.add_argument("--gpus-per-switch", type=int, default=110)
    ap.add_argument("--rate", type=float, default=0,
                    help="pods started per second (paced arrivals); 0: all at once")
    ap.add_argument("--binding-timeout", type=float, default=120,
                    help="scheduler's binding timeout (the bridge is told the same)")
    ap.add_argument("--poll", type=float, default=0.05,
                    help="scheduler simulator's PreBind poll interval (s); not part of the "
                         "measured latency (commit times), only of the harness's load")
    ap.add_argument("--limit", type=float, default=900, help="bound on the whole run (s)")
    ap.add_argument("--no-floor", action="store_true", help="skip the service-alone baseline")
    ap.add_argument("--profile", type=Path,
                    help="py-spy the bridge and the service during the measured phase "
                         "(slows them: figures are then not clean) into this directory")
    ap.add_argument("--service-log-level", choices=["warning", "info"], default="warning",
                    help="info: the service's access log, to count the requests it served "
                         "by kind (costs service CPU: diagnosis, not measurement)")
    ap.add_argument("--out", type=Path, help="also write every figure as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = ap.parse_args()
    for var in [v for v in os.environ if v.startswith("REDFISH_COMPOSER_")]:
        os.environ.pop(var)

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM like Ctrl-C: unwinds and stops the subprocesses

    def watchdog(signum: int, frame: Any) -> None:
        # Last resort, if the run's own time limit could not act (a blocked event loop).
        print(f"bench_bridge: still running {args.limit + 120:.0f} s after the start; "
              "killing the subprocesses", file=sys.stderr)
        stop_children(kill=True)
        raise SystemExit(3)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(int(args.limit) + 120)
    try:
        return asyncio.run(amain(args))
    except KeyboardInterrupt:
        print("bench_bridge: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.alarm(0)
        stop_children()


if __name__ == "__main__":
    sys.exit(main())
