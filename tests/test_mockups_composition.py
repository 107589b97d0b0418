"""Composition against served DMTF composability mockups, in process.

``public-composability``, ``public-constrained-composition`` and ``public-compose-action``
served with ``--mockup`` behave as live composable services: the mockup driver derives
devices, hosts and zones from the documents and simulates attach/detach. The composition
machinery works on documents it did not write: shared blocks (``ComposedAndAvailable``),
properties missing or of another shape, links to documents that are absent. Bad input or
broken documents give a Redfish error, never a 500.

The real clients (sushy, the DMTF ``redfish`` library) against a served mockup are in
``test_mockups_clients.py``.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from redfish_service import services
from redfish_service.app import create_app
from redfish_service.composition.invariants import violations
from redfish_service.config import Settings
from redfish_service.drivers.contract import DeviceBusy, DeviceNotFound, DriverError
from redfish_service.mockups import loader
from redfish_service.mockups.driver import MockupDriver
from redfish_service.store import MemoryBackend

from .support.composition import local_path, message_ids
from .support.service import ADMIN_PASSWORD
from .test_mockups import AUTH, mockup

SYSTEMS = "/redfish/v1/Systems"
BLOCKS = "/redfish/v1/CompositionService/ResourceBlocks"
COMPOSE = "/redfish/v1/CompositionService/Actions/CompositionService.Compose"
RESERVATIONS = "/redfish/v1/CompositionService/CompositionReservations"
IN_USE = "Composition.1.1.ResourceBlockInUse"
ZONE = "Composition.1.1.IncompatibleZone"
NOT_FOUND = "Composition.1.1.ResourceBlockNotFound"
NO_MATCH = "Composition.1.1.NoResourceMatch"


def block(name: str) -> str:
    return f"{BLOCKS}/{name}"


def compose_body(*names: str, name: str = "composed") -> dict:
    return {"Name": name, "Links": {"ResourceBlocks": [{"@odata.id": block(n)} for n in names]}}


class Served:
    """An in-process service of a mockup, with its store at hand."""

    def __init__(self, client, app, folder: Path, invariants: bool) -> None:
        self.client, self.app, self.folder = client, app, folder
        self.store = app[services.STORE]
        self.loaded = loader.load(folder).documents
        self.at_start = set(self.violations()) if invariants else set()

    def violations(self) -> list[str]:
        return violations(self.store.doc, self.store.members, fabric=False)

    def new_violations(self) -> list[str]:
        """Invariants the composition broke (the mockup's own inconsistencies aside)."""
        return [v for v in self.violations() if v not in self.at_start]

    async def request(self, method: str, path: str, body=None):
        resp = await self.client.request(method, path, json=body, headers=AUTH)
        text = await resp.text()
        return resp.status, dict(resp.headers), json.loads(text) if text else None

    async def change(self, system: str, name: str, *, attach: bool):
        """AddResourceBlock (RemoveResourceBlock) of the block ``name`` to (from) a system."""
        action = "AddResourceBlock" if attach else "RemoveResourceBlock"
        return await self.request("POST", f"{system}/Actions/ComputerSystem.{action}",
                                  {"ResourceBlock": {"@odata.id": block(name)}})

    async def get(self, path: str) -> dict:
        status, _, body = await self.request("GET", path)
        assert status == 200, (path, status, body)
        return body

    async def state(self, name: str) -> tuple[str, list[str]]:
        """(CompositionState, systems) of a block, as served."""
        doc = await self.get(block(name))
        return (doc["CompositionStatus"]["CompositionState"],
                [s["@odata.id"] for s in doc["Links"].get("ComputerSystems", [])])

    def untouched(self, changed: set[str]) -> list[str]:
        """Mockup documents that differ from the mockup although the operation had no
        business with them (``changed``: blocks, systems and pools it did change, with
        what is below them)."""
        out = []
        for uri, doc in self.loaded.items():
            if any(uri == c or uri.startswith(c + "/") for c in changed) \
                    or uri == "/redfish/v1/" or uri.startswith(
                    ("/redfish/v1/AccountService", "/redfish/v1/SessionService",
                     "/redfish/v1/TaskService", "/redfish/v1/EventService",
                     "/redfish/v1/Managers", "/redfish/v1/Registries", "/redfish/v1/JsonSchemas")):
                continue
            served = self.store.doc(uri)
            if served is None:
                out.append(f"{uri} is gone")
                continue
            served = {k: v for k, v in served.items() if k != "@odata.etag"}
            if served != doc:
                out.append(f"{uri} changed")
        return out


async def serve(aiohttp_client, tmp_path: Path, folder: Path, *,
                invariants: bool = True) -> Served:
    settings = Settings(state_dir=tmp_path / "state", admin_password=ADMIN_PASSWORD,
                        mockup=folder)
    app = create_app(settings, backend=MemoryBackend())
    client = await aiohttp_client(app)
    return Served(client, app, folder, invariants)


# --------------------------------------------------------------------------------------
# public-composability: the 500 of POST /Systems, shared blocks, refusals
# --------------------------------------------------------------------------------------
async def test_composing_after_a_decomposition_on_public_composability(aiohttp_client, tmp_path):
    """The known bug: POST /Systems answered 500 (host_view deleted the Memory members of
    every other system: DIMMs of ComputeBlock1, documents it never wrote)."""
    svc = await serve(aiohttp_client, tmp_path, mockup("public-composability"))
    status, _, body = await svc.request("DELETE", f"{SYSTEMS}/ComposedSystem2")
    assert status == 204, body
    status, headers, body = await svc.request(
        "POST", SYSTEMS, compose_body("ComputeBlock2", "DriveBlock5", "OffloadBlock9"))
    assert status == 201, body
    system = local_path(headers["Location"])
    assert body["SystemType"] == "Composed"
    assert [b["@odata.id"] for b in body["Links"]["ResourceBlocks"]] == [
        block("ComputeBlock2"), block("DriveBlock5"), block("OffloadBlock9")]
    assert await svc.state("ComputeBlock2") == ("Composed", [system])
    assert await svc.state("OffloadBlock9") == ("Composed", [system])
    # shared: DriveBlock5 (SharingEnabled, MaxCompositions 8) may join others
    assert await svc.state("DriveBlock5") == ("ComposedAndAvailable", [system])
    # what the composition has no business with is as the mockup says
    for uri in ("/redfish/v1/CompositionService/ResourceBlocks/ComputeBlock1/Memory/Block1DIMM0",
                f"{SYSTEMS}/ComposedSystem/Memory", f"{SYSTEMS}/ComposedSystem"):
        assert (await svc.get(uri)) is not None
    touched = {block(n) for n in ("ComputeBlock2", "DriveBlock3", "NetworkBlock8",
                                  "DriveBlock5", "OffloadBlock9")}
    touched |= {f"{SYSTEMS}/ComposedSystem2", SYSTEMS}
    assert svc.untouched(touched) == []
    assert svc.new_violations() == []
    # and back: every block free again, the system gone
    status, _, body = await svc.request("DELETE", system)
    assert status == 204, body
    for name in ("ComputeBlock2", "DriveBlock5", "OffloadBlock9"):
        assert await svc.state(name) == ("Unused", [])
    assert (await svc.request("GET", system))[0] == 404
    assert svc.new_violations() == []


async def test_registering_a_mockup_host_server(aiohttp_client, tmp_path):
    """public-composability's SystemPreResourceBlock is a physical server with no block:
    RegisterResourceBlock (POST ResourceBlocks) makes its ComputerSystem block in the zone
    the collection advertises for registration, and the system becomes expandable; a
    second registration, a composed system and a missing one are refused with the right
    messages; deleting the block unregisters it, and it can register again."""
    svc = await serve(aiohttp_client, tmp_path, mockup("public-composability"))
    host = f"{SYSTEMS}/SystemPreResourceBlock"
    zone3 = "/redfish/v1/CompositionService/ResourceZones/3"

    def register(system: str) -> dict:
        return {"Name": "pre", "ComputerSystems": [{"@odata.id": system}]}

    for system, status, message_id in (
            (f"{SYSTEMS}/ComposedSystem", 400, "Base.1.22.PropertyValueIncorrect"),
            (f"{SYSTEMS}/Nope", 400, "Base.1.22.ResourceMissingAtURI"),
            (f"{SYSTEMS}/SystemAfterResourceBlock", 409, "Base.1.22.ResourceAlreadyExists")):
        code, _, body = await svc.request("POST", BLOCKS, register(system))
        assert (code, message_ids(body)) == (status, [message_id]), body
    assert svc.untouched(set()) == []

    status, headers, body = await svc.request("POST", BLOCKS, register(host))
    assert status == 201, body
    made = local_path(headers["Location"])
    assert body["ResourceBlockType"] == ["ComputerSystem"] and body["Name"] == "pre"
    assert [s["@odata.id"] for s in body["ComputerSystems"]] == [host]
    assert [z["@odata.id"] for z in body["Links"]["Zones"]] == [zone3]
    assert made in [b["@odata.id"] for b in (await svc.get(zone3))["Links"]["ResourceBlocks"]]
    system = await svc.get(host)
    assert system["Composition"]["UseCases"] == ["ExpandableSystem"]
    assert "#ComputerSystem.AddResourceBlock" in system["Actions"]
    assert system["Storage"] == {"@odata.id": f"{host}/Storage"}  # the mockup's own, kept
    code, _, body = await svc.request("POST", BLOCKS, register(host))
    assert (code, message_ids(body)) == (409, ["Base.1.22.ResourceAlreadyExists"]), body

    status, _, body = await svc.request("DELETE", made)
    assert status == 204, body
    assert (await svc.get(host))["Composition"]["UseCases"] == ["ResourceBlockCapable"]
    status, _, body = await svc.request("POST", BLOCKS, register(host))
    assert status == 201, body
    assert svc.new_violations() == []


async def test_shared_blocks_stay_with_their_other_systems(aiohttp_client, tmp_path):
    """DriveBlock3 is in ComposedSystem and ComposedSystem2: decomposing one leaves it in
    the other; a new system may share it too."""
    svc = await serve(aiohttp_client, tmp_path, mockup("public-composability"))
    assert await svc.state("DriveBlock3") == (
        "ComposedAndAvailable", [f"{SYSTEMS}/ComposedSystem", f"{SYSTEMS}/ComposedSystem2"])
    assert (await svc.request("DELETE", f"{SYSTEMS}/ComposedSystem2"))[0] == 204
    assert await svc.state("DriveBlock3") == ("ComposedAndAvailable",
                                              [f"{SYSTEMS}/ComposedSystem"])
    doc = await svc.get(block("DriveBlock3"))
    assert doc["CompositionStatus"]["NumberOfCompositions"] == 1
    status, _, body = await svc.request(
        "POST", SYSTEMS, compose_body("ComputeBlock2", "DriveBlock3"))
    assert status == 201, body
    new = body["@odata.id"]
    assert await svc.state("DriveBlock3") == ("ComposedAndAvailable",
                                              [f"{SYSTEMS}/ComposedSystem", new])
    # a block not shared (NetworkBlock8, zone 2) joins one system only
    status, _, body = await svc.change(new, "NetworkBlock8", attach=True)
    assert status == 204, body
    assert await svc.state("NetworkBlock8") == ("Composed", [new])
    status, _, body = await svc.change(new, "NetworkBlock8", attach=True)
    assert status == 409 and IN_USE in message_ids(body)
    status, _, body = await svc.change(new, "DriveBlock3", attach=False)
    assert status == 204, body
    assert await svc.state("DriveBlock3") == ("ComposedAndAvailable",
                                              [f"{SYSTEMS}/ComposedSystem"])
    assert svc.new_violations() == []
    driver = svc.app[services.COMPOSER]._driver
    assert driver.attached("DriveBlock3") == {"ComputeBlock1"}
    assert driver.attached("NetworkBlock8") == {"ComputeBlock2"}


async def test_a_shared_block_holds_at_most_max_compositions(aiohttp_client, tmp_path):
    folder = tmp_path / "mockup"
    shutil.copytree(mockup("public-composability"), folder)
    path = folder / "CompositionService" / "ResourceBlocks" / "DriveBlock3" / "index.json"
    doc = json.loads(path.read_text())
    doc["CompositionStatus"]["MaxCompositions"] = 2  # and in 2 systems: full
    doc["CompositionStatus"]["CompositionState"] = "Composed"
    path.write_text(json.dumps(doc))
    svc = await serve(aiohttp_client, tmp_path, folder)
    assert (await svc.request("DELETE", f"{SYSTEMS}/ComposedSystem2"))[0] == 204
    assert await svc.state("DriveBlock3") == ("ComposedAndAvailable",
                                              [f"{SYSTEMS}/ComposedSystem"])
    status, _, body = await svc.request("POST", SYSTEMS,
                                        compose_body("ComputeBlock2", "DriveBlock3"))
    assert status == 201, body
    assert (await svc.state("DriveBlock3"))[0] == "Composed"  # full again
    status, _, body = await svc.request("DELETE", body["@odata.id"])
    assert status == 204
    assert (await svc.state("DriveBlock3"))[0] == "ComposedAndAvailable"


@pytest.mark.parametrize(("names", "status", "message"), [
    (("ComputeBlock1", "DriveBlock5"), 409, IN_USE),  # composed into ComposedSystem
    (("ComputeBlock2", "DriveBlock10"), 400, ZONE),  # zone 2, zone 3
    (("ComputeBlock2", "Nothing"), 400, NOT_FOUND),
    (("DriveBlock5", "DriveBlock6"), 400, "Composition.1.1.ResourceBlockInvalid"),  # no compute
])
async def test_refused_compositions_change_nothing(aiohttp_client, tmp_path, names, status,
                                                   message):
    svc = await serve(aiohttp_client, tmp_path, mockup("public-composability"))
    assert (await svc.request("DELETE", f"{SYSTEMS}/ComposedSystem2"))[0] == 204
    before = {u: svc.store.get(u).revision for u in svc.store.uris()}
    got, _, body = await svc.request("POST", SYSTEMS, compose_body(*names))
    assert got == status and message in message_ids(body), body
    assert {u: svc.store.get(u).revision for u in svc.store.uris()} == before


async def test_zones_bound_what_a_system_may_take(aiohttp_client, tmp_path):
    """ComputeBlock2 is in zone 2 only; DriveBlock10 in zone 3 only."""
    svc = await serve(aiohttp_client, tmp_path, mockup("public-composability"))
    assert (await svc.request("DELETE", f"{SYSTEMS}/SystemAfterAddResourceAction"))[0] == 405
    status, _, body = await svc.change(
        f"{SYSTEMS}/SystemAfterAddResourceAction", "DriveBlock10", attach=False)
    assert status == 204, body  # an expandable system gives a block back
    assert await svc.state("DriveBlock10") == ("Unused", [])
    assert (await svc.request("DELETE", f"{SYSTEMS}/ComposedSystem2"))[0] == 204
    status, _, body = await svc.request("POST", SYSTEMS,
                                        compose_body("ComputeBlock2", "DriveBlock10"))
    assert status == 400 and ZONE in message_ids(body), body
    # the expandable system standing on SystemBlock11 (zone 3) may take it
    status, _, body = await svc.change(
        f"{SYSTEMS}/SystemAfterResourceBlock", "DriveBlock10", attach=True)
    assert status == 204, body
    assert await svc.state("DriveBlock10") == (
        "Composed", [f"{SYSTEMS}/SystemAfterResourceBlock"])
    system = await svc.get(f"{SYSTEMS}/SystemAfterResourceBlock")
    assert system["SystemType"] == "Physical"
    assert [b["@odata.id"] for b in system["Links"]["ResourceBlocks"]] == [
        block("SystemBlock11"), block("DriveBlock10")]
    driver = svc.app[services.COMPOSER]._driver
    assert driver.attached("DriveBlock10") == {"SystemAfterResourceBlock"}
    assert svc.new_violations() == []


# --------------------------------------------------------------------------------------
# public-constrained-composition
# --------------------------------------------------------------------------------------
CONSTRAINED = {
    "Name": "constrained", "@Redfish.ZoneAffinity": "2",
    "Processors": {"Members": [{"@Redfish.RequestedCount": 2, "ProcessorType": "CPU",
                                "TotalCores": 8},
                               {"@Redfish.RequestedCount": 1, "ProcessorType": "GPU"}]},
    "Memory": {"Members": [{"@Redfish.RequestedCount": 4, "MemoryType": "DRAM",
                            "CapacityMiB": 8192}]},
    "Storage": {"Members": [{"Drives": [{"@Redfish.RequestedCount": 2,
                                         "CapacityBytes": 274877906944}]}]},
    "EthernetInterfaces": {"Members": [{"@Redfish.RequestedCount": 2, "SpeedMbps": 100}]},
}


async def test_constrained_composition_on_public_constrained_composition(aiohttp_client,
                                                                         tmp_path):
    svc = await serve(aiohttp_client, tmp_path, mockup("public-constrained-composition"))
    # both compute blocks are composed: nothing matches
    status, _, body = await svc.request("POST", SYSTEMS, CONSTRAINED)
    assert status == 409 and NO_MATCH in message_ids(body), body
    assert (await svc.request("DELETE", f"{SYSTEMS}/ComposedSystem2"))[0] == 204
    status, _, body = await svc.request("POST", SYSTEMS, CONSTRAINED)
    assert status == 201, body
    system = body["@odata.id"]
    chosen = [b["@odata.id"].rsplit("/", 1)[1] for b in body["Links"]["ResourceBlocks"]]
    # the compute block's two CPUs and four DIMMs, two shared drives (DriveBlock3 is also
    # in ComposedSystem), the GPU, the two 100 Mb/s ports of NetworkBlock8
    assert chosen == ["ComputeBlock2", "OffloadBlock9", "NetworkBlock8", "DriveBlock3",
                      "DriveBlock4"], chosen
    assert await svc.state("DriveBlock3") == ("ComposedAndAvailable",
                                              [f"{SYSTEMS}/ComposedSystem", system])
    assert await svc.state("OffloadBlock9") == ("Composed", [system])
    assert svc.new_violations() == []
    # asking for more than zone 2 has
    again = {**CONSTRAINED, "Name": "more"}
    status, _, body = await svc.request("POST", SYSTEMS, again)
    assert status == 409 and NO_MATCH in message_ids(body), body
    bad = {**CONSTRAINED, "@Redfish.ZoneAffinity": "9"}
    status, _, body = await svc.request("POST", SYSTEMS, bad)
    assert status == 400 and "Base.1.22.PropertyValueNotInList" in message_ids(body), body
    assert (await svc.request("DELETE", system))[0] == 204
    for name in ("ComputeBlock2", "OffloadBlock9", "NetworkBlock8"):
        assert await svc.state(name) == ("Unused", [])
    assert await svc.state("DriveBlock3") == ("ComposedAndAvailable",
                                              [f"{SYSTEMS}/ComposedSystem"])
    assert svc.new_violations() == []


# --------------------------------------------------------------------------------------
# public-compose-action: the Compose action where the mockup advertises it
# --------------------------------------------------------------------------------------
def _stanza(*names: str, stanza_id: str = "Compute1") -> dict:
    return {"StanzaType": "ComposeSystem", "StanzaId": stanza_id,
            "Request": {"Links": {"ResourceBlocks": [{"@odata.id": block(n)} for n in names]}}}


async def test_compose_action_on_public_compose_action(aiohttp_client, tmp_path):
    svc = await serve(aiohttp_client, tmp_path, mockup("public-compose-action"))
    service = await svc.get("/redfish/v1/CompositionService")
    assert "#CompositionService.Compose" in service["Actions"]  # advertised (misspelled)
    # BladeServer-1 is composed; its blocks are not free
    manifest = {"Stanzas": [_stanza("BladeServer-1", "NVMe-TargetsAppliance-2")]}
    status, _, body = await svc.request("POST", COMPOSE,
                                        {"RequestType": "Apply", "Manifest": manifest})
    assert status == 409 and IN_USE in message_ids(body), body
    # an Unused block that still names a system is that system's (RackServer-1's)
    status, _, body = await svc.request(
        "POST", COMPOSE, {"RequestType": "Apply",
                          "Manifest": {"Stanzas": [_stanza("RackServer-1")]}})
    assert status == 409 and IN_USE in message_ids(body), body
    decompose = {"StanzaType": "DecomposeSystem", "StanzaId": "Free1",
                 "Request": {"@odata.id": f"{SYSTEMS}/BladeServer-1"}}
    status, _, body = await svc.request(
        "POST", COMPOSE, {"RequestType": "Apply", "Manifest": {"Stanzas": [decompose]}})
    assert status == 200, body
    for name in ("BladeServer-1", "SASSled-1", "NVMe-TargetsAppliance-1"):
        assert await svc.state(name) == ("Unused", []), name
    assert (await svc.request("GET", f"{SYSTEMS}/BladeServer-1"))[0] == 404
    free = {m["@odata.id"] for m in (await svc.get(
        "/redfish/v1/CompositionService/FreePool"))["Members"]}
    assert block("SASSled-1") in free
    # Preview: the answer, nothing changes
    before = {u: svc.store.get(u).revision for u in svc.store.uris()}
    status, _, body = await svc.request("POST", COMPOSE,
                                        {"RequestType": "Preview", "Manifest": manifest})
    assert status == 200, body
    response = body["Manifest"]["Stanzas"][0]["Response"]
    assert response["SystemType"] == "Composed"
    assert {u: svc.store.get(u).revision for u in svc.store.uris()} == before
    # PreviewReserve, then Apply the reservation
    status, _, body = await svc.request("POST", COMPOSE,
                                        {"RequestType": "PreviewReserve", "Manifest": manifest})
    assert status == 200, body
    reservation = body["ReservationId"]
    doc = await svc.get(block("NVMe-TargetsAppliance-2"))
    assert doc["CompositionStatus"]["Reserved"] is True
    assert {m["@odata.id"] for m in (await svc.get(RESERVATIONS))["Members"]} == {
        f"{RESERVATIONS}/{reservation}"}  # the mockup's (client VCF1001) is not ours
    status, _, body = await svc.request("POST", COMPOSE,
                                        {"RequestType": "Apply", "ReservationId": reservation})
    assert status == 200, body
    system = body["Manifest"]["Stanzas"][0]["Response"]["@odata.id"]
    for name in ("BladeServer-1", "NVMe-TargetsAppliance-2"):
        state, systems = await svc.state(name)
        assert state == "Composed" and systems == [system], name
    doc = await svc.get(block("NVMe-TargetsAppliance-2"))
    assert doc["Pool"] == "Active" and doc["CompositionStatus"]["Reserved"] is False
    # the mockup's reservation of BladeServer-2 (another client's) is left alone
    assert (await svc.get(block("BladeServer-2")))["CompositionStatus"]["Reserved"] is True
    # a reservation that is not the caller's cannot be applied
    status, _, body = await svc.request("POST", COMPOSE,
                                        {"RequestType": "Apply", "ReservationId": "1"})
    assert status == 400, body
    # expansion of an expandable system (BladeServer-3 stands on its Compute block)
    status, _, body = await svc.change(
        f"{SYSTEMS}/BladeServer-3", "NVMe-TargetsAppliance-3", attach=True)
    assert status == 204, body
    assert await svc.state("NVMe-TargetsAppliance-3") == ("Composed",
                                                          [f"{SYSTEMS}/BladeServer-3"])
    status, _, body = await svc.request("DELETE", system)
    assert status == 204, body
    assert await svc.state("NVMe-TargetsAppliance-2") == ("Unused", [])
    assert svc.new_violations() == []


# --------------------------------------------------------------------------------------
# documents the service did not write: never a 500
# --------------------------------------------------------------------------------------
GHOST = f"{BLOCKS}/Ghost"


def _mangle(doc: dict, how: str) -> None:
    """One way a foreign document may differ from what the service writes."""
    links = doc.get("Links")
    if how == "no Id":
        doc.pop("Id", None)
    elif how == "no CompositionStatus":
        doc.pop("CompositionStatus", None)
    elif how == "CompositionStatus not an object":
        doc["CompositionStatus"] = "Composed"
    elif how == "no Links":
        doc.pop("Links", None)
    elif how == "Links not an object":
        doc["Links"] = [1, 2]
    elif how == "links of another shape":
        doc["Links"] = {"ComputerSystems": "x", "Zones": {"@odata.id": 1},
                        "ResourceBlocks": {"a": 1}}
    elif how == "links to absent documents" and isinstance(links, dict):
        links["ComputerSystems"] = [{"@odata.id": f"{SYSTEMS}/Absent"}]
        links["ResourceBlocks"] = [*(links.get("ResourceBlocks") or []), {"@odata.id": GHOST}]
        links["Zones"] = [{"@odata.id": "/redfish/v1/CompositionService/ResourceZones/Absent"}]
    elif how == "malformed link items" and isinstance(links, dict):
        links["ResourceBlocks"] = [{"x": 1}, "text", None, {"@odata.id": 5}]
        links["ComputerSystems"] = [None]
    elif how == "no ResourceBlockType":
        doc.pop("ResourceBlockType", None)
    elif how == "ResourceBlockType a string":
        doc["ResourceBlockType"] = "Compute"
    elif how == "CompositionState a number" and isinstance(doc.get("CompositionStatus"), dict):
        doc["CompositionStatus"]["CompositionState"] = 7
    elif how == "junk collection members" and isinstance(doc.get("Members"), list):
        doc["Members"] += [{"@odata.id": GHOST}, "junk", {"x": 1}, {"@odata.id": 5}]


MANGLINGS = ("no Id", "no CompositionStatus", "CompositionStatus not an object", "no Links",
             "Links not an object", "links of another shape", "links to absent documents",
             "malformed link items", "no ResourceBlockType", "ResourceBlockType a string",
             "CompositionState a number", "junk collection members")


def _mangled_copy(source: Path, target: Path, seed: int) -> list[str]:
    """A copy of ``source`` where each composition document (blocks, zones, systems,
    reservations and their collections) is mangled with probability 1/2; what was done."""
    shutil.copytree(source, target)
    rng = random.Random(seed)
    done = []
    for path in sorted(target.rglob("index.json")):
        rel = path.parent.relative_to(target).as_posix()
        if not rel.startswith(("CompositionService", "Systems")) or rng.random() < 0.5:
            continue
        doc = json.loads(path.read_text())
        how = rng.choice(MANGLINGS)
        _mangle(doc, how)
        path.write_text(json.dumps(doc))
        done.append(f"{rel}: {how}")
    return done


def _operations(rng: random.Random, blocks: list[str], systems: list[str]) -> list[tuple]:
    ops: list[tuple] = [("DELETE", s, None) for s in systems]
    for _ in range(12):
        pick = rng.sample(blocks, min(len(blocks), rng.randint(1, 3)))
        links = {"ResourceBlocks": [{"@odata.id": b} for b in pick]}
        system, other = rng.choice(systems), rng.choice(blocks)
        ops += [
            ("POST", SYSTEMS, {"Name": "f", "Links": links}),
            ("POST", SYSTEMS, {"Name": "c",
                               "Links": {"ResourceBlocks": links["ResourceBlocks"][:1]},
                               "Processors": {"Members": [{"@Redfish.RequestedCount": 1,
                                                           "ProcessorType": "CPU"}]},
                               "Storage": {"Members": [{"Drives": [{}]}]}}),
            ("POST", f"{system}/Actions/ComputerSystem.AddResourceBlock",
             {"ResourceBlock": {"@odata.id": other}}),
            ("POST", f"{system}/Actions/ComputerSystem.RemoveResourceBlock",
             {"ResourceBlock": {"@odata.id": other}}),
            ("PATCH", system, {"Links": links}),
            ("POST", COMPOSE, {"RequestType": rng.choice(["Preview", "PreviewReserve", "Apply"]),
                               "Manifest": {"Stanzas": [
                                   {"StanzaType": "ComposeSystem", "Request": {"Links": links}},
                                   {"StanzaType": "DecomposeSystem",
                                    "Request": {"@odata.id": system}},
                                   {"StanzaType": "DecomposeResource",
                                    "Request": {"@odata.id": other}}]}}),
            ("POST", COMPOSE, {"RequestType": "Apply", "ReservationId": "1"}),
            ("POST", BLOCKS, {"ComputerSystems": [{"@odata.id": system}]}),
            ("PATCH", other, {"CompositionStatus": {"Reserved": True}}),
            ("DELETE", other, None),
            ("DELETE", f"{RESERVATIONS}/1", None),
            ("DELETE", system, None),
        ]
    rng.shuffle(ops)
    return ops


@pytest.mark.parametrize("name", ["public-composability", "public-compose-action",
                                  "public-constrained-composition",
                                  "public-bladed-partitions"])
@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_foreign_documents_never_give_a_500(aiohttp_client, tmp_path, name, seed):
    """Seed 0: the mockup as published; others: its composition documents mangled (each
    with probability 1/2, one of MANGLINGS). Every operation of the composition API in a
    random order, then every document read with and without query options: never a 5xx
    (501 aside: an unsupported query option)."""
    folder = mockup(name)
    mangled = []
    if seed:
        folder = tmp_path / "mockup"
        mangled = _mangled_copy(mockup(name), folder, seed)
    svc = await serve(aiohttp_client, tmp_path, folder, invariants=False)
    members = svc.store.members
    rng = random.Random(seed)
    failures = []
    for method, path, body in _operations(rng, members(BLOCKS) or [GHOST],
                                          members(SYSTEMS) or [f"{SYSTEMS}/Absent"]):
        status, _, answer = await svc.request(method, path, body)
        if status >= 500 and status != 501:
            failures.append(f"{method} {path} {json.dumps(body)} -> {status} {answer}")
    for uri in sorted(svc.store.uris()):
        for query in ("", "?$expand=.($levels=1)", "?$top=1", "?$filter=Id eq 'x'",
                      "?$select=Id"):
            status, _, answer = await svc.request("GET", uri + query)
            if status >= 500 and status != 501:
                failures.append(f"GET {uri}{query} -> {status} {answer}")
    assert not failures, "\n".join([*failures[:10], "mangled:", *mangled])


# --------------------------------------------------------------------------------------
# the mockup driver
# --------------------------------------------------------------------------------------
async def test_the_mockup_driver_derives_the_fabric_from_the_documents(aiohttp_client,
                                                                       tmp_path):
    svc = await serve(aiohttp_client, tmp_path, mockup("public-composability"))
    driver = svc.app[services.COMPOSER]._driver
    assert isinstance(driver, MockupDriver)
    # the bindings the documents record: DriveBlock3 in two systems, so on two hosts
    assert driver.attached("DriveBlock3") == {"ComputeBlock1", "ComputeBlock2"}
    assert driver.attached("DriveBlock10") == {"SystemAfterAddResourceAction"}
    assert driver.attached("DriveBlock5") == frozenset()
    with pytest.raises(DeviceNotFound):
        await driver.bind("Nothing", "ComputeBlock1")
    with pytest.raises(DeviceNotFound):
        await driver.bind("DriveBlock5", "NoHost")
    with pytest.raises(DeviceNotFound):  # a compute block is a host, not a device
        await driver.bind("ComputeBlock1", "ComputeBlock2")
    with pytest.raises(DeviceBusy):  # NetworkBlock8 is not shared
        await driver.bind("NetworkBlock8", "SystemAfterResourceBlock")
    with pytest.raises(DriverError, match="no path"):  # zone 1 and 2 vs zone 3
        await driver.bind("DriveBlock5", "SystemAfterResourceBlock")
    await driver.bind("DriveBlock5", "ComputeBlock1")
    await driver.bind("DriveBlock5", "ComputeBlock1")  # idempotent
    await driver.bind("DriveBlock5", "ComputeBlock2")  # shared
    assert driver.attached("DriveBlock5") == {"ComputeBlock1", "ComputeBlock2"}
    await driver.unbind("DriveBlock5", "ComputeBlock1")
    await driver.unbind("DriveBlock5", "ComputeBlock1")
    assert driver.attached("DriveBlock5") == {"ComputeBlock2"}
