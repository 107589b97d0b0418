"""A model-based test of composition: hypothesis drives the in-process service (SQLite
store in a temporary directory, the simulated rack with links that can go down) through
random compositions, expansions, reductions, decompositions, PATCHes of
``Links.ResourceBlocks``, link faults and restarts, and after every step compares the
service with a plain model (which block is attached where) and checks the composition
invariants and the driver's bindings.

The model knows the default rack (which zone each block is in) and the rules the
composition issue states (a block is in at most one system, only free blocks can be
taken, only blocks sharing a zone combine, a fabric failure undoes the operation). It
predicts each answer's status; the service must agree.

To add rules (the Compose action's reserve / apply / expire is next): give the model what
it needs in ``Model`` and write the rule in the marked section of ``CompositionMachine``;
the checks after each step apply to it unchanged.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from redfish_service import services
from redfish_service.app import create_app
from redfish_service.composition.invariants import violations
from redfish_service.config import Settings
from redfish_service.resources import reservations

from .conftest import FlakyDriver, basic
from .support.composition import (
    ADD,
    BLOCKS,
    EXPAND,
    REMOVE,
    SYSTEMS,
    block_uri,
    compose_body,
    ids,
    local_path,
    message_ids,
    name_of,
)
from .support.service import ADMIN_PASSWORD

pytestmark = pytest.mark.timeout(180)

COMPOSE = "/redfish/v1/CompositionService/Actions/CompositionService.Compose"
RESERVATIONS = "/redfish/v1/CompositionService/CompositionReservations"

ADMIN = basic("admin", ADMIN_PASSWORD)

# -- the default rack, as the model knows it ------------------------------------------------
HOSTS = ["host1", "host2", "host3", "host4"]
SLEDS = ["sled1", "sled2"]
DEVICES = [f"{kind}{n}-{i}" for n in (1, 2)
           for kind, count in (("gpu", 8), ("nvme", 4), ("dpu", 1), ("nic", 1))
           for i in range(1, count + 1)] + [f"cxlmem{i}" for i in range(1, 5)]


def zones_of(name: str) -> frozenset[str]:
    """The ResourceZones (one per PCIe switch) a block is in."""
    name = name.removeprefix("system-")  # a host's own block
    if name.startswith("cxlmem"):  # cxl1 reaches the hosts of both PCIe switches
        return frozenset({"pcie1", "pcie2"})
    if name.startswith("host"):
        return frozenset({"pcie1" if name in ("host1", "host2") else "pcie2"})
    if name.startswith("sled"):  # sled1 behind pcie1, sled2 behind pcie2
        return frozenset({f"pcie{name.removeprefix('sled')}"})
    return frozenset({f"pcie{name.split('-')[0][-1]}"})  # gpu1-3 -> pcie1


def host_uri(host: str) -> str:
    return f"{SYSTEMS}/{host}"


# -- the model ------------------------------------------------------------------------------
class Refused(Exception):
    """A refusal the model predicts: any of ``options`` (status, MessageId) is right (when
    a request breaks several rules, which one the service names first is its choice)."""

    def __init__(self, *options: tuple[int, str]) -> None:
        super().__init__(" or ".join(f"{s} {m}" for s, m in options))
        self.options = options


IN_USE = (409, "ResourceBlockInUse")
INCOMPATIBLE = (400, "IncompatibleZone")
INVALID = (400, "ResourceBlockInvalid")
RESERVED = (409, "SpecifiedResourceAlreadyReserved")
UNAVAILABLE = (503, "ServiceTemporarilyUnavailable")


def refusal(*broken: tuple[bool, tuple[int, str]]) -> None:
    """Raise Refused with every rule that is broken, if any."""
    options = [option for is_broken, option in broken if is_broken]
    if options:
        raise Refused(*options)


@dataclass
class Model:
    """Which system each block is in, and what each system holds (in order)."""

    owner: dict[str, str] = field(default_factory=dict)  # block -> system URI
    systems: dict[str, list[str]] = field(default_factory=lambda: {
        host_uri(h): [f"system-{h}"] for h in HOSTS})  # system URI -> block names
    down: set[str] = field(default_factory=set)  # devices whose link is down
    # Compose action: reservation Id -> the blocks it holds (sled first)
    reservations: dict[str, list[str]] = field(default_factory=dict)

    def reserved(self, block: str) -> bool:
        return any(block in held for held in self.reservations.values())

    def base(self, system: str) -> str:
        """The block a system stands on: a host's own block or a composed system's sled."""
        return self.systems[system][0]

    def driver_host(self, system: str) -> str:
        base = self.base(system)
        return base if base in SLEDS else base.removeprefix("system-")

    def composed(self) -> list[str]:
        return [s for s in self.systems if not s.startswith(tuple(map(host_uri, HOSTS)))]

    # The rules, each raising Refused(status, MessageId) or changing the model.
    def add(self, system: str, device: str) -> None:
        refusal((device in self.owner, IN_USE), (self.reserved(device), RESERVED),
                (not zones_of(device) & zones_of(self.base(system)), INCOMPATIBLE))
        refusal((device in self.down, UNAVAILABLE))  # only once planned: the fabric
        self.owner[device] = system
        self.systems[system].append(device)

    def remove(self, system: str, device: str) -> None:
        refusal((self.owner.get(device) != system, INVALID))
        del self.owner[device]
        self.systems[system].remove(device)

    def compose(self, uri: str, sled: str, devices: list[str], *,
                reservation: str | None = None) -> None:
        held = self.reservations.get(reservation, [])
        refusal((any(b in self.owner for b in (sled, *devices)), IN_USE),
                (any(self.reserved(b) and b not in held for b in (sled, *devices)), RESERVED),
                (not frozenset.intersection(*(zones_of(b) for b in (sled, *devices))),
                 INCOMPATIBLE))
        refusal((any(d in self.down for d in devices), UNAVAILABLE))
        self.systems[uri] = [sled, *devices]
        for block in (sled, *devices):
            self.owner[block] = uri

    def decompose(self, uri: str) -> None:
        for block in self.systems.pop(uri):
            del self.owner[block]

    def patch(self, system: str, wanted: list[str]) -> tuple[Refused | None, set[str]]:
        """PATCH Links.ResourceBlocks: detach what is dropped, attach what is new, all or
        nothing. Returns the refusal (if any) and the devices whose outcome is open: a
        dropped device whose link is down cannot be attached back when the PATCH fails
        after detaching it (whether it was detached first is the service's choice)."""
        if self.base(system) not in wanted:
            return Refused(INVALID), set()
        current = list(self.systems[system])
        dropped = [b for b in current if b not in wanted]
        new = [b for b in dict.fromkeys(wanted) if b not in current]
        options = []
        for block in new:
            if block in self.owner:
                options.append(IN_USE)
            if self.reserved(block):
                options.append(RESERVED)
            if not zones_of(block) & zones_of(self.base(system)):
                options.append(INCOMPATIBLE)
        if any(block in self.down for block in new):
            options.append(UNAVAILABLE)
        if options:
            return Refused(*dict.fromkeys(options)), {b for b in dropped if b in self.down}
        for block in dropped:
            self.remove(system, block)
        for block in new:
            self.add(system, block)
        return None, set()


# -- the machine ----------------------------------------------------------------------------
class CompositionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="composition-stateful-"))
        self.settings = Settings(state_dir=self.tmp, admin_password=ADMIN_PASSWORD)
        self.driver = FlakyDriver()
        self.model = Model()
        self.loop = asyncio.new_event_loop()
        self.client: TestClient | None = None
        self.restarts = 0
        self._start()

    # -- plumbing ---------------------------------------------------------------------
    def _run(self, coro):
        return self.loop.run_until_complete(asyncio.wait_for(coro, 30))

    def _start(self) -> None:
        async def start() -> TestClient:
            app = create_app(self.settings, driver=self.driver)  # SQLite in self.tmp
            client = TestClient(TestServer(app))  # aiohttp wants a running loop here
            await client.start_server()
            return client
        self.client = self._run(start())

    def _stop(self) -> None:
        if self.client is not None:
            self._run(self.client.close())  # runs the app's cleanup: the store closes
            self.client = None

    def teardown(self) -> None:
        try:
            self._stop()
        finally:
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def store(self):
        return self.client.server.app[services.STORE]

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, dict, Any]:
        async def go():
            resp = await self.client.request(method, path, json=body, headers=ADMIN)
            while resp.status == 202:  # a task monitor: follow it until it is done
                await asyncio.sleep(0.02)
                resp = await self.client.get(local_path(resp.headers["Location"]),
                                             headers=ADMIN)
            text = await resp.text()
            return resp.status, dict(resp.headers), (await resp.json()) if text else None
        return self._run(go())

    def expect(self, answer: tuple[int, dict, Any], refused: Refused | None,
               success: int, what: str) -> None:
        status, _, body = answer
        if refused is None:
            assert status == success, f"{what}: expected {success}, got {status} {body}"
        else:
            assert any(status == s and any(m.endswith("." + message)
                                           for m in message_ids(body))
                       for s, message in refused.options), \
                f"{what}: expected {refused}, got {status} {message_ids(body)}"

    def system_choice(self, data, *, composed_only: bool = False) -> str:
        systems = self.model.composed() if composed_only else list(self.model.systems)
        # in the order they were made: their URIs are random, sorting by them would make
        # the draws depend on more than the earlier draws (hypothesis needs them not to)
        return data.draw(st.sampled_from(systems), label="system")

    def device_for(self, data, system: str, *, held_first: bool) -> str:
        """A device the system holds (to remove), or one it could take (to add); now and
        then any device at all, for the refusals."""
        held = [d for d in self.model.systems[system] if d in DEVICES]
        near = [d for d in DEVICES if d not in self.model.owner
                and zones_of(d) & zones_of(self.model.base(system))]
        likely = held if held_first else near
        pools = [p for p in (likely, likely, likely, held + near, DEVICES) if p]
        pool = data.draw(st.sampled_from(pools), label="pool")
        return data.draw(st.sampled_from(pool), label="device")

    # -- rules ------------------------------------------------------------------------
    @rule(data=st.data(), sled=st.sampled_from(SLEDS))
    def compose(self, data, sled):
        free = [d for d in DEVICES if d not in self.model.owner]
        pool = data.draw(st.sampled_from([free, DEVICES]) if free else st.just(DEVICES),
                         label="pool")
        devices = data.draw(st.lists(st.sampled_from(pool), max_size=3, unique=True),
                            label="devices")
        answer = self.request("POST", SYSTEMS, compose_body(sled, *devices, name="m"))
        try:
            uri = local_path(answer[1].get("Location", "")) if answer[0] == 201 else "?"
            self.model.compose(uri, sled, devices)
            refused = None
        except Refused as e:
            refused = e
        self.expect(answer, refused, 201, f"compose {sled} {devices}")
        if refused is None:
            assert answer[2]["@odata.id"] == uri
            assert [name_of(b) for b in ids(answer[2]["Links"]["ResourceBlocks"])] == \
                [sled, *devices]

    @rule(data=st.data())
    def expand(self, data):
        system = self.system_choice(data)
        device = self.device_for(data, system, held_first=False)
        answer = self.request("POST", ADD.format(name_of(system)),
                              {"ResourceBlock": {"@odata.id": block_uri(device)}})
        try:
            self.model.add(system, device)
            refused = None
        except Refused as e:
            refused = e
        self.expect(answer, refused, 204, f"add {device} to {system}")

    @rule(data=st.data())
    def reduce(self, data):
        holders = {s for d, s in self.model.owner.items() if d in DEVICES}
        holding = [s for s in self.model.systems if s in holders]
        system = data.draw(st.sampled_from(holding), label="system") \
            if holding and data.draw(st.integers(0, 3), label="holder") else \
            self.system_choice(data)
        device = self.device_for(data, system, held_first=True)
        answer = self.request("POST", REMOVE.format(name_of(system)),
                              {"ResourceBlock": {"@odata.id": block_uri(device)}})
        try:
            self.model.remove(system, device)
            refused = None
        except Refused as e:
            refused = e
        self.expect(answer, refused, 204, f"remove {device} from {system}")

    @precondition(lambda self: self.model.composed())
    @rule(data=st.data())
    def decompose(self, data):
        system = self.system_choice(data, composed_only=True)
        answer = self.request("DELETE", system)
        self.model.decompose(system)
        self.expect(answer, None, 204, f"delete {system}")
        assert self.request("GET", system)[0] == 404

    @rule(host=st.sampled_from(HOSTS))
    def hosts_cannot_be_deleted(self, host):
        assert self.request("DELETE", host_uri(host))[0] == 405

    @rule(data=st.data(), keep_base=st.booleans() | st.just(True))
    def patch_links(self, data, keep_base):
        """PATCH a system's Links.ResourceBlocks to a new set: some of what it holds, some
        other devices (free or not, near or not), usually with its own base block."""
        system = self.system_choice(data)
        held = [d for d in self.model.systems[system] if d in DEVICES]
        kept = data.draw(st.lists(st.sampled_from(held), unique=True) if held
                         else st.just([]), label="kept")
        new = data.draw(st.lists(st.sampled_from(DEVICES), max_size=2, unique=True),
                        label="new")
        wanted = ([self.model.base(system)] if keep_base else []) + \
            list(dict.fromkeys(kept + new))
        answer = self.request("PATCH", system, {"Links": {"ResourceBlocks": [
            {"@odata.id": block_uri(b)} for b in wanted]}})
        refused, open_outcome = self.model.patch(system, wanted)
        self.expect(answer, refused, 200, f"PATCH {system} Links.ResourceBlocks {wanted}")
        if refused is None:
            assert set(map(name_of, ids(answer[2]["Links"]["ResourceBlocks"]))) == set(wanted)
        for device in open_outcome:  # still in the system, or detached: either is right
            linked = ids(self.request("GET", block_uri(device))[2]["Links"]["ComputerSystems"])
            assert linked in ([system], []), (device, linked)
            if not linked:
                self.model.remove(system, device)

    @rule(data=st.data())
    def link_down(self, data):
        """A fault in the fabric: binding this device fails (LinkDown) until link_up.
        Mostly a free device (so that a later attach meets the fault), or any."""
        free = [d for d in DEVICES if d not in self.model.owner]
        device = data.draw(st.sampled_from(free) | st.sampled_from(DEVICES), label="device")
        self.driver.down.add(device)
        self.model.down.add(device)

    @precondition(lambda self: self.model.down)
    @rule(data=st.data())
    def link_up(self, data):
        device = data.draw(st.sampled_from(sorted(self.model.down)))
        self.driver.down.discard(device)
        self.model.down.discard(device)

    @rule(now=st.integers(0, 2))
    def restart(self, now):
        """Stop the service and start a new one on the same SQLite file and fabric (one
        time in three this rule is drawn: restarts are slower than the other steps)."""
        if now:
            return
        self._stop()
        self._start()
        self.restarts += 1

    # -- Compose action: reserve, apply, cancel, expire ---------------------------------
    @rule(data=st.data(), sled=st.sampled_from(SLEDS))
    def reserve(self, data, sled):
        """PreviewReserve a system (a sled and up to two devices): the blocks are set
        aside, nothing is bound."""
        devices = data.draw(st.lists(st.sampled_from(DEVICES), max_size=2, unique=True),
                            label="devices")
        stanza = {"StanzaType": "ComposeSystem", "StanzaId": "s",
                  "Request": compose_body(sled, *devices, name="r")}
        answer = self.request("POST", COMPOSE, {"RequestType": "PreviewReserve",
                                                "Manifest": {"Stanzas": [stanza]}})
        trial = Model(dict(self.model.owner),
                      {k: list(v) for k, v in self.model.systems.items()},
                      set(), dict(self.model.reservations))
        try:
            trial.compose("?", sled, devices)  # as if composed now, faults aside
            refused = None
        except Refused as e:
            refused = e
        status, _, body = answer
        if refused is None:
            assert status == 200, f"reserve {sled} {devices}: {status} {body}"
            self.model.reservations[body["ReservationId"]] = [sled, *devices]
        else:
            assert status in (400, 409) and any(
                m.endswith("." + message) for _, message in refused.options
                for m in message_ids(body)), (sled, devices, refused, message_ids(body))

    @precondition(lambda self: self.model.reservations)
    @rule(data=st.data())
    def apply_reservation(self, data):
        reservation = data.draw(st.sampled_from(list(self.model.reservations)))
        sled, *devices = self.model.reservations[reservation]
        answer = self.request("POST", COMPOSE, {"RequestType": "Apply",
                                                "ReservationId": reservation})
        body = answer[2]
        refused = Refused(UNAVAILABLE) if any(d in self.model.down for d in devices) else None
        self.expect(answer, refused, 200, f"apply {reservation}")
        if refused is None:
            uri = local_path(body["Manifest"]["Stanzas"][0]["Response"]["@odata.id"])
            self.model.compose(uri, sled, devices, reservation=reservation)
            del self.model.reservations[reservation]

    @precondition(lambda self: self.model.reservations)
    @rule(data=st.data())
    def cancel_reservation(self, data):
        reservation = data.draw(st.sampled_from(list(self.model.reservations)))
        answer = self.request("DELETE", f"{RESERVATIONS}/{reservation}")
        self.expect(answer, None, 204, f"delete reservation {reservation}")
        del self.model.reservations[reservation]

    @precondition(lambda self: self.model.reservations)
    @rule()
    def time_passes(self):
        """Every reservation's time runs out (the function the service's expiry task
        runs, called as if an hour had passed)."""
        ended = self._run(reservations.expire(self.store, now=time.time() + 3600))
        assert ended == len(self.model.reservations)
        self.model.reservations.clear()

    # -- after every step ---------------------------------------------------------------
    @invariant()
    def service_matches_the_model(self):
        blocks = {name_of(d["@odata.id"]): d
                  for d in self.request("GET", BLOCKS + EXPAND)[2]["Members"]}
        systems = {d["@odata.id"]: d for d in self.request("GET", SYSTEMS + EXPAND)[2]["Members"]}
        problems = []
        for name in (*SLEDS, *DEVICES):
            doc = blocks[name]
            state = doc["CompositionStatus"]["CompositionState"]
            linked = ids(doc["Links"]["ComputerSystems"])
            expected = self.model.owner.get(name)
            if linked != ([expected] if expected else []) or \
                    state != ("Composed" if expected else "Unused"):
                problems.append(f"{name}: {state} in {linked}, model says {expected}")
            if doc["CompositionStatus"]["Reserved"] != self.model.reserved(name):
                problems.append(f"{name}: Reserved {doc['CompositionStatus']['Reserved']}")
        if set(systems) != set(self.model.systems):
            problems.append(f"systems {sorted(systems)}, model {sorted(self.model.systems)}")
        for uri, names in self.model.systems.items():
            got = [name_of(b) for b in ids(systems.get(uri, {}).get("Links", {})
                                           .get("ResourceBlocks"))]
            if got[:1] != names[:1] or set(got) != set(names):
                problems.append(f"{uri} holds {got}, model {names}")
        held = {r["Id"]: [name_of(b) for b in ids(r["ReservedResourceBlocks"])]
                for r in self.request("GET", RESERVATIONS + EXPAND)[2]["Members"]}
        if held != self.model.reservations:
            problems.append(f"reservations {held}, model {self.model.reservations}")
        bindings = {d: self.model.driver_host(s) for d, s in self.model.owner.items()
                    if d in DEVICES}
        if self.driver.bindings != bindings:
            problems.append(f"driver bindings {self.driver.bindings}, model {bindings}")
        problems += violations(self.store.doc, self.store.members)
        assert not problems, "\n".join(problems)


def test_composition_state_machine():
    run_state_machine_as_test(CompositionMachine, settings=settings(
        max_examples=25, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
