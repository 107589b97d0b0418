"""Prometheus metrics and the probe endpoints (/healthz, /readyz, /metrics)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """One registry per bridge (no process-wide state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.attach_latency = Histogram(
            "redfish_dra_attach_latency_seconds",
            "Time from the claim's allocation to the device reported attached.",
            buckets=LATENCY_BUCKETS, registry=r)
        self.attach_duration = Histogram(
            "redfish_dra_attach_duration_seconds",
            "Time the Redfish attach operation took.", buckets=LATENCY_BUCKETS, registry=r)
        self.attaches = Counter("redfish_dra_attaches_total",
                                "Devices attached to nodes.", registry=r)
        self.failures = Counter("redfish_dra_attach_failures_total",
                                "Attaches reported failed, by reason.", ["reason"], registry=r)
        self.detaches = Counter("redfish_dra_detaches_total",
                                "Devices detached from nodes.", registry=r)
        self.slice_devices = Gauge("redfish_dra_slice_devices",
                                   "Devices published in ResourceSlices.", registry=r)
        self.queue_depth = Gauge("redfish_dra_queue_depth",
                                 "Claims waiting for the binder.", registry=r)
        self.leader = Gauge("redfish_dra_leader", "1 while this replica leads.", registry=r)
        self.status_conflicts = Counter(
            "redfish_dra_status_conflicts_total",
            "Claim status writes retried after a 409 Conflict.", registry=r)


def probe_app(metrics: Metrics, ready: Callable[[], tuple[bool, str]]) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        ok, why = ready()
        return web.Response(status=200 if ok else 503, text=why)

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    return app
