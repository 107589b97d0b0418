"""The PCIe and CXL fabrics: switches, endpoints and zones that follow the composition.

One Fabric per protocol the rack has (``PCIe``, ``CXL``). Each host and compute sled a
switch reaches is an initiator endpoint (``RootComplex``); each device behind a switch is
a target endpoint. Each initiator has a ``ZoneOfEndpoints`` holding itself and the devices
bound to it: :func:`sync_zones` recomputes the zones from the blocks' composition state,
and runs in every transaction that changes it, so the fabric always agrees with the
CompositionService.
"""

from __future__ import annotations

from typing import Any

from ..composition import planner
from ..drivers.contract import Inventory
from ..protocol.errors import RedfishError
from ..store import Store, Transaction
from . import uris
from .accounts import collection_doc
from .kind import Kind

FABRICS = "/redfish/v1/Fabrics"
FABRIC_TYPE = "#Fabric.v1_4_0.Fabric"
SWITCH_TYPE = "#Switch.v1_11_0.Switch"
ENDPOINT_TYPE = "#Endpoint.v1_8_2.Endpoint"
ZONE_TYPE = "#Zone.v1_6_3.Zone"
OK = {"State": "Enabled", "Health": "OK"}
TARGETS = {  # device kind -> (EntityType, contained resource the entity is)
    "GPU": ("Processor", "Processors/GPU0"),
    "NVMe": ("Drive", "Drives/Drive0"),
    "CXLMemory": ("Memory", "Memory/Memory0"),
    "DPU": ("NetworkController", None),
    "NIC": ("NetworkController", None),
}


def ref(uri: str) -> dict[str, str]:
    return {"@odata.id": uri}


def zone_id(initiator: str) -> str:
    return f"zone-{initiator}"


def desired(inventory: Inventory) -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
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
        initiators: dict[str, str | None] = {}  # endpoint id -> system it stands for
        for host in inventory.hosts:
            if any(host.id in s.hosts for s in switches):
                initiators[host.id] = f"{uris.SYSTEMS}/{host.id}"
        for sled in inventory.sleds:
            if sled.switch in switch_ids or any(sled.id in s.hosts for s in switches):
                initiators[sled.id] = None
        endpoints_of: dict[str, list[str]] = {s.id: [] for s in switches}
        for ep_id, system in initiators.items():
            entity: dict[str, Any] = {"EntityType": "RootComplex", "EntityRole": "Initiator"}
            if system:
                entity["EntityLink"] = ref(system)
            uri = f"{fabric}/Endpoints/{ep_id}"
            docs[uri] = _endpoint(uri, ep_id, protocol, entity, f"Root ports of {ep_id}")
            sled_switch = next((sl.switch for sl in inventory.sleds if sl.id == ep_id), None)
            for s in switches:
                if ep_id in s.hosts or s.id == sled_switch:
                    endpoints_of[s.id].append(uri)
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
            uri = f"{fabric}/Endpoints/{device.id}"
            docs[uri] = _endpoint(uri, device.id, protocol, entity,
                                  f"{device.kind} {device.id}")
            endpoints_of[device.switch].append(uri)
        for s in switches:
            uri = f"{fabric}/Switches/{s.id}"
            docs[uri] = {
                "@odata.id": uri, "@odata.type": SWITCH_TYPE, "Id": s.id,
                "Name": f"{protocol} switch {s.id}", "SwitchType": protocol,
                "SupportedProtocols": [protocol], "Manufacturer": s.manufacturer,
                "Model": s.model, "Status": OK,
                "Links": {"Endpoints": [ref(e) for e in endpoints_of[s.id]]},
            }
    return docs


def _endpoint(uri: str, ep_id: str, protocol: str, entity: dict[str, Any],
              name: str) -> dict[str, Any]:
    return {
        "@odata.id": uri, "@odata.type": ENDPOINT_TYPE, "Id": ep_id, "Name": name,
        "EndpointProtocol": protocol, "Status": OK, "ConnectedEntities": [entity],
        "Links": {"Zones": []},
    }


