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
class Switch:
    """A PCIe or CXL switch and the hosts (or compute sleds) its upstream ports reach."""

    id: str
    protocol: str  # "PCIe" or "CXL"
    hosts: tuple[str, ...]
    manufacturer: str = ""
    model: str = ""


@dataclass(frozen=True)
class Device:
    """A pooled device behind a switch: becomes a ResourceBlock."""

    id: str
    kind: str  # "GPU", "NVMe", "CXLMemory", "DPU", "NIC"
    switch: str
    manufacturer: str
    model: str
    serial: str
    vendor_id: str  # PCI ids, "0x10de"
    device_id: str
    memory_mib: int = 0  # GPU memory or CXL capacity
    capacity_bytes: int = 0  # NVMe
    port_gbps: int = 0  # NIC / DPU


@dataclass(frozen=True)
class Sled:
    """A bare compute sled (CPUs and memory, no OS yet): a Compute ResourceBlock."""

    id: str
    switch: str
    manufacturer: str
    model: str
    serial: str
    cpu_model: str
    cpu_count: int
    cores: int
    memory_gib: int


@dataclass(frozen=True)
class Inventory:
    hosts: tuple[Host, ...]
    switches: tuple[Switch, ...] = ()
    devices: tuple[Device, ...] = ()
    sleds: tuple[Sled, ...] = ()


class InventoryDriver(abc.ABC):
    """Tells what exists behind the fabric."""

    @abc.abstractmethod
    async def discover(self) -> Inventory:
        """The current inventory; called at start and whenever the service reconciles."""


class DriverError(Exception):
    """Base of the typed driver errors. ``transient`` errors may succeed if retried."""

    transient = False


class DeviceBusy(DriverError):
    """The device is bound to another host."""


class DeviceNotFound(DriverError):
    """The driver knows no such device or host."""


class LinkDown(DriverError):
    """The path between the device and the host is down."""

    transient = True


class DriverTimeout(DriverError):
    """The operation did not finish in time; the driver undid what it could."""

    transient = True


class BindingDriver(abc.ABC):
    """Attaches pooled devices to hosts. Both operations are idempotent: binding a
    device already bound to that host, or unbinding one that is not bound, succeeds."""

    @abc.abstractmethod
    async def bind(self, device_id: str, host_id: str) -> None:
        """Attach ``device_id`` to ``host_id`` (hot-plug it into the host's hierarchy)."""

    @abc.abstractmethod
    async def unbind(self, device_id: str, host_id: str) -> None:
        """Detach ``device_id`` from ``host_id``."""
