"""SIGKILL while compositions are in flight, then a restart on the same state directory.

The service runs on a rack whose every bind and unbind takes ``LATENCY_S`` (``--rack``),
so compositions, expansions, reductions and decompositions are under way when it is
killed. Several rounds, each planned from what the service shows, each killed at a
different moment (the last one only after every answer came back). After every restart:

* nothing is left ``Composing``; each block is composed into a system that links it, or
  free; FreePool/ActivePool agree; the invariants hold (over HTTPS, ``violations()``);
* every operation is all or nothing: an acknowledged one is there in full, one cut off by
  the kill is either there in full or not at all (a composition never leaves a system
  with some of its blocks, a decomposition never frees half of them);
* nothing moved that no operation touched, and no system appeared that no composition made.

At the end the service restarts on a fast rack, and every device is detached and attached
again: the fabric the service rebuilt at start agrees with the documents (a device it
left bound elsewhere would be refused as busy).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from redfish_service.drivers.simulated import default_rack

from .support.composition import (
    ADD,
    BLOCKS,
    REMOVE,
    SYSTEMS,
    ZONES,
    KeepAlive,
    Snapshot,
    block_param,
    block_uri,
    compose_body,
    follow_task,
    ids,
    local_path,
    name_of,
    snapshot,
)
from .support.service import ServiceProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

LATENCY_S = 0.1
# SIGKILL this long after the first block shows Composing in a round (so the kill lands
# mid-operation however busy the machine is); None: after every answer came back. The
# first round is not killed at all: it composes things for later rounds to take apart.
KILL_AFTER = ("no kill", 0.0, 0.08, 0.2, None)
COMPOSING = BLOCKS + "?$filter=" + quote("CompositionStatus/CompositionState eq 'Composing'")


def write_rack(path: Path, latency: float) -> None:
    rack = default_rack().model_dump(mode="json")
    rack["bind_latency_s"] = latency
    path.write_text(yaml.safe_dump(rack))


@dataclass
class Op:
    kind: str  # compose | add | remove | delete
    system: str  # the target system (compose: filled in from the answer)
    blocks: list[str]  # compose: sled first; delete: every block of the system
    result: tuple[int, dict, Any] | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def request(self) -> tuple[str, str, Any]:
        system_id = name_of(self.system) if self.system else ""
        if self.kind == "compose":
            return "POST", SYSTEMS, compose_body(*self.blocks, name=f"dur-{self.blocks[0]}")
        if self.kind == "add":
            return "POST", ADD.format(system_id), block_param(self.blocks[0])
        if self.kind == "remove":
            return "POST", REMOVE.format(system_id), block_param(self.blocks[0])
        return "DELETE", self.system, None

    def run(self, svc: ServiceProcess) -> None:
        try:
            self.result = follow_task(svc.get, svc.request(*self.request()))
        except Exception as e:  # the kill: connection refused / reset / closed
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.done.set()

    @property
    def acked(self) -> bool:
        return self.result is not None

    def __str__(self) -> str:
        answer = self.result[0] if self.result else f"no answer ({self.error})"
        return f"{self.kind} {name_of(self.system) if self.system else ''} {self.blocks}: " \
            f"{answer}"


class Plan:
    """Operations on disjoint blocks, at most one per host or sled (so they all overlap
    in time instead of queueing behind one another)."""

    def __init__(self, snap: Snapshot, rng: random.Random) -> None:
        self.snap, self.rng = snap, rng
        self.taken: set[str] = set()
        self.ops: list[Op] = []
        zones = [set(map(name_of, ids(snap.doc(z)["Links"]["ResourceBlocks"])))
                 for z in snap.members(ZONES)]
        self.free = [name_of(u) for u in snap.members(BLOCKS)
                     if snap.state(name_of(u)) == "Unused"
                     and not {"ComputerSystem", "Compute"}
                     & set(snap.block(name_of(u))["ResourceBlockType"])]
        self.zone_of: dict[str, set[str]] = {}  # block -> every block sharing a zone
        for zone in zones:
            for name in zone:
                self.zone_of.setdefault(name, set()).update(zone)

    def free_near(self, base: str, n: int) -> list[str]:
        options = [d for d in self.free if d not in self.taken and d in self.zone_of[base]]
        picks = self.rng.sample(options, min(n, len(options)))
        self.taken.update(picks)
        return picks

    def build(self) -> list[Op]:
        snap = self.snap
        for system, names in snap.composed_systems().items():
            if self.rng.random() < 0.5:
                self.ops.append(Op("delete", system, names))
            elif picks := self.free_near(names[0], 1):
                self.ops.append(Op("add", system, picks))
        for system in snap.members(SYSTEMS):
            doc = snap.doc(system)
            if doc.get("SystemType") == "Composed":
                continue
            own, *attached = [name_of(b) for b in ids(doc["Links"]["ResourceBlocks"])]
            if attached and self.rng.random() < 0.5:
                self.ops.append(Op("remove", system, [self.rng.choice(attached)]))
            elif picks := self.free_near(own, 1):
                self.ops.append(Op("add", system, picks))
        for uri in snap.members(BLOCKS):
            sled = name_of(uri)
            if "Compute" in snap.block(sled)["ResourceBlockType"] \
                    and snap.state(sled) == "Unused":
                devices = self.free_near(sled, self.rng.choice((2, 3)))
                if devices:
                    self.ops.append(Op("compose", "", [sled, *devices]))
        return self.ops


def check_round(before: Snapshot, after: Snapshot, ops: list[Op]) -> list[str]:
    """Each operation all or nothing; nothing else moved; no stray systems."""
    out: list[str] = []
    owner_before = {name_of(u): before.owner(name_of(u)) for u in before.members(BLOCKS)}
    owner_after = {name_of(u): after.owner(name_of(u)) for u in after.members(BLOCKS)}
    systems_after = after.composed_systems()
    touched: set[str] = set()
    made: set[str] = set()

    def owners(names: list[str]) -> list[str | None]:
        return [owner_after.get(n) for n in names]

    for op in ops:
        touched.update(op.blocks)
        if op.acked and op.result[0] not in (200, 201, 204):
            out.append(f"{op} was refused: {op.result[2]}")
            continue
        if op.kind == "compose":
            matches = [s for s, names in systems_after.items() if names == op.blocks]
            if op.acked:
                location = op.result[1].get("Location")
                system = local_path(location) if location else (matches or ["?"])[0]
                if matches != [system] or owners(op.blocks) != [system] * len(op.blocks):
                    out.append(f"{op}: acknowledged as {system}, now systems {matches}, "
                               f"owners {owners(op.blocks)}")
            elif matches:
                if len(matches) != 1 or owners(op.blocks) != [matches[0]] * len(op.blocks):
                    out.append(f"{op}: half there: {matches}, owners {owners(op.blocks)}")
            elif owners(op.blocks) != [None] * len(op.blocks):
                out.append(f"{op}: no system, but owners {owners(op.blocks)}")
            made.update(matches)
        elif op.kind in ("add", "remove"):
            done = op.system if op.kind == "add" else None
            undone = None if op.kind == "add" else op.system
            allowed = [done] if op.acked else [done, undone]
            if owner_after[op.blocks[0]] not in allowed:
                out.append(f"{op}: {op.blocks[0]} now in {owner_after[op.blocks[0]]}")
        else:  # delete
            gone = op.system not in after.members(SYSTEMS)
            if gone and owners(op.blocks) != [None] * len(op.blocks):
                out.append(f"{op}: system gone but owners {owners(op.blocks)}")
            if not gone and (op.acked or systems_after.get(op.system) != op.blocks
                             or owners(op.blocks) != [op.system] * len(op.blocks)):
                out.append(f"{op}: system still there with {systems_after.get(op.system)}, "
                           f"owners {owners(op.blocks)}")
    for name, owner in owner_after.items():
        if name not in touched and owner != owner_before.get(name):
            out.append(f"{name} moved from {owner_before.get(name)} to {owner} untouched")
    for system in set(systems_after) - set(before.composed_systems()) - made:
        out.append(f"{system} appeared from nowhere: {systems_after[system]}")
    return out


def wait_for_composing(svc: ServiceProcess, ops: list[Op], timeout: float = 15) -> None:
    """Until a block is Composing (or every operation has answered)."""
    conn = KeepAlive(svc)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(op.done.is_set() for op in ops):
            status, _, body = conn.get(COMPOSING)
            assert status == 200, body
            if body["Members"]:
                return
            time.sleep(0.01)
    finally:
        conn.close()


def test_sigkill_during_compositions_leaves_nothing_half_done(tmp_path):
    rack = tmp_path / "rack.yaml"
    write_rack(rack, LATENCY_S)
    svc = ServiceProcess(tmp_path / "state", extra_args=["--rack", str(rack)]).start()
    rng = random.Random(4242)
    cut_off: list[str] = []  # operations the kills interrupted
    try:
        for round_no, kill_after in enumerate(KILL_AFTER):
            before = snapshot(svc)
            ops = Plan(before, rng).build()
            assert len(ops) >= 4, [str(op) for op in ops]
            threads = [threading.Thread(target=op.run, args=(svc,), daemon=True)
                       for op in ops]
            for t in threads:
                t.start()
            if kill_after in (None, "no kill"):
                for op in ops:
                    assert op.done.wait(30), f"{op} did not finish"
                assert all(op.acked for op in ops), [str(op) for op in ops]
                if kill_after == "no kill":
                    problems = check_round(before, snapshot(svc), ops)
                    assert not problems, "\n".join(problems)
                    continue
                # the last restart is on a fast rack, for the fabric check below
                write_rack(rack, 0.002)
            else:
                wait_for_composing(svc, ops)
                time.sleep(kill_after)
            svc.kill()
            for t in threads:
                t.join(timeout=30)
            assert not any(t.is_alive() for t in threads), "a client hung after the kill"
            cut_off += [str(op) for op in ops if not op.acked]

            svc.start()  # same state directory
            after = snapshot(svc)
            problems = after.violations() + check_round(before, after, ops)
            assert not problems, (
                f"round {round_no} (kill {kill_after}s after the first Composing), "
                "operations:\n  " + "\n  ".join(map(str, ops))
                + "\nproblems:\n  " + "\n  ".join(problems))
        # the kills did land mid-operation (else this test shows nothing)
        assert len(cut_off) >= 5, cut_off

        # -- the rebuilt fabric agrees with the documents ----------------------------------
        conn = KeepAlive(svc)
        try:
            check_fabric_agrees(svc, conn)
        finally:
            conn.close()
    finally:
        svc.stop()


def check_fabric_agrees(svc: ServiceProcess, conn: KeepAlive) -> None:
    """Detach everything, then attach every device (to a host other than the one it was
    last on, when there is one): a binding the restarted service rebuilt wrongly would
    make the fabric refuse one of these."""

    def ok(method: str, path: str, body: Any = None) -> None:
        status, _, answer = follow_task(conn.get, conn.request(method, path, body))
        assert status == 204, (method, path, body, answer)

    snap = snapshot(svc)
    hosts = [s for s in snap.members(SYSTEMS) if snap.doc(s).get("SystemType") != "Composed"]
    for system in snap.composed_systems():
        ok("DELETE", system)
    for system in hosts:
        for uri in ids(snap.doc(system)["Links"]["ResourceBlocks"])[1:]:
            ok("POST", REMOVE.format(name_of(system)), {"ResourceBlock": {"@odata.id": uri}})
    free = snapshot(svc)
    assert not free.composed_systems() and not free.violations(), free.violations()
    zones = [set(ids(free.doc(z)["Links"]["ResourceBlocks"])) for z in free.members(ZONES)]
    attached = 0
    for uri in free.members(BLOCKS):
        if {"ComputerSystem", "Compute"} & set(free.block(name_of(uri))["ResourceBlockType"]):
            continue
        last = snap.owner(name_of(uri))
        reachable = [h for h in hosts if any(
            uri in z and block_uri(f"system-{name_of(h)}") in z for z in zones)]
        host = next((h for h in reachable if h != last), reachable[0])
        ok("POST", ADD.format(name_of(host)), {"ResourceBlock": {"@odata.id": uri}})
        attached += 1
    assert attached >= 30
    assert not snapshot(svc).violations()
