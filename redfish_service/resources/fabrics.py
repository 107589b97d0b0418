"""The PCIe and CXL fabrics: switches, ports, endpoints and zones that follow the
composition, and the hardware behind them.

One Fabric per protocol the rack has (``PCIe``, ``CXL``). Each host and compute sled a
switch reaches is an initiator endpoint (``RootComplex``); each device behind a switch is
a target endpoint. Each initiator has a ``ZoneOfEndpoints`` holding itself and the devices
bound to it.

:func:`reconcile` writes what the hardware is (switch ports: :mod:`.ports`; enclosures and
PCIe devices: :mod:`.pcie_devices`; CXL memory domains and chunks: :mod:`.cxl`).
:func:`sync_zones` runs in every transaction that changes composition state and makes
everything that depends on it agree with the blocks: zones, CXL Connections
(:mod:`.cxl`) and what each system shows (:mod:`.host_view`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..drivers.contract import Device, Inventory, Switch
from ..store import Store, Transaction
from . import cxl, host_view, pcie_devices, ports, uris
from .accounts import collection_doc
from .fabric_state import (
    FABRICS,
    OK,
    Snapshot,
    device_private,
    enclosure_uri,
    link_ids,
    members,
    memory_chunk_uri,
    ref,
    same_doc,
    service_fabrics,
    snapshot,
)
from .kind import Kind
from .registries import ensure_schema_files

FABRIC_TYPE = "#Fabric.v1_4_0.Fabric"
SWITCH_TYPE = "#Switch.v1_11_0.Switch"
ENDPOINT_TYPE = "#Endpoint.v1_8_2.Endpoint"
ZONE_TYPE = "#Zone.v1_6_3.Zone"
TARGETS = {  # device kind -> (EntityType, contained resource the entity is)
    "GPU": ("Processor", "Processors/GPU0"),
    "NVMe": ("Drive", "Drives/Drive0"),
    "CXLMemory": ("Memory", "Memory/Memory0"),
    "DPU": ("NetworkController", None),
    "NIC": ("NetworkController", None),
}
# Links the composition changes (sync_zones owns them; reconciliation keeps them).
DYNAMIC_LINKS = {ZONE_TYPE: ("Endpoints", "InvolvedSwitches"),
                 ENDPOINT_TYPE: ("Zones", "Connections")}
SOURCE = {"source": "fabric"}  # private part of the chassis this module owns
MODEL_VERSION = 4  # of the hardware documents ``desired`` builds; see ``fingerprint``


def zone_id(initiator: str) -> str:
    return f"zone-{initiator}"


def desired(inventory: Inventory) -> tuple[dict[str, dict[str, Any]], dict[str, dict]]:
    """(URI -> document, URI -> private data) of everything the rack's hardware is: the
    fabrics with their switches, ports, endpoints and zones, and the switches' enclosures
    with the PCIe devices and CXL memory in them."""
    docs: dict[str, dict[str, Any]] = {}
    private: dict[str, dict[str, Any]] = {}
    for protocol in sorted({s.protocol for s in inventory.switches}):
        fabric = f"{FABRICS}/{protocol}"
        switches = [s for s in inventory.switches if s.protocol == protocol]
        switch_ids = {s.id for s in switches}
        docs[fabric] = {
            "@odata.id": fabric, "@odata.type": FABRIC_TYPE, "Id": protocol,
            "Name": f"{protocol} fabric", "FabricType": protocol, "Status": OK,
            "Switches": ref(f"{fabric}/Switches"), "Endpoints": ref(f"{fabric}/Endpoints"),
            "Zones": ref(f"{fabric}/Zones"),
        }
        for name, entity in (("Switches", "SwitchCollection"),
                             ("Endpoints", "EndpointCollection"), ("Zones", "ZoneCollection")):
            docs[f"{fabric}/{name}"] = collection_doc(f"{fabric}/{name}", entity,
                                                      f"{protocol} {name.lower()}")
        if cxl.is_cxl_fabric(fabric):
            docs[fabric]["Connections"] = ref(f"{fabric}/Connections")
            docs[f"{fabric}/Connections"] = cxl.connections_collection(fabric)
        initiators: dict[str, str | None] = {}  # endpoint id -> system it stands for
        for host in inventory.hosts:
            if any(host.id in s.hosts for s in switches):
                initiators[host.id] = f"{uris.SYSTEMS}/{host.id}"
        sled_switch = {sl.id: sl.switch for sl in inventory.sleds}
        for sled in inventory.sleds:
            if sled.switch in switch_ids or any(sled.id in s.hosts for s in switches):
                initiators[sled.id] = None
        reaches: dict[str, list[str]] = {s.id: [] for s in switches}  # switch -> initiators
        behind: dict[str, list[Device]] = {s.id: [] for s in switches}  # switch -> devices
        for ep_id, system in initiators.items():
            entity: dict[str, Any] = {"EntityType": "RootComplex", "EntityRole": "Initiator"}
            if system:
                entity["EntityLink"] = ref(system)
            uri = f"{fabric}/Endpoints/{ep_id}"
            docs[uri] = _endpoint(uri, ep_id, protocol, [entity], f"Root ports of {ep_id}")
            for s in switches:
                if ep_id in s.hosts or s.id == sled_switch.get(ep_id):
                    reaches[s.id].append(ep_id)
            zone = f"{fabric}/Zones/{zone_id(ep_id)}"
            docs[zone] = {
                "@odata.id": zone, "@odata.type": ZONE_TYPE, "Id": zone_id(ep_id),
                "Name": f"What {ep_id} is connected to", "ZoneType": "ZoneOfEndpoints",
                "Status": OK, "Links": {"Endpoints": [ref(uri)], "InvolvedSwitches": []},
            }
        for device in inventory.devices:
            if device.switch not in switch_ids:
                continue
            kind, inner = TARGETS[device.kind]
            entity = {"EntityType": kind, "EntityRole": "Target",
                      "EntityPciId": {"VendorId": device.vendor_id,
                                      "DeviceId": device.device_id}}
            if inner:
                entity["EntityLink"] = ref(f"{uris.RESOURCE_BLOCKS}/{device.id}/{inner}")
            entities = [entity]
            if device.kind == "CXLMemory":
                entities.append({"EntityType": "MemoryChunk", "EntityRole": "Target",
                                 "EntityLink": ref(memory_chunk_uri(device.switch,
                                                                    device.id))})
            uri = f"{fabric}/Endpoints/{device.id}"
            docs[uri] = _endpoint(uri, device.id, protocol, entities,
                                  f"{device.kind} {device.id}")
            private[uri] = device_private(device.switch, device.kind)
            behind[device.switch].append(device)
        below: dict[str, list[str]] = {s.id: [] for s in switches}  # spine -> its leaves
        for s in switches:
            if s.upstream in below:
                below[s.upstream].append(s.id)
        for s in switches:
            docs.update(_switch(fabric, s, reaches[s.id], behind[s.id], below[s.id]))
            if s.upstream is not None:  # sync_zones climbs to the spine by it
                private[f"{fabric}/Switches/{s.id}"] = {"upstream": s.upstream}
    connected = ports.ports_of_endpoints(docs)
    for uri, doc in docs.items():
        if doc["@odata.type"] == ENDPOINT_TYPE:
            doc["Links"]["ConnectedPorts"] = [ref(p) for p in connected.get(uri, [])]
            if cxl.is_cxl_fabric(uri.split("/Endpoints/")[0]):
                doc["Links"]["Connections"] = []
    for uri, doc in docs.items():
        if doc["@odata.type"] == pcie_devices.CHASSIS_TYPE:
            private[uri] = dict(SOURCE)
    return docs, private


def _switch(fabric: str, switch: Switch, initiators: list[str],
            devices: list[Device], leaves: list[str]) -> dict[str, dict[str, Any]]:
    uri = f"{fabric}/Switches/{switch.id}"
    docs = {uri: {
        "@odata.id": uri, "@odata.type": SWITCH_TYPE, "Id": switch.id,
        "Name": f"{switch.protocol} switch {switch.id}", "SwitchType": switch.protocol,
        "SupportedProtocols": [switch.protocol], "Manufacturer": switch.manufacturer,
        "Model": switch.model, "Status": OK, "Ports": ref(f"{uri}/Ports"),
        "Links": {"Endpoints": [ref(f"{fabric}/Endpoints/{e}")
                                for e in [*initiators, *(d.id for d in devices)]],
                  "Chassis": ref(enclosure_uri(switch.id))},
    }}
    docs.update(ports.switch_ports(fabric, switch, initiators, devices, leaves))
    docs.update(pcie_devices.enclosure_documents(fabric, switch, devices))
    docs.update(cxl.memory_documents(fabric, switch, devices))
    return docs


def _endpoint(uri: str, ep_id: str, protocol: str, entities: list[dict[str, Any]],
              name: str) -> dict[str, Any]:
    return {
        "@odata.id": uri, "@odata.type": ENDPOINT_TYPE, "Id": ep_id, "Name": name,
        "EndpointProtocol": protocol, "Status": OK, "ConnectedEntities": entities,
        "Links": {"Zones": []},
    }


def sync_zones(tx: Transaction, store: Store, systems: set[str] | None = None) -> None:
    """Make the fabric and the systems show the bindings the blocks record: every zone
    holds its initiator and the devices bound to it, every CXL memory binding has its
    Connection and host Memory entry, every system lists its PCIe devices and what its
    blocks hold, and every endpoint names its zones and connections. Only documents that
    change are written. ``systems``: only these systems' views can have changed (the
    systems and blocks ``tx`` changed name no other); None: every system's."""
    snap = snapshot(tx, store)
    connections = cxl.sync_connections(tx, store, snap)
    _sync_endpoints(tx, store, snap, connections)
    host_view.sync(tx, store, snap, systems)


