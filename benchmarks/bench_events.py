"""Event fan-out of the service, over HTTPS on loopback.

100 SSE clients (``GET EventService/SSE``, no filter) and 20 push receivers (aiohttp
servers on 127.0.0.1, one subscription each) listen in a separate process while one
client makes at least 1,000 composition changes (AddResourceBlock / RemoveResourceBlock
cycles of a GPU on host1: every committed document change is one event record) and four
clients GET the service root as fast as they can. The same burst is run first without
any listener, then with them, on the same service instance, so the GET figures compare
like with like.

Reported: records delivered per second (over all 120 listeners, from the first commit to
the last receipt), latency from commit to receipt (the record's ``EventTimestamp`` is the
commit time, millisecond resolution, against the receiver's clock: the same machine),
p50/p99/max, and the root GET throughput during the burst with listeners over without.

Targets (issue 5): p99 < 100 ms; GET throughput with listeners >= 0.8x without.

    python benchmarks/bench_events.py [--changes 1000] [--sse 100] [--push 20] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web
from bench_compose import Service, cycle_rack, free_port, login

EVENTS = "/redfish/v1/EventService"
BLOCKS = "/redfish/v1/CompositionService/ResourceBlocks"
HOST = "/redfish/v1/Systems/host1"
ADD = HOST + "/Actions/ComputerSystem.AddResourceBlock"
REMOVE = HOST + "/Actions/ComputerSystem.RemoveResourceBlock"
GET_CLIENTS = 4


def commit_time(record: dict) -> float:
    return datetime.fromisoformat(record["EventTimestamp"].replace("Z", "+00:00")).timestamp()


# -- the listener process -----------------------------------------------------------------

async def _listen(url: str, headers: dict, n_sse: int, n_push: int, conn, expected_q) -> None:
    latencies: list[float] = []
    counts = {"sse": 0, "push": 0}
    target: dict[str, int] = {}
    complete = asyncio.Event()
    last = 0.0

    def received(kind: str, record: dict, now: float) -> None:
        nonlocal last
        latencies.append(now - commit_time(record))
        counts[kind] += 1
        last = now
        if target and counts["sse"] >= target["sse"] and counts["push"] >= target["push"]:
            complete.set()
    ports = [free_port() for _ in range(n_push)]

    async def receive(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        now = time.time()
        for record in body["Events"]:
            received("push", record, now)
        return web.Response(status=204)

    runners = []
    for port in ports:
        app = web.Application()
        app.router.add_post("/events", receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)

    connector = aiohttp.TCPConnector(limit=0, ssl=False)
    http = aiohttp.ClientSession(headers=headers, connector=connector,
                                 timeout=aiohttp.ClientTimeout(total=None))
    subscriptions = []
    for port in ports:
        async with http.post(url + EVENTS + "/Subscriptions", json={
                "Destination": f"http://127.0.0.1:{port}/events", "Protocol": "Redfish",
                "Context": "bench"}) as r:
            assert r.status == 201, await r.text()
            subscriptions.append(r.headers["Location"])

    opened = asyncio.Event()
    n_open = 0

    async def sse_client() -> None:
        nonlocal n_open
        async with http.get(url + EVENTS + "/SSE") as resp:
            assert resp.status == 200, await resp.text()
            n_open += 1
            if n_open == n_sse:
                opened.set()
            async for line in resp.content:
                if line.startswith(b"data: "):
                    now = time.time()
                    for record in orjson.loads(line[6:])["Events"]:
                        received("sse", record, now)

    streams = [asyncio.create_task(sse_client()) for _ in range(n_sse)]
    if n_sse:
        await asyncio.wait_for(opened.wait(), 60)
    latencies.clear()  # the streams' own EventDestinations were announced; not counted
    counts.update(sse=0, push=0)
    conn.send("ready")
    loop = asyncio.get_running_loop()
    expected = await loop.run_in_executor(None, expected_q.get)  # records per listener
    target.update(sse=expected * n_sse, push=expected * n_push)
    if counts["sse"] >= target["sse"] and counts["push"] >= target["push"]:
        complete.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(complete.wait(), 120)
    conn.send({"latencies": latencies, "counts": counts, "target": target, "last": last})
    for task in streams:
        task.cancel()
    await asyncio.gather(*streams, return_exceptions=True)
    for uri in subscriptions:
        async with http.delete(url + uri) as r:
            await r.read()
    await http.close()
    for runner in runners:
        await runner.cleanup()


def listener_main(url, headers, n_sse, n_push, conn, expected_q) -> None:
    asyncio.run(_listen(url, headers, n_sse, n_push, conn, expected_q))


# -- the load -----------------------------------------------------------------------------

async def records_per_cycle(http: aiohttp.ClientSession, url: str) -> int:
    """Event records one cycle announces, as an unfiltered SSE stream receives them."""
    async with http.get(url + EVENTS + "/SSE", ssl=False,
                        timeout=aiohttp.ClientTimeout(total=None)) as resp:
        assert resp.status == 200, await resp.text()
        await asyncio.sleep(0.2)
        await cycle(http, url)
        count = 0
        while True:
            try:
                line = await asyncio.wait_for(resp.content.readline(), 0.5)
            except TimeoutError:
                return count
            if line.startswith(b"data: "):
                count += len(orjson.loads(line[6:])["Events"])


async def cycle(http: aiohttp.ClientSession, url: str) -> None:
    body = {"ResourceBlock": {"@odata.id": f"{BLOCKS}/gpu1"}}
    for action in (ADD, REMOVE):
        async with http.post(url + action, json=body, ssl=False) as r:
            assert r.status == 204, await r.text()


async def burst(url: str, headers: dict, cycles: int, cycle_s: float = 0.0) -> dict:
    """``cycles`` Add/Remove cycles while GET_CLIENTS clients read the service root; with
    ``cycle_s``, cycle i starts no earlier than i * cycle_s after the first (paced)."""
    done = asyncio.Event()
    gets = 0

    async with aiohttp.ClientSession(headers=headers) as http:
        async def reader() -> None:
            nonlocal gets
            while not done.is_set():
                async with http.get(url + "/redfish/v1/", ssl=False) as r:
                    await r.read()
                    assert r.status == 200
                gets += 1

        readers = [asyncio.create_task(reader()) for _ in range(GET_CLIENTS)]
        first = time.time()
        started = time.perf_counter()
        for i in range(cycles):
            wait = started + i * cycle_s - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            await cycle(http, url)
        elapsed = time.perf_counter() - started
        done.set()
        await asyncio.gather(*readers)
    return {"first_commit": first, "seconds": elapsed, "get_per_s": gets / elapsed,
            "cycles_per_s": cycles / elapsed}


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--changes", type=int, default=1000, help="changes in the burst (min)")
    ap.add_argument("--sse", type=int, default=100, help="SSE clients")
    ap.add_argument("--push", type=int, default=20, help="push receivers")
    ap.add_argument("--rate", type=float, default=0,
                    help="changes per second (paced); 0: as fast as the service takes them")
    ap.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = ap.parse_args()
    results: dict = {"targets": {"p99_ms": 100, "get_ratio": 0.8}, "cpus": os.cpu_count(),
                     "sse_clients": args.sse, "push_receivers": args.push}
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
        svc = Service(cycle_rack(), Path(tmp) / "events")
        try:
            await svc.start()
            async with aiohttp.ClientSession() as http:
                headers = await login(http, svc.url)
            async with aiohttp.ClientSession(headers=headers) as http:
                for _ in range(10):  # warm-up
                    await cycle(http, svc.url)
                per_cycle = await records_per_cycle(http, svc.url)
            cycles = math.ceil(args.changes / per_cycle)
            results["changes"] = changes = cycles * per_cycle
            results["records_per_cycle"] = per_cycle

            assert svc.proc is not None
            cpu0, own0 = cpu_s(svc.proc.pid), cpu_s(os.getpid())
            cycle_s = per_cycle / args.rate if args.rate else 0.0
            results["paced_changes_per_s"] = args.rate or None
            quiet = await burst(svc.url, headers, cycles, cycle_s)
            quiet["service_cpu_s"] = cpu_s(svc.proc.pid) - cpu0
            quiet["load_cpu_s"] = cpu_s(os.getpid()) - own0

            ctx = mp.get_context("spawn")
            parent, child = ctx.Pipe()
            expected_q = ctx.Queue()
            proc = ctx.Process(target=listener_main, args=(
                svc.url, headers, args.sse, args.push, child, expected_q))
            proc.start()
            try:
                assert await asyncio.get_running_loop().run_in_executor(
                    None, parent.recv) == "ready"
                await asyncio.sleep(0.5)  # let the streams' own announcements pass
                cpu0, own0 = cpu_s(svc.proc.pid), cpu_s(os.getpid())
                assert proc.pid is not None
                listeners0 = cpu_s(proc.pid)
                loaded = await burst(svc.url, headers, cycles, cycle_s)
                loaded["service_cpu_s"] = cpu_s(svc.proc.pid) - cpu0
                loaded["load_cpu_s"] = cpu_s(os.getpid()) - own0
                loaded["listeners_cpu_s"] = cpu_s(proc.pid) - listeners0
                expected_q.put(changes)
                report = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
            finally:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()
        finally:
            svc.stop()
    lat_ms = [x * 1000 for x in report["latencies"]]
    delivered = report["counts"]["sse"] + report["counts"]["push"]
    results.update({
        "delivered": report["counts"], "expected": report["target"],
        "events_per_s_delivered": round(delivered / (report["last"] - loaded["first_commit"])),
        "latency_ms": {"p50": round(pct(lat_ms, 0.5), 1), "p99": round(pct(lat_ms, 0.99), 1),
                       "max": round(max(lat_ms, default=float("nan")), 1)},
        "changes_per_s": {"without_listeners": round(changes / quiet["seconds"]),
                          "with_listeners": round(changes / loaded["seconds"])},
        "root_get_per_s": {"without_listeners": round(quiet["get_per_s"]),
                           "with_listeners": round(loaded["get_per_s"])},
    })
    # The service's share of a core during each burst, and its CPU per change and per
    # root GET: on a machine with few cores the listeners' process competes with it.
    results["service_cpu"] = {
        name: {"core_share": round(b["service_cpu_s"] / b["seconds"], 2),
               "ms_per_change_and_its_gets": round(b["service_cpu_s"] * 1000 / changes, 2)}
        for name, b in (("without_listeners", quiet), ("with_listeners", loaded))}
    # Cores used by the other processes during each burst: the load client (this one:
    # the changes and the root GETs) and the listeners' process.
    results["other_cores"] = {
        "load_client": {"without_listeners": round(quiet["load_cpu_s"] / quiet["seconds"], 2),
                        "with_listeners": round(loaded["load_cpu_s"] / loaded["seconds"], 2)},
        "listeners": round(loaded["listeners_cpu_s"] / loaded["seconds"], 2)}
    # Root GETs per second of the service's own CPU, with over without: what the
    # listeners cost the service itself, whatever the other processes take from it.
    results["get_ratio_per_service_cpu"] = round(
        (loaded["get_per_s"] / results["service_cpu"]["with_listeners"]["core_share"])
        / (quiet["get_per_s"] / results["service_cpu"]["without_listeners"]["core_share"]), 2)
    results["get_ratio"] = round(loaded["get_per_s"] / quiet["get_per_s"], 2)
    results["targets_met"] = {
        "all_delivered": report["counts"] == report["target"],
        "p99": results["latency_ms"]["p99"] < 100,
        "get_ratio": results["get_ratio"] >= 0.8,
    }
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.pop("REDFISH_COMPOSER_ADMIN_PASSWORD", None)
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(asyncio.run(main()))
