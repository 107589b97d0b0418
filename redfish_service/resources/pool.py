"""The composition pool from the drivers' inventory: CompositionService, ResourceBlocks
(one per pooled device, compute sled and host server), ResourceZones (one per PCIe switch:
what its hosts can reach) and the FreePool/ActivePool views.

Like the host inventory, reconciliation is level-triggered. The composition state of a
block (``CompositionStatus``, ``Pool``, ``Client``, ``Links.ComputerSystems``) belongs to
the composition service, not to the inventory, and is kept across reconciliations.
"""

from __future__ import annotations

import bisect
from typing import Any

from ..composition import planner
from ..drivers.contract import Device, Host, Inventory, Sled
from ..protocol.errors import method_not_allowed
from ..store import Store, Transaction
from . import pcie_devices, uris
from .accounts import collection_doc
from .composition_service import ACTION_INFO, action_info_doc, compose_action
from .fabric_state import pcie_device_uri
from .kind import Kind, checked_entry
from .registration import CAPABILITIES as REGISTRATION_CAPABILITIES
from .registration import advertise as advertise_registration
from .registration import register, unregister
from .registration import unregistered as unregistered_hosts

COMPOSITION_SERVICE = uris.COMPOSITION_SERVICE
BLOCKS = uris.RESOURCE_BLOCKS
ZONES = COMPOSITION_SERVICE + "/ResourceZones"
FREE_POOL = COMPOSITION_SERVICE + "/FreePool"
ACTIVE_POOL = COMPOSITION_SERVICE + "/ActivePool"
RESERVATIONS = COMPOSITION_SERVICE + "/CompositionReservations"

COMPOSITION_SERVICE_TYPE = "#CompositionService.v1_2_3.CompositionService"
BLOCK_TYPE = "#ResourceBlock.v1_4_3.ResourceBlock"
ZONE_TYPE = "#Zone.v1_6_3.Zone"
PROCESSOR_TYPE = "#Processor.v1_22_0.Processor"
DRIVE_TYPE = "#Drive.v1_22_0.Drive"
MEMORY_TYPE = "#Memory.v1_23_0.Memory"
NETWORK_INTERFACE_TYPE = "#NetworkInterface.v1_2_3.NetworkInterface"

STATE_KEYS = ("CompositionStatus", "Pool", "Client")
OK = {"State": "Enabled", "Health": "OK"}
BLOCK_TYPES = {"GPU": "Processor", "NVMe": "Storage", "CXLMemory": "Memory",
               "DPU": "Network", "NIC": "Network"}


def ref(uri: str) -> dict[str, str]:
    return {"@odata.id": uri}


def host_block_id(host: Host) -> str:
    return uris.host_block_id(host.id)


def composition_service_doc() -> dict[str, Any]:
    return {
        "@odata.id": COMPOSITION_SERVICE,
        "@odata.type": COMPOSITION_SERVICE_TYPE,
        "Id": "CompositionService",
        "Name": "Composition Service",
        "Description": "Pooled devices and the host servers they can be attached to",
        "Status": OK,
        "ServiceEnabled": True,
        "AllowOverprovisioning": True,
        "AllowZoneAffinity": True,
        "ReservationDuration": "PT10M",
        "ResourceBlocks": ref(BLOCKS),
        "ResourceZones": ref(ZONES),
        "FreePool": ref(FREE_POOL),
        "ActivePool": ref(ACTIVE_POOL),
        "CompositionReservations": ref(RESERVATIONS),
        "Actions": compose_action(),
    }


def _block(block_id: str, name: str, types: list[str]) -> dict[str, Any]:
    return {
        "@odata.id": f"{BLOCKS}/{block_id}",
        "@odata.type": BLOCK_TYPE,
        "Id": block_id,
        "Name": name,
        "ResourceBlockType": types,
        "Status": OK,
        "CompositionStatus": {
            "CompositionState": "Unused",
            "Reserved": False,
            "SharingCapable": False,
            "MaxCompositions": 1,
            "NumberOfCompositions": 0,
        },
        "Pool": "Free",
        "Links": {"ComputerSystems": [], "Zones": []},
    }


def _contained(block: dict[str, Any], prop: str, member_id: str,
               doc: dict[str, Any]) -> dict[str, Any]:
    """A resource inside a block (``Processors``, ``Drives``...), linked from it."""
    uri = f"{block['@odata.id']}/{prop}/{member_id}"
    block.setdefault(prop, []).append(ref(uri))
    block[f"{prop}@odata.count"] = len(block[prop])
    return {"@odata.id": uri, "Id": member_id, "Status": OK, **doc}


