"""CXL Type-3 memory: the device side (a MemoryDomain with one MemoryChunk per device, in
the enclosure chassis), and what a binding adds — a fabric Connection granting the
host's initiator endpoint the chunk, and a logical Memory entry in the host's system.

The device side is written when the fabric is reconciled; :func:`sync_connections` runs
in every composition transaction (through ``fabrics.sync_zones``) and writes only the
Connections that changed. The host's Memory entries are kept by :mod:`.host_view`.
"""

from __future__ import annotations

from typing import Any

from ..drivers.contract import Device, Switch
from ..store import Store, Transaction
from . import uris
from .fabric_state import (
    OK,
    Binding,
    Snapshot,
    connection_uri,
    enclosure_uri,
    members,
    memory_chunk_uri,
    memory_domain_uri,
    pcie_device_uri,
    put_if_changed,
    ref,
    service_fabrics,
)

MEMORY_DOMAIN_TYPE = "#MemoryDomain.v1_5_1.MemoryDomain"
MEMORY_CHUNK_TYPE = "#MemoryChunks.v1_6_2.MemoryChunks"
CONNECTION_TYPE = "#Connection.v1_4_0.Connection"
MEMORY_TYPE = "#Memory.v1_23_0.Memory"
ACCESS = ["Read", "Write"]


def _collection(uri: str, entity: str, name: str) -> dict[str, Any]:
    return {"@odata.id": uri, "@odata.type": f"#{entity}.{entity}", "Name": name,
            "Members": [], "Members@odata.count": 0}


def is_cxl_fabric(fabric_uri: str) -> bool:
    return fabric_uri.rsplit("/", 1)[1] == "CXL"


def connections_collection(fabric: str) -> dict[str, Any]:
    return _collection(f"{fabric}/Connections", "ConnectionCollection",
                       f"Connections of the {fabric.rsplit('/', 1)[1]} fabric")


def memory_documents(fabric: str, switch: Switch,
                     devices: list[Device]) -> dict[str, dict[str, Any]]:
    """The MemoryDomains of the CXL memory devices in ``switch``'s enclosure."""
    memory = [d for d in devices if d.kind == "CXLMemory"]
    if not memory:
        return {}
    domains = f"{enclosure_uri(switch.id)}/MemoryDomains"
    docs = {domains: _collection(domains, "MemoryDomainCollection",
                                 f"CXL memory domains behind {switch.id}")}
    for device in memory:
        domain = memory_domain_uri(switch.id, device.id)
        chunk = memory_chunk_uri(switch.id, device.id)
        media = ref(f"{uris.RESOURCE_BLOCKS}/{device.id}/Memory/Memory0")
        docs[domain] = {
            "@odata.id": domain, "@odata.type": MEMORY_DOMAIN_TYPE, "Id": device.id,
            "Name": f"Memory of CXL device {device.id}", "Status": OK,
            "MemorySizeMiB": device.memory_mib, "AllowsMemoryChunkCreation": False,
            "AllowsBlockProvisioning": False, "AllowsMirroring": False,
            "AllowsSparing": False, "InterleavableMemorySets": [{"MemorySet": [media]}],
            "MemoryChunks": ref(f"{domain}/MemoryChunks"),
            "Links": {"PCIeFunctions": [ref(f"{pcie_device_uri(switch.id, device.id)}"
                                            "/PCIeFunctions/0")]},
        }
        docs[f"{domain}/MemoryChunks"] = _collection(
            f"{domain}/MemoryChunks", "MemoryChunksCollection",
            f"Memory chunks of {device.id}")
        docs[chunk] = {
            "@odata.id": chunk, "@odata.type": MEMORY_CHUNK_TYPE,
            "Id": chunk.rsplit("/", 1)[1], "Name": f"All memory of {device.id}",
            "Status": OK, "AddressRangeType": "Volatile", "AddressRangeOffsetMiB": 0,
            "MemoryChunkSizeMiB": device.memory_mib, "InterleaveSets": [{"Memory": media}],
            "Links": {"Endpoints": [ref(f"{fabric}/Endpoints/{device.id}")]},
        }
    return docs


def _wanted_connections(snap: Snapshot, fabric: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for b in snap.bindings:
        if b.info is None or b.info.fabric != fabric or b.info.chunk is None:
            continue
        uri = connection_uri(fabric, b.initiator, b.device)
        out[uri] = {
            "@odata.id": uri, "@odata.type": CONNECTION_TYPE, "Id": uri.rsplit("/", 1)[1],
            "Name": f"CXL memory {b.device} for {b.initiator}", "ConnectionType": "Memory",
            "Status": OK,
            "MemoryChunkInfo": [{"AccessCapabilities": ACCESS, "AccessState": "Optimized",
                                 "MemoryChunk": ref(b.info.chunk)}],
            "Links": {"InitiatorEndpoints": [ref(f"{fabric}/Endpoints/{b.initiator}")],
                      "TargetEndpoints": [ref(b.info.endpoint)]},
        }
    return out


def sync_connections(tx: Transaction, store: Store, snap: Snapshot) -> dict[str, list[str]]:
    """Make each CXL fabric's Connections exactly one per bound memory device; returns
    endpoint URI -> the connections naming it, for the endpoints' ``Links.Connections``."""
    named: dict[str, list[str]] = {}
    for fabric in service_fabrics(store):
        if not is_cxl_fabric(fabric):
            continue
        wanted = _wanted_connections(snap, fabric)
        for uri in members(tx, store, f"{fabric}/Connections"):
            if uri not in wanted:
                tx.delete(uri)
        for uri, doc in wanted.items():
            put_if_changed(tx, store, uri, doc)
            for side in ("InitiatorEndpoints", "TargetEndpoints"):
                for endpoint in doc["Links"][side]:
                    named.setdefault(endpoint["@odata.id"], []).append(uri)
    return named


def host_memory_doc(uri: str, binding: Binding, capacity_mib: int) -> dict[str, Any]:
    """The host's logical view of a CXL memory device bound to it."""
    assert binding.info is not None and binding.info.chunk is not None
    return {
        "@odata.id": uri, "@odata.type": MEMORY_TYPE, "Id": uri.rsplit("/", 1)[1],
        "Name": f"CXL memory {binding.device}", "MemoryType": "DRAM",
        "MemoryDeviceType": "Logical", "MemoryMedia": ["DRAM"],
        "CapacityMiB": capacity_mib, "Status": OK,
        "Links": {"Endpoints": [ref(f"{binding.info.fabric}/Endpoints/{binding.initiator}")],
                  "MemoryMediaSources": [ref(binding.info.chunk)]},
    }
