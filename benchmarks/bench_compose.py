"""Composition throughput and large-pool figures of the service, over HTTPS on loopback.

1. compose + decompose cycles per second (POST /Systems with a sled and a GPU, then
   DELETE), one client and 16 concurrent clients, zero simulated bind latency;
2. a 10,000-block simulated pool: start-up time, resident memory, p50 of GET FreePool and
   of a ``$filter`` on ResourceBlocks;
3. for scale, the same run's GET of the service root (requests/s, one client), so the
   cycle rate can be read against the plain read path of the same machine and moment.

Targets (issue 3): >= 200 cycles/s with one client; start-up < 3 s and < 300 MB RSS at
10,000 blocks; FreePool GET < 100 ms. Everything talks to 127.0.0.1 only and is bounded
in time; the service processes are stopped at the end.

    python benchmarks/bench_compose.py [--cycles 300] [--blocks 10000] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

PASSWORD = "Bench-passw0rd"
BLOCKS = "/redfish/v1/CompositionService/ResourceBlocks"
GPU = {"kind": "GPU", "manufacturer": "NVIDIA", "model": "H100 PCIe 80GB",
       "vendor_id": "0x10de", "device_id": "0x2331", "memory_mib": 81920}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cycle_rack() -> dict:
    """16 sleds and 16 GPUs behind one switch: one pair per concurrent client."""
    return {
        "name": "bench", "bind_latency_s": 0,
        "hosts": [{"id": "host1"}],
        "switches": [{"id": "pcie1", "protocol": "PCIe",
                      "hosts": ["host1", *(f"sled{i}" for i in range(1, 17))]}],
        "devices": [{"switch": "pcie1", "prefix": "gpu", "count": 16, "model": GPU}],
        "sleds": [{"id": f"sled{i}", "switch": "pcie1"} for i in range(1, 17)],
    }


def big_rack(blocks: int) -> dict:
    """``blocks`` ResourceBlocks: 4 hosts, 4 sleds, the rest GPUs over 4 switches."""
    per_switch = (blocks - 8) // 4
    return {
        "name": "big", "bind_latency_s": 0,
        "hosts": [{"id": f"host{i}"} for i in range(1, 5)],
        "switches": [{"id": f"pcie{i}", "protocol": "PCIe", "hosts": [f"host{i}"]}
                     for i in range(1, 5)],
        "devices": [{"switch": f"pcie{i}", "prefix": f"gpu{i}-", "count": per_switch,
                     "model": GPU} for i in range(1, 5)],
        "sleds": [{"id": f"sled{i}", "switch": f"pcie{i}"} for i in range(1, 5)],
    }


class Service:
    def __init__(self, rack: dict, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        rack_file = workdir / "rack.yaml"
        rack_file.write_text(yaml.safe_dump(rack))
        self.cmd = [sys.executable, "-m", "redfish_service", "serve", "--state-dir",
                    str(workdir / "state"), "--port", str(self.port), "--admin-password",
                    PASSWORD, "--rack", str(rack_file), "--log-level", "warning"]
        self.proc: subprocess.Popen | None = None

    def _launch(self) -> None:
        with open(self.workdir / "service.log", "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT)

    async def start(self, limit_s: float = 120) -> float:
        """Start it; returns seconds until the service root answered."""
        started = time.monotonic()
        self._launch()
        assert self.proc is not None
        async with aiohttp.ClientSession() as http:
            while time.monotonic() - started < limit_s:
                if self.proc.poll() is not None:
                    raise RuntimeError((self.workdir / "service.log").read_text()[-2000:])
                try:
                    async with http.get(self.url + "/redfish/v1/", ssl=False) as r:
                        if r.status == 200:
                            return time.monotonic() - started
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.02)
        raise RuntimeError("service did not start in time")

    def rss_mib(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def login(http: aiohttp.ClientSession, url: str) -> dict[str, str]:
    async with http.post(url + "/redfish/v1/SessionService/Sessions", ssl=False,
                         json={"UserName": "admin", "Password": PASSWORD}) as r:
        assert r.status == 201, await r.text()
        return {"X-Auth-Token": r.headers["X-Auth-Token"]}


async def cycles(url: str, headers: dict, pairs: list[tuple[str, str]], n: int) -> float:
    """Cycles per second of len(pairs) clients, each composing and decomposing its pair."""
    async with aiohttp.ClientSession(headers=headers) as http:
        async def client(sled: str, gpu: str, count: int) -> None:
            body = {"Name": f"bench-{sled}", "Links": {"ResourceBlocks": [
                {"@odata.id": f"{BLOCKS}/{sled}"}, {"@odata.id": f"{BLOCKS}/{gpu}"}]}}
            for _ in range(count):
                async with http.post(url + "/redfish/v1/Systems", json=body, ssl=False) as r:
                    assert r.status == 201, await r.text()
                    location = r.headers["Location"]
                async with http.delete(url + location, ssl=False) as r:
                    assert r.status == 204, await r.text()

        per_client = max(1, n // len(pairs))
        started = time.perf_counter()
        await asyncio.gather(*(client(s, g, per_client) for s, g in pairs))
        return per_client * len(pairs) / (time.perf_counter() - started)


async def latencies(url: str, headers: dict, path: str, n: int) -> dict[str, float]:
    times = []
    async with aiohttp.ClientSession(headers=headers) as http:
        for _ in range(n):
            started = time.perf_counter()
            async with http.get(url + path, ssl=False) as r:
                await r.read()
                assert r.status == 200, r.status
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2)}


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=320, help="cycles per measurement")
    ap.add_argument("--blocks", type=int, default=10_000, help="blocks in the large pool")
    ap.add_argument("--requests", type=int, default=50, help="GETs timed per large-pool query")
    ap.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = ap.parse_args()
    results: dict = {"targets": {"cycles_one_client": 200, "startup_s": 3, "rss_mib": 300,
                                 "freepool_p50_ms": 100}}
    with tempfile.TemporaryDirectory(prefix="bench-compose-") as tmp:
        svc = Service(cycle_rack(), Path(tmp) / "cycles")
        try:
            await svc.start()
            async with aiohttp.ClientSession() as http:
                headers = await login(http, svc.url)
            pairs = [(f"sled{i}", f"gpu{i}") for i in range(1, 17)]
            await cycles(svc.url, headers, pairs[:1], 20)  # warm-up
            results["cycles_per_s_1_client"] = round(
                await cycles(svc.url, headers, pairs[:1], args.cycles), 1)
            results["cycles_per_s_16_clients"] = round(
                await cycles(svc.url, headers, pairs, args.cycles), 1)
            root = await latencies(svc.url, headers, "/redfish/v1/", 200)
            results["root_get_one_client_per_s"] = round(1000 / root["p50_ms"], 1)
        finally:
            svc.stop()
        big = Service(big_rack(args.blocks), Path(tmp) / "big")
        try:
            results["startup_s_first"] = round(await big.start(), 2)
            results["rss_mib"] = round(big.rss_mib(), 1)
            big.stop()
            results["startup_s_restart"] = round(await big.start(), 2)
            async with aiohttp.ClientSession() as http:
                headers = await login(http, big.url)
            results["blocks"] = args.blocks
            results["freepool"] = await latencies(
                big.url, headers, "/redfish/v1/CompositionService/FreePool", args.requests)
            results["filter"] = await latencies(
                big.url, headers,
                BLOCKS + "?$filter=CompositionStatus/CompositionState%20eq%20'Unused'"
                "%20and%20ResourceBlockType%20ne%20null&$top=50", args.requests)
            results["rss_mib_after_queries"] = round(big.rss_mib(), 1)
        finally:
            big.stop()
    t = results["targets"]
    ok = {
        "cycles": results["cycles_per_s_1_client"] >= t["cycles_one_client"],
        "startup": max(results["startup_s_first"], results["startup_s_restart"])
        < t["startup_s"],
        "rss": results["rss_mib_after_queries"] < t["rss_mib"],
        "freepool": results["freepool"]["p50_ms"] < t["freepool_p50_ms"],
    }
    results["targets_met"] = ok
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.pop("REDFISH_COMPOSER_ADMIN_PASSWORD", None)
    sys.exit(asyncio.run(main()))
