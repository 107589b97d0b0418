"""The driver contract: what a switch driver tells the service and does for it.

Small and async, one ABC per capability (ironic style). This first part is the inventory
of host servers; binding, CXL memory, events and health join it with the composition
service.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Host:
    """A host server the fabric reaches: becomes a ComputerSystem and its Chassis."""

    id: str
    uuid: str  # what the host's firmware (and a Kubernetes node) reports
    serial: str
    manufacturer: str
    model: str
    cpu_model: str
    cpu_count: int
    cores: int
    memory_gib: int
    host_ports: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Inventory:
    hosts: tuple[Host, ...]


class InventoryDriver(abc.ABC):
    """Tells what exists behind the fabric."""

    @abc.abstractmethod
    async def discover(self) -> Inventory:
        """The current inventory; called at start and whenever the service reconciles."""


class DriverError(Exception):
    """Base of the typed driver errors."""
