"""End-to-end harness for the DRA bridge: our Redfish service in a subprocess, the fake
API server and the scheduler simulator in the test's loop, the bridge in subprocesses
(so it can be SIGKILLed), all on loopback."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from redfish_service.drivers.simulated import default_rack

from .service import ServiceProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
DRIVER = "composable.redfish-composer.io"
RESOURCE = "resource.k8s.io/v1"


def bridge_rules() -> list[dict[str, Any]]:
    """The RBAC rules deploy/ grants the bridge (ClusterRole and the Lease Role)."""
    rules = []
    for name in ("clusterrole.yaml", "role.yaml"):
        for doc in yaml.safe_load_all((ROOT / "deploy" / "base" / name).read_text()):
            if isinstance(doc, dict) and doc.get("kind") in ("ClusterRole", "Role"):
                rules += doc["rules"]
    return rules


def write_rack(path: Path, *, bind_latency_s: float = 0.0, gpus_per_switch: int = 8,
               faults: list[dict[str, Any]] | None = None, seed: int = 0) -> Path:
    rack = default_rack()
    rack.bind_latency_s = bind_latency_s
    data = rack.model_dump(mode="json")
    for group in data["devices"]:
        if group["prefix"].startswith("gpu"):
            group["count"] = gpus_per_switch
    data["faults"] = {"seed": seed, "rules": faults or []}
    path.write_text(yaml.safe_dump(data))
    return path


def start_service(state: Path, rack: Path, *, log_level: str = "warning") -> ServiceProcess:
    return ServiceProcess(state, extra_args=["--rack", str(rack), "--log-level", log_level]).start()


def kubeconfig(path: Path, url: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "bridge", "user": {"token": "bridge-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "fake", "user": "bridge"}}],
    }))
    return path


@dataclass
class BridgeProcess:
    workdir: Path
    service: ServiceProcess
    kube_url: str
    identity: str = "bridge-0"
    settings: dict[str, Any] = field(default_factory=dict)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    def start(self) -> BridgeProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        password = self.workdir / "password"
        password.write_text(self.service.password)
        config = {
            "redfish_url": self.service.url, "redfish_username": "admin",
            "redfish_password_file": str(password), "redfish_ca_bundle": str(self.service.cert),
            "kubeconfig": str(kubeconfig(self.workdir / "kubeconfig", self.kube_url)),
            "driver_name": DRIVER, "namespace": "redfish-dra", "identity": self.identity,
            "http_bind": "127.0.0.1", "http_port": self.http_port, "log_level": "info",
            "detach_grace_s": 0.2, "resync_interval_s": 5, "quarantine_s": 60,
            "lease_duration_s": 2, "renew_deadline_s": 1.5, "retry_period_s": 0.25,
            **self.settings,
        }
        path = self.workdir / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDFISH_DRA_BRIDGE_")}
        log = open(self.workdir / f"{self.identity}.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "--config", str(path)],
                                     stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        return self

    @property
    def log(self) -> str:
        return (self.workdir / f"{self.identity}.log").read_text(errors="replace")

    def metrics(self) -> dict[str, float]:
        """The bridge's Prometheus samples without labels (name -> value)."""
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz",
                                        timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


async def until(check: Callable[[], Any], within_s: float, what: str,
                interval: float = 0.05) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + within_s
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s} s waiting for {what}")
        await asyncio.sleep(interval)


def redfish_systems(service: ServiceProcess) -> dict[str, dict[str, Any]]:
    status, _, body = service.get("/redfish/v1/Systems?$expand=.($levels=1)")
    assert status == 200, body
    return {m["Id"]: m for m in body["Members"]}


def block_doc(service: ServiceProcess, block_id: str) -> dict[str, Any]:
    status, _, body = service.get(f"/redfish/v1/CompositionService/ResourceBlocks/{block_id}")
    assert status == 200, body
    return body


def composed_devices(service: ServiceProcess) -> dict[str, list[str]]:
    """Host system Id -> ids of the device blocks composed into it (not its own block)."""
    out = {}
    for sid, doc in redfish_systems(service).items():
        ids = [link["@odata.id"].rsplit("/", 1)[1]
               for link in doc.get("Links", {}).get("ResourceBlocks", [])]
        out[sid] = [i for i in ids if not i.startswith("system-")]
    return out


def seed_cluster(api, service: ServiceProcess, hosts: list[str] | None = None) -> dict[str, str]:
    """Nodes whose SMBIOS UUID is their Redfish system's (node-<host> -> host), the
    namespaces, and the DeviceClasses shipped in deploy/."""
    systems = redfish_systems(service)
    mapping = {}
    for host in hosts or sorted(s for s in systems if s.startswith("host")):
        node = f"node-{host}"
        api.create("nodes", {"apiVersion": "v1", "kind": "Node",
                             "metadata": {"name": node,
                                          "labels": {"kubernetes.io/hostname": node}},
                             "status": {"nodeInfo": {"systemUUID": systems[host]["UUID"].upper()}}})
        mapping[node] = host
    for ns in ("redfish-dra", "default"):
        if api.get("namespaces", ns) is None:
            api.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": ns}})
    for path in sorted((ROOT / "deploy").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "DeviceClass":
                api.create("deviceclasses", doc)
    return mapping


@functools.cache
def device_class(kind: str) -> str:
    """The name of deploy/'s DeviceClass selecting ``kind`` (gpu, dpu...)."""
    for path in sorted((ROOT / "deploy").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "DeviceClass" \
                    and f"'{kind}'" in json.dumps(doc):
                return doc["metadata"]["name"]
    raise AssertionError(f"deploy/ has no {kind} DeviceClass")


def gpu_class() -> str:
    return device_class("gpu")


def make_pod(api, name: str, device_class: str, namespace: str = "default") -> None:
    """A Pod asking for one device of ``device_class`` through its own ResourceClaim."""
    api.create("resourceclaims", {
        "apiVersion": RESOURCE, "kind": "ResourceClaim",
        "metadata": {"name": f"{name}-claim", "namespace": namespace},
        "spec": {"devices": {"requests": [
            {"name": "dev", "exactly": {"deviceClassName": device_class}}]}}})
    api.create("pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "main", "image": "busybox"}],
                 "resourceClaims": [{"name": "dev", "resourceClaimName": f"{name}-claim"}]}})


def device_statuses(claim: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Device -> {condition type: status} of our entries."""
    out = {}
    for entry in (claim.get("status") or {}).get("devices") or []:
        if entry.get("driver") == DRIVER:
            out[entry["device"]] = {c["type"]: c["status"] for c in entry.get("conditions", [])}
    return out


def allocated(claim: dict[str, Any]) -> list[tuple[str, str]]:
    results = ((claim.get("status") or {}).get("allocation") or {}).get("devices", {})
    return [(r["pool"], r["device"]) for r in results.get("results", [])]


def published_devices(api) -> set[str]:
    return {d["name"] for s in api.list("resourceslices")
            if s["spec"]["driver"] == DRIVER for d in s["spec"].get("devices", [])}