def device_documents(device: Device) -> list[dict[str, Any]]:
    types = [BLOCK_TYPES[device.kind]]
    if device.kind == "DPU" and device.cores:
        types.append("Processor")  # it carries its own CPU
    block = _block(device.id, f"{device.kind} {device.id}", types)
    common = {"Manufacturer": device.manufacturer, "Model": device.model,
              "SerialNumber": device.serial}
    if device.kind == "GPU":
        inner = _contained(block, "Processors", "GPU0", {
            "@odata.type": PROCESSOR_TYPE, "Name": f"GPU {device.id}",
            "ProcessorType": "GPU", "ProcessorMemory": [{"CapacityMiB": device.memory_mib}],
            "Links": _function_links(device, processor=True), **common,
        })
    elif device.kind == "NVMe":
        inner = _contained(block, "Drives", "Drive0", {
            "@odata.type": DRIVE_TYPE, "Name": f"NVMe drive {device.id}",
            "Protocol": "NVMe", "MediaType": "SSD", "CapacityBytes": device.capacity_bytes,
            "Links": _function_links(device), **common,
        })
    elif device.kind == "CXLMemory":
        inner = _contained(block, "Memory", "Memory0", {
            "@odata.type": MEMORY_TYPE, "Name": f"CXL memory {device.id}",
            "MemoryType": "DRAM", "MemoryDeviceType": "DDR5", "MemoryMedia": ["DRAM"],
            "CapacityMiB": device.memory_mib, **common,
        })
    else:  # DPU, NIC
        inner = _contained(block, "NetworkInterfaces", "NIC0", {
            "@odata.type": NETWORK_INTERFACE_TYPE, "Name": f"{device.kind} {device.id}",
        })
        if device.kind == "DPU" and device.cores:
            cpu = _contained(block, "Processors", "DPU0", {
                "@odata.type": PROCESSOR_TYPE, "Name": f"DPU processor {device.id}",
                "ProcessorType": "CPU", "ProcessorArchitecture": "ARM",
                "InstructionSet": "ARM-A64", "TotalCores": device.cores,
                "Links": _function_links(device, processor=True), **common,
            })
            return [block, cpu, inner]
    return [block, inner]


def _function_links(device: Device, *, processor: bool = False) -> dict[str, Any]:
    """The PCIe function (and, for a Processor, device) behind a device's Processor or
    Drive: the function has the PCI vendor and device ids a client may select on."""
    links: dict[str, Any] = {"PCIeFunctions": [ref(pcie_devices.function_uri(device))]}
    if processor:
        links["PCIeDevice"] = ref(pcie_device_uri(device.switch, device.id))
    return links


def sled_documents(sled: Sled) -> list[dict[str, Any]]:
    block = _block(sled.id, f"Compute sled {sled.id}", ["Compute"])
    docs = [block]
    for n in range(sled.cpu_count):
        docs.append(_contained(block, "Processors", f"CPU{n}", {
            "@odata.type": PROCESSOR_TYPE, "Name": f"CPU {n} of {sled.id}",
            "ProcessorType": "CPU", "TotalCores": sled.cores,
            "Manufacturer": sled.manufacturer, "Model": sled.cpu_model,
        }))
    docs.append(_contained(block, "Memory", "DRAM0", {
        "@odata.type": MEMORY_TYPE, "Name": f"Memory of {sled.id}",
        "MemoryType": "DRAM", "MemoryDeviceType": "DDR5",
        "CapacityMiB": sled.memory_gib * 1024,
    }))
    return docs


def expansion_block_doc(uri: str, name: str, inside: list[dict[str, Any]],
                        zones: list[str]) -> dict[str, Any]:
    """An Expansion block composed of the device blocks ``inside``: what they hold is
    listed as its own (a constrained request matches it), and it is in their common
    zones."""
    block = _block(uri.rsplit("/", 1)[1], name, ["Expansion"])
    for prop in ("Processors", "Memory", "Drives", "NetworkInterfaces"):
        links = [link for doc in inside for link in doc.get(prop, [])]
        if links:
            block[prop] = links
            block[f"{prop}@odata.count"] = len(links)
    block["Links"]["Zones"] = [ref(z) for z in zones]
    block["Links"]["SupplyingResourceBlocks"] = [ref(d["@odata.id"]) for d in inside]
    return block


def host_block(host: Host) -> dict[str, Any]:
    return host_block_doc(host.id)


def host_block_doc(host_id: str) -> dict[str, Any]:
    """The ComputerSystem block that registers a host server (zones not filled in)."""
    block = _block(uris.host_block_id(host_id), f"Host server {host_id}", ["ComputerSystem"])
    block["ComputerSystems"] = [ref(f"{uris.SYSTEMS}/{host_id}")]
    block["ComputerSystems@odata.count"] = 1
    return block


