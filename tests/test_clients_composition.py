"""Composition end to end, over loopback HTTPS against a real service subprocess, through
real Redfish clients:

* sushy (its CompositionService, ResourceBlock and ResourceZone models; sushy 5.14's
  ``CompositionService.resource_blocks``/``resource_zones`` pass a bound method as the
  path, so the collections are built directly, as ``conformance.py`` does);
* the DMTF ``redfish`` library (session login, post/patch/delete, logout).

(a) the full life of a composed system: discover, pick free blocks of one zone, POST
/Systems, read it back, grow it, shrink it, DELETE it; (b) a physical host grown with a
GPU, an NVMe drive and CXL memory (with the ETag parameters), then reduced, with a 428 on
a stale ETag. Pools and block states are checked at every step; the composition
invariants at the end.
"""

from __future__ import annotations

import pytest
import redfish
import sushy
from sushy import auth as sushy_auth
from sushy import exceptions as sushy_exceptions
from sushy.resources.compositionservice import constants as cs_constants
from sushy.resources.compositionservice import resourceblock, resourcezone

from .support.composition import (
    ACTIVE_POOL,
    BLOCKS,
    FREE_POOL,
    SYSTEMS,
    block_uri,
    compose_body,
    follow_task,
    ids,
    local_path,
    message_ids,
    name_of,
    snapshot,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

IN_USE = "Composition.1.1.ResourceBlockInUse"
PRECONDITION_FAILED = "PreconditionFailed"
COMPOSED = cs_constants.CompositionState.COMPOSED
UNUSED = cs_constants.CompositionState.UNUSED


@pytest.fixture(autouse=True)
def _no_ca_bundle(monkeypatch):
    # requests lets these override verify=False (psf/requests#3829).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def assert_invariants(service) -> None:
    broken = snapshot(service).violations()
    assert not broken, "composition invariants broken:\n  " + "\n  ".join(broken)


# --------------------------------------------------------------------------------------
# sushy
# --------------------------------------------------------------------------------------
class SushyComposition:
    """sushy's composition models over one session."""

    def __init__(self, conn: sushy.Sushy) -> None:
        self.conn = conn
        self.cs = conn.get_composition_service()
        self._kw = dict(redfish_version=self.cs.redfish_version,
                        registries=self.cs.registries, root=conn)

    def _collection(self, prop: str, cls):
        try:
            return getattr(self.cs, prop)
        except AttributeError:
            # sushy 5.14.0: the property passes ``self._get_..._collection_path`` (the
            # method) instead of its result; build the collection from the link instead.
            key = {"resource_blocks": "ResourceBlocks",
                   "resource_zones": "ResourceZones"}[prop]
            return cls(self.conn._conn, self.cs.json[key]["@odata.id"], **self._kw)

    def blocks(self) -> resourceblock.ResourceBlockCollection:
        return self._collection("resource_blocks", resourceblock.ResourceBlockCollection)

    def zones(self) -> resourcezone.ResourceZoneCollection:
        return self._collection("resource_zones", resourcezone.ResourceZoneCollection)

    def pool(self, which: str) -> set[str]:
        """FreePool / ActivePool: ResourceBlockCollections, read with sushy's parser."""
        coll = resourceblock.ResourceBlockCollection(
            self.conn._conn, self.cs.json[which]["@odata.id"], **self._kw)
        return set(coll.members_identities)

    def block(self, uri: str) -> resourceblock.ResourceBlock:
        return resourceblock.ResourceBlock(self.conn._conn, uri, **self._kw)  # fresh GET

    def get(self, path: str):
        resp = self.conn._conn.get(path=path)
        return resp.status_code, dict(resp.headers), resp.json() if resp.content else None

    def send(self, method: str, path: str, body=None):
        """POST/DELETE through sushy's connector; (status, headers, body) after following
        a task monitor; sushy's HTTPError for 4xx/5xx."""
        op = {"POST": self.conn._conn.post, "DELETE": self.conn._conn.delete}[method]
        resp = op(path=path, data=body) if body is not None else op(path=path)
        result = (resp.status_code, dict(resp.headers), resp.json() if resp.content else None)
        return follow_task(self.get, result)


def check_block(comp: SushyComposition, uri: str, system: str | None) -> None:
    """The block as sushy parses it, and its pool, for ``system`` (None: free)."""
    block = comp.block(uri)
    state = block.composition_status.composition_state
    links = ids(block.json.get("Links", {}).get("ComputerSystems"))
    if system is None:
        assert state == UNUSED, (uri, state)
        assert block.composition_status.number_of_compositions == 0
        assert block.json["Pool"] == "Free" and links == [], block.json
    else:
        assert state == COMPOSED, (uri, state)
        assert block.composition_status.number_of_compositions == 1
        assert block.json["Pool"] == "Active" and links == [system], block.json


def test_sushy_composed_system_life(service):
    auth = sushy_auth.SessionAuth(username="admin", password=service.password)
    conn = sushy.Sushy(service.url + "/redfish/v1/", auth=auth, verify=False,
                       server_side_retries=1, server_side_retries_delay=0.2, read_timeout=30)
    try:
        comp = SushyComposition(conn)
        assert comp.cs.service_enabled is True
        all_blocks = set(comp.blocks().members_identities)
        free = comp.pool("FreePool")
        assert comp.pool("ActivePool") == set()
        assert free and free <= all_blocks

        # -- discover: a zone with a free compute sled, a free GPU and a free NVMe ---------
        chosen: dict[str, str] | None = None
        for zone in comp.zones().get_members():
            in_zone = ids(zone.links.resource_blocks)
            picks: dict[str, str] = {}
            for uri in in_zone:
                if uri not in free:
                    continue
                block = comp.block(uri)
                assert block.composition_status.composition_state == UNUSED
                # ResourceBlockType is an array in the schema; sushy 5.14 maps it as a
                # scalar (None), so read it from the JSON.
                for kind in block.json["ResourceBlockType"]:
                    if kind in ("Compute", "Processor", "Storage") and kind not in picks:
                        picks[kind] = uri
            if len(picks) == 3:
                chosen = picks
                break
        assert chosen, "no zone has a free compute block, GPU and NVMe drive"
        # zones list compute sleds before hosts' own blocks: the compute pick is a sled
        assert "sled" in name_of(chosen["Compute"]), chosen
        wanted = [chosen["Compute"], chosen["Processor"], chosen["Storage"]]

        # -- compose ------------------------------------------------------------------
        systems_before = set(conn.get_system_collection().members_identities)
        status, headers, body = comp.send("POST", SYSTEMS, {
            "Name": "sushy-composed", "Links": {"ResourceBlocks": [{"@odata.id": u}
                                                                   for u in wanted]}})
        assert status == 201, body
        uri = local_path(headers["Location"])
        assert body["@odata.id"] == uri
        assert set(conn.get_system_collection().members_identities) == systems_before | {uri}
        system = conn.get_system(uri)
        assert system.system_type == sushy.SystemType.COMPOSED
        assert system.name == "sushy-composed"
        assert ids(system.json["Links"]["ResourceBlocks"]) == wanted
        add_target = system.json["Actions"]["#ComputerSystem.AddResourceBlock"]["target"]
        remove_target = system.json["Actions"]["#ComputerSystem.RemoveResourceBlock"]["target"]
        for block in wanted:
            check_block(comp, block, uri)
        assert comp.pool("ActivePool") == set(wanted)
        assert comp.pool("FreePool") == free - set(wanted)
        # what it is made of, as sushy reads a system: the sled's CPUs and the GPU, the
        # sled's memory, the NVMe drive in its storage
        inside = [*ids(comp.block(chosen["Compute"]).json["Processors"]),
                  *ids(comp.block(chosen["Processor"]).json["Processors"])]
        procs = system.processors.get_members()
        assert [p.path for p in procs] == inside
        assert [str(p.processor_type.value) for p in procs] == [
            *["CPU"] * (len(inside) - 1), "GPU"]
        # (sushy's System has no memory collection: read through its connector)
        _, _, memory = comp.get(system.json["Memory"]["@odata.id"])
        assert ids(memory["Members"]) == ids(comp.block(chosen["Compute"]).json["Memory"])
        [storage] = system.storage.get_members()
        assert [d.path for d in storage.drives] == [f"{chosen['Storage']}/Drives/Drive0"]
        assert storage.drives[0].protocol.value == "NVMe"

        # the sled is taken now: sushy surfaces the Composition registry's message
        with pytest.raises(sushy_exceptions.HTTPError) as refused:
            comp.send("POST", SYSTEMS, {"Name": "again", "Links": {
                "ResourceBlocks": [{"@odata.id": chosen["Compute"]}]}})
        assert refused.value.status_code == 409
        assert IN_USE in [m.get("MessageId") for m in refused.value.extended_info]

        # -- grow it by one more device of the zone, then shrink it back -----------------
        extra = next(u for u in ids(zone.links.resource_blocks)
                     if u in comp.pool("FreePool")
                     and {"Network", "Memory"} & set(comp.block(u).json["ResourceBlockType"]))
        status, _, body = comp.send("POST", add_target, {"ResourceBlock": {"@odata.id": extra}})
        assert status == 204, body
        check_block(comp, extra, uri)
        system.refresh()
        assert ids(system.json["Links"]["ResourceBlocks"]) == [*wanted, extra]
        assert comp.pool("ActivePool") == {*wanted, extra}

        status, _, body = comp.send("POST", remove_target,
                                    {"ResourceBlock": {"@odata.id": extra}})
        assert status == 204, body
        check_block(comp, extra, None)
        system.refresh()
        assert ids(system.json["Links"]["ResourceBlocks"]) == wanted
        assert extra in comp.pool("FreePool")

        # -- decompose ----------------------------------------------------------------
        status, _, _ = comp.send("DELETE", uri)
        assert status == 204
        with pytest.raises(sushy_exceptions.ResourceNotFoundError):
            conn.get_system(uri)
        assert set(conn.get_system_collection().members_identities) == systems_before
        for block in [*wanted, extra]:
            check_block(comp, block, None)
        assert comp.pool("FreePool") == free
        assert comp.pool("ActivePool") == set()
    finally:
        auth.close()
    assert_invariants(service)


# --------------------------------------------------------------------------------------
# DMTF python-redfish-library
# --------------------------------------------------------------------------------------
class Lib:
    """The redfish library's client with the few conveniences the scenarios need."""

    def __init__(self, service) -> None:
        self.client = redfish.redfish_client(base_url=service.url, username="admin",
                                             password=service.password,
                                             default_prefix="/redfish/v1/", timeout=30,
                                             max_retry=1)
        self.client.login(auth="session")
        assert self.client.get_session_key()

    def get(self, path: str):
        resp = self.client.get(path)
        return resp.status, {k: v for k, v in resp.getheaders()}, resp.dict

    def doc(self, path: str) -> dict:
        status, _, body = self.get(path)
        assert status == 200, (path, status, body)
        return body

    def etag(self, path: str) -> str:
        resp = self.client.get(path)
        assert resp.status == 200 and resp.getheader("ETag"), (path, resp.status)
        return resp.getheader("ETag")

    def send(self, method: str, path: str, body=None):
        op = {"POST": self.client.post, "PATCH": self.client.patch,
              "DELETE": self.client.delete}[method]
        resp = op(path, body=body) if body is not None else op(path)
        while resp.is_processing:  # 202: the library follows the task monitor itself
            resp = resp.monitor(self.client)
        text = resp.text
        return resp.status, {k: v for k, v in resp.getheaders()}, resp.dict if text else None

    def members(self, path: str) -> list[str]:
        return ids(self.doc(path)["Members"])

    def block_state(self, uri: str) -> tuple[str, str, list[str]]:
        doc = self.doc(uri)
        return (doc["CompositionStatus"]["CompositionState"], doc["Pool"],
                ids(doc["Links"]["ComputerSystems"]))


def test_redfish_library_composed_system_life(service):
    lib = Lib(service)
    try:
        root = lib.doc("/redfish/v1/")
        cs = lib.doc(root["CompositionService"]["@odata.id"])
        free_before = lib.members(cs["FreePool"]["@odata.id"])
        # -- discover with $filter: the free blocks, then a zone holding the kinds needed -
        unused = lib.members(BLOCKS + "?$filter=CompositionStatus/CompositionState eq "
                             "'Unused'")
        assert set(unused) == set(free_before)
        zones = lib.doc(cs["ResourceZones"]["@odata.id"] + "?$expand=.($levels=1)")["Members"]
        picks: dict[str, str] = {}
        for zone in zones:
            picks = {}
            for uri in ids(zone["Links"]["ResourceBlocks"]):
                if uri in unused:
                    for kind in lib.doc(uri)["ResourceBlockType"]:
                        picks.setdefault(kind, uri)
            if {"Compute", "Processor", "Memory"} <= set(picks):
                break
        wanted = [picks["Compute"], picks["Processor"], picks["Memory"]]

        status, headers, body = lib.send("POST", SYSTEMS, {
            "Name": "lib-composed", "Links": {"ResourceBlocks": [{"@odata.id": u}
                                                                 for u in wanted]}})
        assert status == 201, body
        uri = local_path(headers.get("Location") or headers.get("location"))
        system = lib.doc(uri)
        assert system["SystemType"] == "Composed"
        assert ids(system["Links"]["ResourceBlocks"]) == wanted
        for block in wanted:
            assert lib.block_state(block) == ("Composed", "Active", [uri])
        assert set(lib.members(cs["ActivePool"]["@odata.id"])) == set(wanted)
        composed = lib.members(BLOCKS + "?$filter=CompositionStatus/CompositionState eq "
                               "'Composed'")
        assert set(composed) == set(wanted)

        # a PATCH of the system's Links.ResourceBlocks grows it too
        extra = picks.get("Storage") or picks["Network"]
        status, _, body = lib.send("PATCH", uri, {"Links": {"ResourceBlocks": [
            *({"@odata.id": u} for u in wanted), {"@odata.id": extra}]}})
        assert status in (200, 204), body
        assert lib.block_state(extra) == ("Composed", "Active", [uri])
        assert ids(lib.doc(uri)["Links"]["ResourceBlocks"]) == [*wanted, extra]

        status, _, body = lib.send("DELETE", uri)
        assert status in (200, 204), body
        assert lib.get(uri)[0] == 404
        assert uri not in lib.members(SYSTEMS)
        for block in [*wanted, extra]:
            assert lib.block_state(block) == ("Unused", "Free", [])
        assert lib.members(cs["FreePool"]["@odata.id"]) == free_before
        assert lib.members(cs["ActivePool"]["@odata.id"]) == []
    finally:
        lib.client.logout()
    assert_invariants(service)


def test_redfish_library_host_expansion_with_etags(service):
    lib = Lib(service)
    host = "/redfish/v1/Systems/host1"
    try:
        system = lib.doc(host)
        assert "ExpandableSystem" in system.get("Composition", {}).get("UseCases", [])
        add = system["Actions"]["#ComputerSystem.AddResourceBlock"]["target"]
        remove = system["Actions"]["#ComputerSystem.RemoveResourceBlock"]["target"]
        own = ids(system["Links"]["ResourceBlocks"])
        assert len(own) == 1  # the host's own registration block
        # what host1 can reach: the zones of its own block
        zones = ids(lib.doc(own[0])["Links"]["Zones"])
        reachable = {u for z in zones for u in ids(lib.doc(z)["Links"]["ResourceBlocks"])}
        free_before = lib.members(FREE_POOL)
        devices: dict[str, str] = {}
        for uri in free_before:
            if uri in reachable:
                for kind in lib.doc(uri)["ResourceBlockType"]:
                    devices.setdefault(kind, uri)
        gpu, nvme, cxl = devices["Processor"], devices["Storage"], devices["Memory"]
        assert "cxl" in name_of(cxl), cxl

        attached: list[str] = []

        def check_pools() -> None:
            assert ids(lib.doc(host)["Links"]["ResourceBlocks"]) == [*own, *attached]
            assert set(lib.members(ACTIVE_POOL)) == set(attached)
            assert lib.members(FREE_POOL) == [u for u in free_before if u not in attached]
            for uri in (gpu, nvme, cxl):
                expected = ("Composed", "Active", [host]) if uri in attached \
                    else ("Unused", "Free", [])
                assert lib.block_state(uri) == expected, uri

        def attach(uri: str) -> None:
            status, _, body = lib.send("POST", add, {
                "ResourceBlock": {"@odata.id": uri}, "ResourceBlockETag": lib.etag(uri),
                "ComputerSystemETag": lib.etag(host)})
            assert status == 204, body
            attached.append(uri)
            check_pools()

        check_pools()
        stale_host_etag = lib.etag(host)
        attach(gpu)
        attach(nvme)

        # -- stale ETags: 428, nothing moves --------------------------------------------
        stale_cxl_etag = lib.etag(cxl)
        # the CXL block changes under us: someone attaches it to host2 and detaches it
        for action in ("AddResourceBlock", "RemoveResourceBlock"):
            status, _, body = lib.send(
                "POST", f"{SYSTEMS}/host2/Actions/ComputerSystem.{action}",
                {"ResourceBlock": {"@odata.id": cxl}})
            assert status == 204, body
        assert lib.etag(cxl) != stale_cxl_etag
        check_pools()
        host_etag, cxl_etag = lib.etag(host), lib.etag(cxl)
        for params in ({"ResourceBlockETag": stale_cxl_etag, "ComputerSystemETag": host_etag},
                       {"ResourceBlockETag": cxl_etag, "ComputerSystemETag": stale_host_etag}):
            status, _, body = lib.send("POST", add, {"ResourceBlock": {"@odata.id": cxl},
                                                     **params})
            assert status == 428, body
            assert any(m.endswith(PRECONDITION_FAILED) for m in message_ids(body)), body
            assert (lib.etag(host), lib.etag(cxl)) == (host_etag, cxl_etag)
            check_pools()
        attach(cxl)

        # -- reduce, one device at a time ----------------------------------------------
        for uri in (nvme, gpu, cxl):
            status, _, body = lib.send("POST", remove, {
                "ResourceBlock": {"@odata.id": uri}, "ResourceBlockETag": lib.etag(uri),
                "ComputerSystemETag": lib.etag(host)})
            assert status == 204, body
            attached.remove(uri)
            check_pools()
        # and removing what is not attached is refused
        status, _, body = lib.send("POST", remove, {"ResourceBlock": {"@odata.id": gpu}})
        assert status == 400, body
        assert lib.members(FREE_POOL) == free_before
    finally:
        lib.client.logout()
    assert_invariants(service)


def test_sushy_block_views_agree_with_the_documents(service):
    """sushy's parse of every block (state, counts) agrees with the raw JSON after a host
    has been expanded, and its zones list exactly the blocks the service lists."""
    status, _, body = service.request("POST", "/redfish/v1/Systems/host3/Actions/"
                                      "ComputerSystem.AddResourceBlock",
                                      {"ResourceBlock": {"@odata.id": block_uri("gpu2-2")}})
    assert status == 204, body
    status, _, body = service.request("POST", SYSTEMS, compose_body("sled1", "nvme1-4"))
    assert status == 201, body
    auth = sushy_auth.SessionAuth(username="admin", password=service.password)
    conn = sushy.Sushy(service.url + "/redfish/v1/", auth=auth, verify=False,
                       server_side_retries=1, server_side_retries_delay=0.2, read_timeout=30)
    try:
        comp = SushyComposition(conn)
        snap = snapshot(service)
        seen = {}
        for block in comp.blocks().get_members():
            raw = snap.block(name_of(block.path))
            assert block.identity == raw["Id"]
            assert block.composition_status.composition_state.value == \
                raw["CompositionStatus"]["CompositionState"]
            assert block.composition_status.number_of_compositions == \
                raw["CompositionStatus"]["NumberOfCompositions"]
            seen[block.identity] = block.composition_status.composition_state
        assert seen["gpu2-2"] == COMPOSED and seen["nvme1-4"] == COMPOSED
        assert seen["sled1"] == COMPOSED and seen["gpu2-3"] == UNUSED
        for zone in comp.zones().get_members():
            assert ids(zone.links.resource_blocks) == \
                ids(snap.doc(zone.path)["Links"]["ResourceBlocks"])
        assert not snap.violations(), snap.violations()
    finally:
        auth.close()
