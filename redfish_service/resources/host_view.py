"""What a system shows of the devices bound to it: ``PCIeDevices`` (links to the devices'
PCIeDevice resources, in the order the blocks were attached) and a ``Memory`` collection
with one logical Memory entry per CXL memory device, linked to the device's chunk.

Runs in every composition transaction (through ``fabrics.sync_zones``); a system is
written only when what it should show changed.
"""

from __future__ import annotations

from typing import Any

from ..store import Store, Transaction
from .cxl import host_memory_doc
from .fabric_state import Snapshot, host_memory_uri, link_ids, members, peek, put_if_changed, ref

# Properties of a system document this module owns (inventory reconciliation keeps them).
OWNED = ("PCIeDevices", "PCIeDevices@odata.count", "Memory")


def sync(tx: Transaction, store: Store, snap: Snapshot) -> None:
    by_system = snap.by_system
    for system_uri in snap.systems:
        system = peek(tx, store, system_uri)
        if system is None:
            continue
        bound = list(by_system.get(system_uri, ()))
        order = {b: i for i, b in enumerate(
            u.rsplit("/", 1)[1] for u in link_ids(system.get("Links", {}).get("ResourceBlocks")))}
        bound.sort(key=lambda b: (order.get(b.device, len(order)), b.device))
        devices = [b.info.pcie_device for b in bound if b.info is not None]
        memory = f"{system_uri}/Memory"
        shown = {"PCIeDevices": [ref(u) for u in devices],
                 "PCIeDevices@odata.count": len(devices), "Memory": ref(memory)}
        if any(system.get(k) != v for k, v in shown.items()):
            doc = tx.get(system_uri)
            assert doc is not None
            doc.update(shown)
            tx.put(system_uri, doc)
        if peek(tx, store, memory) is None:
            tx.create(memory, {
                "@odata.id": memory, "@odata.type": "#MemoryCollection.MemoryCollection",
                "Name": f"Memory of {system.get('Id', '')}", "Members": [],
                "Members@odata.count": 0})
        _sync_memory(tx, store, memory, system_uri, bound)


def _sync_memory(tx: Transaction, store: Store, collection: str, system_uri: str,
                 bound: list[Any]) -> None:
    wanted: dict[str, dict[str, Any]] = {}
    for b in bound:
        if b.info is None or b.info.chunk is None:
            continue
        chunk = store.doc(b.info.chunk) or {}
        uri = host_memory_uri(system_uri, b.device)
        wanted[uri] = host_memory_doc(uri, b, chunk.get("MemoryChunkSizeMiB", 0))
    for uri in members(tx, store, collection):
        if uri not in wanted:
            tx.delete(uri)
    for uri, doc in wanted.items():
        put_if_changed(tx, store, uri, doc)