def zones(inventory: Inventory, unregistered: frozenset[str] = frozenset()
          ) -> dict[str, list[str]]:
    """Zone id -> block URIs: per PCIe switch tree (a switch with the leaf switches below
    it, if any), its registered hosts, the devices and sleds behind any of its switches,
    and the CXL devices whose switch reaches one of its hosts."""
    out: dict[str, list[str]] = {}
    top = inventory.top_switches()
    tree_hosts: dict[str, set[str]] = {}  # top switch -> the hosts of its tree
    for switch in inventory.switches:
        tree_hosts.setdefault(top[switch.id], set()).update(switch.hosts)
    cxl_hosts = {s.id: tree_hosts[top[s.id]] for s in inventory.switches
                 if s.protocol == "CXL"}
    for switch in inventory.switches:
        if switch.protocol != "PCIe" or top[switch.id] != switch.id:
            continue  # a leaf is in its spine's zone
        hosts = tree_hosts[switch.id]
        # Compute sleds first, host registrations last: clients that pick "the first
        # free compute block of a zone" then compose from a sled, not a running host.
        members = [f"{BLOCKS}/{s.id}" for s in inventory.sleds
                   if top.get(s.switch) == switch.id]
        for device in inventory.devices:
            reach = cxl_hosts.get(device.switch)
            if top.get(device.switch) == switch.id or (reach and reach & hosts):
                members.append(f"{BLOCKS}/{device.id}")
        members += [f"{BLOCKS}/{host_block_id(h)}" for h in inventory.hosts
                    if h.id in hosts and h.id not in unregistered]
        out[switch.id] = members
    return out


def zone_doc(zone_id: str, members: list[str]) -> dict[str, Any]:
    return {
        "@odata.id": f"{ZONES}/{zone_id}",
        "@odata.type": ZONE_TYPE,
        "Id": zone_id,
        "Name": f"Resources reachable through {zone_id}",
        "ZoneType": "ZoneOfResourceBlocks",
        "Status": OK,
        "Links": {"ResourceBlocks": [ref(u) for u in members]},
    }


