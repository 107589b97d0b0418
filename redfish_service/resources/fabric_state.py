"""What the fabric-side documents are computed from, and where they live.

The composition state of the ResourceBlocks says which device is bound to which system;
everything the fabric and the hosts show of a binding (zones, CXL connections, a host's
PCIe devices and memory) is derived from :func:`snapshot`, inside the transaction that
changes the state. Reads here do not copy documents, so a snapshot costs a dictionary
lookup per block; callers only read what they get.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..composition import planner
from ..composition.planner import link_ids
from ..protocol.errors import RedfishError
from ..store import Store, Transaction
from . import uris

FABRICS = "/redfish/v1/Fabrics"
OK = {"State": "Enabled", "Health": "OK"}


def ref(uri: str) -> dict[str, str]:
    return {"@odata.id": uri}


def links(items: list[str]) -> list[dict[str, str]]:
    return [ref(u) for u in items]


# -- where things are ---------------------------------------------------------------------
def enclosure_uri(switch: str) -> str:
    """The chassis of a switch and the devices behind it."""
    return f"{uris.CHASSIS}/enclosure-{switch}"


def pcie_device_uri(switch: str, device: str) -> str:
    return f"{enclosure_uri(switch)}/PCIeDevices/{device}"


def memory_domain_uri(switch: str, device: str) -> str:
    return f"{enclosure_uri(switch)}/MemoryDomains/{device}"


def memory_chunk_uri(switch: str, device: str) -> str:
    """The one chunk a CXL Type-3 device's capacity is offered as."""
    return f"{memory_domain_uri(switch, device)}/MemoryChunks/1"


def upstream_port_id(initiator: str) -> str:
    return f"up-{initiator}"


def downstream_port_id(device: str) -> str:
    return f"down-{device}"


def port_uri(fabric: str, switch: str, port_id: str) -> str:
    return f"{fabric}/Switches/{switch}/Ports/{port_id}"


def connection_uri(fabric: str, initiator: str, device: str) -> str:
    return f"{fabric}/Connections/{initiator}-{device}"


def host_memory_uri(system: str, device: str) -> str:
    return f"{system}/Memory/{device}"


def fabric_reconciled(store: Store) -> bool:
    """Whether the service reconciled the fabric from its driver's inventory (a rack
    service), rather than serving a mockup's documents."""
    entry = store.get(FABRICS)
    return entry is not None and bool(entry.private) and "inventory" in entry.private


def service_fabrics(store: Store) -> list[str]:
    """The fabrics the service reconciled from its driver's inventory, whose zones,
    connections and endpoint links it keeps; none in a served mockup, whose fabrics are
    documents like the others."""
    return store.members(FABRICS) if fabric_reconciled(store) else []


# -- reading inside a transaction ---------------------------------------------------------
def members(tx: Transaction, store: Store, uri: str) -> list[str]:
    doc = tx.peek(uri)
    if not doc:
        return []
    return link_ids(doc.get("Members"))


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the fabric knows of a pooled device (kept as the private part of its target
    endpoint when the fabric is reconciled)."""

    device: str
    fabric: str  # the fabric URI its endpoint is in
    protocol: str  # "PCIe" or "CXL"
    switch: str
    kind: str  # "GPU", "NVMe", "CXLMemory", "DPU", "NIC"

    @property
    def endpoint(self) -> str:
        return f"{self.fabric}/Endpoints/{self.device}"

    @property
    def pcie_device(self) -> str:
        return pcie_device_uri(self.switch, self.device)

    @property
    def chunk(self) -> str | None:
        return memory_chunk_uri(self.switch, self.device) if self.kind == "CXLMemory" else None


def device_private(switch: str, kind: str) -> dict[str, Any]:
    return {"fabric_device": {"switch": switch, "kind": kind}}


def device_info(store: Store, device: str) -> DeviceInfo | None:
    """What the fabric knows of ``device``: None for devices the service did not
    reconcile a fabric for (all of a served mockup's)."""
    for fabric in store.members(FABRICS):
        entry = store.get(f"{fabric}/Endpoints/{device}")
        if entry is not None and entry.private and "fabric_device" in entry.private:
            known = entry.private["fabric_device"]
            return DeviceInfo(device, fabric, fabric.rsplit("/", 1)[1], known["switch"],
                              known["kind"])
    return None


@dataclass(frozen=True, slots=True)
class Binding:
    """``device`` is bound to the root ports of ``initiator`` (a host or a compute sled),
    and belongs to the system ``system``."""

    device: str
    initiator: str
    system: str
    info: DeviceInfo | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    bindings: tuple[Binding, ...]
    systems: tuple[str, ...]  # every system, as the transaction sees the collection

    @property
    def by_system(self) -> dict[str, list[Binding]]:
        out: dict[str, list[Binding]] = {}
        for b in self.bindings:
            out.setdefault(b.system, []).append(b)
        return out


def snapshot(tx: Transaction, store: Store) -> Snapshot:
    blocks = {u: d for u in members(tx, store, uris.RESOURCE_BLOCKS)
              if (d := tx.peek(u)) is not None}
    out: list[Binding] = []
    for block in blocks.values():
        systems = planner.systems_of(block)
        types = planner.block_types(block)
        if not systems or not types or not types <= planner.DEVICE_TYPES:
            continue  # hosts, sleds and Expansion blocks are not devices
        device = planner.doc_id(block)
        info = device_info(store, device)
        for system_uri in systems:  # more than one when the block is shared
            system = tx.peek(system_uri)
            if system is None:
                continue
            try:
                initiator = planner.driver_host(system, planner.host_block(system, blocks))
            except RedfishError:
                continue
            out.append(Binding(device, initiator, system_uri, info))
    out.sort(key=lambda b: (b.device, b.system))
    return Snapshot(tuple(out), tuple(members(tx, store, uris.SYSTEMS)))


def put_if_changed(tx: Transaction, store: Store, uri: str, doc: dict[str, Any],
                   private: dict[str, Any] | None = None) -> bool:
    """Write ``doc`` unless the current document already says the same."""
    current = tx.peek(uri)
    if current is not None and same_doc(current, doc):
        return False
    tx.put(uri, doc, private)
    return True


def same_doc(current: dict[str, Any], doc: dict[str, Any]) -> bool:
    """The same document, whatever its ETag."""
    keys = (set(current) | set(doc)) - {"@odata.etag"}
    return all(current.get(k) == doc.get(k) for k in keys)
