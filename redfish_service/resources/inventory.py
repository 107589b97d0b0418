"""Host servers from the drivers' inventory, as ComputerSystems and Chassis.

Reconciliation is level-triggered: the documents are made to match what the drivers
report now; hosts that disappeared are removed. Properties a client may write
(``AssetTag``) are kept across reconciliations.
"""

from __future__ import annotations

from typing import Any

from ..drivers.contract import Host, Inventory
from ..protocol.fields import Str
from ..store import Store
from . import uris
from .kind import Kind

SYSTEM_TYPE = "#ComputerSystem.v1_27_0.ComputerSystem"
CHASSIS_TYPE = "#Chassis.v1_28_0.Chassis"
SOURCE = {"source": "inventory"}
CLIENT_OWNED = ("AssetTag",)


def system_doc(host: Host) -> dict[str, Any]:
    return {
        "@odata.id": f"{uris.SYSTEMS}/{host.id}",
        "@odata.type": SYSTEM_TYPE,
        "Id": host.id,
        "Name": f"Host server {host.id}",
        "SystemType": "Physical",
        "UUID": host.uuid,
        "SerialNumber": host.serial,
        "Manufacturer": host.manufacturer,
        "Model": host.model,
        "AssetTag": None,
        "PowerState": "On",
        "Status": {"State": "Enabled", "Health": "OK"},
        "ProcessorSummary": {
            "Count": host.cpu_count,
            "CoreCount": host.cpu_count * host.cores,
            "Model": host.cpu_model,
        },
        "MemorySummary": {"TotalSystemMemoryGiB": host.memory_gib},
        "Links": {
            "Chassis": [{"@odata.id": f"{uris.CHASSIS}/{host.id}"}],
            "ManagedBy": [{"@odata.id": uris.MANAGER}],
            "ResourceBlocks": [
                {"@odata.id": f"{uris.RESOURCE_BLOCKS}/{uris.host_block_id(host.id)}"}
            ],
        },
    }


def chassis_doc(host: Host) -> dict[str, Any]:
    return {
        "@odata.id": f"{uris.CHASSIS}/{host.id}",
        "@odata.type": CHASSIS_TYPE,
        "Id": host.id,
        "Name": f"Chassis of host server {host.id}",
        "ChassisType": "RackMount",
        "Manufacturer": host.manufacturer,
        "Model": host.model,
        "SerialNumber": host.serial,
        "PowerState": "On",
        "Status": {"State": "Enabled", "Health": "OK"},
        "Links": {
            "ComputerSystems": [{"@odata.id": f"{uris.SYSTEMS}/{host.id}"}],
            "ManagedBy": [{"@odata.id": uris.MANAGER}],
        },
    }


async def reconcile(store: Store, inventory: Inventory) -> None:
    wanted: dict[str, dict[str, Any]] = {}
    for host in inventory.hosts:
        for doc in (system_doc(host), chassis_doc(host)):
            wanted[doc["@odata.id"]] = doc
    async with store.transaction("service") as tx:
        for uri in store.members(uris.SYSTEMS) + store.members(uris.CHASSIS):
            entry = store.get(uri)
            if uri not in wanted and entry and entry.private == SOURCE:
                tx.delete(uri)
        for uri, doc in wanted.items():
            current = tx.get(uri)
            if current is not None:
                for key in CLIENT_OWNED:
                    if key in current:
                        doc[key] = current[key]
                current.pop("@odata.etag", None)
                if current == doc:
                    continue
            tx.put(uri, doc, dict(SOURCE))
        manager = tx.get(uris.MANAGER)
        if manager is not None:
            manager["Links"] = {
                "ManagerForServers": [
                    {"@odata.id": u} for u in wanted if u.startswith(uris.SYSTEMS + "/")
                ],
                "ManagerForChassis": [
                    {"@odata.id": u} for u in wanted if u.startswith(uris.CHASSIS + "/")
                ],
            }
            tx.put(uris.MANAGER, manager)


class SystemKind(Kind):
    entity = "ComputerSystem"
    writable = {"AssetTag": Str(max_length=64, nullable=True)}


class ChassisKind(Kind):
    entity = "Chassis"
    writable = {"AssetTag": Str(max_length=64, nullable=True)}


KINDS = [SystemKind(), ChassisKind()]
