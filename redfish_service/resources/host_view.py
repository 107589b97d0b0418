"""What a system shows of the devices bound to it: ``PCIeDevices`` (links to the devices'
PCIeDevice resources, in the order the blocks were attached) and a ``Memory`` collection
with one logical Memory entry per CXL memory device, linked to the device's chunk.

Runs in every composition transaction (through ``fabrics.sync_zones``); a system is
written only when what it should show changed.

In a rack service (the fabric reconciled from the driver's inventory) all of it is the
host view's. A served mockup's systems show what their documents say (their own PCIe
devices, DIMMs that live in other documents' subtrees): nothing there derives from a
fabric the service reconciled, and the host view leaves them alone (were something
derived bound to one, its entries would be added beside the mockup's, which are never
deleted).
"""

from __future__ import annotations

from typing import Any

from ..store import Store, Transaction
from .cxl import host_memory_doc
from .fabric_state import (
    Snapshot,
    fabric_reconciled,
    host_memory_uri,
    link_ids,
    members,
    put_if_changed,
    ref,
)

# Properties of a system document this module owns (inventory reconciliation keeps them).
OWNED = ("PCIeDevices", "PCIeDevices@odata.count", "Memory")


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def sync(tx: Transaction, store: Store, snap: Snapshot) -> None:
    by_system = snap.by_system
    # In a rack service every system's PCIe devices and memory entries are the host
    # view's (also those of devices gone from the inventory since); in a served mockup
    # what the systems show is the mockup's, and kept.
    rack = fabric_reconciled(store)
    for system_uri in snap.systems:
        system = tx.peek(system_uri)
        if system is None:
            continue
        bound = list(by_system.get(system_uri, ()))
        order = {b: i for i, b in enumerate(u.rsplit("/", 1)[1] for u in link_ids(
            _obj(system.get("Links")).get("ResourceBlocks")))}
        bound.sort(key=lambda b: (order.get(b.device, len(order)), b.device))
        devices = [b.info.pcie_device for b in bound if b.info is not None]
        if not rack and not devices:
            continue  # a served mockup's system shows what its documents say
        kept = [] if rack else link_ids(system.get("PCIeDevices"))
        listed = kept + [u for u in devices if u not in kept]
        memory = f"{system_uri}/Memory"
        shown: dict[str, Any] = {"PCIeDevices": [ref(u) for u in listed],
                                 "PCIeDevices@odata.count": len(listed)}
        linked = _obj(system.get("Memory")).get("@odata.id")
        if linked is None:
            shown["Memory"] = ref(memory)
        elif not isinstance(linked, str) or linked.rstrip("/") != memory:
            memory = ""  # the system's memory is elsewhere: left as it is
        if any(system.get(k) != v for k, v in shown.items()):
            doc = tx.get(system_uri)
            assert doc is not None
            doc.update(shown)
            tx.put(system_uri, doc)
        if not memory:
            continue
        if tx.peek(memory) is None:
            tx.create(memory, {
                "@odata.id": memory, "@odata.type": "#MemoryCollection.MemoryCollection",
                "Name": f"Memory of {system.get('Id', '')}", "Members": [],
                "Members@odata.count": 0})
        _sync_memory(tx, store, memory, system_uri, bound, rack)


def _sync_memory(tx: Transaction, store: Store, collection: str, system_uri: str,
                 bound: list[Any], rack: bool) -> None:
    wanted: dict[str, dict[str, Any]] = {}
    for b in bound:
        if b.info is None or b.info.chunk is None:
            continue
        chunk = store.doc(b.info.chunk) or {}
        uri = host_memory_uri(system_uri, b.device)
        wanted[uri] = host_memory_doc(uri, b, chunk.get("MemoryChunkSizeMiB", 0))
    for uri in members(tx, store, collection):
        if uri not in wanted and rack and tx.exists(uri):
            tx.delete(uri)
    for uri, doc in wanted.items():
        put_if_changed(tx, store, uri, doc)