def _sync_endpoints(tx: Transaction, store: Store, snap: Snapshot,
                    connections: dict[str, list[str]]) -> None:
    for fabric in service_fabrics(store):
        endpoints = members(tx, store, f"{fabric}/Endpoints")
        known = set(endpoints)
        switches_of: dict[str, list[str]] = {}  # endpoint -> switch ids
        upstream: dict[str, str] = {}  # leaf switch id -> its spine (two-level fabrics)
        for switch_uri in members(tx, store, f"{fabric}/Switches"):
            switch = tx.peek(switch_uri) or {}
            for e in link_ids(switch.get("Links", {}).get("Endpoints")):
                switches_of.setdefault(e, []).append(switch_uri.rsplit("/", 1)[1])
            entry = store.get(switch_uri)
            if entry is not None and entry.private and entry.private.get("upstream"):
                upstream[switch_uri.rsplit("/", 1)[1]] = entry.private["upstream"]
        zones_of: dict[str, list[str]] = {e: [] for e in endpoints}
        bound_to: dict[str, list[str]] = {}  # initiator -> its bound devices' endpoints
        for b in snap.bindings:
            if f"{fabric}/Endpoints/{b.device}" in known:
                bound_to.setdefault(b.initiator, []).append(f"{fabric}/Endpoints/{b.device}")
        for zone_uri in members(tx, store, f"{fabric}/Zones"):
            zone = tx.peek(zone_uri)
            if zone is None:
                continue
            initiator = str(zone.get("Id", "")).removeprefix("zone-")
            devices = bound_to.get(initiator, [])
            zone_members = [f"{fabric}/Endpoints/{initiator}", *devices]
            at = set(switches_of.get(f"{fabric}/Endpoints/{initiator}", ()))
            involved = sorted({s for d in devices for leaf in switches_of.get(d, ())
                               for s in _path(leaf, at, upstream)})
            wanted = {"Endpoints": [ref(m) for m in zone_members],
                      "InvolvedSwitches": [ref(f"{fabric}/Switches/{s}") for s in involved]}
            if zone.get("Links") != wanted:
                doc = tx.get(zone_uri)
                assert doc is not None
                doc["Links"] = wanted
                tx.put(zone_uri, doc)
            for member in zone_members:
                zones_of.setdefault(member, []).append(zone_uri)
        cxl_fabric = cxl.is_cxl_fabric(fabric)
        for endpoint_uri, zones in zones_of.items():
            endpoint = tx.peek(endpoint_uri)
            if endpoint is None:
                continue
            wanted = {"Zones": [ref(z) for z in zones]}
            if cxl_fabric:
                wanted["Connections"] = [ref(c) for c in connections.get(endpoint_uri, [])]
            current = endpoint.get("Links", {})
            if any(current.get(k) != v for k, v in wanted.items()):
                doc = tx.get(endpoint_uri)
                assert doc is not None
                doc["Links"] = {**doc.get("Links", {}), **wanted}
                tx.put(endpoint_uri, doc)


