"""64 concurrent clients racing for overlapping blocks: no double allocation, clean
refusals, and reads that never see half a composition.

Most races run in process (pytest-aiohttp's client talks real HTTP over loopback TCP to
the app, and the driver's bindings can be compared with the documents); one runs 64
``aiohttp.ClientSession`` clients over HTTPS against a real service subprocess.

While a race runs, readers take snapshots (``$expand`` of the block, system and pool
collections: each one answer, so each consistent in itself) and compare consecutive
snapshots. The races only attach, never detach, so a block composed into a system at one
moment must still be composed into it, and linked from it, in any later snapshot.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections import Counter
from typing import Any

import aiohttp
import pytest

from redfish_service import services
from redfish_service.app import create_app
from redfish_service.composition.invariants import violations
from redfish_service.store import MemoryBackend

from .conftest import FlakyDriver, basic
from .support.composition import (
    ACTIVE_POOL,
    ADD,
    BLOCKS,
    EXPAND,
    FREE_POOL,
    SYSTEMS,
    Snapshot,
    block_param,
    block_uri,
    compose_body,
    ids,
    local_path,
    message_ids,
    name_of,
)
from .support.service import ADMIN_PASSWORD

pytestmark = pytest.mark.timeout(120)

ADMIN = basic("admin", ADMIN_PASSWORD)
IN_USE = "Composition.1.1.ResourceBlockInUse"
CLIENTS = 64
BIND_LATENCY_S = 0.01  # long enough for operations to overlap, short enough to be quick

# Which hosts and sleds reach which devices in the default rack.
PCIE1_HOSTS, PCIE2_HOSTS, ALL_HOSTS = ["host1", "host2"], ["host3", "host4"], \
    ["host1", "host2", "host3", "host4"]


def reach(device: str) -> list[str]:
    if device.startswith("cxlmem"):
        return ALL_HOSTS
    return PCIE1_HOSTS if device[-3] == "1" else PCIE2_HOSTS


# --------------------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------------------
class Http:
    """One client: ``request`` returns (status, headers, body), following a 202 task
    monitor until it stops answering 202."""

    def __init__(self, send) -> None:
        self._send = send

    async def request(self, method: str, path: str, body: Any = None):
        status, headers, data = await self._send(method, path, body)
        while status == 202:
            monitor = headers.get("Location")
            assert monitor, f"202 without a task monitor: {headers}"
            await asyncio.sleep(0.02)
            status, headers, data = await self._send("GET", local_path(monitor), None)
        return status, headers, data

    async def get(self, path: str) -> dict[str, Any]:
        status, _, body = await self.request("GET", path)
        assert status == 200, (path, status, body)
        return body


def in_process(client) -> Http:
    async def send(method, path, body):
        resp = await client.request(method, path, json=body, headers=ADMIN)
        text = await resp.text()
        return resp.status, dict(resp.headers), (await resp.json()) if text else None
    return Http(send)


def over_https(session: aiohttp.ClientSession, url: str, token: str) -> Http:
    async def send(method, path, body):
        async with session.request(method, url + path, json=body,
                                   headers={"X-Auth-Token": token}) as resp:
            text = await resp.text()
            return resp.status, dict(resp.headers), (await resp.json()) if text else None
    return Http(send)


@pytest.fixture
def driver():
    d = FlakyDriver()
    d.rack.bind_latency_s = BIND_LATENCY_S
    return d


@pytest.fixture
async def app_client(aiohttp_client, settings, driver):
    """(HTTP client, store) of an in-process service on the slow driver."""
    app = create_app(settings, backend=MemoryBackend(), driver=driver)
    client = await aiohttp_client(app)
    return client, app[services.STORE]


# --------------------------------------------------------------------------------------
# readers: no half compositions
# --------------------------------------------------------------------------------------
class Readers:
    """Snapshots taken while the race runs, checked alone and against the one before."""

    def __init__(self, http: Http) -> None:
        self.http = http
        self.problems: list[str] = []
        self.snapshots = 0
        # what earlier snapshots showed composed: block -> system (attach-only races)
        self.composed: dict[str, str] = {}
        self.linked: dict[str, set[str]] = {}  # system -> blocks it listed

    def _problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)

    def check_blocks(self, members: list[dict[str, Any]]) -> None:
        owners: Counter[str] = Counter()
        for doc in members:
            uri = doc["@odata.id"]
            if "ComputerSystem" in doc["ResourceBlockType"]:
                continue
            state = doc["CompositionStatus"]["CompositionState"]
            systems = ids(doc["Links"]["ComputerSystems"])
            owners.update([uri] * len(systems))
            if state == "Composed":
                if len(systems) != 1 or doc["Pool"] != "Active" \
                        or doc["CompositionStatus"]["NumberOfCompositions"] != 1:
                    self._problem(f"{uri} Composed with systems {systems}, Pool {doc['Pool']}")
            elif state in ("Unused", "Composing"):
                # an attach commits the state and the links together; Composing is an
                # attach in flight, which has not linked anything yet
                if systems:
                    self._problem(f"{uri} is {state} but links {systems}")
                if state == "Unused" and doc["Pool"] != "Free":
                    self._problem(f"{uri} is Unused but Pool {doc['Pool']}")
            else:
                self._problem(f"{uri} in state {state}")
            before = self.composed.get(uri)
            if before is not None and (state != "Composed" or systems != [before]):
                self._problem(f"{uri} was composed into {before}, later {state} {systems}")
            for system in self.linked:
                if uri in self.linked[system] and systems != [system]:
                    self._problem(f"{system} listed {uri}; later {uri} is {state} {systems}")
            if state == "Composed" and len(systems) == 1:
                self.composed[uri] = systems[0]
        for uri, n in owners.items():
            if n > 1:
                self._problem(f"{uri} is in {n} systems at once")

    def check_systems(self, members: list[dict[str, Any]]) -> None:
        seen: dict[str, str] = {}
        listed = {doc["@odata.id"]: set(ids(doc["Links"].get("ResourceBlocks")))
                  for doc in members}
        for system, blocks in listed.items():
            for uri in blocks:
                if uri in seen:
                    self._problem(f"{uri} listed by {seen[uri]} and {system}")
                seen[uri] = system
            for uri in self.linked.get(system, set()) - blocks:
                self._problem(f"{system} listed {uri}, a later snapshot does not")
        for uri, system in self.composed.items():
            if uri not in listed.get(system, set()):
                self._problem(f"{uri} was Composed into {system}, which (later) does not "
                              f"list it: {sorted(listed.get(system, set()))}")
        for system, blocks in listed.items():
            self.linked[system] = blocks

    def check_pools(self, free: list[str], active: list[str]) -> None:
        for uri, system in self.composed.items():
            if uri in free or uri not in active:
                self._problem(f"{uri} was Composed into {system}, later in FreePool="
                              f"{uri in free}, ActivePool={uri in active}")

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set() or self.snapshots < 2:
            blocks = (await self.http.get(BLOCKS + EXPAND))["Members"]
            self.check_blocks(blocks)
            self.check_systems((await self.http.get(SYSTEMS + EXPAND))["Members"])
            free = ids((await self.http.get(FREE_POOL))["Members"])
            active = ids((await self.http.get(ACTIVE_POOL))["Members"])
            self.check_pools(free, active)
            # ActivePool listed it: it must be composed from then on
            for uri in active:
                if "system-" not in uri:
                    doc = await self.http.get(uri)
                    if doc["CompositionStatus"]["CompositionState"] != "Composed":
                        self._problem(f"ActivePool listed {uri}, later it is "
                                      f"{doc['CompositionStatus']['CompositionState']}")
            self.snapshots += 1


async def run_race(clients: list[Http], ops: list[tuple[str, str, Any]],
                   reader: Readers) -> list[tuple[int, dict, Any]]:
    """Every op at once, each by its own client, while two readers take snapshots (each
    its own sequence: an observation only binds snapshots that one reader took later)."""
    stop = asyncio.Event()
    second = Readers(reader.http)
    readers = [asyncio.ensure_future(r.run(stop)) for r in (reader, second)]
    start = asyncio.Event()

    async def one(client: Http, op):
        await start.wait()
        return await client.request(*op)

    tasks = [asyncio.ensure_future(one(c, op)) for c, op in zip(clients, ops, strict=True)]
    await asyncio.sleep(0)
    start.set()
    results = await asyncio.gather(*tasks)
    stop.set()
    await asyncio.gather(*readers)
    reader.problems += second.problems
    reader.snapshots = min(reader.snapshots, second.snapshots)
    return results


def refusal_problems(ops, results) -> list[str]:
    """Every refusal must be the clean 409 ResourceBlockInUse; nothing else."""
    out = []
    for op, (status, _, body) in zip(ops, results, strict=True):
        if status >= 300 and (status != 409 or IN_USE not in message_ids(body)):
            out.append(f"{op[0]} {op[1]} {op[2]} -> {status} {message_ids(body)}")
    return out


def expected_bindings(snap_doc, snap_members) -> dict[str, str]:
    """device id -> the driver host the documents say it is bound to."""
    out = {}
    for uri in snap_members(BLOCKS):
        doc = snap_doc(uri) or {}
        types = doc.get("ResourceBlockType", [])
        systems = ids(doc.get("Links", {}).get("ComputerSystems"))
        if not systems or "ComputerSystem" in types or "Compute" in types:
            continue
        system = snap_doc(systems[0]) or {}
        if system.get("SystemType") == "Composed":
            sled = [name_of(b) for b in ids(system["Links"]["ResourceBlocks"])
                    if "sled" in b]
            out[doc["Id"]] = sled[0]
        else:
            out[doc["Id"]] = system["Id"]
    return out


# --------------------------------------------------------------------------------------
# the races
# --------------------------------------------------------------------------------------
async def test_64_clients_attach_overlapping_blocks_to_hosts(app_client, driver):
    client, store = app_client
    contested = ["gpu1-1", "gpu1-2", "gpu1-3", "gpu1-4", "nvme2-1", "nvme2-2",
                 "cxlmem1", "cxlmem2"]
    ops = []
    for i in range(CLIENTS):
        device = contested[i % len(contested)]
        hosts = reach(device)
        ops.append(("POST", ADD.format(hosts[(i // len(contested)) % len(hosts)]),
                    block_param(device)))
    reader = Readers(in_process(client))
    results = await run_race([in_process(client) for _ in ops], ops, reader)

    assert not [r for r in results if r[0] >= 500], [r for r in results if r[0] >= 500]
    assert not refusal_problems(ops, results), refusal_problems(ops, results)
    winners: dict[str, list[str]] = {}
    for (_, path, body), (status, _, _) in zip(ops, results, strict=True):
        if status == 204:
            winners.setdefault(name_of(body["ResourceBlock"]["@odata.id"]), []).append(
                path.split("/")[4])
    # exactly one winner per block: as many winners as blocks available
    assert sorted(winners) == sorted(contested), winners
    assert all(len(w) == 1 for w in winners.values()), winners
    assert sum(status == 204 for status, _, _ in results) == len(contested)

    snap = Snapshot(lambda p: _sync_get(store, p))
    for device, (host,) in winners.items():
        assert snap.owner(device) == f"{SYSTEMS}/{host}"
        assert block_uri(device) in ids(snap.doc(f"{SYSTEMS}/{host}")["Links"]["ResourceBlocks"])
    assert driver.bindings == {d: h for d, (h,) in winners.items()}
    assert expected_bindings(snap.doc, snap.members) == driver.bindings
    assert not snap.violations(), snap.violations()
    assert not violations(store.doc, store.members)
    assert reader.snapshots >= 2
    assert not reader.problems, "readers saw half compositions:\n  " + \
        "\n  ".join(reader.problems)


async def test_64_clients_compose_and_attach_overlapping_blocks(app_client, driver):
    """Compositions (sled + devices) and host expansions race for the same devices and
    sleds. The winning requests hold disjoint blocks, and together exactly the blocks
    composed at the end; every contested device ends composed (each had a single-block
    request, which can only be refused while another request holds the block)."""
    client, store = app_client
    rng = random.Random(20261130)
    pools = {
        "sled1": ["gpu1-1", "gpu1-2", "gpu1-3", "gpu1-4", "nvme1-1", "nvme1-2", "dpu1-1",
                  "cxlmem1", "cxlmem2"],
        "sled2": ["gpu2-1", "gpu2-2", "gpu2-3", "nvme2-1", "nic2-1", "cxlmem2", "cxlmem3"],
    }
    contested = sorted({d for devices in pools.values() for d in devices})
    ops = []
    for i in range(16):  # compositions: a sled and two or three of its zone's devices
        sled = "sled1" if i % 2 else "sled2"
        devices = rng.sample(pools[sled], rng.choice((2, 3)))
        ops.append(("POST", SYSTEMS, compose_body(sled, *devices, name=f"race-{i}")))
    for i in range(CLIENTS - 16):  # expansions: every contested device at least once
        device = contested[i % len(contested)] if i < len(contested) \
            else rng.choice(contested)
        ops.append(("POST", ADD.format(rng.choice(reach(device))), block_param(device)))
    rng.shuffle(ops)
    reader = Readers(in_process(client))
    results = await run_race([in_process(client) for _ in ops], ops, reader)

    assert not [r for r in results if r[0] >= 500]
    assert not refusal_problems(ops, results), refusal_problems(ops, results)
    snap = Snapshot(lambda p: _sync_get(store, p))
    won: dict[str, str] = {}  # block -> system the winning request put it in
    for (_, path, body), (status, headers, _) in zip(ops, results, strict=True):
        if status == 201:
            system = local_path(headers["Location"])
            names = [name_of(b) for b in ids(body["Links"]["ResourceBlocks"])]
            assert snap.composed_systems()[system] == names
        elif status == 204:
            system = "/".join(path.split("/")[:5])
            names = [name_of(body["ResourceBlock"]["@odata.id"])]
        else:
            continue
        for name in names:
            assert name not in won, f"{name} won by {won[name]} and {system}"
            won[name] = system
    composed_now = {name_of(u): snap.owner(name_of(u)) for u in snap.members(BLOCKS)
                    if "system-" not in u and snap.owner(name_of(u))}
    assert composed_now == won
    assert set(contested) <= set(won), f"refused though free: {set(contested) - set(won)}"
    created = {local_path(h["Location"]) for s, h, _ in results if s == 201}
    assert set(snap.composed_systems()) == created and created
    assert driver.bindings == expected_bindings(snap.doc, snap.members)
    assert not snap.violations(), snap.violations()
    assert not reader.problems, "readers saw half compositions:\n  " + \
        "\n  ".join(reader.problems)


async def test_attach_racing_the_decomposition_of_its_system(app_client, driver):
    """AddResourceBlock on a composed system while it is being DELETEd: either the attach
    is refused, or it happens first and the DELETE frees that block too. Either way the
    system ends gone, every block free and the fabric unbound."""
    client, store = app_client
    http = in_process(client)
    status, headers, body = await http.request("POST", SYSTEMS,
                                               compose_body("sled1", "gpu1-1", "gpu1-2"))
    assert status == 201, body
    system = local_path(headers["Location"])
    system_id = name_of(system)

    deleting = asyncio.ensure_future(http.request("DELETE", system))
    # once the decomposition is under way (its blocks Composing), ask for the attach
    for _ in range(500):
        state = (await http.get(block_uri("sled1")))["CompositionStatus"]["CompositionState"]
        if state == "Composing" or deleting.done():
            break
        await asyncio.sleep(0.001)
    attached = await http.request("POST", ADD.format(system_id), block_param("gpu1-3"))
    deleted = await deleting
    assert deleted[0] == 204, deleted
    assert attached[0] in (204, 404, 409), attached
    assert (await http.request("GET", system))[0] == 404
    snap = Snapshot(lambda p: _sync_get(store, p))
    assert {n: snap.state(n) for n in ("sled1", "gpu1-1", "gpu1-2", "gpu1-3")} == \
        dict.fromkeys(("sled1", "gpu1-1", "gpu1-2", "gpu1-3"), "Unused"), \
        f"attach answered {attached[0]}; gpu1-3 links {snap.owner('gpu1-3')}"
    assert driver.bindings == {}
    assert not violations(store.doc, store.members), violations(store.doc, store.members)


async def test_concurrent_patches_of_a_hosts_blocks_are_serializable(app_client, driver):
    """Six PATCHes of host1's Links.ResourceBlocks at once, each naming the whole set it
    wants (its own block and one GPU): they may all succeed, but the result must be one
    of the sets asked for (as if they ran one after the other), never a mix."""
    client, store = app_client
    http = in_process(client)
    own = {"@odata.id": block_uri("system-host1")}
    wanted = {n: [own, {"@odata.id": block_uri(n)}]
              for n in ("gpu1-3", "gpu1-4", "gpu1-5", "gpu1-6", "gpu1-7", "gpu1-8")}
    results = await asyncio.gather(*(
        http.request("PATCH", f"{SYSTEMS}/host1", {"Links": {"ResourceBlocks": refs}})
        for refs in wanted.values()))
    answers = [(status, message_ids(body)) for status, _, body in results]
    assert all(status in (200, 409) for status, _ in answers), answers
    assert any(status == 200 for status, _ in answers), answers
    final = ids((await http.get(f"{SYSTEMS}/host1"))["Links"]["ResourceBlocks"])
    assert final in [ids(refs) for refs in wanted.values()], \
        f"statuses {[r[0] for r in results]}; host1 ends with {final}"
    assert set(driver.bindings) == {name_of(u) for u in final if "system-" not in u}
    assert not violations(store.doc, store.members)


@pytest.mark.slow
async def test_64_https_clients_race_against_a_real_service(service):
    """The same kind of race over HTTPS, 64 sessions with their own connections, against
    the subprocess; the outcome is checked on the documents alone."""
    url = service.url
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the service's self-signed certificate, loopback only
    connector_args = {"ssl": ctx, "limit": 1}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(**connector_args)) as s:
        async with s.post(url + "/redfish/v1/SessionService/Sessions",
                          json={"UserName": "admin", "Password": service.password}) as r:
            assert r.status == 201
            token = r.headers["X-Auth-Token"]
    contested = ["gpu2-5", "gpu2-6", "nvme1-3", "cxlmem4"]
    ops = []
    for i in range(CLIENTS):
        device = contested[i % len(contested)]
        if i % 8 == 0:  # some compose a system from the device's zone's sled
            device = contested[(i // 8) % len(contested)]
            sled = "sled2" if device in ("gpu2-5", "gpu2-6") else "sled1"
            ops.append(("POST", SYSTEMS, compose_body(sled, device, name=f"h{i}")))
        else:
            ops.append(("POST", ADD.format(reach(device)[i % len(reach(device))]),
                        block_param(device)))
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(**connector_args))
                for _ in ops]
    try:
        clients = [over_https(s, url, token) for s in sessions]
        reader_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))
        async with reader_session:
            reader = Readers(over_https(reader_session, url, token))
            results = await run_race(clients, ops, reader)
    finally:
        await asyncio.gather(*(s.close() for s in sessions))

    assert not refusal_problems(ops, results), refusal_problems(ops, results)
    won: Counter[str] = Counter()
    for (_, _, body), (status, _, _) in zip(ops, results, strict=True):
        if status in (201, 204):
            names = [name_of(b) for b in ids(body["Links"]["ResourceBlocks"])] \
                if "Links" in body else [name_of(body["ResourceBlock"]["@odata.id"])]
            won.update(n for n in names if n in contested)
    assert won == Counter(contested), won  # each device won exactly once
    snap = await asyncio.to_thread(Snapshot, service.get)
    for device in contested:
        assert snap.state(device) == "Composed"
    assert not snap.violations(), snap.violations()
    assert not reader.problems, "readers saw half compositions:\n  " + \
        "\n  ".join(reader.problems)


# --------------------------------------------------------------------------------------
def _sync_get(store, path: str):
    """A GET served from the in-process store (the race is over; nothing moves), in the
    shape :class:`Snapshot` expects. ``$expand`` is resolved the way the service does."""
    expand = path.endswith(EXPAND)
    uri = path.removesuffix(EXPAND)
    doc = store.doc(uri)
    if doc is None:
        return 404, {}, None
    if expand and isinstance(doc.get("Members"), list):
        doc = {**doc, "Members": [store.doc(m["@odata.id"]) or m for m in doc["Members"]]}
    return 200, {}, doc


async def test_driver_failures_in_concurrent_attaches_stay_with_their_own(app_client, driver):
    """16 attaches at once (their transactions grouped), 3 of them to devices whose link
    is down: exactly those 3 fail (503, the device free again), the other 13 attach, and
    the driver holds exactly what the documents say."""
    client, store = app_client
    gpus = [f"gpu{s}-{n}" for s in (1, 2) for n in range(1, 9)]
    driver.down = {"gpu1-3", "gpu2-5", "gpu2-8"}
    ops = [("POST", ADD.format(reach(g)[i % 2]), block_param(g)) for i, g in enumerate(gpus)]
    reader = Readers(in_process(client))
    results = await run_race([in_process(client) for _ in ops], ops, reader)
    failed = {g for g, (status, _, _) in zip(gpus, results, strict=True) if status != 204}
    assert failed == driver.down, [(g, r[0]) for g, r in zip(gpus, results, strict=True)]
    assert all(results[gpus.index(g)][0] == 503 for g in failed)
    snap = Snapshot(lambda p: _sync_get(store, p))
    free = set(ids(snap.doc(FREE_POOL)["Members"]))
    for g in gpus:
        if g in failed:
            assert snap.owner(g) is None and block_uri(g) in free, g
        else:
            assert snap.owner(g) == f"{SYSTEMS}/{reach(g)[gpus.index(g) % 2]}", g
    assert driver.bindings == expected_bindings(snap.doc, snap.members)
    assert len(driver.bindings) == 13
    assert not violations(store.doc, store.members)
    assert not reader.problems, reader.problems