def desired(inventory: Inventory, unregistered: frozenset[str] = frozenset()
            ) -> dict[str, dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for host in inventory.hosts:
        if host.id not in unregistered:
            docs.append(host_block(host))
    for sled in inventory.sleds:
        docs += sled_documents(sled)
    for device in inventory.devices:
        docs += device_documents(device)
    by_uri = {d["@odata.id"]: d for d in docs}
    for zone_id, members in zones(inventory, unregistered).items():
        by_uri[f"{ZONES}/{zone_id}"] = zone_doc(zone_id, members)
        for uri in members:
            by_uri[uri]["Links"]["Zones"].append(ref(f"{ZONES}/{zone_id}"))
    return by_uri


async def reconcile(store: Store, inventory: Inventory) -> None:
    wanted = desired(inventory, unregistered_hosts(store))
    async with store.transaction("service") as tx:
        if not tx.exists(COMPOSITION_SERVICE):
            tx.create(COMPOSITION_SERVICE, composition_service_doc())
        service = tx.get(COMPOSITION_SERVICE) or {}
        if service.get("Actions") != compose_action():  # state from an older version
            tx.put(COMPOSITION_SERVICE, {**service, "Actions": compose_action()})
        tx.put(ACTION_INFO, action_info_doc())
        for uri, entity, name in (
            (BLOCKS, "ResourceBlockCollection", "Resource Blocks"),
            (ZONES, "ZoneCollection", "Resource Zones"),
            (FREE_POOL, "ResourceBlockCollection", "Free Pool"),
            (ACTIVE_POOL, "ResourceBlockCollection", "Active Pool"),
            (RESERVATIONS, "CompositionReservationCollection", "Composition Reservations"),
        ):
            if not tx.exists(uri):
                tx.create(uri, collection_doc(uri, entity, name))
        # Expansion blocks belong to the composition: they stay while all their
        # devices do (and are listed in their zones again).
        kept = {u for u in store.members(BLOCKS)
                if "Expansion" in (d := store.doc(u) or {}).get("ResourceBlockType", ())
                and all(b in wanted for b in planner.suppliers(d))}
        for uri in kept:
            for zone in (store.doc(uri) or {}).get("Links", {}).get("Zones", []):
                if zone["@odata.id"] in wanted:
                    wanted[zone["@odata.id"]]["Links"]["ResourceBlocks"].append(ref(uri))
        # Blocks and zones that left the inventory go, with what they contain.
        for collection in (BLOCKS, ZONES):
            for uri in store.members(collection):
                if uri not in wanted and uri not in kept:
                    tx.delete(uri)
        for uri, doc in wanted.items():
            current = tx.get(uri)
            if current is not None and doc.get("@odata.type") == BLOCK_TYPE:
                for key in STATE_KEYS:
                    if key in current:
                        doc[key] = current[key]
                links = current.get("Links", {})
                doc["Links"]["ComputerSystems"] = links.get("ComputerSystems", [])
                consumers = [c for c in links.get("ConsumingResourceBlocks", [])
                             if c["@odata.id"] in kept]
                if consumers:
                    doc["Links"]["ConsumingResourceBlocks"] = consumers
                elif links.get("ConsumingResourceBlocks"):  # its Expansion block went
                    doc = planner.unsupplied(doc)
            tx.put(uri, doc, owned=True)  # built for this put alone
        refresh_pools(tx, [m["@odata.id"] for m in (tx.get(BLOCKS) or {}).get("Members", [])])
        _advertise_composition(tx, [u for u in wanted if u.startswith(ZONES + "/")])
        advertise_registration(tx, sorted(u for u in wanted if u.startswith(ZONES + "/")))


def _advertise_composition(tx: Transaction, zones: list[str]) -> None:
    """``@Redfish.CollectionCapabilities`` on /Systems and the capabilities object."""
    from .inventory import (
        capabilities_doc,
        collection_capabilities,
        constrained_capabilities_doc,
    )

    systems = tx.get(uris.SYSTEMS)
    if systems is not None:
        systems["@Redfish.CollectionCapabilities"] = collection_capabilities(sorted(zones))
        tx.put(uris.SYSTEMS, systems)
    for doc in (capabilities_doc(), constrained_capabilities_doc()):
        if tx.exists(doc["@odata.id"]):
            tx.put(doc["@odata.id"], doc)
        else:
            tx.create(doc["@odata.id"], doc, member=False)


def _pool_of(doc: dict[str, Any] | None) -> str | None:
    status = planner.status_of(doc or {})
    state = status.get("CompositionState")
    if state == "Unused" and not status.get("Reserved"):
        return FREE_POOL
    if state in ("Composed", "ComposedAndAvailable"):
        return ACTIVE_POOL
    return None


def refresh_pools(tx: Transaction, blocks: list[str],
                  changed: set[str] | None = None) -> None:
    """FreePool and ActivePool as the blocks' states say, in collection order.
    ``changed``: only these blocks can have changed pools (the others keep theirs)."""
    wanted: dict[str, list[str]] = {FREE_POOL: [], ACTIVE_POOL: []}
    if changed is None:
        for uri in blocks:
            if (pool := _pool_of(tx.peek(uri))) is not None:
                wanted[pool].append(uri)
    else:
        listed = set(blocks)
        index: dict[str, int] = {}

        def position(uri: str) -> int:  # in the collection (a few lookups, not a map)
            if uri not in index:
                index[uri] = blocks.index(uri)
            return index[uri]

        for pool_uri in wanted:
            members = planner.link_ids((tx.peek(pool_uri) or {}).get("Members"))
            kept = [u for u in members if u not in changed and u in listed]
            for uri in changed:
                if uri in listed and _pool_of(tx.peek(uri)) == pool_uri:
                    bisect.insort(kept, uri, key=position)
            wanted[pool_uri] = kept
    for uri, members in wanted.items():
        pool = tx.peek(uri)
        if pool is None:  # a served mockup without pools (public-composability)
            continue
        if planner.link_ids(pool.get("Members")) == members:
            continue
        doc = tx.get(uri)
        assert doc is not None
        doc["Members"] = [ref(u) for u in members]
        doc["Members@odata.count"] = len(members)
        tx.put(uri, doc, owned=True)


class ResourceBlockKind(Kind):
    """Blocks are changed by compositions; a host's registration block can be deleted,
    which unregisters the host (see registration.py)."""

    entity = "ResourceBlock"
    excerpt = ("Id", "Name", "ResourceBlockType", "CompositionStatus")

    def allow(self, doc: dict[str, Any]) -> list[str]:
        methods = super().allow(doc)
        registration = "ComputerSystem" in planner.block_types(doc) \
            and doc.get("@odata.id") != REGISTRATION_CAPABILITIES
        return [*methods, "DELETE"] if registration else methods

    async def pre_delete(self, ctx, uri, if_match):
        checked_entry(ctx, uri, if_match)
        await unregister(ctx, uri)
        return True


class ResourceBlockCollectionKind(Kind):
    """``POST`` to the ResourceBlocks collection registers a host server (the pools are
    views and take no POST)."""

    entity = "ResourceBlockCollection"

    def allow(self, doc: dict[str, Any]) -> list[str]:
        methods = super().allow(doc)
        return [*methods, "POST"] if doc.get("@odata.id") == BLOCKS else methods

    async def create(self, ctx, collection_uri, body):
        if collection_uri != BLOCKS:
            raise method_not_allowed(["GET", "HEAD"])
        return await register(ctx, body)


KINDS = [ResourceBlockKind(), ResourceBlockCollectionKind()]