def _path(switch: str, initiator_at: set[str], upstream: dict[str, str]) -> list[str]:
    """The switches from a device's ``switch`` up to one the initiator is cabled to: the
    switch alone, or the leaf and its spine."""
    path = [switch]
    while switch not in initiator_at and switch in upstream and upstream[switch] not in path:
        switch = upstream[switch]
        path.append(switch)
    return path


def fingerprint(inventory: Inventory) -> dict[str, str]:
    """What the hardware documents were built from: the inventory and the shape of the
    model (bump MODEL_VERSION when ``desired`` changes what it builds)."""
    digest = hashlib.sha256(f"{MODEL_VERSION}\n{inventory!r}".encode()).hexdigest()
    return {"inventory": digest}


async def reconcile(store: Store, inventory: Inventory) -> None:
    """Make the hardware documents match the inventory (skipped when neither it nor the
    model changed since the last time: at 10,000 devices building them is most of a
    restart), then the composition-dependent ones match the blocks."""
    seen = fingerprint(inventory)
    entry = store.get(FABRICS)
    if entry is None or entry.private != seen:
        await _reconcile_hardware(store, inventory, seen)
    async with store.transaction("service") as tx:
        sync_zones(tx, store)
        if any(cxl.is_cxl_fabric(f) for f in store.members(FABRICS)) \
                and tx.exists(uris.JSON_SCHEMAS):
            # Connections come and go with the composition; their schema is listed always.
            ensure_schema_files(tx, [cxl.CONNECTION_TYPE])


