"""The simulated fabric driver: a rack described in data, the embedded default."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .contract import Host, Inventory, InventoryDriver

# Host UUIDs are derived from the rack name and host id, so they are stable across
# restarts and across machines, as real firmware UUIDs are.
_NAMESPACE = uuid.UUID("6f1c2d4e-1b7a-4c59-9a0e-2f3c4d5e6f70")


class HostSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    manufacturer: str = "Contoso Systems"
    model: str = "CS-2200 Compute Node"
    cpu_model: str = "Xeon-class 32-core CPU"
    cpu_count: int = Field(2, ge=1)
    cores: int = Field(32, ge=1)
    memory_gib: int = Field(512, ge=1)


class RackSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "rack1"
    hosts: list[HostSpec]


def default_rack() -> RackSpec:
    return RackSpec(hosts=[HostSpec(id=f"host{i}") for i in range(1, 5)])


class SimulatedDriver(InventoryDriver):
    def __init__(self, rack: RackSpec | dict[str, Any] | None = None) -> None:
        if isinstance(rack, dict):
            rack = RackSpec.model_validate(rack)
        self.rack = rack or default_rack()

    async def discover(self) -> Inventory:
        hosts = []
        for n, spec in enumerate(self.rack.hosts, start=1):
            host_uuid = str(uuid.uuid5(_NAMESPACE, f"{self.rack.name}/{spec.id}"))
            hosts.append(Host(
                id=spec.id,
                uuid=host_uuid,
                serial=f"SIM{self.rack.name.upper()}{n:04d}",
                manufacturer=spec.manufacturer,
                model=spec.model,
                cpu_model=spec.cpu_model,
                cpu_count=spec.cpu_count,
                cores=spec.cores,
                memory_gib=spec.memory_gib,
                host_ports=(f"{spec.id}-pcie0",),
            ))
        return Inventory(hosts=tuple(hosts))