def _bound(store: Store, tx: Transaction) -> dict[str, str]:
    """Device (block) id -> the initiator it is bound to, from the composition state."""
    blocks = {u: d for u in store.members(uris.RESOURCE_BLOCKS) if (d := tx.get(u))}
    out: dict[str, str] = {}
    for block in blocks.values():
        systems = block.get("Links", {}).get("ComputerSystems", [])
        if not systems or planner.HOST_TYPES & set(block.get("ResourceBlockType", ())):
            continue
        system = tx.get(systems[0]["@odata.id"])
        if system is None:
            continue
        try:
            out[block["Id"]] = planner.driver_host(system, planner.host_block(system, blocks))
        except RedfishError:
            continue
    return out


def sync_zones(tx: Transaction, store: Store) -> None:
    """Make every fabric zone hold its initiator and the devices bound to it, and every
    endpoint name the zones it is in."""
    bound = _bound(store, tx)
    for fabric in store.members(FABRICS):
        endpoints = set(store.members(f"{fabric}/Endpoints"))
        zones_of: dict[str, list[str]] = {e: [] for e in endpoints}
        for zone_uri in store.members(f"{fabric}/Zones"):
            zone = tx.get(zone_uri)
            if zone is None:
                continue
            initiator = zone["Id"].removeprefix("zone-")
            members = [f"{fabric}/Endpoints/{initiator}"]
            members += [f"{fabric}/Endpoints/{d}" for d, h in sorted(bound.items())
                        if h == initiator and f"{fabric}/Endpoints/{d}" in endpoints]
            involved = [ref(f"{fabric}/Switches/{s}") for s in _switches(store, fabric, members)]
            zone["Links"] = {"Endpoints": [ref(m) for m in members], "InvolvedSwitches": involved}
            tx.put(zone_uri, zone)
            for member in members:
                zones_of.setdefault(member, []).append(zone_uri)
        for endpoint_uri, zones in zones_of.items():
            endpoint = tx.get(endpoint_uri)
            if endpoint is not None:
                endpoint["Links"] = {**endpoint.get("Links", {}),
                                     "Zones": [ref(z) for z in zones]}
                tx.put(endpoint_uri, endpoint)


def _switches(store: Store, fabric: str, members: list[str]) -> list[str]:
    """The switches whose endpoints include any of ``members`` (only when it routes)."""
    if len(members) < 2:
        return []
    out = []
    for switch_uri in store.members(f"{fabric}/Switches"):
        switch = store.doc(switch_uri) or {}
        linked = {e["@odata.id"] for e in switch.get("Links", {}).get("Endpoints", [])}
        if linked & set(members[1:]):
            out.append(switch_uri.rsplit("/", 1)[1])
    return out


async def reconcile(store: Store, inventory: Inventory) -> None:
    wanted = desired(inventory)
    async with store.transaction("service") as tx:
        if not tx.exists(FABRICS):
            tx.create(FABRICS, collection_doc(FABRICS, "FabricCollection", "Fabrics"))
        for uri in store.members(FABRICS):
            if uri not in wanted:
                tx.delete(uri)
        for uri in sorted(wanted, key=lambda u: u.count("/")):  # parents first
            current = tx.get(uri)
            doc = wanted[uri]
            if current is not None and "Members" in doc:
                continue  # collections keep their member lists
            if current is not None and "Links" in doc:
                doc["Links"] = {**current.get("Links", {}), **{
                    k: v for k, v in doc.get("Links", {}).items()
                    if k not in ("Zones", "Endpoints", "InvolvedSwitches")
                    or doc["@odata.type"] == SWITCH_TYPE}}
            tx.put(uri, doc)
        for fabric in store.members(FABRICS):
            for name in ("Switches", "Endpoints", "Zones"):
                for uri in store.members(f"{fabric}/{name}"):
                    if uri not in wanted and tx.exists(uri):
                        tx.delete(uri)
    async with store.transaction("service") as tx:
        sync_zones(tx, store)


class FabricKind(Kind):
    entity = "Fabric"


KINDS = [FabricKind()]
