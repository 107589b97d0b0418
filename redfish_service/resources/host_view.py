"""What a system shows of the blocks composed into it.

* ``PCIeDevices``: links to the bound devices' PCIeDevice resources, in the order the
  blocks were attached.
* ``Memory``: one logical Memory entry per bound CXL memory device (linked to the
  device's chunk), then the Memory resources inside its other blocks (a sled's DRAM).
* ``Processors``, ``NetworkInterfaces``: collections whose members are the resources
  inside its blocks (a sled's CPUs, a GPU, a DPU's processor; NICs), as DMTF's composed
  systems list them; ``Storage``: one Storage resource (``Storage/Pooled``) whose
  ``Drives`` are the drives inside its blocks, present while it has any.

Runs in every composition transaction (through ``fabrics.sync_zones``); a document is
written only when what it should show changed.

In a rack service (the fabric reconciled from the driver's inventory) all of it is the
host view's, for every system. A served mockup's own systems show what their documents
say (their own PCIe devices, DIMMs that live in other documents' subtrees), and the host
view leaves them alone (were something derived bound to one, its entries would be added
beside the mockup's, which are never deleted); a system the service composed on a mockup
(marked ``composed`` in its private data) gets the whole view, as in a rack.
"""

from __future__ import annotations

from typing import Any

from ..store import Store, Transaction
from .accounts import collection_doc
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
OWNED = ("PCIeDevices", "PCIeDevices@odata.count", "Memory", "Processors",
         "NetworkInterfaces", "Storage")
# Private data of a system the composer created (compositions on a mockup included).
COMPOSED = {"composed": True}
# system property -> the collection's entity; members come from the blocks' same property
_COLLECTIONS = {"Processors": "ProcessorCollection",
                "NetworkInterfaces": "NetworkInterfaceCollection"}
STORAGE_TYPE = "#Storage.v1_21_0.Storage"
POOLED_STORAGE = "Pooled"


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _viewed(tx: Transaction, system_uri: str, rack: bool) -> bool:
    if rack:
        return True
    private = tx.private(system_uri)  # created in this transaction, perhaps
    return bool(private) and private.get("composed") is True


def sync(tx: Transaction, store: Store, snap: Snapshot,
         systems: set[str] | None = None) -> None:
    """``systems``: only these (None: every system)."""
    by_system = snap.by_system
    # In a rack service every system's views are the host view's (also those of devices
    # gone from the inventory since); in a served mockup only the systems it composed.
    rack = fabric_reconciled(store)
    for system_uri in snap.systems:
        if systems is not None and system_uri not in systems:
            continue
        system = tx.peek(system_uri)
        if system is None:
            continue
        viewed = _viewed(tx, system_uri, rack)
        bound = list(by_system.get(system_uri, ()))
        blocks = link_ids(_obj(system.get("Links")).get("ResourceBlocks"))
        order = {b: i for i, b in enumerate(u.rsplit("/", 1)[1] for u in blocks)}
        bound.sort(key=lambda b: (order.get(b.device, len(order)), b.device))
        devices = [b.info.pcie_device for b in bound if b.info is not None]
        if not viewed and not devices:
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
        # the resources inside its blocks (CXL memory is shown by its logical entry)
        cxl = {f"{b.device}" for b in bound if b.info is not None and b.info.chunk}
        inside = _inside(tx, [u for u in blocks if u.rsplit("/", 1)[1] not in cxl]) \
            if viewed else {}
        if viewed:
            shown.update({p: ref(f"{system_uri}/{p}") for p in (*_COLLECTIONS, "Storage")})
        changed = {k: v for k, v in shown.items() if system.get(k) != v}
        if changed:
            doc = tx.get(system_uri)
            assert doc is not None
            doc.update(changed)
            tx.put(system_uri, doc)
        if viewed:
            for prop, entity in _COLLECTIONS.items():
                _collection(tx, f"{system_uri}/{prop}", entity, system, prop,
                            inside.get(prop, []))
            _sync_storage(tx, system_uri, system, inside.get("Drives", []))
        if not memory:
            continue
        if tx.peek(memory) is None:
            tx.create(memory, collection_doc(memory, "MemoryCollection",
                                             f"Memory of {system.get('Id', '')}"))
        _sync_memory(tx, store, memory, system_uri, bound, rack,
                     inside.get("Memory", []) if viewed else None)


