"""Composing against served DMTF composability mockups through real clients, over HTTPS
against a real ``redfish-composer serve --mockup DIR`` subprocess:

* sushy (``sushy.Sushy``; it reads composition but has no compose call, so POST and
  DELETE go through its connector) against ``public-composability``: decompose, compose
  (a shared drive included), grow and shrink, decompose again; then a restart, after which
  the mockup driver knows again what is attached to what, and composing still works;
* the DMTF ``redfish`` library (session login, post/patch/delete) against
  ``public-composability`` (expansion of an expandable system, PATCH of
  ``Links.ResourceBlocks``), ``public-constrained-composition`` (constrained composition)
  and ``public-compose-action`` (the Compose action: Preview, PreviewReserve, Apply).

The state is read back after every step; the composition invariants (those that do not
concern fabrics) hold at the end wherever they held at the start.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import redfish
import sushy
from sushy import auth as sushy_auth
from sushy import exceptions as sushy_exceptions
from sushy.resources.compositionservice import constants as cs_constants

from redfish_service.composition.invariants import violations

from .support.composition import ids, local_path, message_ids
from .support.composition import snapshot as take_snapshot
from .support.service import ServiceProcess
from .test_clients_composition import SushyComposition
from .test_mockups import mockup
from .test_mockups_composition import CONSTRAINED, IN_USE, NO_MATCH, ZONE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

SYSTEMS = "/redfish/v1/Systems"
BLOCKS = "/redfish/v1/CompositionService/ResourceBlocks"
COMPOSE = "/redfish/v1/CompositionService/Actions/CompositionService.Compose"
COMPOSED = cs_constants.CompositionState.COMPOSED
UNUSED = cs_constants.CompositionState.UNUSED
SHARED = cs_constants.CompositionState.COMPOSED_AND_AVAILABLE


def block(name: str) -> str:
    return f"{BLOCKS}/{name}"


def links(*names: str) -> dict:
    return {"ResourceBlocks": [{"@odata.id": block(n)} for n in names]}


@pytest.fixture(autouse=True)
def _no_ca_bundle(monkeypatch):
    # requests lets these override verify=False (psf/requests#3829).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def served(tmp_path, name: str) -> ServiceProcess:
    return ServiceProcess(tmp_path / "state", extra_args=["--mockup", str(mockup(name))]).start()


def composition_violations(svc: ServiceProcess) -> set[str]:
    snap = take_snapshot(svc)
    return set(violations(snap.doc, snap.members, fabric=False))


def sushy_session(svc: ServiceProcess) -> tuple[sushy.Sushy, sushy_auth.SessionAuth]:
    auth = sushy_auth.SessionAuth(username="admin", password=svc.password)
    conn = sushy.Sushy(svc.url + "/redfish/v1/", auth=auth, verify=False,
                       server_side_retries=1, server_side_retries_delay=0.2, read_timeout=30)
    return conn, auth


def state(comp: SushyComposition, name: str) -> tuple[str, list[str], int]:
    """(CompositionState, systems, NumberOfCompositions) of a block, as sushy reads it."""
    found = comp.block(block(name))
    status = found.composition_status
    return (status.composition_state, ids(found.json["Links"].get("ComputerSystems")),
            status.number_of_compositions)


def test_sushy_composes_against_public_composability(tmp_path):
    svc = served(tmp_path, "public-composability")
    try:
        start = composition_violations(svc)
        conn, auth = sushy_session(svc)
        try:
            comp = SushyComposition(conn)
            assert comp.cs.service_enabled is True
            assert len(comp.blocks().members_identities) == 12
            assert len(comp.zones().members_identities) == 3
            old = conn.get_system(f"{SYSTEMS}/ComposedSystem2")
            assert old.system_type == sushy.SystemType.COMPOSED
            assert state(comp, "DriveBlock3") == (
                SHARED, [f"{SYSTEMS}/ComposedSystem", f"{SYSTEMS}/ComposedSystem2"], 2)

            # -- decompose the mockup's ComposedSystem2 --------------------------------
            status, _, _ = comp.send("DELETE", f"{SYSTEMS}/ComposedSystem2")
            assert status == 204
            with pytest.raises(sushy_exceptions.ResourceNotFoundError):
                conn.get_system(f"{SYSTEMS}/ComposedSystem2")
            for name in ("ComputeBlock2", "NetworkBlock8"):
                assert state(comp, name) == (UNUSED, [], 0), name
            # the shared drive stays with ComposedSystem
            assert state(comp, "DriveBlock3") == (SHARED, [f"{SYSTEMS}/ComposedSystem"], 1)

            # -- compose: a compute block, a GPU, a free drive and the shared one ----------
            status, headers, body = comp.send("POST", SYSTEMS, {
                "Name": "sushy-on-a-mockup",
                "Links": links("ComputeBlock2", "OffloadBlock9", "DriveBlock5", "DriveBlock3")})
            assert status == 201, body
            uri = local_path(headers["Location"])
            assert uri in conn.get_system_collection().members_identities
            system = conn.get_system(uri)
            assert system.system_type == sushy.SystemType.COMPOSED
            assert system.name == "sushy-on-a-mockup"
            assert ids(system.json["Links"]["ResourceBlocks"]) == [
                block(n) for n in ("ComputeBlock2", "OffloadBlock9", "DriveBlock5",
                                   "DriveBlock3")]
            assert system.json["ProcessorSummary"]["Count"] == 2  # ComputeBlock2's CPUs
            # as DMTF's own composed systems do, it lists the resources of its blocks
            procs = {p.path: str(p.processor_type.value)
                     for p in system.processors.get_members()}
            assert {u.split("/")[-3] for u in procs} == {"ComputeBlock2", "OffloadBlock9"}
            assert sorted(procs.values()).count("CPU") == 2
            [storage] = system.storage.get_members()
            assert {d.path.split("/")[-3] for d in storage.drives} == {"DriveBlock5",
                                                                      "DriveBlock3"}
            assert state(comp, "ComputeBlock2") == (COMPOSED, [uri], 1)
            assert state(comp, "OffloadBlock9") == (COMPOSED, [uri], 1)
            assert state(comp, "DriveBlock5") == (SHARED, [uri], 1)
            assert state(comp, "DriveBlock3") == (SHARED, [f"{SYSTEMS}/ComposedSystem", uri], 2)

            # taken blocks are refused with the Composition registry's message
            with pytest.raises(sushy_exceptions.HTTPError) as refused:
                comp.send("POST", SYSTEMS, {"Name": "again", "Links": links("ComputeBlock2")})
            assert refused.value.status_code == 409
            assert IN_USE in [m.get("MessageId") for m in refused.value.extended_info]
            with pytest.raises(sushy_exceptions.HTTPError) as refused:
                comp.send("POST", SYSTEMS, {"Name": "zones",
                                            "Links": links("ComputeBlock1", "DriveBlock10")})
            assert refused.value.status_code == 400
            assert ZONE in [m.get("MessageId") for m in refused.value.extended_info]

            # -- grow and shrink ----------------------------------------------------------
            add = system.json["Actions"]["#ComputerSystem.AddResourceBlock"]["target"]
            remove = system.json["Actions"]["#ComputerSystem.RemoveResourceBlock"]["target"]
            status, _, body = comp.send("POST", add,
                                        {"ResourceBlock": {"@odata.id": block("NetworkBlock8")}})
            assert status == 204, body
            assert state(comp, "NetworkBlock8") == (COMPOSED, [uri], 1)
            status, _, body = comp.send("POST", remove,
                                        {"ResourceBlock": {"@odata.id": block("DriveBlock3")}})
            assert status == 204, body
            assert state(comp, "DriveBlock3") == (SHARED, [f"{SYSTEMS}/ComposedSystem"], 1)
            system.refresh()
            assert ids(system.json["Links"]["ResourceBlocks"]) == [
                block(n) for n in ("ComputeBlock2", "OffloadBlock9", "DriveBlock5",
                                   "NetworkBlock8")]
        finally:
            auth.close()
        assert composition_violations(svc) <= start
    finally:
        svc.stop()

    # -- a restart: the state directory is the service, the driver re-derives -----------
    again = ServiceProcess(tmp_path / "state", port=svc.port).start()
    try:
        conn, auth = sushy_session(again)
        try:
            comp = SushyComposition(conn)
            assert state(comp, "NetworkBlock8") == (COMPOSED, [uri], 1)
            assert state(comp, "DriveBlock3") == (SHARED, [f"{SYSTEMS}/ComposedSystem"], 1)
            status, _, _ = comp.send("DELETE", uri)
            assert status == 204
            with pytest.raises(sushy_exceptions.ResourceNotFoundError):
                conn.get_system(uri)
            for name in ("ComputeBlock2", "OffloadBlock9", "DriveBlock5", "NetworkBlock8"):
                assert state(comp, name) == (UNUSED, [], 0), name
            # and composing still works after the restart
            status, headers, body = comp.send("POST", SYSTEMS, {
                "Name": "after-restart", "Links": links("ComputeBlock2", "DriveBlock3")})
            assert status == 201, body
            assert state(comp, "DriveBlock3")[1] == [f"{SYSTEMS}/ComposedSystem",
                                                     local_path(headers["Location"])]
        finally:
            auth.close()
        assert composition_violations(again) <= start
    finally:
        again.stop()


def rf_client(svc: ServiceProcess):
    client = redfish.redfish_client(base_url=svc.url, username="admin", password=svc.password,
                                    default_prefix="/redfish/v1", timeout=30, max_retry=1)
    client.login(auth="session")
    return client


@contextlib.contextmanager
def redfish_library_on(tmp_path, name: str) -> Iterator[Any]:
    """A DMTF ``redfish`` client logged in to a served mockup; on the way out: logged
    out, and no composition invariant broken that the mockup did not break already."""
    svc = served(tmp_path, name)
    try:
        start = composition_violations(svc)
        client = rf_client(svc)
        try:
            yield client
        finally:
            client.logout()
        assert composition_violations(svc) <= start
    finally:
        svc.stop()


def rf_state(client, name: str) -> tuple[str, list[str]]:
    resp = client.get(block(name))
    assert resp.status == 200, resp.text
    return (resp.dict["CompositionStatus"]["CompositionState"],
            ids(resp.dict["Links"].get("ComputerSystems")))


def test_redfish_library_expands_a_system_of_public_composability(tmp_path):
    """An expandable (Physical) system of the mockup grows by a block another one gives
    back, with AddResourceBlock and with a PATCH of Links.ResourceBlocks."""
    with redfish_library_on(tmp_path, "public-composability") as client:
        donor, taker = f"{SYSTEMS}/SystemAfterAddResourceAction", \
            f"{SYSTEMS}/SystemAfterResourceBlock"
        resp = client.delete(donor)
        assert resp.status == 405  # a Physical system cannot be decomposed
        resp = client.post(f"{donor}/Actions/ComputerSystem.RemoveResourceBlock",
                           body={"ResourceBlock": {"@odata.id": block("DriveBlock10")}})
        assert resp.status == 204, resp.text
        assert rf_state(client, "DriveBlock10") == ("Unused", [])
        resp = client.get(taker)
        etag = resp.getheader("ETag")
        resp = client.patch(taker, body={"Links": links("SystemBlock11", "DriveBlock10")},
                            headers={"If-Match": etag})
        assert resp.status in (200, 204), resp.text
        assert rf_state(client, "DriveBlock10") == ("Composed", [taker])
        assert ids(client.get(taker).dict["Links"]["ResourceBlocks"]) == [
            block("SystemBlock11"), block("DriveBlock10")]
        # a stale ETag changes nothing
        resp = client.patch(taker, body={"Links": links("SystemBlock11")},
                            headers={"If-Match": etag})
        assert resp.status == 412, resp.text
        assert rf_state(client, "DriveBlock10") == ("Composed", [taker])
        # reduce it again, and give the block back to the donor
        resp = client.patch(taker, body={"Links": links("SystemBlock11")})
        assert resp.status in (200, 204), resp.text
        resp = client.post(f"{donor}/Actions/ComputerSystem.AddResourceBlock",
                           body={"ResourceBlock": {"@odata.id": block("DriveBlock10")}})
        assert resp.status == 204, resp.text
        assert rf_state(client, "DriveBlock10") == ("Composed", [donor])


def test_redfish_library_composes_by_constraints_on_public_constrained_composition(tmp_path):
    with redfish_library_on(tmp_path, "public-constrained-composition") as client:
        capabilities = client.get(SYSTEMS).dict["@Redfish.CollectionCapabilities"]
        assert capabilities["Capabilities"][0]["UseCase"] == \
            "ComputerSystemConstrainedComposition"
        resp = client.post(SYSTEMS, body=CONSTRAINED)
        assert resp.status == 409 and NO_MATCH in message_ids(resp.dict), resp.text
        resp = client.delete(f"{SYSTEMS}/ComposedSystem2")
        assert resp.status == 204, resp.text
        assert client.get(f"{SYSTEMS}/ComposedSystem2").status == 404
        resp = client.post(SYSTEMS, body=CONSTRAINED)
        assert resp.status == 201, resp.text
        uri = local_path(resp.getheader("Location"))
        system = client.get(uri).dict
        assert system["Name"] == "constrained" and system["SystemType"] == "Composed"
        chosen = ids(system["Links"]["ResourceBlocks"])
        assert chosen == [block(n) for n in ("ComputeBlock2", "OffloadBlock9",
                                              "NetworkBlock8", "DriveBlock3", "DriveBlock4")]
        for name in ("ComputeBlock2", "OffloadBlock9", "NetworkBlock8"):
            assert rf_state(client, name) == ("Composed", [uri]), name
        assert rf_state(client, "DriveBlock3") == (
            "ComposedAndAvailable", [f"{SYSTEMS}/ComposedSystem", uri])
        resp = client.delete(uri)
        assert resp.status == 204, resp.text
        assert client.get(uri).status == 404
        for name in ("ComputeBlock2", "OffloadBlock9", "NetworkBlock8", "DriveBlock4"):
            assert rf_state(client, name)[0] in ("Unused", "ComposedAndAvailable"), name
            assert uri not in rf_state(client, name)[1]
        assert rf_state(client, "ComputeBlock2") == ("Unused", [])


def test_redfish_library_uses_the_compose_action_of_public_compose_action(tmp_path):
    with redfish_library_on(tmp_path, "public-compose-action") as client:
        service = client.get("/redfish/v1/CompositionService").dict
        assert "#CompositionService.Compose" in service["Actions"]
        info = client.get(service["Actions"]["#CompositionService.Compose"][
            "@Redfish.ActionInfo"]).dict
        assert "PreviewReserve" in next(p for p in info["Parameters"]
                                        if p["Name"] == "RequestType")["AllowableValues"]
        # (the mockup's target is misspelled, /redfish/v1/CompostionService/...: the
        # action is served at the CompositionService's own Actions)
        free_blade = {"StanzaType": "DecomposeSystem", "StanzaId": "Free",
                      "Request": {"@odata.id": f"{SYSTEMS}/BladeServer-1"}}
        resp = client.post(COMPOSE, body={"RequestType": "Apply",
                                          "Manifest": {"Stanzas": [free_blade]}})
        assert resp.status == 200, resp.text
        assert client.get(f"{SYSTEMS}/BladeServer-1").status == 404
        for name in ("BladeServer-1", "SASSled-1", "NVMe-TargetsAppliance-1"):
            assert rf_state(client, name) == ("Unused", []), name
        manifest = {"Stanzas": [{"StanzaType": "ComposeSystem", "StanzaId": "Compute1",
                                 "Request": {"Name": "from-a-manifest", "Links": links(
                                     "BladeServer-1", "NVMe-TargetsAppliance-2")}}]}
        resp = client.post(COMPOSE, body={"RequestType": "PreviewReserve",
                                          "Manifest": manifest})
        assert resp.status == 200, resp.text
        reservation = resp.dict["ReservationId"]
        assert resp.dict["Manifest"]["Stanzas"][0]["Response"]["SystemType"] == "Composed"
        reserved = client.get("/redfish/v1/CompositionService/CompositionReservations/"
                              f"{reservation}").dict
        assert ids(reserved["ReservedResourceBlocks"]) == [
            block("BladeServer-1"), block("NVMe-TargetsAppliance-2")]
        assert client.get(block("BladeServer-1")).dict["CompositionStatus"]["Reserved"]
        resp = client.post(COMPOSE, body={"RequestType": "Apply",
                                          "ReservationId": reservation})
        assert resp.status == 200, resp.text
        uri = resp.dict["Manifest"]["Stanzas"][0]["Response"]["@odata.id"]
        assert client.get(uri).dict["Name"] == "from-a-manifest"
        for name in ("BladeServer-1", "NVMe-TargetsAppliance-2"):
            assert rf_state(client, name) == ("Composed", [uri]), name
        active = ids(client.get("/redfish/v1/CompositionService/ActivePool").dict["Members"])
        assert block("NVMe-TargetsAppliance-2") in active
        # a block taken by the composition is refused to another stanza
        resp = client.post(COMPOSE, body={"RequestType": "Preview", "Manifest": manifest})
        assert resp.status == 200, resp.text
        answer = resp.dict["Manifest"]["Stanzas"][0]["Response"]
        assert IN_USE in message_ids(answer), answer
        resp = client.delete(uri)
        assert resp.status == 204, resp.text
        for name in ("BladeServer-1", "NVMe-TargetsAppliance-2"):
            assert rf_state(client, name) == ("Unused", []), name