async def _reconcile_hardware(store: Store, inventory: Inventory,
                              seen: dict[str, str]) -> None:
    wanted, private = desired(inventory)
    async with store.transaction("service") as tx:
        if not tx.exists(FABRICS):
            tx.create(FABRICS, collection_doc(FABRICS, "FabricCollection", "Fabrics"))
        for uri in store.members(FABRICS):
            if uri not in wanted:
                tx.delete(uri)
        for uri in store.members(uris.CHASSIS):
            entry = store.get(uri)
            if uri not in wanted and entry is not None and entry.private == SOURCE:
                tx.delete(uri)
        # What is no longer there goes, below every collection this module fills.
        for uri, doc in wanted.items():
            if "Members" in doc and not uri.endswith("/Connections"):
                for member in members(tx, store, uri):
                    if member not in wanted and tx.exists(member):
                        tx.delete(member)
        for uri in sorted(wanted, key=lambda u: u.count("/")):  # parents first
            doc = wanted[uri]
            entry = store.get(uri)
            current = tx.peek(uri)
            if current is not None and "Members" in doc:
                continue  # collections keep their member lists
            if current is not None:
                for key in DYNAMIC_LINKS.get(doc["@odata.type"], ()):
                    if key in current.get("Links", {}):
                        doc["Links"][key] = current["Links"][key]
                if "AssetTag" in current and doc["@odata.type"] == pcie_devices.CHASSIS_TYPE:
                    doc["AssetTag"] = current["AssetTag"]
                if doc["@odata.type"] == ENDPOINT_TYPE and "Status" in current:
                    doc["Status"] = current["Status"]  # device health owns it
            want_private = private.get(uri)
            if current is not None and same_doc(current, doc) \
                    and entry is not None and entry.private == want_private:
                continue
            tx.put(uri, doc, want_private, owned=True)  # built for this put alone
        tx.set_private(FABRICS, seen)


class FabricKind(Kind):
    entity = "Fabric"


KINDS = [FabricKind()]