def _inside(tx: Transaction, blocks: list[str]) -> dict[str, list[str]]:
    """Block property -> the resources the blocks hold there that exist, block order."""
    out: dict[str, list[str]] = {}
    for block_uri in blocks:
        block = tx.peek(block_uri) or {}
        for prop in ("Processors", "Memory", "Drives", "NetworkInterfaces"):
            found = [u for u in link_ids(block.get(prop)) if tx.peek(u) is not None]
            if found:
                out.setdefault(prop, []).extend(u for u in found if u not in out[prop])
    return out


def _collection(tx: Transaction, uri: str, entity: str, system: dict[str, Any],
                prop: str, listed: list[str]) -> None:
    doc = {**collection_doc(uri, entity, f"{prop} of {system.get('Id', '')}"),
           "Members": [ref(u) for u in listed], "Members@odata.count": len(listed)}
    current = tx.peek(uri)
    if current is None:
        tx.create(uri, doc)
    elif any(current.get(k) != v for k, v in doc.items()):
        tx.put(uri, {**current, **doc})


def _sync_storage(tx: Transaction, system_uri: str, system: dict[str, Any],
                  drives: list[str]) -> None:
    """``Storage``: one ``Pooled`` Storage resource listing the drives of its blocks,
    there while it has any (the collection itself always is)."""
    collection = f"{system_uri}/Storage"
    pooled = f"{collection}/{POOLED_STORAGE}"
    if tx.peek(collection) is None:
        tx.create(collection, collection_doc(collection, "StorageCollection",
                                             f"Storage of {system.get('Id', '')}"))
    if not drives:
        if tx.exists(pooled):
            tx.delete(pooled)
        return
    doc = {"@odata.id": pooled, "@odata.type": STORAGE_TYPE, "Id": POOLED_STORAGE,
           "Name": "Pooled drives", "Description": "The drives of the blocks composed "
           "into this system", "Status": {"State": "Enabled", "Health": "OK"},
           "Drives": [ref(u) for u in drives], "Drives@odata.count": len(drives)}
    current = tx.peek(pooled)
    if current is None:
        tx.create(pooled, doc)
    elif any(current.get(k) != v for k, v in doc.items()):
        tx.put(pooled, doc)


def _sync_memory(tx: Transaction, store: Store, collection: str, system_uri: str,
                 bound: list[Any], rack: bool, inside: list[str] | None) -> None:
    """The logical entries of bound CXL memory (documents below the collection), then
    the Memory resources of its other blocks (links to documents of the blocks; None:
    a mockup's system, whose other members are its own and kept)."""
    wanted: dict[str, dict[str, Any]] = {}
    for b in bound:
        if b.info is None or b.info.chunk is None:
            continue
        chunk = store.doc(b.info.chunk) or {}
        uri = host_memory_uri(system_uri, b.device)
        wanted[uri] = host_memory_doc(uri, b, chunk.get("MemoryChunkSizeMiB", 0))
    below = collection + "/"
    for uri in members(tx, store, collection):
        if uri.startswith(below) and uri not in wanted and rack and tx.exists(uri):
            tx.delete(uri)
    for uri, doc in wanted.items():
        put_if_changed(tx, store, uri, doc)
    if inside is None:
        return
    current = members(tx, store, collection)
    listed = [u for u in current if u.startswith(below)]
    listed += [u for u in inside if u not in listed]
    if current != listed:
        doc = tx.get(collection)
        assert doc is not None
        doc["Members"] = [ref(u) for u in listed]
        doc["Members@odata.count"] = len(listed)
        tx.put(collection, doc)
